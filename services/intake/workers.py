"""Intake on several processes: one supervisor holds the listening socket and keeps N workers serving it.

One Python process answers on one core; Alertmanager, which intake replaces, uses every core. So intake starts
``workers`` processes (``TICKETLOOP_INTAKE_WORKERS``; 0: one a CPU, at most ``MAX_AUTO``) that accept on one
socket made here and handed down (``pass_fds``): a worker that is busy accepts less, so 8 keep-alive connections
spread by load, not by a hash of their ports. What the workers share:

- the rate limits of integrations and forms: a small file of arrival times under a lock
  (``services/intake/limits.py``'s ``SharedArrivals``);
- the metrics: prometheus_client's multiprocess mode (a directory made here for this run, removed at the end),
  so ``/metrics`` on any worker counts every worker's requests;
- the SMTP receiver runs in worker 0 only.

A worker that dies is started again (after ``restart_delay_s``); while it is down the others accept. When the
supervisor stops (SIGTERM, SIGINT) it stops the workers first; when it is killed, the kernel kills them
(``PR_SET_PDEATHSIG``, set by each worker as it starts), so no orphan keeps the port. The decisions are the pure
functions here; ``Supervisor`` is the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from prometheus_client import multiprocess

from services.intake.slots import MappedSlots
from shared.infra.logging import get_logger
from shared.infra.restarts import restart_delay_s

log = get_logger(__name__)

MAX_AUTO = 4
"""``workers: 0`` starts one worker a CPU, but no more than this (each holds its own broker connection)."""
WORKER_ENV = "TICKETLOOP_INTAKE_WORKER"
"""Set for a worker: its index (0 runs the SMTP receiver)."""
FD_ENV = "TICKETLOOP_INTAKE_LISTEN_FD"
"""Set for a worker: the listening socket's file descriptor."""
PARENT_ENV = "TICKETLOOP_INTAKE_SUPERVISOR"
"""Set for a worker: the supervisor's pid (a worker whose supervisor is already gone stops at once)."""
STATE_ENV = "TICKETLOOP_INTAKE_SHARED_DIR"
"""Set for a worker: the directory of what the workers share (rate limits, open connections)."""
COUNT_ENV = "TICKETLOOP_INTAKE_WORKER_COUNT"
"""Set for a worker: how many workers the supervisor keeps."""
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's multiprocess directory (read when it is imported, so set before a worker starts)."""
STOP_S = 10.0
"""How long stopping workers may finish their requests before they are killed."""
PR_SET_PDEATHSIG = 1


def worker_count(setting: int, cpus: int | None) -> int:
    """How many workers to start: the setting, or (0) one a CPU, at most ``MAX_AUTO``."""
    if setting > 0:
        return setting
    return max(1, min(cpus or 1, MAX_AUTO))


GIVE_UP_DEATHS = 5
"""A worker that died this often within ``DEATH_WINDOW_S`` without ever serving cannot start (a database that
refuses it): the supervisor stops them all and exits, as a single intake would, instead of restarting forever. A
worker that served and then died is started again however often."""
DEATH_WINDOW_S = 60.0


def gives_up(recent_deaths: int) -> bool:
    """Whether the supervisor stops after a worker's ``recent_deaths``-th death within ``DEATH_WINDOW_S``."""
    return recent_deaths >= GIVE_UP_DEATHS


def cpu_quota(cpu_max: str) -> float | None:
    """The CPUs a cgroup (v2) may use, from its ``cpu.max`` ("150000 100000": 1.5; "max 100000": no limit)."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cpus() -> int:
    """The CPUs this process may run on, within its container's CPU limit (a pod of 1 CPU on a 16-core host: 1)."""
    found = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota = cpu_quota(Path("/sys/fs/cgroup/cpu.max").read_text())
    except OSError:
        quota = None
    return min(found, max(1, math.ceil(quota))) if quota is not None else found


def accept_now(mine: int, others: Sequence[int], waited_s: float, patience_s: float) -> bool:
    """Whether a worker takes a waiting connection: when it has no more open than the least busy other worker,
    or when the connection has waited ``patience_s`` for the others. Keep-alive connections stay where they were
    accepted, and the first worker to wake would otherwise take a whole burst of them (8 clients on one of two
    workers: measured)."""
    return not others or mine <= min(others) or waited_s >= patience_s


@dataclass(frozen=True)
class WorkerRole:
    """What the environment says this process is: a worker of a supervisor, or intake on its own."""

    index: int
    count: int
    fd: int
    parent: int
    shared: Path
    """The directory of what the workers share."""

    @property
    def runs_smtp(self) -> bool:
        return self.index == 0

    @property
    def metrics(self) -> Path:
        return self.shared / "metrics"

    @property
    def connections(self) -> Path:
        return self.shared / "connections"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The worker's environment: the supervisor's, and where its socket and shared state are."""
        return {
            **base,
            WORKER_ENV: str(self.index),
            COUNT_ENV: str(self.count),
            FD_ENV: str(self.fd),
            PARENT_ENV: str(self.parent),
            STATE_ENV: str(self.shared),
            METRICS_ENV: str(self.metrics),
        }


def worker_role(env: Mapping[str, str]) -> WorkerRole | None:
    """This process's role from its environment (None: not a supervisor's worker)."""
    if WORKER_ENV not in env:
        return None
    return WorkerRole(
        index=int(env[WORKER_ENV]),
        count=int(env[COUNT_ENV]),
        fd=int(env[FD_ENV]),
        parent=int(env[PARENT_ENV]),
        shared=Path(env[STATE_ENV]),
    )


OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""accept() errors that pause accepting (asyncio's own accept loop does the same); others are one client's."""
GONE = 2**31 - 1
"""A dead worker's open connections, as the others read them: it takes none until it is back."""


