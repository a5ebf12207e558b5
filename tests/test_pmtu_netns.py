"""Path-MTU discovery across real links: two network namespaces joined by a veth pair whose
MTU is 1,280, 1,500 or 9,000, over IPv4 and IPv6, both ends with default settings (16 KiB
frames). The sockets never fragment (don't-fragment set), so a datagram larger than the link
fails to send and discovery must find the link's size; a link whose MTU is lowered mid-transfer
(a black hole) must be noticed. A rule dropping every IP fragment (nftables where installed,
else a tc filter: :mod:`stt_bench.netns`), proven by a control that fragments on purpose,
changes nothing for STT, and across it the default settings' goodput holds against
``max_frame_size=1400`` set by hand (issue 28). Needs root and ``ip`` (CI runs as root):
skipped otherwise, saying why."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator

import pytest
from rich.console import Console

import stt_proto
from stt_bench import netns
from stt_bench.netns import MiB, Unavailable, VethLink
from stt_bench.workloads import path_mtu

# the UDP payload a link of each MTU carries (IPv4: 20 + 8 bytes of headers; IPv6: 40 + 8)
PAYLOAD = {(1280, 4): 1252, (1500, 4): 1472, (9000, 4): 8972,
           (1280, 6): 1232, (1500, 6): 1452, (9000, 6): 8952}
WHY_NOT = netns.why_not()

needs_namespaces = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))


@pytest.fixture
def make_link() -> Iterator[Callable[[int], VethLink]]:
    """Links made through this are deleted afterwards, whatever the test did."""
    made: list[VethLink] = []

    def make(mtu: int) -> VethLink:
        made.append(VethLink(mtu))
        return made[-1]

    yield make
    for link in made:
        link.close()


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def _drop_fragments(link: VethLink) -> str:
    try:
        return link.drop_fragments()
    except Unavailable as exc:
        pytest.skip(str(exc))


@needs_namespaces
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("mtu", [1280, 1500, 9000])
def test_default_settings_find_the_links_size(make_link: Callable[[int], VethLink], mtu: int,
                                              family: int) -> None:
    done = netns.transfer(make_link(mtu), family, 8 * MiB)
    assert done.received_digest == done.sent_digest  # byte for byte
    assert done.path_mtu == PAYLOAD[(mtu, family)]  # the largest datagram the link carries
    assert done.path_mtu_state == "complete"


@needs_namespaces
def test_a_link_shrunk_mid_transfer_is_noticed_and_the_transfer_completes(
        make_link: Callable[[int], VethLink]) -> None:
    link = make_link(9000)
    done = netns.transfer(link, 4, 24 * MiB, shrink=link.set_mtu(1500))
    assert done.received_digest == done.sent_digest
    assert done.black_holes >= 1  # a black hole: back to the base size, then the search again
    assert done.path_mtu == PAYLOAD[(1500, 4)]


@needs_namespaces
@pytest.mark.parametrize("family", [4, 6])
def test_a_link_dropping_ip_fragments_carries_the_default_settings(
        make_link: Callable[[int], VethLink], family: int) -> None:
    """The rule works (a 4,000-byte datagram the kernel may fragment crosses the 1,500-byte
    link without it and not with it), and STT's transfer crosses it whole all the same."""
    link = make_link(1500)
    assert netns.fragments_cross(link, family)  # the control can fail: fragments do cross
    _drop_fragments(link)
    assert not netns.fragments_cross(link, family)
    assert netns.fragments_cross(link, family, size=1000)  # only fragments are dropped
    done = netns.transfer(link, family, 8 * MiB)
    assert done.received_digest == done.sent_digest
    assert done.path_mtu == PAYLOAD[(1500, family)]


@needs_namespaces
def test_fragments_are_dropped_in_both_directions(make_link: Callable[[int], VethLink]) -> None:
    """The rule holds on each end: from b to a, fragments are dropped too."""
    link = make_link(1500)
    assert netns.fragments_cross(link, 6, backwards=True)
    _drop_fragments(link)
    for family in (4, 6):
        assert not netns.fragments_cross(link, family, backwards=True)
        assert netns.fragments_cross(link, family, size=1000, backwards=True)


@needs_namespaces
def test_where_no_rule_can_be_set_the_reason_is_said() -> None:
    """What a test skips with when neither nftables nor tc can drop fragments: each one's
    error (here the namespaces are gone, so both fail)."""
    link = VethLink(1500)
    link.close()
    with pytest.raises(Unavailable, match="no rule dropping IP fragments") as caught:
        link.drop_fragments()
    assert "tc htb/u32:" in str(caught.value) and "nft" in str(caught.value)
    assert link.fragment_rule is None


