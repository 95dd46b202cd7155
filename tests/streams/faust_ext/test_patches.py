"""The recovery work-around on Faust's real objects: resuming flow control no longer clears the stream's queue.

Faust's recovery resumes flow control after seeking, and resuming clears every queue registered to be cleared,
the stream's input queue among them: records fetched during the seek were lost (first seen in the crash test,
``tests/integration/test_crash_replay.py``, which no longer reproduces the race reliably). This shows the
mechanism itself, without a broker: the same record is gone without the work-around and kept with it.
"""

from __future__ import annotations

import asyncio

import faust

from streams.faust_ext.own_offsets import OwnedOffsets
from streams.faust_ext.patches import keep_stream_queue_on_resume


async def _left_after_resume(patched: bool) -> tuple[bool, int]:
    app = faust.App("evalstream-test-flow-control", broker="kafka://127.0.0.1:1", web_enabled=False)
    stream = app.stream(app.topic("events", value_serializer="raw"))
    kept = keep_stream_queue_on_resume(app, stream) if patched else False
    stream.channel.queue.put_nowait("a record fetched while recovery awaited the seek")
    app.flow_control.suspend()
    app.flow_control.resume()  # what Recovery.on_recovery_completed does after the seek
    return kept, stream.channel.queue.qsize()


def test_resuming_clears_the_stream_queue_without_the_work_around() -> None:
    assert asyncio.run(_left_after_resume(patched=False)) == (False, 0)


def test_resuming_keeps_the_stream_queue_with_the_work_around() -> None:
    assert asyncio.run(_left_after_resume(patched=True)) == (True, 1)


def test_the_work_around_reports_a_stream_whose_queue_faust_does_not_manage() -> None:
    async def run() -> bool:
        app = faust.App("evalstream-test-flow-control-2", broker="kafka://127.0.0.1:1", web_enabled=False)
        stream = app.stream(app.topic("events", value_serializer="raw"))
        assert keep_stream_queue_on_resume(app, stream)
        return keep_stream_queue_on_resume(app, stream)  # already taken out: nothing left to do

    assert asyncio.run(run()) is False


def test_an_agent_taking_its_batches_from_owned_offsets_keeps_its_queue_on_resume() -> None:
    """Both agents (scoring and alerting) take their batches through ``OwnedOffsets.batches``; the alerting agent
    once did not apply the work-around, and its restart after a failed batch lost the records Faust fetched
    while recovery ended (three partitions of the metrics topic then stalled)."""

    async def run() -> tuple[bool, int]:
        app = faust.App("evalstream-test-flow-control-3", broker="kafka://127.0.0.1:1", web_enabled=False)
        stream = app.stream(app.topic("metrics", value_serializer="raw"))
        owned = OwnedOffsets(app, "metrics", commit_interval_s=1.0)
        batches = owned.batches(stream, 10, 0.1)  # what the agents do first
        stream.channel.queue.put_nowait("a record fetched while recovery awaited the seek")
        app.flow_control.suspend()
        app.flow_control.resume()
        await batches.aclose()
        return owned.queue is stream.channel.queue, stream.channel.queue.qsize()

    assert asyncio.run(run()) == (True, 1)
