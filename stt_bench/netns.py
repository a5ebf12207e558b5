"""Real links for issue 28: two network namespaces joined by a veth pair of a chosen MTU, which
may drop IP fragments (as many firewalls do) and may be shaped to a rate, with one STT node in
each (:mod:`stt_bench.netns_peer`). Used by ``tests/test_pmtu_netns.py`` and by the suite's
goodput comparison (default settings against ``max_frame_size=1400`` set by hand).

Linux only, as root, with iproute2. The fragment-dropping rule is nftables' where ``nft`` is
installed (a prerouting chain ahead of reassembly in each namespace); otherwise a tc u32
filter on each end's egress steering fragments to a class whose queue holds nothing (IPv4: the
more-fragments flag or a fragment offset; IPv6: a fragment header right after the fixed
header, as a UDP fragment has). :func:`fragments_cross` is the control proving the rule works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import attrs

MiB = 1024 * 1024
SOURCE = Path(__file__).resolve().parent.parent  # the tree this stt_bench was imported from
ADDRESSES = {4: ("10.77.0.1", "10.77.0.2"), 6: ("fd77::1", "fd77::2")}
PREFIX = f"sttpm-{os.getpid()}-"  # every namespace this process makes
# what the fragment-dropping rule does, for nft -f (ahead of conntrack's reassembly at -400)
NFT_RULES = """table inet sttfrag {
    chain pre {
        type filter hook prerouting priority -450; policy accept;
        ip frag-off & 0x3fff != 0 drop
        ip6 nexthdr 44 drop
    }
}
"""


class Unavailable(Exception):
    """What this machine lacks for a namespace test: the reason, said in the skip."""


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
    return done.stdout


def remove_stale() -> list[str]:
    """Delete the namespaces left by a process of ours that died without closing them (killed:
    its finalizers never ran); their names, as deleted."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    stale = []
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if (len(parts) >= 3 and parts[0] == "sttpm" and parts[1].isdigit()
                and not os.path.exists(f"/proc/{parts[1]}")):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            stale.append(name)
    return stale