@needs_namespaces
def test_namespaces_are_deleted_after_a_failing_transfer() -> None:
    with VethLink(1500) as link:
        names = {link.a, link.b}
        assert names <= _namespaces()
        with pytest.raises(AssertionError):
            netns.transfer(link, 4, MiB, settings={"no_such_setting": 1})
    assert not names & _namespaces()


@needs_namespaces
def test_namespaces_left_by_a_killed_process_are_removed() -> None:
    """A run killed mid-test leaves its namespaces: the next one deletes them (and no others:
    not a live process's)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = f"sttpm-{dead.pid}-stale", f"{netns.PREFIX}live"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        assert stale in netns.remove_stale()
        names = _namespaces()
        assert stale not in names and live in names
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


# Link-bound: the rate is well under what the core sends here (pure Python included, on two
# busy CPUs), so the ratio measures packet sizes and discovery, not the CPUs: 2.36 MB/s each
# way, three runs apart by under 2 %, where 50 Mbit/s saw 4.6 to 5.8 MB/s under load.
TEST_RATE, TEST_BYTES = "20mbit", 20e6 / 8


@needs_namespaces
def test_goodput_across_a_fragment_dropping_link_matches_a_hand_set_frame_size() -> None:
    """Issue 28's target, small: 4 MiB across a 1,500-byte link that drops fragments, shaped
    to 20 Mbit/s; the default settings reach >= 0.9 x max_frame_size=1400 set by hand."""
    try:
        figures = netns.goodput_comparison(4 * MiB, TEST_RATE)
    except Unavailable as exc:
        pytest.skip(str(exc))
    assert figures["discovered_path_mtu"] == 1472 and figures["by_hand_path_mtu"] == 1400
    assert 0.6 * TEST_BYTES < figures["by_hand"] < TEST_BYTES  # the link sets the pace
    assert figures["ratio"] >= 0.9, figures


@needs_namespaces
@pytest.mark.slow
def test_goodput_target_at_full_size() -> None:
    """The target as the issue states it, 64 MiB, as the suite measures it (200 Mbit/s with
    the compiled core, 50 with the Python sources, which send less)."""
    figures = path_mtu.namespaces(64 * MiB, repeats=2)
    if "skipped" in figures:
        pytest.skip(figures["skipped"])
    assert figures["rate"] == ("200mbit" if stt_proto.COMPILED else "50mbit")
    assert figures["ratio"] >= 0.9, figures


def test_the_suite_prints_the_targets_and_why_namespaces_were_skipped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m stt_bench``'s issue-28 section: the skip's reason where namespaces cannot
    be made, and each target PASS, FAIL or not measured from the figures it was given (the
    measurements themselves are stubbed here: they are tested above and in test_pmtu*.py)."""
    from stt_bench import suite

    monkeypatch.setattr(netns, "why_not", lambda: "no namespaces in this test")
    monkeypatch.setattr(path_mtu, "simulated", lambda: {
        "found_s": 0.2, "black_hole_recovered_s": 4.5, "black_holes": 1})
    monkeypatch.setattr(path_mtu, "real_path", lambda size: {
        "discovered": 2e7, "by_hand": 2e7, "ratio": 1.0, "path_mtu": 1472})
    out = io.StringIO()
    monkeypatch.setattr(suite, "console", Console(file=out, width=250))
    results = suite.path_mtu_section(quick=True)
    text = out.getvalue()
    assert "namespaces: skipped: no namespaces in this test" in text
    assert results["namespaces"]["skipped"] == "no namespaces in this test"
    verdicts = [check["pass"] for check in results["targets"]]
    assert verdicts == [True, False, None]  # 4.5 s > 3 s; namespaces not measured
    rows = [line for line in text.splitlines() if "PASS" in line or "FAIL" in line
            or "not measured" in line]
    assert [("PASS" in row, "FAIL" in row) for row in rows] == [
        (True, False), (False, True), (False, False)]

    measured = {"size": 8 * MiB, "rate": "200mbit", "family": 4, "rule": "tc",
                "discovered": 17e6, "discovered_runs": [17e6], "discovered_path_mtu": 1472,
                "by_hand": 20e6, "by_hand_runs": [20e6], "by_hand_path_mtu": 1400,
                "ratio": 0.85}
    monkeypatch.setattr(path_mtu, "namespaces", lambda size, repeats: measured)
    out.truncate(0)
    out.seek(0)
    results = suite.path_mtu_section(quick=True)
    text = out.getvalue()
    assert "17.0 MB/s with the default settings (found 1472 B), 20.0 MB/s" in text
    assert "tc rule" in text and "0.85 x" in text
    assert results["targets"][-1]["pass"] is False and "skipped" not in text
