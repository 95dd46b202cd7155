"""Stopping a process whose batch failed outside the per-message guards, so that its restart replays the batch.

A batch that fails there (Kafka refused a write; a bug) is not acked, and Faust would restart the agent past it,
which then waits for those offsets forever (a clean shutdown too waits for them to be acked), while the
partition's commits stop. The process exits at once with :data:`FAILED_EXIT_STATUS` instead: a supervisor sees
the failure, and the restart replays from the committed offset (what the sinks wrote since is overwritten, not
duplicated). Used by the worker's agent and the alerting agent.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

log = logging.getLogger(__name__)

FAILED_EXIT_STATUS = 70  # EX_SOFTWARE


def exit_after_failed_batch(exc: BaseException, process: str) -> NoReturn:
    """Log ``exc`` loudly, naming ``process`` (``worker``, ``alerting service``), and exit with status 70."""
    log.critical("a batch failed (%s: %s); stopping the %s (exit status %d) so that its restart replays from the "
                 "committed offset", type(exc).__name__, exc, process, FAILED_EXIT_STATUS, exc_info=exc)  # fmt: skip
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(FAILED_EXIT_STATUS)
