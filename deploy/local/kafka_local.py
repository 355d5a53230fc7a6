"""Run a real single-node Apache Kafka (KRaft) broker on 127.0.0.1 from Maven Central jars.

Used by the local stack (``make demo``), the pytest fixture and the benchmarks::

    python deploy/local/kafka_local.py fetch          # download the jars once into the cache
    python deploy/local/kafka_local.py run            # start a broker, print its address, Ctrl-C stops

The jars are copied by Maven (``kafka-pom.xml`` beside this file) into
``$TICKETLOOP_CACHE`` (default ``~/.cache/ticketloop``)/kafka-<version>/libs.
Every start formats a fresh storage directory and picks free ports.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

KAFKA_VERSION = "4.1.1"
HERE = Path(__file__).resolve().parent
POM = HERE / "kafka-pom.xml"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


class KafkaStartError(RuntimeError):
    """The broker could not be fetched or did not become ready; the message says why and where its log is."""


def cache_dir() -> Path:
    return Path(os.environ.get("TICKETLOOP_CACHE", Path.home() / ".cache" / "ticketloop"))


def libs_dir() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_jars(*, quiet: bool = True) -> Path:
    """Copy the broker jars with Maven once; later calls return the cached directory."""
    libs = libs_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise KafkaStartError("Maven (mvn) is not on PATH: install it (apt-get install maven) to fetch the Kafka jars")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn",
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise KafkaStartError(f"mvn failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaStartError(f"mvn finished but no kafka_2.13 jar is in {libs}")
    marker.write_text(KAFKA_VERSION)
    return libs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def random_cluster_id() -> str:
    """22 URL-safe base64 characters, as Kafka's Uuid; like Kafka, never one that starts with '-' (a command-line
    parser would take it for an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class LocalKafka:
    """A broker process; use as a context manager or call start()/stop()."""

    def __init__(
        self, *, port: int | None = None, workdir: Path | None = None, heap_mb: int = 512, gc_log: bool = False
    ) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="ticketloop-kafka-"))
        self.heap_mb = heap_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "broker.log"
        self.gc_log_path: Path | None = self.workdir / "gc.log" if gc_log else None
        """The JVM's collections, one line each, stamped with the wall clock in milliseconds (``-Xlog:gc``; None:
        not logged). bench/notify_fanout counts the pauses that fall into its measured stream."""
        self._log_offset = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> str:
        p, c = self.port, self.controller_port
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"controller.quorum.voters=1@127.0.0.1:{c}",
                f"log.dirs={self.workdir / 'data'}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=4",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.flush.interval.messages=9223372036854775807",
                "",
            ]
        )

    def _java(self, main_class: str, *jvm_options: str) -> list[str]:
        """The command line that runs ``main_class`` from the cached jars with this broker's logging config."""
        java = shutil.which("java")
        if java is None:
            raise KafkaStartError("java is not on PATH: Kafka needs Java 17+")
        logcfg = f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}"
        return [java, *jvm_options, logcfg, "-cp", f"{libs_dir()}/*", main_class]

    def start(self, *, timeout: float = 90.0) -> LocalKafka:
        ensure_jars()
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        props.write_text(self._properties())
        (self.workdir / "log4j2.properties").write_text(LOG4J2)
        fmt = subprocess.run(  # noqa: S603
            [
                *self._java("kafka.tools.StorageTool"),
                "format",
                f"--cluster-id={random_cluster_id()}",
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise KafkaStartError(f"formatting storage failed:\n{fmt.stdout}\n{fmt.stderr}")
        self._launch(timeout)
        return self

    def _launch(self, timeout: float) -> None:
        command = self._java(
            "kafka.Kafka",
            # the whole heap from the start: grown on demand it stayed near 300 MB, where the broker's ~170 MB kept
            # after a young collection is past G1's 45% mark, and concurrent marking cycles (~100-130 ms of a core
            # each) came about twice a minute under bench/notify_fanout (25 in 12 minutes of runs) against 3 in 7
            # minutes at a fixed 512 MB
            f"-Xms{self.heap_mb}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            *([f"-Xlog:gc:file={self.gc_log_path}:timemillis"] if self.gc_log_path is not None else []),
        )
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603
            [*command, str(self.workdir / "server.properties")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def halt(self) -> None:
        """Stop the broker process but keep its data, as in an outage; ``resume()`` brings it back."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _terminate(proc)

    def resume(self, *, timeout: float = 90.0) -> None:
        self._launch(timeout)

    def exit_code(self) -> int | None:
        """The broker process's exit code once it exited on its own (a crash, a ``kill``); None while it runs, and
        after ``halt`` or ``stop``."""
        return None if self.proc is None else self.proc.poll()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise KafkaStartError(f"broker exited with {self.proc.returncode}; log: {self.log_path}\n{self.tail()}")
            with contextlib.suppress(OSError):
                text = self.log_path.read_text(errors="replace")[self._log_offset :]
                if "Kafka Server started" in text or "Transitioning from RECOVERY to RUNNING" in text:
                    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
            time.sleep(0.2)
        raise KafkaStartError(f"broker not ready after {timeout:.0f}s; log: {self.log_path}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _terminate(proc, timeout)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (controlled shutdown), then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "run"])
    parser.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(ensure_jars(quiet=False))
        return 0
    # a SIGTERM (a supervisor, `kill`) stops the broker as Ctrl-C does, instead of leaving it running alone
    signal.signal(signal.SIGTERM, _interrupt)
    with LocalKafka(port=args.port) as broker:
        with contextlib.suppress(KeyboardInterrupt):
            # the ready line inside: a SIGTERM sent as soon as it is read may land while print is still returning
            print(f"kafka ready at {broker.bootstrap} (log: {broker.log_path}); Ctrl-C stops it", flush=True)
            while broker.proc is not None and broker.proc.poll() is None:
                time.sleep(0.5)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping now: a second SIGTERM does not cut that short
    return 0


if __name__ == "__main__":
    sys.exit(main())
