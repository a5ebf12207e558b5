"""Path-MTU discovery across real links: two network namespaces joined by a veth pair whose
MTU is 1,280, 1,500 or 9,000, over IPv4 and IPv6, both ends with default settings (16 KiB
frames). The sockets never fragment (don't-fragment set), so a datagram larger than the link
fails to send and discovery must find the link's size; a link whose MTU is lowered mid-transfer
(a black hole) must be noticed. Needs root and ``ip`` (CI runs as root): skipped otherwise,
saying why. A rule dropping IP fragments would change nothing here: nothing is fragmented."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
# the UDP payload a link of each MTU carries (IPv4: 20 + 8 bytes of headers; IPv6: 40 + 8)
PAYLOAD = {(1280, 4): 1252, (1500, 4): 1472, (9000, 4): 8972,
           (1280, 6): 1232, (1500, 6): 1452, (9000, 6): 8952}


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    probe = f"sttprobe{uuid.uuid4().hex[:6]}"
    try:
        _run("ip", "netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot create a network namespace here: {exc}"
    _run("ip", "netns", "del", probe)
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


class Link:
    """Namespaces a and b joined by veth ``a_if`` <-> ``b_if`` with ``mtu``."""

    def __init__(self, mtu: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"stta{tag}", f"sttb{tag}"
        self.a_if, self.b_if = f"va{tag}", f"vb{tag}"
        _run("ip", "netns", "add", self.a)
        _run("ip", "netns", "add", self.b)
        _run("ip", "link", "add", self.a_if, "netns", self.a, "type", "veth",
             "peer", "name", self.b_if, "netns", self.b)
        for ns, dev, v4, v6 in ((self.a, self.a_if, "10.77.0.1/24", "fd77::1/64"),
                                (self.b, self.b_if, "10.77.0.2/24", "fd77::2/64")):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", dev, "mtu", str(mtu), "up")
            _run("ip", "-n", ns, "addr", "add", v4, "dev", dev)
            _run("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")

    def close(self) -> None:
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    def set_mtu(self, mtu: int) -> list[str]:
        """The commands lowering both ends to ``mtu``, as one shell line."""
        return ["sh", "-c", f"ip -n {self.a} link set {self.a_if} mtu {mtu} && "
                            f"ip -n {self.b} link set {self.b_if} mtu {mtu}"]


@pytest.fixture
def link_factory() -> Iterator[list[Link]]:
    made: list[Link] = []
    yield made
    for link in made:
        link.close()


def _transfer(link: Link, family: int, size: int, shrink: list[str] | None = None) -> list[str]:
    host = "10.77.0.2" if family == 4 else "fd77::2"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    receiver = subprocess.Popen(["ip", "netns", "exec", link.b, sys.executable, "-m",
                                 "tests.netns_peer", "receive", host, str(size)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT, env=env)
    try:
        assert receiver.stdout is not None
        ready = receiver.stdout.readline().split()
        assert ready and ready[0] == "ready", receiver.stderr.read() if receiver.stderr else ""
        sender = subprocess.run(["ip", "netns", "exec", link.a, sys.executable, "-m",
                                 "tests.netns_peer", "send", host, ready[1], ready[2], str(size),
                                 "7", *(shrink or [])],
                                capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert sender.returncode == 0, sender.stderr[-3000:]
        received = receiver.stdout.readline().split()
        sent = sender.stdout.split()
        assert received[:1] == ["received"] and sent[:1] == ["sent"], (sent, received)
        assert received[1] == sent[1]  # byte for byte
        return sent
    finally:
        receiver.kill()
        receiver.wait(10)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("mtu", [1280, 1500, 9000])
def test_default_settings_find_the_links_size(link_factory: list[Link], mtu: int,
                                              family: int) -> None:
    link = Link(mtu)
    link_factory.append(link)
    sent = _transfer(link, family, 8 * MiB)
    assert int(sent[2]) == PAYLOAD[(mtu, family)]  # the largest datagram the link carries
    assert sent[3] == "complete"


def test_a_link_shrunk_mid_transfer_is_noticed_and_the_transfer_completes(
        link_factory: list[Link]) -> None:
    link = Link(9000)
    link_factory.append(link)
    sent = _transfer(link, 4, 24 * MiB, shrink=link.set_mtu(1500))
    assert int(sent[4]) >= 1  # a black hole: back to the base size, then the search again
    assert int(sent[2]) == PAYLOAD[(1500, 4)]
