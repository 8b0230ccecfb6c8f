"""Run an experiment's batches on a Ray cluster: one worker (actor) per device, one model per worker.

    steerlab run study.yaml --executor ray                    # start Ray on this machine
    steerlab run study.yaml --executor ray --address auto     # join the cluster this machine is part of
    steerlab run study.yaml --executor ray --address ray://head:10001

How work is placed:
- One actor per GPU in the cluster (``num_gpus=1`` each), or, on a CPU-only cluster, one per
  CPU (``num_cpus=1``); ``--actors N`` overrides the count. Each actor runs the same
  :class:`~steerlab.experiments.engine.worker.Worker` as the local executor and holds one loaded model at
  a time (a model too big for one device is the model loader's business: ``device_map`` /
  tensor parallelism are not steerlab's).
- The engine's batches are already grouped by model; an idle actor takes the next batch of the
  model it already holds, else the next batch in plan order (loading that model).
- The driver is the only writer of the run directory: rows come back to it and are appended
  batch by batch, so they are never interleaved or lost.
- An actor that dies (node lost, out of memory, killed) has its unfinished batch re-queued on
  another actor, and a replacement actor is started. A driver killed mid-run resumes like a
  local run (finished cells are skipped).
- The driver never waits forever: while it waits it checks every few seconds that the cluster
  still has a live node able to hold a worker, and that some batch or task finished within
  ``STEERLAB_RAY_STALL_SECONDS`` (default 3600). Otherwise it stops with
  :class:`~steerlab.errors.WorkersLost`, which the engine reports as one
  line with the cells saved and the command that resumes the run.

Ray is an optional extra: ``pip install 'steerlab[ray]'``.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steerlab.errors import InputError, WorkersLost
from steerlab.experiments.engine.config import ModelSpec
from steerlab.experiments.engine.records import Row
from steerlab.experiments.engine.worker import OnResult, Worker, WorkItem

#: Environment variables passed on to the actors (cache location, offline mode, quiet progress).
FORWARDED_ENV_PREFIXES = ("STEERLAB_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")

#: How many actor deaths a run tolerates before it gives up (each death starts a replacement).
MAX_ACTOR_DEATHS = 8

#: Seconds between the driver's checks on the cluster while it waits for results.
POLL_SECONDS = 2.0


def stall_seconds() -> float:
    """How long the driver waits for a batch or task to finish before it gives up
    (``STEERLAB_RAY_STALL_SECONDS``, default 3600)."""
    raw = os.environ.get("STEERLAB_RAY_STALL_SECONDS", "3600")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise InputError(f"STEERLAB_RAY_STALL_SECONDS must be a positive number of seconds, got {raw!r}")
    return value


class _RayWorker:
    """The actor: a :class:`Worker` in its own process."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.worker = Worker()

    def run(self, item: WorkItem) -> list[Row]:
        return self.worker.run(item)

    def call(self, spec: ModelSpec, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self.worker.call(spec, fn, args)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class _Actor:
    handle: Any
    model: ModelSpec | None = None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'steerlab[ray]'") from None
    return ray


def _unwrap(err: BaseException) -> BaseException:
    """The exception a task raised, out of Ray's wrapper, so user errors stay one clear line."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err


class RayExecutor:
    """Batches and tasks on Ray actors (see the module docstring).

    Args:
        address: None or ``"local"`` to start Ray here (or use the instance this process already
            started), ``"auto"`` to join this machine's cluster, or ``ray://host:port``.
        actors: number of actors (default: one per GPU, else one per CPU).
    """

    def __init__(self, address: str | None = None, actors: int | None = None) -> None:
        ray = self._ray = _import_ray()
        self._owns_ray = False
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
            kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": True}
            if address in (None, "local"):
                kwargs.update(include_dashboard=False)
            else:
                kwargs.update(address=address)
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise InputError(f"cannot start or reach Ray at {address or 'this machine'}: {e}") from None
            self._owns_ray = True
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        n = actors or (gpus or cpus)
        if actors is not None and actors < 1:
            raise InputError("--actors must be at least 1")
        if gpus:
            self._options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            threads = max(1, cpus // max(n, 1))
        else:
            per = max(1, cpus // n)
            self._options = {"num_cpus": per}
            threads = per
        self._threads = threads
        self._remote = ray.remote(_RayWorker)
        self.actors = [self._new_actor() for _ in range(n)]
        self.deaths = 0
        self._inflight: dict[Any, tuple[_Actor, WorkItem]] = {}
        self._stall = stall_seconds()

    def _new_actor(self) -> _Actor:
        return _Actor(self._remote.options(**self._options).remote(self._threads))

    def _replace(self, dead: _Actor) -> None:
        self.deaths += 1
        if self.deaths > MAX_ACTOR_DEATHS:
            raise RuntimeError(f"Ray executor: {self.deaths} workers died; giving up (see the Ray logs)")
        print(f"steerlab: a Ray worker died; re-queuing its batch ({self.deaths} so far)", file=sys.stderr)
        self.actors = [a for a in self.actors if a is not dead] + [self._new_actor()]

    def _actor_died(self, err: BaseException) -> bool:
        exc = self._ray.exceptions
        return isinstance(err, (exc.RayActorError, getattr(exc, "ActorUnavailableError", exc.RayActorError)))

    def _wait(self, refs: list[Any]) -> Any:
        """The first of ``refs`` to finish; checks the cluster while it waits (see the module docstring)."""
        since = time.monotonic()
        while True:
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)
            if ready:
                return ready[0]
            self._check_cluster(time.monotonic() - since)

    def _check_cluster(self, waited: float) -> None:
        """Raise WorkersLost when no worker can be had: no live node, none with the resources of
        a worker, or nothing finished for longer than the stall bound."""
        try:
            nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        except Exception as e:  # noqa: BLE001 - the cluster's control service is gone too
            raise WorkersLost(f"the Ray cluster cannot be reached any more ({type(e).__name__})") from None
        if not nodes:
            raise WorkersLost("the Ray cluster has no live node left (its node or raylet died)")
        need = {"CPU": self._options.get("num_cpus", 0), "GPU": self._options.get("num_gpus", 0)}
        if not any(all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items() if v) for n in nodes):
            raise WorkersLost(f"no live Ray node has the resources of a worker ({self._options})")
        if waited > self._stall:
            raise WorkersLost(
                f"no batch finished in {waited:.0f} s (STEERLAB_RAY_STALL_SECONDS={self._stall:g}); "
                "the Ray workers are stuck or cannot start"
            )

    def _pick(self, actor: _Actor, queue: deque[WorkItem]) -> WorkItem:
        for i, item in enumerate(queue):  # the next batch of the model this actor already holds
            if item.model == actor.model:
                del queue[i]
                return item
        return queue.popleft()

    def map(self, items: Sequence[WorkItem], on_result: OnResult) -> None:
        ray = self._ray
        queue: deque[WorkItem] = deque(items)
        idle = list(self.actors)
        self._inflight = {}
        while queue or self._inflight:
            while queue and idle:
                actor = idle.pop(0)
                item = self._pick(actor, queue)
                actor.model = item.model
                self._inflight[actor.handle.run.remote(item)] = (actor, item)
            try:
                done = self._wait(list(self._inflight))
            except WorkersLost:
                self._cancel_inflight()
                raise
            actor, item = self._inflight.pop(done)
            try:
                rows = ray.get(done)
            except Exception as e:  # noqa: BLE001 - sorted below
                if not self._actor_died(e):
                    self._cancel_inflight()
                    raise _unwrap(e) from None
                queue.appendleft(item)
                self._replace(actor)
                idle = [a for a in idle if a is not actor] + [self.actors[-1]]
                continue
            on_result(item, rows)
            idle.append(actor)

    def _cancel_inflight(self) -> None:
        for ref in self._inflight:
            try:
                self._ray.cancel(ref)
            except Exception:  # noqa: BLE001 - already finished, or its worker is gone
                pass
        self._inflight = {}

    def call(self, spec: ModelSpec, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        while True:
            actor = next((a for a in self.actors if a.model == spec), self.actors[0])
            actor.model = spec
            try:
                ref = actor.handle.call.remote(spec, fn, args)
                return self._ray.get(self._wait([ref]))
            except WorkersLost:
                raise
            except Exception as e:  # noqa: BLE001
                if not self._actor_died(e):
                    raise _unwrap(e) from None
                self._replace(actor)

    def close(self) -> None:
        for a in self.actors:
            try:
                self._ray.kill(a.handle)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self._owns_ray:
            self._ray.shutdown()
