"""Every use of faust-streaming's private API, in one folder: an upgrade of Faust re-checks these files.

Verified against faust-streaming 0.15.3 (``VERIFIED_FAUST_VERSIONS``; the worker logs a warning on any other
version). The tests named below fail if one of these stops working:

- :mod:`streams.faust_ext.batching` -- ``Stream._enable_passive``, ``Stream._processors``, ``Stream.channel``
  (as ``Stream.take_events`` uses them), to gather batch N+1 while N is processed
  (``tests/streams/faust_ext/test_batching.py``, which also shows ``take_events`` itself does not overlap;
  ``tests/integration/test_pipeline.py``);
- :mod:`streams.faust_ext.changelog` -- ``Table.on_key_set`` / ``on_key_del`` overrides, ``Table._partition``,
  ``Table._sensor_on_set`` / ``_sensor_on_del``, ``Producer._ensure_producer`` (aiokafka underneath), to send a
  batch's table writes once (``tests/streams/faust_ext/test_changelog.py``);
- :mod:`streams.faust_ext.current_event` -- the task-local ``faust.streams._current_event``, so table writes of
  a batch go to the changelog partition of the event they belong to (``tests/streams/faust_ext/test_changelog.py``);
- :mod:`streams.faust_ext.own_offsets` -- ``Consumer._read_offset``, ``Consumer.ack``, ``_unacked_messages``,
  ``_waiting_for_ack``, ``_commit`` and ``_thread``, so that the worker, not Faust, decides which offsets of the
  events topic are committed (``tests/streams/faust_ext/test_own_offsets.py``, ``tests/reliability/test_crashes.py``);
- :mod:`streams.faust_ext.patches` -- ``FlowControlManager._queues``, to keep the stream's queue from being cleared
  on recovery (``tests/streams/faust_ext/test_patches.py``; the crash test where the loss was first seen,
  ``tests/integration/test_crash_replay.py``, no longer reproduces the race reliably).

Example::

    >>> unverified_faust_version("0.15.3") is None
    True
    >>> unverified_faust_version("0.16.0")
    'faust-streaming 0.16.0 is installed; streams/faust_ext was verified against 0.15.3 only: re-check it'
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

VERIFIED_FAUST_VERSIONS: tuple[str, ...] = ("0.15.3",)


def unverified_faust_version(installed: str | None = None) -> str | None:
    """A warning when the installed faust-streaming is not one these extensions were verified against."""
    if installed is None:
        try:
            installed = version("faust-streaming")
        except PackageNotFoundError:
            return "faust-streaming is not installed"
    if installed in VERIFIED_FAUST_VERSIONS:
        return None
    verified = ", ".join(VERIFIED_FAUST_VERSIONS)
    return (
        f"faust-streaming {installed} is installed; streams/faust_ext was verified against {verified} only: re-check it"
    )
