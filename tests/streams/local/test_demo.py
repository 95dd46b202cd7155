"""``evalstream demo`` as a newcomer runs it, with its own broker: the story is told (A/B, drift, cluster, alerts
with their webhook deliveries, slow retriever) and ``--duration`` ends it; Ctrl-C in the middle stops it too; the
API wants the printed key; and no process of the demo is left behind either way."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from metrics.alert_rules import parse_rules
from streams.local.demo import DEMO_RULES, RECEIVER_PLACEHOLDER

pytestmark = pytest.mark.integration


class Demo:
    """``evalstream demo`` in a child process, its output collected line by line."""

    def __init__(self, data: Path, *args: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVALSTREAM_")}  # its own broker
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo", "--port", str(self.port), "--data-dir", str(data), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or ()), daemon=True).start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            assert self.proc.poll() is None, f"the demo exited ({self.proc.returncode}):\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout_s:.0f} s:\n{self.output}"
            time.sleep(0.5)


def left_behind(data: Path) -> list[str]:
    """The processes that run with the demo's data folder in their command line or environment."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline, environ = (proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours
        if str(data).encode() in cmdline or f"EVALSTREAM_DATA_DIR={data}".encode() in environ.split(b"\0"):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command}")
    return found


def test_the_rules_file_is_valid_and_points_at_the_demos_receiver() -> None:
    rules = parse_rules(DEMO_RULES.read_text())
    assert [r.url for r in rules.receivers] == [RECEIVER_PLACEHOLDER]
    assert {r.name for r in rules.rules} == {"thumbs-up-drop", "pii-in-outputs", "latency-drift", "retriever-slow"}


def test_the_demo_tells_the_story_then_duration_ends_it_and_nothing_is_left(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    began = time.monotonic()
    demo = Demo(data, "--duration", "3")
    try:
        assert demo.proc.wait(300) == 0, demo.output
    finally:
        if demo.proc.poll() is None:
            demo.proc.send_signal(signal.SIGINT)
            demo.proc.wait(120)
    print(f"\n{demo.output}\nthe demo took {time.monotonic() - began:.0f} s")
    for finding in ("A/B: prompt v2 beats v1 on thumbs-up", "drift: the outputs changed", 'failure cluster c-1 "refund',
                    "alert thumbs-up-drop fired on route billing", "alert pii-in-outputs fired on route compose",
                    "alert latency-drift fired", "slow retriever: p95", "API key: "):  # fmt: skip
        assert finding in demo.output
    assert "not shown within" not in demo.output
    assert left_behind(data) == []


def test_ctrl_c_in_the_middle_stops_everything_and_the_api_wants_the_key(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    demo = Demo(data)
    try:
        demo.wait_for("What the story shows", 240)  # the history has landed; the simulator sends live traffic
        key = demo.output.split("API key: ")[1].split(")")[0]
        url = f"http://127.0.0.1:{demo.port}/v1/alerts"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        assert left_behind(data)  # the broker, the worker (and its encoder), the API
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(180) == 0, demo.output
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
    assert "stopping" in demo.output
    assert left_behind(data) == []
