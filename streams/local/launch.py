"""Start and stop evalstream's own processes (worker, API) as children; used by the demo and the tests.

Usage (a worker needs a broker)::

    proc = spawn_cli(["worker"], {"EVALSTREAM_DATA_DIR": "/tmp/x"}, "/tmp/x/worker.log")
    stop(proc)   # SIGTERM, SIGKILL after 30 s; returns the exit code

Example (``wait_for`` polls until its check returns something truthy, or gives up)::

    >>> answers = iter([None, 0, "ready"])
    >>> wait_for(lambda: next(answers), timeout_s=10, interval_s=0.01, what="the API")
    'ready'
    >>> wait_for(lambda: None, timeout_s=0.05, interval_s=0.01, what="the API")
    Traceback (most recent call last):
    TimeoutError: timed out after 0s waiting for 'the API' (last: None)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def spawn_cli(args: list[str], env: Mapping[str, str], log_path: str | Path) -> subprocess.Popen[bytes]:
    """Run ``evalstream <args>`` in a child process with ``env`` added, output to ``log_path``."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *args],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    finally:
        log.close()


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int | None:
    """SIGTERM (a clean shutdown), then SIGKILL after ``timeout_s``; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def stop_all(procs: list[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> None:
    """:func:`stop` for several processes at once: all are asked first, so their shutdowns overlap."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float,
    interval_s: float = 0.5,
    what: str = "",
    alive: subprocess.Popen[bytes] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy; TimeoutError after ``timeout_s``.

    With ``alive``, a RuntimeError as soon as that process has exited.
    """
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"{what or 'the process'} exited with code {alive.returncode}")
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what or check!r} (last: {last!r})")
