"""Every core of a machine: Python forwards packets on one core, so a machine with C cores runs
C SFU worker processes, each a whole node (``SfuServer``) registered on the same Redis. Control
hands a room's participants the URL of the worker the room lives on and the gateway bridges
browsers to it, so clients see one service; rooms spread over the workers as nodes do.

``SfuWorkers`` supervises them: it starts them (spawned, never forked: gRPC's threads do not
survive a fork), restarts one that dies on the same port, taking its node out of the registry at
once so that its rooms move on their next join instead of after three missed heartbeats, stops
them with SIGTERM (each drains as a node does) and answers ``/metrics`` for all of them, every
series labelled with its ``worker``. Workers ignore SIGINT (a Ctrl-C reaches the whole process
group; the supervisor stops them in order) and die with the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Self

from prometheus_client import Counter
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from parley.server import (
    ConfigurationError,
    MetricsEndpoint,
    add_metrics_source,
    remove_metrics_source,
    stop_signals,
)
from parley.sfu_registry import SfuRegistry

from ._settings import SfuSettings

log = logging.getLogger(__name__)

__all__ = ["SfuWorkers", "worker_count"]

RESTARTS = Counter("parley_sfu_worker_restarts", "SFU worker processes restarted after dying.", ("worker",))

#: Seconds a worker has to start listening.
START_TIMEOUT = 60.0
#: A worker that dies sooner than this after starting is restarted after a growing delay.
_CRASH_LOOP = 10.0


def _longer(delay: float) -> float:
    """The next delay before restarting a worker that keeps dying: 0.5 s, doubling, at most 30 s."""
    return min(max(delay * 2, 0.5), 30.0)


def worker_count(requested: int) -> int:
    """``requested`` workers, 0 meaning one per core this process may run on."""
    return requested or len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class _Ready:
    """What a worker tells the supervisor once it listens."""

    node_id: str
    port: int
    metrics_url: str


@dataclass
class _Worker:
    index: int
    port: int
    process: BaseProcess | None = None
    ready: _Ready | None = None
    started_at: float = 0.0
    restart_delay: float = 0.0


class SfuWorkers:
    """``settings.workers`` SFU nodes in worker processes: ``async with SfuWorkers(settings)``
    serves until the block ends (or ``await workers.serve()`` until SIGTERM / SIGINT).
    ``metrics_address`` (``host:port``): where ``/metrics`` answers for every worker."""

    name = "sfu"

    def __init__(self, settings: SfuSettings, *, metrics_address: str = "", grace: float = 5.0) -> None:
        self.count = worker_count(settings.workers)
        if self.count > 1 and not settings.redis_url:
            raise ConfigurationError(
                f"{self.count} SFU workers need Redis to share rooms (PARLEY_REDIS_URL=redis://host:6379/0)"
            )
        if self.count > 1 and settings.public_url and "{port}" not in settings.public_url:
            raise ConfigurationError(
                "several SFU workers each need their own public URL: put {port} in PARLEY_SFU_PUBLIC_URL "
                "(grpc://sfu.example.com:{port})"
            )
        self.settings = settings
        self.grace = grace
        self.host, _, port = settings.grpc_address.rpartition(":")
        base = int(port)
        self.workers = [_Worker(i, base + i if base else 0) for i in range(self.count)]
        self.metrics = MetricsEndpoint(metrics_address) if metrics_address else None
        self._registry = (
            SfuRegistry(settings.redis_url, prefix=settings.registry_prefix) if settings.redis_url else None
        )
        self._context = multiprocessing.get_context("spawn")
        self._restarts: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def targets(self) -> list[str]:
        """``host:port`` of each worker's gRPC signaling, in worker order."""
        return [f"{self.host}:{w.port}" for w in self.workers]

    @property
    def node_ids(self) -> list[str]:
        """Each worker's current node id (a restarted worker is a new node)."""
        return [w.ready.node_id if w.ready else "" for w in self.workers]

    @property
    def pids(self) -> list[int]:
        return [w.process.pid or 0 if w.process else 0 for w in self.workers]

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts every worker and returns once all listen; a worker that cannot start (its port
        taken, a bad setting) raises RuntimeError with its reason."""
        started = await asyncio.gather(*(self._spawn(worker) for worker in self.workers), return_exceptions=True)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        add_metrics_source(self._scrape)
        if self.metrics is not None:
            self.metrics.start()
        log.info("%d sfu workers listening on %s", self.count, ", ".join(self.targets))

    async def stop(self) -> None:
        """SIGTERM to every worker (each drains: participants are told the server shuts down),
        then waits for them; safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        for task in self._restarts:
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        remove_metrics_source(self._scrape)
        if self.metrics is not None:
            self.metrics.stop()
        loop = asyncio.get_running_loop()
        processes = [w.process for w in self.workers if w.process is not None]
        for process in processes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(process.sentinel)
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)
        await asyncio.to_thread(_join_all, processes, self.grace + 10.0)
        if self._registry is not None:
            await self._registry.aclose()

    async def serve(self) -> None:
        """Serves until SIGTERM or SIGINT, then stops every worker gracefully."""
        with stop_signals() as stop:
            async with self:
                received = await stop
                log.info("sfu workers: %s received, draining (grace %.0f s)", received.name, self.grace)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # Workers -----------------------------------------------------------------------------

    def _settings_of(self, worker: _Worker) -> SfuSettings:
        public_url = self.settings.public_url
        return dataclasses.replace(
            self.settings,
            workers=1,
            grpc_address=f"{self.host}:{worker.port}",
            public_url=public_url.format(port=worker.port) if public_url else "",
        )

    async def _spawn(self, worker: _Worker) -> None:
        parent, child = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_work,
            args=(self._settings_of(worker), worker.index, logging.getLogger().level, self.grace, child),
            name=f"sfu-worker-{worker.index}",
            daemon=True,  # a supervisor that exits abnormally takes its workers along
        )
        process.start()
        child.close()
        worker.process = process
        try:
            answer = await asyncio.to_thread(_await_ready, parent, process)
        finally:
            parent.close()
        if isinstance(answer, str):
            raise RuntimeError(f"sfu worker {worker.index} did not start: {answer}")
        worker.ready = answer
        worker.port = answer.port  # port 0 chose one: a restart takes the same
        worker.started_at = time.monotonic()
        asyncio.get_running_loop().add_reader(process.sentinel, self._exited, worker, process)
        log.info(
            "sfu worker %d (pid %s, node %s) listening on port %d",
            worker.index,
            process.pid,
            answer.node_id,
            answer.port,
        )

    def _exited(self, worker: _Worker, process: BaseProcess) -> None:
        asyncio.get_running_loop().remove_reader(process.sentinel)
        if self._stopping or worker.process is not process:
            return
        task = asyncio.create_task(self._restart(worker, process))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, worker: _Worker, process: BaseProcess) -> None:
        await asyncio.to_thread(process.join, 5)  # its exit status
        dead = worker.ready
        lived = time.monotonic() - worker.started_at
        worker.restart_delay = 0.0 if lived > _CRASH_LOOP else _longer(worker.restart_delay)
        log.warning(
            "sfu worker %d (node %s) exited with %s after %.0f s; restarting it%s",
            worker.index,
            dead.node_id if dead else "?",
            process.exitcode,
            lived,
            f" in {worker.restart_delay:.1f} s" if worker.restart_delay else "",
        )
        RESTARTS.labels(str(worker.index)).inc()
        worker.ready = None
        if dead is not None and self._registry is not None:
            try:  # its rooms move on their next join, not after its heartbeats expire
                await self._registry.leave(dead.node_id)
            except Exception as error:
                log.warning("could not take node %s out of the registry: %s", dead.node_id, error)
        while not self._stopping:
            await asyncio.sleep(worker.restart_delay)
            try:
                await self._spawn(worker)
                return
            except RuntimeError as error:
                worker.restart_delay = _longer(worker.restart_delay)
                log.warning("%s; trying again in %.1f s", error, worker.restart_delay)

    # Metrics -----------------------------------------------------------------------------

    def _scrape(self) -> Iterator[Metric]:
        """Every worker's metrics, each sample labelled with its worker (a worker that does not
        answer within a second is left out of this scrape)."""
        for worker in self.workers:
            ready = worker.ready
            if ready is None:
                continue
            try:
                with urllib.request.urlopen(ready.metrics_url, timeout=1.0) as response:
                    text = response.read().decode()
            except OSError as error:
                log.debug("worker %d's metrics: %s", worker.index, error)
                continue
            label = str(worker.index)
            for family in text_string_to_metric_families(text):
                family.samples = [s._replace(labels={**s.labels, "worker": label}) for s in family.samples]
                yield family


