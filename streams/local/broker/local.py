"""Provision and run a single-node Apache Kafka 4.x broker (KRaft) as a local Java process.

Steps, each checked with a clear error:

1. ``ensure_jars()`` resolves ``org.apache.kafka:kafka_2.13`` plus a log4j2 backend from Maven Central with
   ``mvn dependency:copy-dependencies`` into ``$EVALSTREAM_CACHE_DIR/kafka-<version>/libs`` (default cache:
   ``~/.cache/evalstream``). A finished download is marked and reused.
2. ``LocalBroker.start()`` writes ``server.properties`` (combined broker+controller, one node, free ports on
   127.0.0.1), formats the storage with ``kafka.tools.StorageTool format --standalone`` and starts
   ``kafka.Kafka server.properties`` in the background, then waits until the broker answers a metadata request.
3. ``LocalBroker.stop()`` sends SIGTERM (SIGKILL after a timeout).

Usage (needs Java, and Maven Central the first time)::

    broker = LocalBroker.start()
    broker.bootstrap_servers   # '127.0.0.1:40123'
    broker.stop()
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

DEFAULT_KAFKA_VERSION = "4.2.0"
_STATE_FILE = "broker.json"


# JVM flags of the local broker (override with EVALSTREAM_KAFKA_JVM_FLAGS). It serves tests, the demo and the
# benchmarks on the same machine as the worker, so it is tuned to take little CPU from it: the client JIT only
# and the serial collector, which start faster and use less CPU idle and under load.
DEFAULT_JVM_FLAGS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"


class BrokerError(RuntimeError):
    """The local broker could not be provisioned, started or stopped; the message says why and what to do."""


def cache_root() -> Path:
    """Folder for downloaded jars and the CLI broker's state (``EVALSTREAM_CACHE_DIR`` or ``~/.cache/evalstream``)."""
    return Path(os.environ.get("EVALSTREAM_CACHE_DIR") or Path.home() / ".cache" / "evalstream").expanduser()


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` was not found on PATH. {hint}")
    return path


def _require_java() -> str:
    java = _require("java", "Install a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`).")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    # `openjdk version "17.0.15" 2025-04-15` / `java version "1.8.0_402"`
    with contextlib.suppress(IndexError, ValueError):
        quoted = out.split('"')[1]
        major = int(quoted.split(".")[1] if quoted.startswith("1.") else quoted.split(".")[0])
        if major < 17:
            raise BrokerError(f"Apache Kafka 4.x needs Java 17 or newer; `java -version` says {quoted}.")
    return java


def ensure_jars(version: str = DEFAULT_KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Return the folder holding the broker's jars, resolving them with Maven on first use."""
    root = (cache_dir or cache_root()) / f"kafka-{version}"
    libs = root / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = _require("mvn", "Install Apache Maven (e.g. `apt-get install maven`); it downloads the Kafka jars.")
    _require_java()
    root.mkdir(parents=True, exist_ok=True)
    pom = root / "pom.xml"
    pom.write_text(resources.files("streams.local.broker").joinpath("pom.xml").read_text(encoding="utf-8"))
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=root))
    cmd = [
        mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime", f"-Dkafka.version={version}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise BrokerError(f"Maven could not resolve Apache Kafka {version}:\n{tail}")
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    marker.write_text(version)
    return libs


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64, never starting with "-".

    One id in 64 would otherwise start with "-", which ``kafka-storage format -t`` reads as an option ("expected
    one argument"); Kafka's own ``Uuid.randomUuid()`` redraws those too.
    """
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


_SERVER_PROPERTIES = """\
# Written by evalstream: one node acting as broker and KRaft controller, on loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
"""


def server_properties(port: int, controller_port: int, log_dir: Path | str) -> str:
    """The broker's ``server.properties``: one node acting as broker and KRaft controller, on loopback only."""
    return _SERVER_PROPERTIES.format(port=port, controller_port=controller_port, log_dir=log_dir)


_LOG4J2_PROPERTIES = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


@dataclass
class LocalBroker:
    """A running local broker. ``start()`` creates one; ``attach()`` finds the one the CLI started."""

    data_dir: str
    bootstrap_servers: str
    pid: int
    version: str
    log_file: str

    @classmethod
    def start(
        cls,
        data_dir: str | Path | None = None,
        *,
        version: str = DEFAULT_KAFKA_VERSION,
        port: int = 0,
        heap: str = "512m",
        timeout_s: float = 90.0,
        log_level: str = "WARN",
    ) -> LocalBroker:
        """Provision jars if needed, format fresh storage in ``data_dir`` and start the broker."""
        java = _require_java()
        libs = ensure_jars(version)
        data = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="evalstream-kafka-"))
        data.mkdir(parents=True, exist_ok=True)
        port = port or _free_port()
        controller_port = _free_port()
        log_dir = data / "kraft-logs"
        if log_dir.exists():  # a stale run: start from empty storage, formatting refuses otherwise
            shutil.rmtree(log_dir)
        props = data / "server.properties"
        props.write_text(server_properties(port, controller_port, log_dir))
        log_file = data / "broker.log"
        log_cfg = data / "log4j2.properties"
        log_cfg.write_text(_LOG4J2_PROPERTIES.format(log_file=log_file, level=log_level))
        classpath = str(libs / "*")
        flags = (os.environ.get("EVALSTREAM_KAFKA_JVM_FLAGS") or DEFAULT_JVM_FLAGS).split()
        jvm = [java, f"-Xmx{heap}", *flags, "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={log_cfg}", "-cp", classpath]  # fmt: skip
        fmt = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "--standalone",
             "-t", cluster_id(), "-c", str(props)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise BrokerError(f"kafka-storage format failed:\n{(fmt.stdout + fmt.stderr)[-3000:]}")
        console = (data / "broker.out").open("ab")
        proc = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(props)],
            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        console.close()
        broker = cls(str(data), f"127.0.0.1:{port}", proc.pid, version, str(log_file))
        try:
            broker._wait_ready(proc, timeout_s)
        except BaseException:
            broker.stop()
            raise
        (data / _STATE_FILE).write_text(json.dumps(asdict(broker)))
        return broker

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        host, port = self.bootstrap_servers.rsplit(":", 1)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"the Kafka broker exited with code {proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
                with contextlib.suppress(Exception):
                    admin.list_topics(timeout=5)
                    return
            time.sleep(0.3)
        raise BrokerError(f"the Kafka broker did not answer within {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("broker.out", "broker.log"):
            path = Path(self.data_dir) / name
            if path.exists():
                text += path.read_text(errors="replace")[-chars:]
        return text

    def is_running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # a zombie child still answers kill(0); reap it if it is ours
        with contextlib.suppress(ChildProcessError):
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return False
        return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the broker: SIGTERM (a clean controlled shutdown), then SIGKILL after ``timeout_s``."""
        if not self.is_running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.is_running():
            time.sleep(0.2)
        if self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        state = Path(self.data_dir) / _STATE_FILE
        state.unlink(missing_ok=True)

    @classmethod
    def attach(cls, data_dir: str | Path) -> LocalBroker | None:
        """The broker recorded in ``data_dir`` if it is still running, else None."""
        state = Path(data_dir) / _STATE_FILE
        if not state.exists():
            return None
        broker = cls(**json.loads(state.read_text()))
        return broker if broker.is_running() else None


@contextlib.contextmanager
def running_broker(data_dir: str | Path | None = None, **kwargs: object) -> Iterator[LocalBroker]:
    """Context manager: a fresh broker for the duration of the block."""
    broker = LocalBroker.start(data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield broker
    finally:
        broker.stop()
