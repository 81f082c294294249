"""The folder run's report: one :class:`FileReport` per input, the :class:`FolderReport` around
them, and :class:`ReportWriter`, which keeps the JSON file on disk current during the run.

The layout of the JSON file is in :mod:`faceswap_pipeline.folder`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceswap_pipeline.io import ImageReadError, PathLike, atomic_write_bytes

logger = logging.getLogger("faceswap_pipeline.folder")  # the name users see on the runner's messages

REPORT_VERSION = 1
STATUSES = ("ok", "skipped", "error", "pending")


@dataclass
class FileReport:
    """The report entry of one input file.

    Attributes:
        input: path relative to the input folder (POSIX separators).
        output: path relative to the output folder, or None when nothing was written.
        status: ``"ok"``, ``"skipped"``, ``"error"`` or ``"pending"``.
        error: ``"<ExceptionType>: message"`` for errors, else None.
        info: ``ItemResult.info`` (JSON-able), plus ``"image"`` (size/format of the input).
        timings: seconds: ``read_s``, ``process_s`` (this image's, see :mod:`faceswap_pipeline.folder`),
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

    def fail(self, error: BaseException) -> None:
        """Mark this input failed with ``error`` (message, and the traceback unless it is a read error)."""
        self.status = "error"
        self.error = error_text(error)
        if not isinstance(error, ImageReadError):
            self.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))[-4000:]
        self.output = None
        logger.warning("%s: %s", self.input, self.error)

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
    """The outcome of a folder run: one :class:`FileReport` per input, in walk order.

    Attributes:
        input_dir: the input folder (or the single input file).
        output_dir: the output folder, or None for runs that write nothing.
        items: one entry per input file found.
        started: UTC start time, ISO 8601.
        finished: UTC end time, or None while running / when interrupted.
        elapsed_s: wall time of the run so far.
        complete: True once every input has been handled.
        settings: what the results were made with (the run's ``settings``), or None.
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
        """The JSON report (see :mod:`faceswap_pipeline.folder` for its layout)."""
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


class ReportWriter:
    """Keeps a run's report file current: at most every ``every_s`` seconds, or when forced.

    The interval stretches for huge reports, so that writing them takes at most ~5% of the run.
    With no ``path`` nothing is written, but the report's ``elapsed_s`` is still kept current.
    """

    def __init__(self, report: FolderReport, path: Path | None, every_s: float, t_start: float) -> None:
        self.report = report
        self.path = path
        self.every_s = float(every_s)
        self.t_start = t_start
        self._last = 0.0
        self._interval = float(every_s)

    def save(self, force: bool = False) -> None:
        """Update ``elapsed_s`` and write the file if it is due (or ``force``); a failed write is logged."""
        self.report.elapsed_s = time.perf_counter() - self.t_start
        if self.path is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < self._interval:
            return
        try:
            self.report.save(self.path)
        except (OSError, ValueError) as exc:
            logger.error("could not write report %s: %s", self.path, exc)
        done = time.perf_counter()
        # a huge report must not eat the run: keep writing it at most ~5% of the time
        self._last, self._interval = done, max(self.every_s, 20.0 * (done - now))


def read_json(path: Path, what: str) -> Any:
    """The JSON document in ``path``; None if there is no such file, or it cannot be read (logged,
    naming it as ``what``): a broken record of an earlier run must not stop this one."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s %s: %s", what, path, exc)
        return None


def load_report(path: PathLike) -> dict[str, Any] | None:
    """Read a report written by a folder run; None if missing or unreadable (logged)."""
    path = Path(path)
    data = read_json(path, "report")
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        logger.warning("ignoring report %s: not a run_folder report", path)
        return None
    return data


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
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    return str(obj)


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-01-02T03:04:05Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def error_text(exc: BaseException) -> str:
    """``"<ExceptionType>: message"`` of an input's error (a read error: its reason)."""
    if isinstance(exc, ImageReadError):
        return f"ImageReadError: {exc.reason}"
    msg = str(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