def _await_ready(connection: Connection, process: BaseProcess) -> _Ready | str:
    """The worker's ready message, or why it did not start."""
    if not wait([connection, process.sentinel], timeout=START_TIMEOUT):
        process.kill()
        return f"not listening after {START_TIMEOUT:.0f} s"
    try:
        answer = connection.recv()
    except EOFError:
        process.join(5)
        return f"exited with {process.exitcode}"
    assert isinstance(answer, (_Ready, str))
    return answer


def _join_all(processes: list[BaseProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("sfu worker %s did not stop in time; killing it", process.name)
            process.kill()
            process.join(5)


# In the worker process -------------------------------------------------------------------


def _work(settings: SfuSettings, index: int, log_level: int, grace: float, ready: Connection) -> None:
    """A worker's main: one node, serving until SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    from parley.server import configure_logging, configure_tracing

    configure_logging(log_level)
    configure_tracing("sfu")
    asyncio.run(_serve_node(settings, index, grace, ready))


async def _serve_node(settings: SfuSettings, index: int, grace: float, ready: Connection) -> None:
    from ._server import SfuServer

    with stop_signals(signal.SIGTERM) as stop:
        try:
            server = SfuServer(settings, metrics_address="127.0.0.1:0")
            server.grace = grace
            await server.start()
        except Exception as error:
            ready.send(f"{type(error).__name__}: {error}")
            raise SystemExit(1) from None
        try:
            assert server.metrics is not None
            ready.send(_Ready(server.cluster.node_id, server.port, server.metrics.url))
            ready.close()
            await stop
            log.info("sfu worker %d draining (grace %.0f s)", index, grace)
        finally:
            await server.stop()


def _die_with_parent() -> None:
    """Asks Linux for SIGTERM when the supervisor dies (even by SIGKILL), so that no worker
    outlives it holding its port."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the supervisor died before prctl
        raise SystemExit(0)
