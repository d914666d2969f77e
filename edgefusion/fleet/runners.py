"""Where the tasks run: local processes, or Ray (a local instance, or a cluster joined by address).

Both runners take the same :class:`~edgefusion.fleet.worker.Job` objects, run the same
:func:`~edgefusion.fleet.worker.run_job` in their workers and stream ``(job, result)`` pairs
back as tasks finish, in completion order. They differ only in how the package bytes reach
the workers (:mod:`edgefusion.fleet.ship`) and in who schedules.

- :class:`LocalRunner`: a ``concurrent.futures.ProcessPoolExecutor`` (spawned processes, so a
  worker starts as clean as a Ray worker); the pool's initializer hands each process the
  packed packages once.
- :class:`RayRunner`: ``address="auto"`` starts a small local Ray (``num_cpus`` = workers, no
  dashboard, a 128 MB object store) and stops it at the end; any other address joins that
  cluster (whose nodes need edgefusion installed). Packages go to the object store once
  (``ray.put``); each worker process fetches a package on its first task. At most a few tasks
  per worker are in flight, so a fleet of many thousand recordings does not flood the scheduler.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from edgefusion.errors import ConfigError, MissingDependencyError
from edgefusion.fleet.ship import Shipment, install
from edgefusion.fleet.worker import Job, run_job

__all__ = ["OBJECT_STORE_BYTES", "LocalRunner", "RayRunner", "Runner"]

#: the object store of a local Ray: packages only (a few MB each), results come back small
OBJECT_STORE_BYTES = 128 << 20
#: tasks in flight per Ray worker: enough to keep each busy while results stream back
IN_FLIGHT_PER_WORKER = 2


class Runner:
    """Runs jobs on ``workers`` workers; a context manager (start on enter, stop on exit)."""

    kind = "local"
    workers = 1

    def ship(self, packages: dict[str, tuple[str, dict[str, bytes]]]) -> dict[str, Shipment]:
        """Send each package (sha256 -> (name, packed files)) to the workers once."""
        raise NotImplementedError

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, dict[str, Any]]]:
        """Each job with its result, in completion order; a worker that dies fails its job only."""
        raise NotImplementedError

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        pass


class LocalRunner(Runner):
    """``workers`` local processes (``concurrent.futures``), the same tasks as on Ray.

    Example:
        >>> with LocalRunner(2) as r:
        ...     r.workers, r.kind
        (2, 'local')
    """

    kind = "local"

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self._pool: cf.ProcessPoolExecutor | None = None

    def ship(self, packages: dict[str, tuple[str, dict[str, bytes]]]) -> dict[str, Shipment]:
        self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=install, initargs=({s: f for s, (_, f) in packages.items()},))
        return {sha: Shipment(sha, name) for sha, (name, _) in packages.items()}

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, dict[str, Any]]]:
        if self._pool is None:
            raise RuntimeError("ship() the packages first")
        futures = {self._pool.submit(run_job, j): j for j in jobs}
        for fut in cf.as_completed(futures):
            job = futures[fut]
            try:
                yield job, fut.result()
            except Exception as exc:  # the process died (killed, out of memory, a crash in native code)
                yield job, {"error": f"worker process failed: {type(exc).__name__}: {exc}"}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayRunner(Runner):
    """Tasks on Ray: ``address="auto"`` starts (and stops) a local instance, else joins a cluster."""

    kind = "ray"

    def __init__(self, address: str = "auto", workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        try:
            import ray
        except ImportError as exc:
            raise MissingDependencyError("ray", "fleet", "edgefusion eval --ray") from exc
        self.ray: Any = ray
        self.address = address
        self._requested = workers
        self.workers = workers or 1
        self._started = False

    def __enter__(self) -> RayRunner:
        ray = self.ray
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if self.address == "auto":  # "local": a new instance even where RAY_ADDRESS names a cluster
                ray.init(address="local", num_cpus=self._requested or os.cpu_count() or 1,
                         object_store_memory=OBJECT_STORE_BYTES, **quiet)
            else:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for a bad address
            raise ConfigError(f"cannot start or join Ray at {self.address!r}: {type(exc).__name__}: {exc}") from exc
        self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = min(self._requested, cpus) if self._requested else cpus
        return self

    def ship(self, packages: dict[str, tuple[str, dict[str, bytes]]]) -> dict[str, Shipment]:
        return {sha: Shipment(sha, name, self.ray.put(files)) for sha, (name, files) in packages.items()}

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, dict[str, Any]]]:
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=0)(run_job)  # a crash is that recording's failure
        todo = list(reversed(jobs))
        pending: dict[Any, Job] = {}
        while todo or pending:
            while todo and len(pending) < self.workers * IN_FLIGHT_PER_WORKER:
                job = todo.pop()
                pending[remote.remote(job)] = job
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    yield job, ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died; the task itself never raises
                    yield job, {"error": f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"}

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False
