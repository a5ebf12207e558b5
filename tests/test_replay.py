"""The anti-replay window against a model that remembers every packet number it saw."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.replay import WINDOW, ReplayWindow

# Arrivals as jumps from the largest so far: mostly in order, with gaps, late and repeated ones,
# jumps past the whole window, and huge jumps (a peer jumping ahead: O(WINDOW) all the same).
_jumps = st.lists(st.one_of(st.just(1), st.integers(-WINDOW - 5, 8), st.integers(-20, 20),
                            st.integers(WINDOW - 3, WINDOW + 3),
                            st.sampled_from([2**32, 2**40, 2**62]),
                            st.integers(WINDOW, 2**62)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 3 * WINDOW), jumps=_jumps)
def test_window_matches_a_model(start: int, jumps: list[int]) -> None:
    window, seen, largest = ReplayWindow(), set(), -1
    for jump in [start - largest, *jumps]:
        pn = max(0, (largest if largest >= 0 else 0) + jump)
        fresh = pn not in seen and (pn > largest or largest - pn < WINDOW)
        assert window.check(pn) == fresh
        assert window.accept(pn) == fresh
        if fresh:
            seen.add(pn)
            largest = max(largest, pn)
        assert window.largest == largest
        assert not window.check(pn) and not window.accept(pn)  # now a replay


def test_in_order_arrival_keeps_the_window_small() -> None:
    window = ReplayWindow()
    for pn in range(10_000):
        assert window.accept(pn)
    assert window._missing == 0 and window.largest == 9_999
    assert not window.accept(9_999 - WINDOW)  # too old, although it was seen anyway
    assert not window.accept(5_000)  # seen


def test_a_gap_is_accepted_once_until_it_leaves_the_window() -> None:
    window = ReplayWindow()
    window.accept(0)
    window.accept(3)  # 1 and 2 missing
    assert window.check(1) and window.check(2) and not window.check(0)
    assert window.accept(2) and not window.accept(2)
    for pn in range(4, 4 + WINDOW):
        window.accept(pn)
    assert not window.check(1)  # still missing, but now older than the window
    assert window._missing < 1 << WINDOW  # forgotten, not kept


def test_a_peer_skipping_numbers_cannot_grow_the_window() -> None:
    window = ReplayWindow()
    for pn in range(0, 6 * WINDOW, 2):  # every other number missing, for good
        assert window.accept(pn)
    assert window._missing.bit_length() <= WINDOW
    assert window.check(6 * WINDOW - 3) and not window.check(6 * WINDOW - 2 - WINDOW)
