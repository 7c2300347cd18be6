"""The local stack without Docker: Kafka (KRaft, from Maven Central jars), Prometheus
(Debian package), processors, API and simulator as background processes.

Each managed process has a name, a command, a log file and a pid file under the stack
directory (default ``.servicepulse/`` in the current directory). ``up`` starts what is
not running and waits until each part is ready, failing loudly with the tail of its log;
``down`` stops everything in reverse order (SIGTERM, then SIGKILL after a grace period)
and leaves no process behind. The test suite starts its broker and Prometheus with the
same classes on other ports.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from contract.errors import ServicePulseError

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
DEFAULT_CACHE = Path(os.environ.get("SERVICEPULSE_CACHE", Path.home() / ".cache" / "servicepulse"))


class StackError(ServicePulseError):
    """A part of the local stack could not be set up, started or stopped."""


def _data_file(name: str) -> Path:
    return Path(str(resources.files("servicepulse") / "data" / name))


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    """A TCP port that is free right now on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- Kafka runtime -------------------------------------------------------------------


def kafka_libs(cache: Path = DEFAULT_CACHE, *, quiet: bool = True) -> Path:
    """The directory of the Kafka broker jars, resolved with Maven on first use.

    The jars come from Maven Central via the project's pom (``data/kafka-pom.xml``)
    into ``<cache>/kafka-<version>/libs``. Raises :class:`StackError` when Maven or the
    JDK is missing or the resolution fails.
    """
    libs = cache / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise StackError(f"{tool!r} is not on PATH: install a JDK (17+) and Maven first")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn",
        "-B",
        "-f",
        str(_data_file("kafka-pom.xml")),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    if quiet:
        cmd.insert(1, "-q")
    logger.info("resolving Apache Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError(
            f"Maven could not resolve Kafka {KAFKA_VERSION} (exit {proc.returncode}):\n"
            f"{(proc.stdout + proc.stderr)[-3000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(KAFKA_VERSION)
    return libs


@dataclass
class ManagedProcess:
    """A background process with a pid file and a log file in ``run_dir``.

    ``ready`` is polled after start until it returns true or ``ready_timeout`` passes.
    """

    name: str
    run_dir: Path
    argv: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] = lambda: True
    ready_timeout: float = 60.0
    stop_timeout: float = 30.0
    prepare: Callable[[], None] | None = None
    url: str = ""

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running process, or ``None``."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.pid() is not None

    def start(self) -> int:
        """Start (if not running) and wait until ready; returns the pid."""
        existing = self.pid()
        if existing is not None:
            return existing
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.prepare is not None:
            self.prepare()
        with self.log_file.open("ab") as log:
            # A new session: the process outlives the CLI that started it, and `down`
            # can signal its whole process group.
            proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
                close_fds=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    f"{self.name} exited with code {proc.returncode} while starting; "
                    f"log {self.log_file}:\n{tail(self.log_file)}"
                )
            if self.ready():
                return proc.pid
            time.sleep(0.25)
        self.stop()
        raise StackError(
            f"{self.name} was not ready within {self.ready_timeout:.0f}s; "
            f"log {self.log_file}:\n{tail(self.log_file)}"
        )

    def stop(self, sig: int = signal.SIGTERM) -> bool:
        """Stop the process group; SIGKILL after ``stop_timeout``. True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and pid_alive(pid):
            _reap(pid)
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            for _ in range(50):
                _reap(pid)
                if not pid_alive(pid):
                    break
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL the process group at once (fault injection)."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            for _ in range(100):
                _reap(pid)
                if not pid_alive(pid):
                    break
                time.sleep(0.05)
            self.pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def ready_endpoint(port: int) -> Callable[[], bool]:
    """A readiness check: ``/-/ready`` on ``port`` answers 200 (Prometheus, Alertmanager)."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    return check


def kafka_ready(port: int) -> Callable[[], bool]:
    """A readiness check: the broker answers a metadata request on ``port``."""

    def check() -> bool:
        if not port_open(port):
            return False
        import kafkaport
        from contract.settings import CommonSettings

        try:
            client = kafkaport.connect(CommonSettings(kafka_bootstrap=f"127.0.0.1:{port}")).admin()
        except ServicePulseError:
            return False
        try:
            return client.broker_count(3.0) > 0
        except ServicePulseError:
            return False
        finally:
            client.close()

    return check


def kafka_process(
    run_dir: Path,
    port: int = 9092,
    controller_port: int = 9093,
    *,
    cache: Path = DEFAULT_CACHE,
    heap: str = "768m",
    extra_props: dict[str, str] | None = None,
) -> ManagedProcess:
    """A single-node KRaft broker+controller storing its data in ``run_dir/kafka-data``."""
    data = run_dir / "kafka-data"
    props_file = run_dir / "kafka-server.properties"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "12",
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.backoff.ms": "5000",
        **(extra_props or {}),
    }
    java = shutil.which("java") or "java"

    def prepare() -> None:
        libs = kafka_libs(cache)
        data.mkdir(parents=True, exist_ok=True)
        props_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        if not (data / "meta.properties").exists():
            proc = subprocess.run(
                [
                    java,
                    "-cp",
                    f"{libs}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    _cluster_id(),
                    "-c",
                    str(props_file),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise StackError(
                    f"formatting Kafka storage in {data} failed:\n"
                    f"{(proc.stdout + proc.stderr)[-2000:]}"
                )

    libs_dir = cache / f"kafka-{KAFKA_VERSION}" / "libs"
    argv = [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_data_file('kafka-log4j2.yaml')}",
        "-cp",
        f"{libs_dir}/*",
        "kafka.Kafka",
        str(props_file),
    ]
    return ManagedProcess(
        name="kafka",
        run_dir=run_dir,
        argv=argv,
        ready=kafka_ready(port),
        ready_timeout=90,
        prepare=prepare,
        url=f"127.0.0.1:{port}",
    )


def _cluster_id() -> str:
    """A KRaft cluster id: a base64url-encoded 16-byte UUID, as `kafka-storage random-uuid`.

    An id starting with ``-`` would be read as an option by the storage tool, so such
    ids are drawn again (as Kafka's own generator does).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
