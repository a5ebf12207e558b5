"""The impaired-link runner's processes (:mod:`stt_bench.impaired.end`) against a starter that
reads one process's stdout while another's fills up.

Found as a transfer that "stalled at its very end and died with KeepAliveTimeout": the receiver
wrote its report (each message's arrival and a sample every 10 ms: more than the pipe's 64 KiB
after ~10 s) on its event loop while the runner was still reading the senders' reports. The
write blocked the loop, so the node stopped answering; a sender whose last packets were not yet
acknowledged (a delayed ACK, or one lost) probed for 30 s and failed. The ends now write their
reports in a worker thread, and the runner asks the receiver and the link for their stacks
when a sender fails.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os

import pytest

from stt_asyncio import STTNode
from stt_bench.impaired import runner
from stt_bench.impaired.runner import Case, Proc, environment, run_once
from stt_bench.twoproc import PeerError

BUILD = "pure" if os.environ.get("STT_PURE") else "compiled"
SIZE = 2 << 20
MESSAGE = 512  # small messages: 4,096 arrivals, a report of ~110 KB
SETTINGS = {"max_frame_size": 1400}


async def _answers(address: list[object], node_id: str) -> bool:
    """Whether the node at ``address`` completes a handshake within 5 s."""
    async with STTNode(host="127.0.0.1") as node:
        try:
            session = await node.connect((str(address[0]), int(str(address[1]))),
                                         bytes.fromhex(node_id), timeout=5)
        except Exception:
            return False
        await session.close()
        return True


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_receiver_keeps_answering_while_its_report_waits_in_a_full_pipe(runtime: str) -> None:
    env = environment(BUILD)
    base = {"runtime": runtime, "settings": SETTINGS}
    with Proc({**base, "role": "receiver", "flows": 1}, env) as receiver:
        ready = receiver.read()
        assert receiver.process.stdout is not None
        pipe = fcntl.fcntl(receiver.process.stdout.fileno(), fcntl.F_GETPIPE_SZ)
        with Proc({**base, "role": "sender", "address": ready["address"],
                   "node_id": ready["node_id"], "size": SIZE, "seconds": None,
                   "message": MESSAGE, "series": None, "header": {}}, env) as sender:
            sender.read()  # connected
            # As the runner does: the sender's report first, the receiver's stdout unread.
            report = sender.read(60)
            assert report["bytes"] == SIZE
            # The receiver has counted every byte and written (part of) its report into a
            # pipe nobody reads: its node must still answer.
            assert asyncio.run(_answers(ready["address"], ready["node_id"]))
            counted = receiver.read(30)
            sender.tell("done")
        receiver.tell("done")
    assert [flow["bytes"] for flow in counted["flows"]] == [SIZE]
    assert len(json.dumps(counted)) > pipe  # the case this test is about


def test_the_ends_and_the_link_dump_their_state_on_the_starters_signal() -> None:
    env = environment(BUILD)
    with Proc({"runtime": "asyncio", "settings": SETTINGS, "role": "receiver", "flows": 1},
              env) as receiver:
        ready = receiver.read()
        link_spec = {"role": "link", "rate": "10mbit", "delay": "1ms", "loss": "0%",
                     "queue": "1bdp", "jitter": "0", "seed": 1, "target": ready["address"]}
        with Proc(link_spec, environment("compiled")) as link:
            link.read()
            dumped = link.dump()
            assert "link counters:" in dumped and '"forward"' in dumped
            assert "impair/link.py" in dumped  # the forwarding thread's stack
            link.tell("report")
            assert "forward" in link.read()  # still running after the dump
        dumped = receiver.dump()
        assert "in run_roles" in dumped  # the main thread's stack, down to its loop
        receiver.tell("done")


def test_a_failed_run_says_what_the_receiver_and_the_link_were_doing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a run that gives its senders no time at all: their reports are "late" at once
    monkeypatch.setattr(runner, "transfer_timeout", lambda case: 0.01)
    case = Case(rate="20mbit", delay="5ms", seconds=0.5, message=16384, runtime="asyncio",
                build=BUILD)
    with pytest.raises(PeerError) as failure:
        run_once(case)
    text = str(failure.value)
    assert text.startswith("the sender peer said nothing for 0.01 s")
    receiver_part, _, link_part = text.partition("--- the link's state:")
    assert "--- the receiver's state:" in receiver_part and "in run_roles" in receiver_part
    assert "link counters:" in link_part and "impair/link.py" in link_part
