"""The encode step of a folder run: outputs written atomically, in a background thread.

:func:`write_output` is the whole step for one output (a top-level function of picklable
arguments, so a process pool can run it as well as a thread); :class:`OutputWriter` runs it
behind the processing of the next batch and hands each finished write back in order.
"""

from __future__ import annotations

import collections
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from faceswap_pipeline.io import LoadedImage, atomic_open, format_for_suffix, write_image


class Written(NamedTuple):
    """The outcome of :func:`write_output`: the error (None when it worked), seconds, and what was
    written (``format``, ``mode``, ``bits``, ``copy`` for a copied input; None after an error)."""

    error: Exception | None
    seconds: float
    written: dict[str, Any] | None


def write_output(loaded: LoadedImage, out_file: Path, image: np.ndarray | None, quality: int | None) -> Written:
    """Write one output: ``image`` in ``loaded``'s format and metadata (None: the input unchanged)."""
    t0 = time.perf_counter()
    try:
        if image is None:
            written = _write_unchanged(loaded, out_file, quality)
        else:
            written = write_image(out_file, image, like=loaded, quality=quality)
    except Exception as exc:  # noqa: BLE001 - reported per file
        return Written(exc, time.perf_counter() - t0, None)
    return Written(None, time.perf_counter() - t0, written)


def _write_unchanged(loaded: LoadedImage, out_file: Path, quality: int | None) -> dict[str, Any]:
    """Output = input: copy the input's bytes when the format matches, else re-encode."""
    src = Path(loaded.path)
    if src.resolve() == out_file.resolve():
        raise ValueError(f"refusing to write over the input image {str(src)!r}")
    if format_for_suffix(out_file) == loaded.format and quality is None:
        with open(src, "rb") as fin, atomic_open(out_file) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        return {"format": loaded.format, "mode": loaded.mode, "bits": loaded.bits, "copy": True}
    return write_image(out_file, loaded.rgb, like=loaded, quality=quality)


class OutputWriter:
    """Runs :func:`write_output` for the run's outputs and reports each one with ``on_written(index, Written)``.

    In the background (one thread) at most ``max_waiting`` writes wait: :meth:`submit` first
    records the finished ones, then waits for the oldest until no more than that are left, so
    encoding overlaps the next batch's processing without piling up decoded images. Not in the
    background, :meth:`submit` writes at once. ``on_written`` is always called from the caller's
    thread, in submission order. ``write`` is the encode step (default :func:`write_output`;
    :func:`~faceswap_pipeline.folder.workers.write_in` runs it in worker processes) and ``threads``
    the writes that may run at once in the background.
    """

    def __init__(self, quality: int | None, on_written: Callable[[int, Written], None], *,
                 background: bool = True, max_waiting: int = 1,
                 write: Callable[[LoadedImage, Path, np.ndarray | None, int | None], Written] = write_output,
                 threads: int = 1) -> None:
        self.quality = quality
        self.on_written = on_written
        self.max_waiting = max(1, max_waiting)
        self._write = write
        self._pool = (ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="fsp-write")
                      if background else None)
        self._waiting: collections.deque[tuple[int, Future]] = collections.deque()

    def submit(self, index: int, loaded: LoadedImage, out_file: Path, image: np.ndarray | None) -> None:
        """Write ``image`` (None: the input unchanged) as input ``index``'s output."""
        if self._pool is None:
            self.on_written(index, self._write(loaded, out_file, image, self.quality))
            return
        self._waiting.append((index, self._pool.submit(self._write, loaded, out_file, image, self.quality)))
        self.drain(self.max_waiting)

    def drain(self, max_left: int = 0) -> None:
        """Record finished writes; wait for the oldest until at most ``max_left`` remain."""
        while self._waiting and (self._waiting[0][1].done() or len(self._waiting) > max_left):
            index, fut = self._waiting.popleft()
            self.on_written(index, fut.result())

    def close(self) -> None:
        """Finish every queued write (they are few, and complete) and record them."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.drain(0)
