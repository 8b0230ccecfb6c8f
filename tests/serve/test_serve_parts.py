"""The server's parts on their own: the batching queue and the text stream."""

from __future__ import annotations

import asyncio
import threading

import pytest

from steerlab.serve.batcher import Batcher, QueueFull
from steerlab.serve.streaming import TextStream


class ByteTokenizer:
    """One token per UTF-8 byte (id = byte value), so a character may span several tokens."""

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def stream_all(text: str, stops, strip: bool) -> list[str]:
    ts = TextStream(ByteTokenizer(), stops, strip=strip)
    return [d for b in text.encode() if (d := ts.push(b))]


def test_stream_holds_back_what_may_still_change():
    deltas = stream_all("  Hi there \nUser: more", ["\nUser:"], strip=True)
    assert "".join(deltas) == "Hi there"  # leading space never sent, trailing space and the stop held back
    assert all("\n" not in d for d in deltas)
    assert "".join(stream_all("a\nUsx\nUser:", ["\nUser:"], strip=False)) == "a\nUsx"  # a false start is released
    deltas = stream_all("café ☕", [], strip=False)
    assert "".join(deltas) == "café ☕" and all("\ufffd" not in d for d in deltas)  # no half characters


def test_stream_finish_sends_the_rest_and_refuses_a_mismatch():
    ts = TextStream(ByteTokenizer(), [], strip=True)
    sent = "".join(ts.push(b) for b in b"Hello  ")
    assert sent == "Hello" and ts.finish("Hello world") == " world"
    ts = TextStream(ByteTokenizer(), [], strip=False, eos_ids=[0])
    assert ts.push(ord("a")) == "a" and ts.push(0) == "" and ts.push(ord("b")) == ""  # nothing after the end
    with pytest.raises(RuntimeError, match="does not begin"):
        ts.finish("xyz")


def run(coro):
    return asyncio.run(coro)


def test_batcher_groups_requests_that_arrive_together_by_settings():
    calls: list[tuple[str, list[int]]] = []

    def work(key, rows):
        calls.append((key, list(rows)))
        return [r * 10 for r in rows]

    async def main():
        b = Batcher(work, max_batch=4, wait_s=0.05, max_queue=100)
        await b.start()
        jobs = [
            b.submit("k1", [1]),
            b.submit("k2", [2]),
            b.submit("k1", [3, 4]),
            b.submit("k1", [5]),
            b.submit("k1", [6]),
        ]
        out = await asyncio.gather(*jobs)
        await b.stop()
        return out, b.stats

    out, stats = run(main())
    assert out == [[10], [20], [30, 40], [50], [60]]
    assert calls[0] == ("k1", [1, 3, 4, 5])  # the oldest request's settings first, up to max_batch rows
    assert sorted(calls[1:]) == [("k1", [6]), ("k2", [2])]
    assert (stats.requests, stats.rows, stats.batches, stats.max_rows) == (5, 6, 3, 4)


def test_batcher_isolates_a_failing_request_and_bounds_the_queue():
    def work(key, rows):
        if -1 in rows:
            raise ValueError("bad row")
        return rows

    async def main():
        b = Batcher(work, max_batch=8, wait_s=0.05, max_queue=3)
        await b.start()
        good, bad = b.submit("k", [1, 2]), b.submit("k", [-1])
        results = await asyncio.gather(good, bad, return_exceptions=True)
        pending = asyncio.ensure_future(b.submit("k", [7, 8, 9]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="already waiting"):
            await b.submit("k", [10])
        await pending
        await b.stop()
        return results

    good, bad = run(main())
    assert good == [1, 2] and isinstance(bad, ValueError)  # the batch-mate of a failing request is answered


def test_batcher_runs_the_model_off_the_event_loop():
    threads = set()

    def work(key, rows):
        threads.add(threading.current_thread().name)
        return rows

    async def main():
        b = Batcher(work, max_batch=2, wait_s=0.0, max_queue=10)
        await b.start()
        await asyncio.gather(*(b.submit("k", [i]) for i in range(5)))
        await b.stop()

    run(main())
    assert len(threads) == 1 and threads.pop().startswith("steerlab-model")
