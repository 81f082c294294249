"""The decode step of a folder run: files read ahead of processing, in background threads.

:func:`read_file` is the whole step for one file (a top-level function of picklable arguments, so
a process pool can run it as well as a thread pool); :class:`ReadAhead` schedules it within a
count and a pixel budget and hands the results out in input order.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from faceswap_pipeline.io import LoadedImage, read_image


class Job(NamedTuple):
    """One input to process: its index in the report, the file, and where its output goes (None: nowhere)."""

    index: int
    path: Path
    output: Path | None


class Read(NamedTuple):
    """A decoded input (:meth:`ReadAhead.next`): the job's index and output, the image or the read error, seconds."""

    index: int
    output: Path | None
    image: LoadedImage | BaseException
    seconds: float


def read_file(path: Path, max_pixels: int | None) -> tuple[LoadedImage | BaseException, float]:
    """Decode one file: ``(image, seconds)``, or ``(the exception, seconds)`` if it cannot be read."""
    t0 = time.perf_counter()
    try:
        result: LoadedImage | BaseException = read_image(path, max_pixels=max_pixels)
    except Exception as exc:  # noqa: BLE001 - reported per file
        result = exc
    return result, time.perf_counter() - t0


class ReadAhead:
    """Decodes the inputs in background threads, handing them out in order.

    At most ``num_readers`` files are being decoded at any time, at most ``max_queued`` are decoded
    or decoding and not yet taken, and no new read starts while the decoded images not yet
    :meth:`release`-d hold ``pixel_budget`` pixels or more. So memory stays below about
    ``(pixel_budget + num_readers * largest image) * 3`` bytes of pixels, whatever the image sizes.

    Args:
        jobs: the inputs, in order (:class:`Job`, or ``(index, path, output)`` tuples).
        read: the decode step, called in the background threads (default :func:`read_file`;
            :func:`~faceswap_pipeline.folder.workers.read_in` runs it in worker processes).
    """

    def __init__(
        self,
        jobs: list[Job],
        *,
        num_readers: int,
        max_pixels: int | None,
        pixel_budget: int,
        max_queued: int,
        read: Callable[[Path, int | None], tuple[LoadedImage | BaseException, float]] = read_file,
    ) -> None:
        self._jobs = jobs
        self._read = read
        self._next = 0
        self._inflight = 0
        self._held = 0
        self._stopped = False
        self._max_pixels = max_pixels
        self._budget = pixel_budget
        self._max_queued = max_queued
        self._num_readers = max(1, num_readers)
        self._pending: collections.deque[tuple[int, Path | None, Future]] = collections.deque()
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=self._num_readers, thread_name_prefix="fsp-read")
        self.top_up()

    @property
    def exhausted(self) -> bool:
        """True once every job has been handed out by :meth:`next`."""
        with self._lock:
            return self._next >= len(self._jobs) and not self._pending

    def top_up(self) -> None:
        """Start reads while the count and pixel budgets allow."""
        with self._lock:
            while (
                not self._stopped
                and self._next < len(self._jobs)
                and self._inflight < self._num_readers
                and len(self._pending) < self._max_queued
                and self._held < self._budget
            ):
                idx, path, out_file = self._jobs[self._next]
                self._next += 1
                self._inflight += 1
                fut = self._pool.submit(self._read, path, self._max_pixels)
                self._pending.append((idx, out_file, fut))
                fut.add_done_callback(self._on_done)

    def _on_done(self, fut: Future) -> None:
        with self._lock:
            self._inflight -= 1
            if not fut.cancelled() and fut.exception() is None:
                loaded = fut.result()[0]
                if isinstance(loaded, LoadedImage):
                    self._held += loaded.rgb.shape[0] * loaded.rgb.shape[1]
        self.top_up()

    def next(self) -> Read | None:
        """The next input in order (:class:`Read`).

        Blocks while it is being decoded. None when no read is queued (all handed out, or the
        pixel budget is spent: release some with :meth:`release`).
        """
        with self._lock:
            if not self._pending:
                self.top_up()
            if not self._pending:
                return None
            idx, out_file, fut = self._pending.popleft()
        loaded, read_s = fut.result()
        self.top_up()
        return Read(idx, out_file, loaded, read_s)

    def release(self, pixels: int) -> None:
        """Return the budget of processed images (their pixel count) and read further."""
        with self._lock:
            self._held -= pixels
        self.top_up()

    def close(self) -> None:
        """Stop reading; wait for running decodes, drop queued ones."""
        with self._lock:
            self._stopped = True
        self._pool.shutdown(wait=True, cancel_futures=True)
