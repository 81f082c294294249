"""The folder runner shared by the ``run``, ``detect`` and ``upscale`` subcommands.

:func:`run_folder` walks an input folder, reads images in background threads, hands batches of
successfully read images to a caller-supplied ``process_batch``, writes the results (in a
background thread too) into a mirror of the input tree and keeps a JSON report of every input.

``process_batch`` contract::

    def process_batch(items: list[LoadedImage]) -> list[ItemResult | Exception]: ...

It gets a non-empty list of :class:`~faceswap_pipeline.io.LoadedImage` (``item.rgb`` is (H, W, 3)
uint8 RGB, upright) and returns one entry per item, in order: an :class:`ItemResult` or the
exception that item failed with (that item is reported as an error, its neighbours are not
affected). If it *raises*, the batch is retried one image at a time, so a single bad image cannot
fail its batch-mates.

Resume (the default; ``overwrite=True`` redoes everything):

* ``write_outputs=True``: an input is done, and reported ``"skipped"``, when its output file exists.
  Outputs are written atomically, so an existing output is always complete (an interrupted write
  leaves only a hidden ``.<name>.<random>.tmp`` file, never a partial output).
* ``write_outputs=False`` (detect-style runs, nothing written but the report): an input is done
  when the existing report at ``report_path`` lists it (by path relative to the input folder) with
  status ``"ok"`` or ``"skipped"`` *and* the same file size and modification time. Without a
  ``report_path`` nothing is skipped.
* A skipped input keeps the ``info`` recorded for it in the previous report, when there is one.

Settings (``settings=``, e.g. :meth:`Pipeline.settings() <faceswap_pipeline.pipeline.Pipeline.settings>`):
what the outputs are made with is recorded in the output folder (:data:`~faceswap_pipeline.io.OUTPUT_MARKER`,
``.faceswap-pipeline.json``) and in the report. A re-run whose settings differ from the recorded
ones, into a folder (or report) that already has results it would skip, raises
:class:`SettingsMismatchError` before any work: skipping would silently keep outputs of the other
setting. With ``overwrite=True`` everything is redone and the new settings recorded; if such a run
is interrupted, the marker remembers when it started, and a resumed run redoes every output older
than that. Folders that have a marker are never walked as inputs, so an output folder may sit
inside the input folder (it is left out of the walk, and so are earlier output folders there).

The report (JSON, written atomically every ``report_every_s`` seconds, after the last image, and
when the run is interrupted, so there is always a valid file) is::

    {"version": 1, "complete": true, "input_dir": "...", "output_dir": "...",
     "started": "2026-...Z", "finished": "2026-...Z", "settings": {...} or null,
     "summary": {"total": 12, "ok": 10, "skipped": 1, "error": 1, "pending": 0,
                 "elapsed_s": 3.2, "images_per_s": 3.4},
     "items": [{"input": "sub/a.jpg", "output": "sub/a.jpg", "status": "ok", "error": null,
                "info": {...}, "timings": {"read_s": 0.01, "process_s": 0.2, "write_s": 0.02},
                "size": 12345, "mtime_ns": 1700000000000000000}, ...]}

``input``/``output`` are relative to ``input_dir``/``output_dir`` (``output`` is null when nothing
was written). ``status`` is ``"ok"``, ``"skipped"``, ``"error"`` or, in a report of an interrupted
run, ``"pending"``. ``read_s`` and ``write_s`` are this file's own. ``process_s`` is this image's
processing time: exact when it was processed alone (a batch of one); in a batch of several, the
time ``process_batch`` measured for it (``ItemResult.process_s``, e.g. the pipeline's per-image
stage times) or, if it gives none, the batch's time divided by its images. Items of a batch of
several also have ``"batch": {"index": k, "images": n, "process_s": <the whole batch>}``.
``info["image"]`` describes the input (size, format, mode, bits...), ``info["output_image"]`` what
was written (``format``, ``mode``, ``bits``; ``copy`` when the input file was copied unchanged).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceswap_pipeline.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    OUTPUT_MARKER,
    ImageReadError,
    LoadedImage,
    PathLike,
    atomic_open,
    atomic_write_bytes,
    format_for_suffix,
    has_image_suffix,
    iter_images,
    read_image,
    write_image,
)

logger = logging.getLogger(__name__)

REPORT_VERSION = 1
STATUSES = ("ok", "skipped", "error", "pending")


@dataclass
class ItemResult:
    """What ``process_batch`` returns for one image.

    Attributes:
        image: the output pixels to write, shape (H, W, 3) uint8 RGB (any input of
            :func:`~faceswap_pipeline.io.to_uint8_rgb` works; the size may differ from the
            input's, e.g. after upscaling). None means "output = input unchanged": the input
            file's bytes are copied when the output format is the input's (lossless, metadata
            intact), else the decoded input is re-encoded.
        info: JSON-able per-file data for the report (faces, boxes, scores, stage timings...).
            numpy scalars/arrays, tuples, paths and objects with ``to_dict()`` are converted;
            NaN/inf become null.
        process_s: seconds spent on this image, when ``process_batch`` measured it (reported
            as its ``process_s`` when it was processed in a batch of several); None: unknown.
    """

    image: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    process_s: float | None = None


class SettingsMismatchError(ValueError):
    """A re-run asked for other settings than the results already in its output folder or report."""


ProcessBatch = Callable[[list[LoadedImage]], Sequence["ItemResult | BaseException"]]


@dataclass
class FileReport:
    """The report entry of one input file.

    Attributes:
        input: path relative to the input folder (POSIX separators).
        output: path relative to the output folder, or None when nothing was written.
        status: ``"ok"``, ``"skipped"``, ``"error"`` or ``"pending"``.
        error: ``"<ExceptionType>: message"`` for errors, else None.
        info: ``ItemResult.info`` (JSON-able), plus ``"image"`` (size/format of the input).
        timings: seconds: ``read_s``, ``process_s`` (this image's, see the module docstring),
            ``write_s``.
        size: input file size in bytes (for resume checks).
        mtime_ns: input modification time (for resume checks).
        traceback: the formatted traceback of a processing/writing error, else None.
        batch: for an image processed together with others: ``{"index": k, "images": n,
            "process_s": seconds of the whole batch}``; None when it was processed alone.
    """

    input: str
    output: str | None = None
    status: str = "pending"
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    size: int | None = None
    mtime_ns: int | None = None
    traceback: str | None = None
    batch: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the report's ``items`` entry)."""
        d = {
            "input": self.input,
            "output": self.output,
            "status": self.status,
            "error": self.error,
            "info": self.info,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }
        if self.batch is not None:
            d["batch"] = self.batch
        if self.traceback:
            d["traceback"] = self.traceback
        return d


@dataclass
class FolderReport:
    """The outcome of :func:`run_folder`: one :class:`FileReport` per input, in walk order.

    Attributes:
        input_dir: the input folder (or the single input file).
        output_dir: the output folder, or None for runs that write nothing.
        items: one entry per input file found.
        started: UTC start time, ISO 8601.
        finished: UTC end time, or None while running / when interrupted.
        elapsed_s: wall time of the run so far.
        complete: True once every input has been handled.
        settings: what the results were made with (``run_folder(settings=...)``), or None.
    """

    input_dir: Path
    output_dir: Path | None
    items: list[FileReport] = field(default_factory=list)
    started: str = ""
    finished: str | None = None
    elapsed_s: float = 0.0
    complete: bool = False
    settings: dict[str, Any] | None = None

    def count(self, status: str) -> int:
        """Number of items with ``status``."""
        return sum(1 for it in self.items if it.status == status)

    @property
    def n_ok(self) -> int:
        """Inputs processed successfully in this run."""
        return self.count("ok")

    @property
    def n_failed(self) -> int:
        """Inputs that failed (read, process or write error)."""
        return self.count("error")

    @property
    def n_skipped(self) -> int:
        """Inputs skipped because they were already done (resume)."""
        return self.count("skipped")

    @property
    def exit_code(self) -> int:
        """0 when no input failed and the run completed, 1 otherwise (for the CLI)."""
        return 0 if self.n_failed == 0 and self.complete else 1

    def summary(self) -> dict[str, Any]:
        """Counts per status, elapsed time and throughput of processed images."""
        done = self.n_ok + self.n_failed
        return {
            "total": len(self.items),
            "ok": self.n_ok,
            "skipped": self.n_skipped,
            "error": self.n_failed,
            "pending": self.count("pending"),
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(done / self.elapsed_s, 3) if self.elapsed_s > 0 else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (see the module docstring for its layout)."""
        return {
            "version": REPORT_VERSION,
            "complete": self.complete,
            "input_dir": str(Path(self.input_dir).resolve()),
            "output_dir": None if self.output_dir is None else str(Path(self.output_dir).resolve()),
            "started": self.started,
            "finished": self.finished,
            "settings": self.settings,
            "summary": self.summary(),
            "items": [it.to_dict() for it in self.items],
        }

    def save(self, path: PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        # ASCII output: file names that are not valid UTF-8 survive as \udcXX escapes
        data = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        atomic_write_bytes(path, (data + "\n").encode("utf-8"))


# --------------------------------------------------------------------------------------------
# helpers


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types: numpy scalars/arrays, tuples, sets, paths, objects
    with ``to_dict()``, dataclasses; NaN and infinities become None; other objects ``str()``."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    return str(obj)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ImageReadError):
        return f"ImageReadError: {exc.reason}"
    msg = str(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def load_report(path: PathLike) -> dict[str, Any] | None:
    """Read a report written by :func:`run_folder`; None if missing or unreadable (logged)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable report %s: %s", path, exc)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        logger.warning("ignoring report %s: not a run_folder report", path)
        return None
    return data


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a settings tree; list items are named by their ``"stage"`` entry if they have one."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "stage" and prefix:
                continue
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        seen: collections.Counter[str] = collections.Counter()
        for i, x in enumerate(obj):
            name = str(x.get("stage", i))
            seen[name] += 1
            key = name if seen[name] == 1 else f"{name}#{seen[name]}"
            out.update(_flatten(x, key if not prefix or prefix == "stages" else f"{prefix}.{key}"))
    else:
        out[prefix] = obj
    return out


def settings_diff(old: Any, new: Any, limit: int = 4) -> str:
    """A short human-readable list of what differs between two settings trees."""
    a, b = _flatten(old), _flatten(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<none>") != b.get(k, "<none>")]
    keys.sort(key=lambda k: ".models." in f".{k}.")  # options first, weight digests last
    parts = [f"{k}: {a.get(k, '<none>')!r} -> {b.get(k, '<none>')!r}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return "; ".join(parts) or "none"


def _same_settings(old: Any, new: Any) -> bool:
    return to_jsonable(old) == to_jsonable(new)


def read_marker(out_dir: PathLike) -> dict[str, Any] | None:
    """The settings record an earlier run left in ``out_dir`` (:data:`~faceswap_pipeline.io.OUTPUT_MARKER`), or None."""
    path = Path(out_dir) / OUTPUT_MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable settings record %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _write_marker(out_dir: Path, settings: dict[str, Any] | None, redo_before_ns: int | None) -> None:
    from faceswap_pipeline import __version__

    doc = {"format": 1, "written_by": f"faceswap_pipeline {__version__}", "updated": _now(),
           "settings": to_jsonable(settings), "redo_before_ns": redo_before_ns}
    atomic_write_bytes(out_dir / OUTPUT_MARKER, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(folder: Path, what: str) -> None:
    """Raise unless ``folder`` exists as a writable folder or can be created."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise NotADirectoryError(f"cannot create the {what} {str(folder)!r}: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        if base == folder:
            raise PermissionError(f"the {what} {str(folder)!r} is not writable")
        raise PermissionError(f"cannot create the {what} {str(folder)!r}: no write permission in {str(base)!r}")


def check_paths(
    in_dir: PathLike,
    out_dir: PathLike | None = None,
    *,
    write_outputs: bool = True,
    report_path: PathLike | None = None,
) -> None:
    """Check a folder run's paths before any work starts (the CLI calls it before loading models).

    Raises, with a message that names the path and what to do:
        FileNotFoundError: ``in_dir`` does not exist.
        NotADirectoryError: ``out_dir`` is an existing file, or a parent of an output is a file.
        IsADirectoryError: ``report_path`` is a folder.
        PermissionError: the input cannot be read, or an output cannot be created.
        ValueError: ``out_dir`` is the input folder or contains it; no ``out_dir`` although
            outputs are written; ``report_path`` would overwrite an input image.
    """
    in_path = Path(in_dir)
    if not in_path.exists():
        raise FileNotFoundError(f"input {str(in_path)!r} does not exist")
    single_file = in_path.is_file()
    if not single_file and not in_path.is_dir():
        raise ValueError(f"input {str(in_path)!r} is neither a folder nor a file")
    if not os.access(in_path, os.R_OK | (0 if single_file else os.X_OK)):
        raise PermissionError(f"input {str(in_path)!r} is not readable")
    root_res = (in_path.parent if single_file else in_path).resolve()
    if write_outputs and out_dir is None:
        raise ValueError("out_dir is required when write_outputs is True")
    if out_dir is not None:
        out_path = Path(out_dir)
        out_res = out_path.resolve()
        if out_res == root_res and (not single_file or write_outputs):
            raise ValueError(
                f"output folder {str(out_path)!r} is the input folder: outputs would overwrite "
                "inputs; choose another folder"
            )
        if _is_within(root_res, out_res) and out_res != root_res:
            raise ValueError(
                f"input folder {str(in_path if not single_file else in_path.parent)!r} is inside the output folder "
                f"{str(out_path)!r}: outputs could overwrite inputs; choose another folder"
            )
        if write_outputs:
            if out_path.exists() and not out_path.is_dir():
                raise NotADirectoryError(
                    f"output folder {str(out_path)!r} is an existing file: give a folder (it is created if needed)"
                )
            _check_creatable(out_path, "output folder")
    if report_path is not None:
        rep = Path(report_path)
        if rep.is_dir():
            raise IsADirectoryError(f"report {str(rep)!r} is a folder: give a file name, e.g. {str(rep / 'report.json')!r}")
        if rep.exists() and has_image_suffix(rep) and _is_within(rep.resolve(), root_res):
            raise ValueError(f"report {str(rep)!r} is an input image: give another file name")
        _check_creatable(rep.parent, "folder of the report")


def _should_show_progress(progress: Any) -> bool:
    if progress is None or progress is False:
        return False
    if progress is not True:  # a stream to draw on
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


class _Progress:
    """A tqdm bar (per image) when wanted, else a no-op with the same methods.

    While the bar is shown, log records of the root logger's console handlers are written through
    tqdm (``logging_redirect_tqdm``), so warnings appear on their own lines above the bar instead
    of being spliced into it.
    """

    def __init__(self, total: int, enabled: bool, stream: Any = None) -> None:
        self._bar = None
        self._redirect: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                from tqdm.contrib.logging import logging_redirect_tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency
                return
            self._bar = tqdm(total=total, unit="img", dynamic_ncols=True, file=stream, smoothing=0.1)
            self._redirect = logging_redirect_tqdm(tqdm_class=tqdm)
            self._redirect.__enter__()

    def update(self, n: int, **postfix: Any) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None


# --------------------------------------------------------------------------------------------
# the runner


class _ReadAhead:
    """Decodes the inputs in background threads, handing them out in order.

    At most ``num_readers`` files are being decoded at any time, at most ``max_queued`` are decoded
    or decoding and not yet taken, and no new read starts while the decoded images not yet
    :meth:`release`-d hold ``pixel_budget`` pixels or more. So memory stays below about
    ``(pixel_budget + num_readers * largest image) * 3`` bytes of pixels, whatever the image sizes.
    """

    def __init__(
        self,
        jobs: list[tuple[int, Path, Path | None]],
        *,
        num_readers: int,
        max_pixels: int | None,
        pixel_budget: int,
        max_queued: int,
    ) -> None:
        self._jobs = jobs
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
                fut = self._pool.submit(_read_timed, path, self._max_pixels)
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

    def next(self) -> tuple[int, Path | None, LoadedImage | BaseException, float] | None:
        """The next input in order: ``(index, output path, image or read error, read seconds)``.

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
        return idx, out_file, loaded, read_s

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


def _read_timed(path: Path, max_pixels: int | None) -> tuple[LoadedImage | BaseException, float]:
    t0 = time.perf_counter()
    try:
        result: LoadedImage | BaseException = read_image(path, max_pixels=max_pixels)
    except Exception as exc:  # noqa: BLE001 - reported per file
        result = exc
    return result, time.perf_counter() - t0


def run_folder(
    in_dir: PathLike,
    out_dir: PathLike | None,
    process_batch: ProcessBatch,
    *,
    batch_size: int = 8,
    overwrite: bool = False,
    report_path: PathLike | None = None,
    output_suffix: str | None = None,
    write_outputs: bool = True,
    progress: bool | Any = True,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    quality: int | None = None,
    num_readers: int = 2,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_batch_pixels: int = 100_000_000,
    report_every_s: float = 5.0,
    background_writes: bool = True,
    settings: dict[str, Any] | None = None,
    on_start: Callable[[], None] | None = None,
) -> FolderReport:
    """Process every image of a folder tree with ``process_batch``; see the module docstring.

    Args:
        in_dir: input folder (walked with :func:`~faceswap_pipeline.io.iter_images`), or a single
            image file. Input files are only ever opened for reading.
        out_dir: output folder; ``out_dir / <path relative to in_dir>`` is written for each input
            (suffix replaced by ``output_suffix`` if given). May be inside ``in_dir`` (it is then
            left out of the walk, and so is every folder holding the outputs of an earlier run);
            must not be ``in_dir`` itself or contain it. May be None when ``write_outputs`` is
            False.
        process_batch: ``(list[LoadedImage]) -> list[ItemResult | Exception]``, one entry per
            item, in order. If it raises, the batch is retried one image at a time.
        batch_size: maximum images per ``process_batch`` call.
        overwrite: redo inputs that are already done (see Resume above) instead of skipping them.
        report_path: where to write the JSON report (atomically, also during the run); None for
            no report file.
        output_suffix: e.g. ``".png"`` to write every output as PNG; None keeps each input's
            suffix (and so its format).
        write_outputs: False for runs that only report (detection): nothing is written but the
            report, and resume reads the previous report.
        progress: show a tqdm bar (one step per image) on stderr when it is a terminal; False:
            none; a text stream: draw it there.
        extensions: input suffixes to pick up (anchored, case-insensitive).
        recursive: walk sub-folders.
        quality: JPEG/WebP output quality; None keeps the input's (see
            :func:`~faceswap_pipeline.io.write_image`).
        num_readers: background threads decoding images ahead of processing.
        max_pixels: per-image pixel limit of :func:`~faceswap_pipeline.io.read_image`.
        max_batch_pixels: a batch is closed early once its images hold this many pixels, and
            read-ahead pauses while decoded-but-unprocessed images hold this many, which bounds
            memory with huge images (about ``2 * max_batch_pixels * 3`` bytes plus one image per
            reader).
        report_every_s: minimum seconds between incremental report writes (stretched for huge
            reports so that writing them takes at most ~5% of the run).
        background_writes: encode and write outputs in a background thread (at most
            ``batch_size`` waiting), overlapping them with the next batch's processing.
        settings: JSON-able description of what ``process_batch`` does (options, weights); recorded
            in the output folder and the report, and compared on re-runs (see Settings above).
        on_start: called once, after the walk and all checks and before the progress bar starts,
            when there is something to process (e.g. to warm up models).

    Returns:
        The :class:`FolderReport`; ``report.exit_code`` is 1 if any input failed.

    Raises:
        FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError:
            bad paths (see :func:`check_paths`) or arguments (unknown ``output_suffix``,
            ``batch_size < 1``), before anything is processed.
        SettingsMismatchError: ``settings`` differ from those of the results already there.
    """
    t_start = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_paths(in_dir, out_dir, write_outputs=write_outputs, report_path=report_path)
    in_path = Path(in_dir)
    single_file = in_path.is_file()
    root = in_path.parent if single_file else in_path
    root_res = root.resolve()
    out_path = Path(out_dir) if out_dir is not None else None
    exclude = None
    if out_path is not None:
        out_res = out_path.resolve()
        if _is_within(out_res, root_res) and out_res != root_res:
            exclude = out_res
            if not single_file and write_outputs:
                logger.warning(
                    "the output folder %s is inside the input folder %s: it is left out of the walk (and so is any "
                    "folder holding the outputs of an earlier run)", out_path, in_path)
    if output_suffix is not None:
        output_suffix = output_suffix if output_suffix.startswith(".") else "." + output_suffix
        if write_outputs:
            format_for_suffix("x" + output_suffix)  # validates early
    report_file = Path(report_path) if report_path is not None else None

    files = [in_path] if single_file else iter_images(root, extensions, recursive=recursive, exclude=exclude)
    if not files:
        logger.warning("no images with suffixes %s found in %s", list(extensions), in_path)

    report = FolderReport(input_dir=in_path, output_dir=out_path, started=_now(),
                          settings=None if settings is None else to_jsonable(settings))
    previous = load_report(report_file) if report_file is not None else None
    prev_items: dict[str, dict[str, Any]] = {}
    if previous is not None and previous.get("input_dir") not in (None, str(in_path.resolve())):
        logger.warning(
            "report %s is for input %s, not %s: not used for resume", report_file, previous.get("input_dir"), in_path
        )
        previous = None
    if previous is not None:
        prev_items = {str(e.get("input")): e for e in previous["items"] if isinstance(e, dict)}

    # What the results already there were made with: the output folder's marker (outputs), or
    # the previous report (report-only runs).
    marker = read_marker(out_path) if write_outputs and out_path is not None and out_path.is_dir() else None
    recorded: Any = None
    where = ""
    if write_outputs and marker is not None:
        recorded, where = marker.get("settings"), f"output folder {str(out_path)!r}"
    elif not write_outputs and previous is not None:
        recorded, where = previous.get("settings"), f"report {str(report_file)!r}"
    redo_before_ns = None
    if marker is not None and isinstance(marker.get("redo_before_ns"), int) and _same_settings(recorded, settings):
        redo_before_ns = int(marker["redo_before_ns"])  # an --overwrite run was interrupted: older outputs are stale
    mismatch = settings is not None and recorded is not None and not _same_settings(recorded, settings)
    unknown_skipped = 0

    input_set = {p.resolve() for p in files}
    out_owner: dict[Path, str] = {}
    todo: list[tuple[int, Path, Path | None]] = []  # (item index, input, output)
    for path in files:
        rel = path.relative_to(root).as_posix()
        entry = FileReport(input=rel)
        with contextlib.suppress(OSError):
            st = path.stat()
            entry.size, entry.mtime_ns = st.st_size, st.st_mtime_ns
        report.items.append(entry)
        idx = len(report.items) - 1
        out_file: Path | None = None
        if write_outputs and out_path is not None:
            rel_out = Path(rel) if output_suffix is None else Path(rel).with_suffix(output_suffix)
            out_file = out_path / rel_out
            entry.output = rel_out.as_posix()
            key = out_file.resolve()
            if key in input_set:
                entry.status, entry.output = "error", None
                entry.error = f"ValueError: output path {str(out_file)!r} is an input file"
                logger.warning("%s: %s", rel, entry.error)
                continue
            if key in out_owner:
                entry.status, entry.output = "error", None
                entry.error = f"ValueError: output path {rel_out.as_posix()!r} is also the output of {out_owner[key]!r}"
                logger.warning("%s: %s", rel, entry.error)
                continue
            out_owner[key] = rel
        prev = prev_items.get(rel)
        if not overwrite:
            done = False
            if write_outputs:
                if out_file is not None:
                    with contextlib.suppress(OSError):  # no output file: not done
                        mtime = out_file.stat().st_mtime_ns
                        done = redo_before_ns is None or mtime > redo_before_ns
            elif prev is not None:
                done = (
                    prev.get("status") in ("ok", "skipped")
                    and prev.get("size") == entry.size
                    and prev.get("mtime_ns") == entry.mtime_ns
                )
            if done:
                if mismatch:
                    raise SettingsMismatchError(
                        f"{where} holds results made with other settings ({settings_diff(recorded, settings)}). "
                        "A re-run skips what is already done, so the two settings would be mixed. Re-run with "
                        "overwrite (--overwrite) to redo everything with the new settings, or choose another "
                        f"{'output folder' if write_outputs else 'report file'}."
                    )
                if settings is not None and recorded is None:
                    unknown_skipped += 1
                entry.status = "skipped"
                if prev is not None and isinstance(prev.get("info"), dict):
                    entry.info = prev["info"]
                continue
        todo.append((idx, path, out_file))
    if unknown_skipped:
        logger.warning(
            "%s has %d result(s) with no record of the settings they were made with: they are kept as they are "
            "(use --overwrite to redo them with these settings)",
            where or (f"output folder {str(out_path)!r}" if write_outputs else f"report {str(report_file)!r}"),
            unknown_skipped)
    # results of unknown settings stay: the folder/report then records no settings (unknown) until an --overwrite run
    record = None if unknown_skipped else settings
    report.settings = None if record is None else to_jsonable(record)

    stale_from = None
    if write_outputs and out_path is not None and files:
        # Record the settings before writing anything. During an --overwrite run every output not
        # newer than its start is stale until rewritten; "its start" is the marker's own mtime,
        # from the file system's clock like the outputs' (an output written in the same clock
        # tick counts as stale: redone once more, never wrongly kept).
        if overwrite and todo:
            _write_marker(out_path, settings, None)
            stale_from = (out_path / OUTPUT_MARKER).stat().st_mtime_ns
            _write_marker(out_path, settings, stale_from)
        else:
            stale_from = redo_before_ns
            if marker is None or not _same_settings(recorded, record) or marker.get("redo_before_ns") != stale_from:
                _write_marker(out_path, record, stale_from)

    if todo and on_start is not None:
        on_start()
    bar = _Progress(len(files), _should_show_progress(progress), None if isinstance(progress, bool) else progress)
    bar.update(len(files) - len(todo))
    counts = collections.Counter(it.status for it in report.items)
    last_save = [0.0, float(report_every_s)]  # time of the last write, current interval

    def save_report(force: bool = False) -> None:
        report.elapsed_s = time.perf_counter() - t_start
        if report_file is None:
            return
        now = time.perf_counter()
        if not force and now - last_save[0] < last_save[1]:
            return
        try:
            report.save(report_file)
        except (OSError, ValueError) as exc:
            logger.error("could not write report %s: %s", report_file, exc)
        done = time.perf_counter()
        # a huge report must not eat the run: keep writing it at most ~5% of the time
        last_save[0], last_save[1] = done, max(float(report_every_s), 20.0 * (done - now))

    def finish_item(idx: int, status: str, error: BaseException | None = None) -> None:
        entry = report.items[idx]
        entry.status = status
        if error is not None:
            entry.error = _error_text(error)
            if not isinstance(error, ImageReadError):
                entry.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))[-4000:]
            entry.output = None
            logger.warning("%s: %s", entry.input, entry.error)
        counts[status] += 1
        bar.update(1, ok=counts["ok"], err=counts["error"])

    writer = (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsp-write")
        if background_writes and write_outputs
        else None
    )
    writes: collections.deque[tuple[int, Future]] = collections.deque()

    def drain_writes(max_left: int) -> None:
        """Record finished background writes; wait for the oldest until at most ``max_left`` remain."""
        while writes and (writes[0][1].done() or len(writes) > max_left):
            idx, fut = writes.popleft()
            record_write(idx, *fut.result())

    def record_write(idx: int, error: BaseException | None, seconds: float, written: dict[str, Any] | None) -> None:
        report.items[idx].timings["write_s"] = seconds
        if written is not None:
            report.items[idx].info["output_image"] = written
        finish_item(idx, "ok" if error is None else "error", error)

    def write_one(idx: int, loaded: LoadedImage, out_file: Path | None, res: ItemResult) -> None:
        if not write_outputs or out_file is None:
            report.items[idx].output = None
            finish_item(idx, "ok")
            return
        if writer is not None:
            writes.append((idx, writer.submit(_write_output, loaded, out_file, res.image, quality)))
            drain_writes(max(1, batch_size))
            return
        record_write(idx, *_write_output(loaded, out_file, res.image, quality))

    n_batches = [0]

    def handle_batch(batch: list[tuple[int, LoadedImage, Path | None]]) -> None:
        items = [b[1] for b in batch]
        t0 = time.perf_counter()
        results: list[Any] | None
        try:
            results = list(process_batch(items))
            if len(results) != len(items):
                raise RuntimeError(f"process_batch returned {len(results)} results for {len(items)} images")
        except Exception as exc:  # noqa: BLE001
            if len(items) > 1:
                logger.info("batch of %d failed (%s); retrying one by one", len(items), exc)
                for one in batch:
                    handle_batch([one])
                return
            results = [exc]
        elapsed = time.perf_counter() - t0
        n_batches[0] += 1
        for (idx, loaded, out_file), res in zip(batch, results):
            entry = report.items[idx]
            own = res.process_s if isinstance(res, ItemResult) else None
            if len(items) == 1:
                entry.timings["process_s"] = elapsed
            else:
                entry.timings["process_s"] = float(own) if own is not None else elapsed / len(items)
                entry.batch = {"index": n_batches[0], "images": len(items), "process_s": round(elapsed, 6)}
            entry.info = {"image": loaded.summary()}
            if isinstance(res, BaseException):
                finish_item(idx, "error", res)
            elif isinstance(res, ItemResult):
                try:
                    entry.info.update(to_jsonable(dict(res.info)))
                except Exception as exc:  # noqa: BLE001 - a bad info dict fails this item only
                    finish_item(idx, "error", exc)
                    continue
                write_one(idx, loaded, out_file, res)
            else:
                finish_item(
                    idx,
                    "error",
                    TypeError(f"process_batch returned {type(res).__name__}, not ItemResult"),
                )
        save_report()

    save_report(force=True)  # a valid report (inputs listed, "pending") exists from the start
    reader = _ReadAhead(
        todo,
        num_readers=num_readers,
        max_pixels=max_pixels,
        pixel_budget=2 * max_batch_pixels,
        max_queued=max(1, batch_size) + max(1, num_readers),
    )
    batch: list[tuple[int, LoadedImage, Path | None]] = []
    batch_pixels = 0
    interrupted = True
    try:
        while True:
            got = reader.next()
            if got is None:  # nothing decoded or decoding: process what we hold, which frees budget
                if batch:
                    handle_batch(batch)
                    reader.release(batch_pixels)
                    batch, batch_pixels = [], 0
                    continue
                if reader.exhausted:
                    break
                raise RuntimeError("read-ahead stalled")  # pragma: no cover - would be a bug
            idx, out_file, loaded, read_s = got
            report.items[idx].timings["read_s"] = read_s
            if not isinstance(loaded, LoadedImage):
                finish_item(idx, "error", loaded)
                save_report()
                continue
            npx = loaded.rgb.shape[0] * loaded.rgb.shape[1]
            if batch and batch_pixels + npx > max_batch_pixels:
                handle_batch(batch)
                reader.release(batch_pixels)
                batch, batch_pixels = [], 0
            batch.append((idx, loaded, out_file))
            batch_pixels += npx
            del loaded
            if len(batch) >= batch_size or reader.exhausted:
                handle_batch(batch)
                reader.release(batch_pixels)
                batch, batch_pixels = [], 0
        drain_writes(0)
        interrupted = False
    finally:
        reader.close()
        if writer is not None:
            writer.shutdown(wait=True)  # queued writes are few (<= batch_size) and complete
            drain_writes(0)
        bar.close()
        report.complete = not interrupted
        report.finished = _now() if not interrupted else None
        save_report(force=True)
        if report.complete and report.n_failed == 0 and stale_from is not None and out_path is not None:
            with contextlib.suppress(OSError):
                _write_marker(out_path, record, None)  # no stale output is left
    logger.info(
        "folder run done: %d ok, %d skipped, %d failed in %.1f s",
        report.n_ok,
        report.n_skipped,
        report.n_failed,
        report.elapsed_s,
    )
    return report


def _write_output(
    loaded: LoadedImage, out_file: Path, image: np.ndarray | None, quality: int | None
) -> tuple[Exception | None, float, dict[str, Any] | None]:
    """Write one output (``image`` None: the input unchanged); returns ``(error or None, seconds, what was written)``."""
    t0 = time.perf_counter()
    try:
        if image is None:
            written = _write_unchanged(loaded, out_file, quality)
        else:
            written = write_image(out_file, image, like=loaded, quality=quality)
    except Exception as exc:  # noqa: BLE001 - reported per file
        return exc, time.perf_counter() - t0, None
    return None, time.perf_counter() - t0, written


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
