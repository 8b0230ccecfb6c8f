"""Batch requests that arrive together into one forward pass.

Requests (each a list of rows with one :class:`~steerlab.serve.engine.GroupKey`) wait in a
queue. The batching loop takes the oldest request, waits up to ``wait_s`` for others with the
same sampling settings (not longer once ``max_batch`` rows are there), and hands them to the
model as one batch in a single worker thread (one model, one batch at a time). Requests with
other settings wait for the next batch, oldest first. While a batch runs, new requests queue
up, so under load batches fill without waiting at all.

Example:
    >>> batcher = Batcher(generator.run, max_batch=16, wait_s=0.005, max_queue=256)
    >>> await batcher.start()
    >>> results = await batcher.submit(key, rows)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")
Out = TypeVar("Out")


class _ModelThread:
    """One daemon thread running jobs in order (a ThreadPoolExecutor's threads are joined at
    interpreter exit, so a batch still in its prefill would hold up a stopping server)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], concurrent.futures.Future[object]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # noqa: BLE001 - handed to the waiting request
                    fut.set_exception(e)

    def submit(self, fn: Callable[[], Out]) -> concurrent.futures.Future[Out]:
        fut: concurrent.futures.Future[Out] = concurrent.futures.Future()
        self._jobs.put((fn, fut))  # type: ignore[arg-type]
        return fut

    def shutdown(self) -> None:
        self._jobs.put(None)


class QueueFull(Exception):
    """More rows are waiting than the server accepts (``max_queue``)."""


@dataclass(eq=False)  # compared by identity
class _Pending(Generic[K, R, Out]):
    key: K
    rows: Sequence[R]
    future: asyncio.Future[list[Out]]


@dataclass
class BatchStats:
    """What the batcher did: requests and rows served, forward batches and their sizes."""

    requests: int = 0
    rows: int = 0
    batches: int = 0
    max_rows: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # rows per batch -> how many batches
    split: int = 0  # batches that failed and were rerun request by request
    seconds: float = 0.0  # time spent running batches

    def mean_seconds(self) -> float:
        """Mean time of one batch (0 before the first)."""
        return self.seconds / self.batches if self.batches else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "rows": self.rows,
            "batches": self.batches,
            "max_rows": self.max_rows,
            "mean_rows": self.rows / self.batches if self.batches else 0.0,
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
            "split_batches": self.split,
            "mean_batch_seconds": round(self.mean_seconds(), 4),
        }


class Batcher(Generic[K, R, Out]):
    """The batching queue (see the module docstring).

    Args:
        run: ``run(key, rows) -> results``, one result per row, called in the worker thread.
        max_batch: most rows per batch.
        wait_s: how long the oldest request waits for batch-mates.
        max_queue: most rows waiting; more raise :class:`QueueFull`.
    """

    def __init__(
        self, run: Callable[[K, list[R]], list[Out]], *, max_batch: int, wait_s: float, max_queue: int
    ) -> None:
        self.run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._pending: list[_Pending[K, R, Out]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = _ModelThread("steerlab-model")

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; waiting requests fail; the batch in progress finishes in its thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for p in self._pending:
            if not p.future.done():
                p.future.set_exception(RuntimeError("the server is shutting down"))
        self._pending.clear()
        self._pool.shutdown()

    def queued_rows(self) -> int:
        return sum(len(p.rows) for p in self._pending)

    async def submit(self, key: K, rows: Sequence[R]) -> list[Out]:
        """Queue one request's rows; return their results, in order, once their batch ran."""
        if self._wake is None:
            raise RuntimeError("Batcher.start() was not called")
        if self.queued_rows() + len(rows) > self.max_queue:
            raise QueueFull(f"{self.queued_rows()} rows are already waiting (the server's limit is {self.max_queue})")
        fut: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        pending = _Pending(key, rows, fut)
        self._pending.append(pending)
        self.stats.requests += 1
        self._wake.set()
        try:
            return await fut
        except asyncio.CancelledError:  # the caller went away: its rows leave the queue now
            if pending in self._pending:
                self._pending.remove(pending)
            raise

    async def _next_batch(self) -> list[_Pending[K, R, Out]]:
        assert self._wake is not None
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()
        loop = asyncio.get_running_loop()
        key = self._pending[0].key
        deadline = loop.time() + self.wait_s

        def same() -> list[_Pending[K, R, Out]]:
            chosen: list[_Pending[K, R, Out]] = []
            n = 0
            for p in self._pending:
                if p.key == key and (not chosen or n + len(p.rows) <= self.max_batch):
                    chosen.append(p)
                    n += len(p.rows)
            return chosen

        while sum(len(p.rows) for p in same()) < self.max_batch and loop.time() < deadline:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                break
        chosen = same()
        for p in chosen:
            self._pending.remove(p)
        return chosen

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            batch = [p for p in batch if not p.future.cancelled()]  # the client went away before its turn
            if batch:
                await self._run(batch, isolate=True)

    async def _run(self, batch: list[_Pending[K, R, Out]], *, isolate: bool) -> None:
        """Run one batch; if it fails, rerun its requests one by one so only the culprit fails."""
        rows = [r for p in batch for r in p.rows]
        started = time.perf_counter()
        try:
            key = batch[0].key
            results = await asyncio.wrap_future(self._pool.submit(lambda: self.run(key, rows)))
        except Exception as e:  # noqa: BLE001 - handed to the requests
            if isolate and len(batch) > 1:
                self.stats.split += 1
                for p in batch:
                    await self._run([p], isolate=False)
                return
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        s = self.stats
        s.batches += 1
        s.seconds += time.perf_counter() - started
        s.rows += len(rows)
        s.max_rows = max(s.max_rows, len(rows))
        s.sizes[len(rows)] = s.sizes.get(len(rows), 0) + 1
        start = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result(results[start : start + len(p.rows)])
            start += len(p.rows)