def why_not() -> str | None:
    """Why namespaces cannot be made here (None: they can); first clears stale ones."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    remove_stale()
    probe = f"{PREFIX}probe-{uuid.uuid4().hex[:6]}"
    try:
        _run("ip", "netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot create a network namespace here: {exc}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


class VethLink:
    """Namespaces ``a`` and ``b`` joined by veth ``a_if`` <-> ``b_if`` with ``mtu``, addressed
    10.77.0.1/2 and fd77::1/2. ``close`` (or leaving the ``with``) deletes both namespaces."""

    def __init__(self, mtu: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"{PREFIX}{tag}a", f"{PREFIX}{tag}b"
        self.a_if, self.b_if = f"va{tag}", f"vb{tag}"
        self.rate: str | None = None
        self.fragment_rule: str | None = None
        try:
            _run("ip", "netns", "add", self.a)
            _run("ip", "netns", "add", self.b)
            _run("ip", "link", "add", self.a_if, "netns", self.a, "type", "veth",
                 "peer", "name", self.b_if, "netns", self.b)
            for ns, dev, index in ((self.a, self.a_if, 0), (self.b, self.b_if, 1)):
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "-n", ns, "link", "set", dev, "mtu", str(mtu), "up")
                _run("ip", "-n", ns, "addr", "add", f"{ADDRESSES[4][index]}/24", "dev", dev)
                _run("ip", "-n", ns, "addr", "add", f"{ADDRESSES[6][index]}/64", "dev", dev,
                     "nodad")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> VethLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    def ends(self) -> tuple[tuple[str, str], tuple[str, str]]:
        return (self.a, self.a_if), (self.b, self.b_if)

    def set_mtu(self, mtu: int) -> list[str]:
        """The command lowering both ends to ``mtu`` (run from the host, e.g. mid-transfer)."""
        return ["sh", "-c", f"ip -n {self.a} link set {self.a_if} mtu {mtu} && "
                            f"ip -n {self.b} link set {self.b_if} mtu {mtu}"]

    def drop_fragments(self) -> str:
        """Drop every IP fragment arriving in either namespace: nftables where ``nft`` works,
        else the tc filter; which one, as a word. Raises Unavailable saying why neither."""
        errors = []
        if shutil.which("nft") is not None:
            try:
                for ns in (self.a, self.b):
                    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"],
                                   input=NFT_RULES, capture_output=True, text=True, check=True,
                                   timeout=30)
                self.fragment_rule = "nftables"
                return self.fragment_rule
            except subprocess.CalledProcessError as exc:
                errors.append(f"nft: {exc.stderr.strip()}")
        else:
            errors.append("nft is not installed")
        try:
            self.fragment_rule = "tc"
            self._qdiscs()
        except (subprocess.CalledProcessError, OSError) as exc:
            self.fragment_rule = None
            detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
            errors.append(f"tc htb/u32: {detail}")
            raise Unavailable("no rule dropping IP fragments can be set here: "
                              + "; ".join(errors)) from exc
        return self.fragment_rule

    def shape(self, rate: str) -> None:
        """Limit each end's egress to ``rate`` (tc's units, e.g. ``200mbit``) with htb."""
        self.rate = rate
        try:
            self._qdiscs()
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
            raise Unavailable(f"tc htb cannot shape a veth here: {detail}") from exc

    def _qdiscs(self) -> None:
        """(Re)build each end's egress: htb whose default class 1:1 runs at the rate (or 10
        Gbit/s), and with the tc rule a class 1:2 whose queue holds nothing, fed the fragments."""
        for ns, dev in self.ends():
            tc = ("ip", "netns", "exec", ns, "tc")
            subprocess.run([*tc, "qdisc", "del", "dev", dev, "root"], capture_output=True,
                           timeout=30)
            _run(*tc, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1")
            _run(*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
                 "rate", self.rate or "10gbit", "quantum", "60000")
            if self.fragment_rule != "tc":
                continue
            _run(*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb",
                 "rate", "10gbit", "quantum", "60000")
            _run(*tc, "qdisc", "add", "dev", dev, "parent", "1:2", "handle", "20:", "pfifo",
                 "limit", "0")
            # IPv4: the more-fragments flag, or any bit of the fragment offset (the last one)
            for mask in (0x2000, *(1 << bit for bit in range(13))):
                _run(*tc, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip",
                     "prio", "1", "u32", "match", "u16", hex(mask), hex(mask), "at", "6",
                     "flowid", "1:2")
            # IPv6: next header 44, a fragment header
            _run(*tc, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ipv6", "prio",
                 "2", "u32", "match", "u8", "44", "0xff", "at", "6", "flowid", "1:2")


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(SOURCE) + (os.pathsep + path if path else "")}


def _peer(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "stt_bench.netns_peer", *args]


def fragments_cross(link: VethLink, family: int, size: int = 4000,
                    backwards: bool = False) -> bool:
    """The control: whether datagrams of ``size`` bytes from a plain UDP socket with
    don't-fragment off (so the kernel cuts them into fragments) reach namespace b from a (from
    b to a if ``backwards``)."""
    source, sink = (link.b, link.a) if backwards else (link.a, link.b)
    host = ADDRESSES[family][0 if backwards else 1]
    receiver = subprocess.Popen(_peer(sink, "udp-receive", host, "0.5"), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=_env())
    try:
        assert receiver.stdin is not None and receiver.stdout is not None
        ready = receiver.stdout.readline().split()
        if ready[:1] != ["ready"]:
            raise RuntimeError(receiver.stderr.read() if receiver.stderr else "no peer")
        subprocess.run(_peer(source, "udp-send", host, ready[1], str(size), "3"), check=True,
                       capture_output=True, timeout=30, env=_env())
        try:
            receiver.stdin.write("done\n")
            receiver.stdin.flush()
        except BrokenPipeError:
            pass  # it has answered already
        answer = receiver.stdout.readline().split()
        return answer == ["got", str(size)]
    finally:
        receiver.kill()
        receiver.wait(10)


@attrs.frozen
class Transfer:
    """One transfer from namespace a to b: what each end saw."""

    sent_digest: str
    received_digest: str
    path_mtu: int  # the sender's, at the end
    path_mtu_state: str
    black_holes: int
    sender_seconds: float
    receiver_seconds: float  # the session's acceptance to the last byte
    size: int

    @property
    def goodput(self) -> float:
        """Bytes per second, as the receiver saw them arrive."""
        return self.size / self.receiver_seconds


def transfer(link: VethLink, family: int, size: int, settings: dict[str, Any] | None = None,
             shrink: list[str] | None = None, seed: int = 7, timeout: float = 300) -> Transfer:
    """Send ``size`` random bytes on one stream from namespace a to b, both nodes with
    ``settings`` (the defaults when None); raises AssertionError with either end's error."""
    host = ADDRESSES[family][1]
    spec = json.dumps(settings or {})
    receiver = subprocess.Popen(_peer(link.b, "receive", host, str(size), spec),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=_env())
    try:
        assert receiver.stdout is not None and receiver.stderr is not None
        ready = receiver.stdout.readline().split()
        assert ready[:1] == ["ready"], receiver.stderr.read()[-3000:]
        sender = subprocess.run(_peer(link.a, "send", host, ready[1], ready[2], str(size),
                                      str(seed), spec, *(shrink or [])),
                                capture_output=True, text=True, env=_env(), timeout=timeout)
        assert sender.returncode == 0, sender.stderr[-3000:]
        received = receiver.stdout.readline().split()
        sent = sender.stdout.split()
        assert received[:1] == ["received"] and sent[:1] == ["sent"], (sent, received)
        return Transfer(sent[1], received[1], int(sent[2]), sent[3], int(sent[4]),
                        float(sent[5]), float(received[2]), size)
    finally:
        receiver.kill()
        receiver.wait(10)