class ConnectionCounts:
    """Each worker's open connections, in a file they all map (a worker writes only its own slot)."""

    def __init__(self, path: Path, workers: int) -> None:
        self._slots = MappedSlots(path, "i", workers, 0)
        self.workers = workers

    def set(self, index: int, n: int) -> None:
        self._slots.set(index, n)

    def get(self, index: int) -> int:
        return int(self._slots.get(index))

    def others(self, index: int) -> list[int]:
        return [self.get(i) for i in range(self.workers) if i != index]

    def close(self) -> None:
        self._slots.close()


class Acceptor:
    """A worker's accept loop on the shared socket, in place of the event loop's own (which takes every waiting
    connection at once): one connection at a time, each to the least busy worker (``accept_now``). A worker
    that leaves one to the others stops watching the socket for ``BACKOFF_S``."""

    BACKOFF_S = 0.001
    PATIENCE_S = 0.02
    PUBLISH_S = 0.25

    def __init__(
        self,
        sock: socket.socket,
        start: Callable[[socket.socket], Awaitable[object]],
        open_now: Callable[[], int],
        counts: ConnectionCounts,
        index: int,
    ) -> None:
        self.sock, self.start, self.open_now, self.counts, self.index = sock, start, open_now, counts, index
        self.loop = asyncio.get_running_loop()
        self.starting = 0
        """Connections accepted whose protocol is not made yet."""
        self.deferred_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        sock.setblocking(False)
        self._publish()
        self.loop.add_reader(sock.fileno(), self._ready)

    def _mine(self) -> int:
        return self.open_now() + self.starting

    def _publish(self) -> None:
        if not self.closed:
            self.counts.set(self.index, self._mine())
            self.timer = self.loop.call_later(self.PUBLISH_S, self._publish)

    def _ready(self) -> None:
        while not self.closed:
            now = time.monotonic()
            waited = 0.0 if self.deferred_since is None else now - self.deferred_since
            mine = self._mine()
            self.counts.set(self.index, mine)
            if not accept_now(mine, self.counts.others(self.index), waited, self.PATIENCE_S):
                if self.deferred_since is None:
                    self.deferred_since = now
                self._pause(self.BACKOFF_S)
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):  # another worker took it
                self.deferred_since = None
                return
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:  # try again a little later
                    log.error("intake_accept_failed", error=type(exc).__name__)  # noqa: TRY400
                    self._pause(0.1)
                    return
                continue  # that client went away (ECONNABORTED, a network error): the next one
            self.deferred_since = None
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.starting += 1
            task = self.loop.create_task(self._start(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _pause(self, seconds: float) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.loop.call_later(seconds, self._watch)

    async def _start(self, conn: socket.socket) -> None:
        try:
            await self.start(conn)
        except OSError:  # the client went away before it was served
            conn.close()
        finally:
            self.starting -= 1

    def _watch(self) -> None:
        """Watch the socket again; a connection no longer waiting (another worker took it) resets the patience."""
        if self.closed:
            return
        if not select.select([self.sock], [], [], 0)[0]:
            self.deferred_since = None
        self.loop.add_reader(self.sock.fileno(), self._ready)

    def close(self) -> None:
        """Stop accepting (uvicorn's shutdown closes its servers; this is one)."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        if self.timer is not None:
            self.timer.cancel()
        self.counts.set(self.index, GONE)
        self.sock.close()

    async def wait_closed(self) -> None:
        """Connections accepted before ``close`` are made (uvicorn's shutdown awaits this of each server)."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


class WorkerServer(uvicorn.Server):
    """uvicorn's server, accepting on the supervisor's socket through an ``Acceptor``."""

    def __init__(self, config: uvicorn.Config, role: WorkerRole) -> None:
        super().__init__(config)
        self.role = role
        self.counts = ConnectionCounts(role.connections, role.count)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:  # noqa: ARG002 - the role's socket
        await super().startup(sockets=[])  # the app's lifespan; no listener of uvicorn's own
        if self.should_exit:
            return
        config, loop = self.config, asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            made: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return made

        async def start(conn: socket.socket) -> None:
            _, made = await loop.connect_accepted_socket(protocol, conn)
            if self.should_exit:  # accepted as the shutdown began: asked to finish as the others were
                shutdown = getattr(made, "shutdown", None)
                if shutdown is not None:
                    shutdown()

        sock = socket.socket(fileno=os.dup(self.role.fd))
        acceptor = Acceptor(sock, start, lambda: len(self.server_state.connections), self.counts, self.role.index)
        self.servers = [acceptor]  # type: ignore[list-item]


def die_with_parent(role: WorkerRole) -> None:
    """Ask the kernel to kill this worker when its supervisor dies; stop at once if it is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != role.parent:
        raise SystemExit(0)


STATE_PREFIX = "ticketloop-intake-"
"""The supervisor's state directory (metrics, rate limits, connection counts): ``<prefix><pid>-<random>``."""


def stale_states(names: Iterable[str], alive: Callable[[int], bool]) -> list[str]:
    """Of these temp-dir names, the state directories of supervisors that are gone (killed: SIGKILL leaves its
    directory behind); a name without a pid (made before the pid was in it) counts as gone."""
    stale = []
    for name in names:
        if not name.startswith(STATE_PREFIX):
            continue
        pid, _, rest = name[len(STATE_PREFIX) :].partition("-")
        if not rest or not pid.isdigit() or not alive(int(pid)):
            stale.append(name)
    return stale


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_stale_states(temp: Path) -> None:
    """Remove what killed supervisors of this user left in the temp directory."""
    try:
        names = [p.name for p in temp.iterdir() if p.is_dir() and p.stat().st_uid == os.getuid()]
    except OSError:
        return
    for name in stale_states(names, pid_alive):
        shutil.rmtree(temp / name, ignore_errors=True)


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket the workers share (inheritable: handed to them by ``pass_fds``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


@dataclass
class Supervisor:
    """Starts ``count`` workers on one socket, starts a dead one again, stops them all when told."""

    host: str
    port: int
    count: int
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "services.intake.main"])
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    deaths: dict[int, list[float]] = field(default_factory=dict)
    """Per worker: when it died lately without having served since (forgotten once it serves: its slot holds a
    count of its own)."""
    restart_at: dict[int, float] = field(default_factory=dict)
    stopping: bool = False

    def run(self) -> int:
        try:
            sock = listen(self.host, self.port)
        except OSError as exc:
            log.error("intake_listen_failed", host=self.host, port=self.port, error=str(exc))  # noqa: TRY400
            return 1
        sweep_stale_states(Path(tempfile.gettempdir()))
        state = Path(tempfile.mkdtemp(prefix=f"{STATE_PREFIX}{os.getpid()}-"))
        roles = [WorkerRole(i, self.count, sock.fileno(), os.getpid(), state) for i in range(self.count)]
        roles[0].metrics.mkdir()
        counts = ConnectionCounts(roles[0].connections, self.count)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        port = sock.getsockname()[1]
        log.info("intake_workers_starting", workers=self.count, url=f"http://{self.host}:{port}")
        failed = False
        try:
            for role in roles:
                self._start(role, counts)
            while not self.stopping and not failed:
                failed = self._tend(roles, counts)
                time.sleep(0.1)
        finally:
            self._stop_workers()
            sock.close()
            counts.close()
            shutil.rmtree(state, ignore_errors=True)
        return 1 if failed else 0

    def _stop(self, _sig: int, _frame: object) -> None:
        self.stopping = True

    def _start(self, role: WorkerRole, counts: ConnectionCounts) -> None:
        counts.set(role.index, GONE)  # it takes no connection before its own accept loop says how many it has
        env = role.env(os.environ)
        self.procs[role.index] = subprocess.Popen(self.command, env=env, pass_fds=(role.fd,))  # noqa: S603 - our module

    def _tend(self, roles: list[WorkerRole], counts: ConnectionCounts) -> bool:
        """Note the workers that serve, start again those that died when their time comes (later and later when
        one keeps dying before it ever served); True: one cannot start, give up."""
        now = time.monotonic()
        for role in roles:
            i = role.index
            due = self.restart_at.get(i)
            if due is not None:
                if now >= due:
                    del self.restart_at[i]
                    self._start(role, counts)
                continue
            proc = self.procs[i]
            code = proc.poll()
            if code is None:
                if counts.get(i) != GONE:  # it serves: a later death is a crash, not a worker that cannot start
                    self.deaths.pop(i, None)
                continue
            counts.set(i, GONE)
            _forget_metrics(proc.pid, role.metrics)
            recent = [t for t in self.deaths.get(i, []) if now - t < DEATH_WINDOW_S] + [now]
            self.deaths[i] = recent
            if gives_up(len(recent)):
                log.error("intake_worker_cannot_start", worker=i, code=code, deaths=len(recent))
                return True
            delay = restart_delay_s(len(recent))
            log.error("intake_worker_died", worker=i, pid=proc.pid, code=code, restart_in_s=delay)
            self.restart_at[i] = now + delay
        return False

    def _stop_workers(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.info("intake_workers_stopped", workers=len(self.procs), codes=[p.returncode for p in self.procs.values()])


def _forget_metrics(pid: int, directory: Path) -> None:
    """A dead worker's live gauges leave the multiprocess directory (its counters stay: they only add)."""
    with contextlib.suppress(Exception):
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
