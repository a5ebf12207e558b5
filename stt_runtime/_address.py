"""Addresses for both runtimes' UDP sockets: the dual-stack default bind, IPv4 peers on an IPv6
socket, and the loopback rule.

A node made with ``host=None`` binds ``::`` with ``IPV6_V6ONLY`` off, so one socket reaches IPv4
and IPv6 peers; the kernel then names an IPv4 peer ``::ffff:a.b.c.d`` and wants that form back.
The endpoint, the user and ``session.remote_address`` only ever see the plain IPv4 form: the
socket layer (``UdpIO``) converts at the edge with :func:`plain_host` and :func:`wire_address`.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

from stt_proto import UsageError

Address = tuple[str, int]
MAPPED_PREFIX = "::ffff:"


def open_udp_socket(host: str | None) -> tuple[socket.socket, str]:
    """A non-blocking UDP socket for ``host`` and the address to bind it to. ``None``: IPv6 with
    ``IPV6_V6ONLY`` off on ``::`` (both families), or IPv4 on ``0.0.0.0`` where the platform
    has no IPv6."""
    if host is None:
        if socket.has_ipv6:
            try:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            except OSError:
                pass  # IPv6 compiled in but disabled in this kernel
            else:
                try:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                except OSError:
                    sock.close()  # no dual stack: IPv4 reaches more peers than IPv6 alone
                else:
                    sock.setblocking(False)
                    never_fragment(sock)
                    return sock, "::"
        host = "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    never_fragment(sock)
    return sock, host


# Linux: set don't-fragment and ignore the kernel's path-MTU cache (IP_PMTUDISC_PROBE): the
# session finds the path's size itself (stt_proto/pmtu.py), with probes larger than the cache
# may believe; a datagram too large for the interface fails to send (EMSGSIZE), as a lost probe.
# (Python's socket module does not export these: the values of <linux/in.h> and <linux/in6.h>.)
_LINUX = sys.platform.startswith("linux")
_PMTUDISC_PROBE = 3
_IP_MTU_DISCOVER = 10 if _LINUX else None
_IPV6_MTU_DISCOVER = 23 if _LINUX else None


def never_fragment(sock: socket.socket) -> bool:
    """Have the kernel never fragment what ``sock`` sends (both families on a dual-stack
    socket); False where the platform has no such option (the datagrams may then be cut)."""
    done = False
    options = [(socket.IPPROTO_IP, _IP_MTU_DISCOVER)]
    if sock.family == socket.AF_INET6:
        options.append((socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER))
    for level, option in options:
        if option is None:
            continue
        try:
            sock.setsockopt(level, option, _PMTUDISC_PROBE)
            done = True
        except OSError:
            pass  # e.g. IPv4 options on an IPv6-only socket
    return done


def is_dual_stack(sock: socket.socket) -> bool:
    """Whether ``sock`` is IPv6 and also carries IPv4 (as mapped addresses)."""
    if sock.family != socket.AF_INET6:
        return False
    try:
        return sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    except OSError:
        return False


def plain_host(host: str) -> str:
    """``::ffff:a.b.c.d`` as ``a.b.c.d``; any other host unchanged."""
    if host.startswith(MAPPED_PREFIX) and "." in host:
        return host[len(MAPPED_PREFIX):]
    return host


def wire_address(addr: Address) -> Address:
    """The address a dual-stack socket sends to for ``addr``: an IPv4 literal mapped into
    IPv6, anything else unchanged."""
    host = addr[0]
    if ":" in host:
        return addr
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return addr  # a name: the kernel resolves it for the socket's family
    return MAPPED_PREFIX + host, addr[1]


def _is_loopback(host: str) -> bool | None:
    """True or False for an address literal or ``localhost``; None for another name."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def dial_host(host: str) -> str:
    """The host to dial for ``host``: an unspecified address (a node's own ``node.address``
    when it is bound to every interface) means this machine, its loopback address."""
    if host == "::":
        return "::1"
    if host == "0.0.0.0":
        return "127.0.0.1"
    return host


def check_dial(bind_host: str | None, peer_host: str) -> None:
    """Raise UsageError at once when a node bound to a loopback address is asked to dial a
    non-loopback one: its datagrams could never leave the machine, and the handshake would
    only time out."""
    if bind_host is None or not _is_loopback(bind_host):
        return
    if _is_loopback(peer_host) is False:
        raise UsageError(
            f"this node is bound to {bind_host}, a loopback address, so it cannot reach "
            f"{peer_host}: make it with host=None (every interface) or a routable address")


__all__ = ["check_dial", "dial_host", "is_dual_stack", "open_udp_socket", "plain_host",
           "wire_address"]