def goodput_comparison(size: int = 64 * MiB, rate: str | None = "200mbit", family: int = 4,
                       repeats: int = 1) -> dict[str, Any]:
    """Issue 28's target across a real 1,500-byte link dropping IP fragments (shaped to
    ``rate`` so that the link, not the CPU, sets the pace): goodput with the default settings
    against ``max_frame_size=1400`` set by hand, alternating, the median of ``repeats`` each.
    Raises Unavailable where namespaces or the rule cannot be made."""
    reason = why_not()
    if reason is not None:
        raise Unavailable(reason)
    with VethLink(1500) as link:
        if rate is not None:
            link.shape(rate)
        rule = link.drop_fragments()
        if fragments_cross(link, family):
            raise RuntimeError(f"the {rule} rule let IP fragments through")
        runs: dict[str, list[Transfer]] = {"discovered": [], "by_hand": []}
        for _ in range(repeats):
            runs["discovered"].append(transfer(link, family, size))
            runs["by_hand"].append(transfer(link, family, size, {"max_frame_size": 1400}))
    for done in (*runs["discovered"], *runs["by_hand"]):
        if done.sent_digest != done.received_digest:
            raise RuntimeError("a transfer across the namespaces arrived altered")
    figures: dict[str, Any] = {"size": size, "rate": rate, "family": family, "rule": rule}
    for key, done_runs in runs.items():
        samples = sorted(done.goodput for done in done_runs)
        figures[key] = samples[len(samples) // 2]
        figures[f"{key}_runs"] = samples
        figures[f"{key}_path_mtu"] = done_runs[0].path_mtu
    figures["ratio"] = figures["discovered"] / figures["by_hand"]
    return figures
