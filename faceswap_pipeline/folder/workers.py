"""Worker processes for a folder run (``FolderRun(workers=N)``, ``run --workers N``).

With ``workers > 1`` the decode step (:func:`~faceswap_pipeline.folder.readahead.read_file`) and
the encode step (:func:`~faceswap_pipeline.folder.writer.write_output`) run in a pool of ``N``
processes (spawned, so no model or lock is inherited), while the main process runs the network
stages on batches of decoded images. The schedulers stay the same as with threads:
:class:`~faceswap_pipeline.folder.readahead.ReadAhead` and
:class:`~faceswap_pipeline.folder.writer.OutputWriter` keep their count and pixel bounds and
their input order; each of their threads only hands its job to the pool and waits for it, so
submitting never happens from the pool's own result thread.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from faceswap_pipeline.folder.readahead import read_file
from faceswap_pipeline.folder.writer import Written, write_output
from faceswap_pipeline.io import LoadedImage


def default_workers() -> int:
    """All the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes for decoding and encoding."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError naming it (an error that cannot be
    unpickled in the main process would break the whole pool, not fail one file)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def read_job(path: Path, max_pixels: int | None) -> tuple[LoadedImage | BaseException, float]:
    """The worker's side of :func:`read_in`: :func:`read_file` with a picklable error."""
    result, seconds = read_file(path, max_pixels)
    return (_portable(result) if isinstance(result, BaseException) else result), seconds


def write_job(loaded: LoadedImage, out_file: Path, image: np.ndarray | None, quality: int | None) -> Written:
    """The worker's side of :func:`write_in`: :func:`write_output` with a picklable error."""
    w = write_output(loaded, out_file, image, quality)
    return w if w.error is None else w._replace(error=_portable(w.error))


def read_in(pool: ProcessPoolExecutor, path: Path, max_pixels: int | None) -> tuple[LoadedImage | BaseException, float]:
    """:func:`read_file` run in ``pool``; a failure of the pool itself (a worker killed, an error
    that cannot be pickled) is that file's read error, as a read error would be."""
    t0 = time.perf_counter()
    try:
        return pool.submit(read_job, path, max_pixels).result()
    except Exception as exc:  # noqa: BLE001 - reported per file
        return exc, time.perf_counter() - t0


def write_in(pool: ProcessPoolExecutor, loaded: LoadedImage, out_file: Path, image: np.ndarray | None,
             quality: int | None) -> Written:
    """:func:`write_output` run in ``pool`` (a failure of the pool is that output's write error)."""
    t0 = time.perf_counter()
    try:
        return pool.submit(write_job, loaded, out_file, image, quality).result()
    except Exception as exc:  # noqa: BLE001 - reported per file
        return Written(exc, time.perf_counter() - t0, None)
