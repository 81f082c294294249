"""The web server's core, free of any web framework: options, shared pipelines, limits, results.

One :class:`SwapService` serves every request of a server:

* **one model instance per setting**: pipelines from :func:`~faceswap_pipeline.api.load_pipeline`
  are cached per :meth:`SwapOptions.key` (``(direction, detector, upscaler)``; least recently
  used ones beyond :attr:`WebConfig.max_pipelines` are dropped) and shared by all requests;
* **off the event loop**: decoding, the pipeline and encoding run on one worker thread
  (:meth:`SwapService.swap` awaits it), so photos are processed one at a time in arrival order
  and the server stays responsive; at most :attr:`WebConfig.max_pending` requests wait or run,
  later ones get 503 (``busy``) at once instead of piling up in memory;
* **limits with clear errors**: upload bytes (413 ``too_large``), pixels checked from the image
  header before decoding (413 ``too_many_pixels``), empty files (400 ``empty_file``), files that
  are not images (415 ``not_an_image``), corrupt ones (422 ``unreadable_image``); every message
  names the file as the client sent it, never a server path;
* **files only in a temporary folder**: uploads and results live under one folder made with
  :func:`tempfile.mkdtemp` (``faceswap-web-*``), capped by :attr:`WebConfig.max_results` and
  :attr:`WebConfig.max_store_bytes` (oldest results dropped first) and removed by :meth:`close`.

Photos are read and written by :mod:`faceswap_pipeline.io` exactly as the ``run`` command does
(EXIF orientation applied, format, quality, EXIF, ICC, alpha, greyscale and 16 bits kept; an
output with no face changed is the uploaded file's own bytes).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

MiB = 1 << 20

#: The request fields a swap takes besides the file, with their choices (see :meth:`SwapService.describe`).
#: A new pipeline option (e.g. a swap strength) is added here, to :class:`SwapOptions` and to its key.
FIELDS = ("direction", "detector", "upscaler", "strength")

#: Output suffix for each format :func:`~faceswap_pipeline.io.write_image` writes.
FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}

DETECTOR_LABELS = {"hog": "HOG (dlib)", "cascade": "CNN cascade (also small and turned faces)"}
UPSCALER_LABELS = {"srresnet": "SRResNet x4 (faces pasted above 128 px)", "resize": "bicubic resize (faster)"}

_ID = re.compile(r"^[0-9a-f]{32}$")


class WebError(Exception):
    """A request that cannot be served: HTTP ``status``, a stable ``code`` and a message for people.

    Attributes:
        status: HTTP status code (4xx: the request's fault, 5xx: the server's).
        code: machine-readable reason (``too_large``, ``not_an_image``, ``busy``...).
        message: one sentence saying what is wrong and, where it helps, what to do.
        retry_after: seconds after which a retry may succeed (``busy``), else None.
    """

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


@dataclass
class WebConfig:
    """Settings of one server (all limits apply per request unless said otherwise).

    Attributes:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` for every network.
        weights_dir: folder with ``manifest.json`` (default: ``$FACESWAP_WEIGHTS``, else the shipped weights).
        max_upload_bytes: largest photo file accepted.
        max_pixels: largest photo accepted, width x height (checked from the header, before decoding).
        max_pending: requests waiting or running at once; more get 503 ``busy``.
        max_results: results kept for download (oldest dropped first).
        max_store_bytes: disk the kept results may use (oldest dropped first).
        preview_max_side: longest side of the PNG previews the page shows (downloads are full size).
        max_pipelines: pipelines (model sets) kept loaded at once.
        temp_parent: folder in which the server makes its temporary folder (default: the system's).
        preload: load (and warm up) the default pipeline when the server starts.
    """

    device: str = "auto"
    weights_dir: str | None = None
    max_upload_bytes: int = 50 * MiB
    max_pixels: int = 40_000_000
    max_pending: int = 32
    max_results: int = 200
    max_store_bytes: int = 2048 * MiB
    preview_max_side: int = 1600
    max_pipelines: int = 4
    temp_parent: str | None = None
    preload: bool = True

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_pending", "max_results", "max_store_bytes",
                     "preview_max_side", "max_pipelines"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class SwapOptions:
    """What a swap request asks for; every field has the default the page preselects.

    Attributes:
        direction: one of :data:`~faceswap_pipeline.stages.translate.DIRECTIONS` or ``"auto-gender"``.
        detector: ``"hog"`` or ``"cascade"``.
        upscaler: ``"srresnet"`` or ``"resize"``.
        strength: edit strength in [0, 1]: 1 the full translation, 0 the photo back unchanged, in
            between a blend in the generator's output space (the translate stage's ``strength``).
    """

    direction: str = "auto-gender"
    detector: str = "hog"
    upscaler: str = "srresnet"
    strength: float = 1.0

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> SwapOptions:
        """Options from request fields (strings); missing ones take the defaults.

        Raises:
            WebError: 422 ``bad_option`` for an unknown field or value, naming the accepted ones.
        """
        from faceswap_pipeline.api import AUTO_GENDER, DETECTORS, UPSCALERS
        from faceswap_pipeline.stages.translate import DIRECTIONS

        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise WebError(422, "bad_option", f"unknown field(s) {', '.join(unknown)}; a swap takes file, {', '.join(FIELDS)}")
        kw: dict[str, Any] = {}
        for name, choices in (("direction", (*DIRECTIONS, AUTO_GENDER)), ("detector", DETECTORS), ("upscaler", UPSCALERS)):
            value = fields.get(name)
            if value is None or value == "":
                continue
            if value not in choices:
                raise WebError(422, "bad_option", f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
            kw[name] = value
        strength = fields.get("strength")
        if strength not in (None, ""):
            try:
                s = float(strength)
            except (TypeError, ValueError):
                raise WebError(422, "bad_option", f"strength must be a number, got {strength!r}") from None
            if not 0.0 <= s <= 1.0:  # also refuses nan
                raise WebError(422, "bad_option", f"strength must be between 0 and 1, got {strength!r}")
            kw["strength"] = s
        return cls(**kw)

    def key(self) -> tuple[str, str, str]:
        """What selects a pipeline (strength is not part of it: it is set on the shared pipeline per request)."""
        return (self.direction, self.detector, self.upscaler)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StoredResult:
    """A processed photo kept for download, in its own folder under the service's temporary folder."""

    id: str
    folder: Path
    result_file: Path
    download_name: str
    media_type: str
    input_preview: Path
    output_preview: Path
    report: dict[str, Any]
    nbytes: int
    created: float = field(default_factory=time.time)


class ResultStore:
    """Results by id, oldest dropped (their folder removed) beyond ``max_results`` or ``max_bytes``. Thread-safe."""

    def __init__(self, max_results: int, max_bytes: int) -> None:
        self.max_results, self.max_bytes = max_results, max_bytes
        self._items: OrderedDict[str, StoredResult] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, res: StoredResult) -> None:
        with self._lock:
            self._items[res.id] = res
            dropped = []
            while len(self._items) > 1 and (len(self._items) > self.max_results or self.total_bytes > self.max_bytes):
                dropped.append(self._items.popitem(last=False)[1])
        for old in dropped:
            log.info("dropping result %s (%s) to stay within the result limits", old.id, old.download_name)
            shutil.rmtree(old.folder, ignore_errors=True)

    def get(self, rid: str) -> StoredResult:
        """The result, or :class:`WebError` 404 ``not_found``."""
        with self._lock:
            res = self._items.get(rid) if _ID.match(rid or "") else None
        if res is None:
            raise WebError(404, "not_found", f"no result {rid!r}: it was never made, was deleted, or was dropped to make "
                                             "room for newer ones; process the photo again")
        return res

    def remove(self, rid: str) -> None:
        res = self.get(rid)
        with self._lock:
            self._items.pop(rid, None)
        shutil.rmtree(res.folder, ignore_errors=True)

    @property
    def total_bytes(self) -> int:
        return sum(r.nbytes for r in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


def clean_filename(name: str | None) -> str:
    """The last path component of a client's file name, without control characters (for messages and downloads)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"<>|:*?').strip(" .")
    return base[:150] or "image"


def output_suffix(client_name: str, fmt: str) -> str:
    """The result's suffix: the client's if it names the photo's real format, else that format's, else ``.png``."""
    from faceswap_pipeline.io import SUFFIX_TO_FORMAT

    suffix = Path(client_name).suffix.lower()
    if SUFFIX_TO_FORMAT.get(suffix) == fmt:
        return suffix
    return FORMAT_SUFFIX.get(fmt, ".png")


def _read_error(exc: Exception, name: str, max_pixels: int) -> WebError:
    """A :class:`~faceswap_pipeline.io.ImageReadError` as the client's error (no server path in it)."""
    from PIL import Image

    reason = getattr(exc, "reason", str(exc))
    cause = exc.__cause__
    if isinstance(cause, Image.UnidentifiedImageError):
        return WebError(415, "not_an_image", f"{name}: not an image, or a format this server cannot read "
                                             "(send JPEG, PNG, WebP, TIFF, BMP or GIF)")
    if isinstance(cause, Image.DecompressionBombError) or "exceeds the limit" in reason:
        dims = reason.split(" = ")[0] if " = " in reason else "the image"
        return WebError(413, "too_many_pixels", f"{name}: {dims} is too many pixels; this server takes photos up to "
                                                f"{max_pixels / 1e6:g} megapixels")
    return WebError(422, "unreadable_image", f"{name}: cannot read the image ({reason})")


class SwapService:
    """Shared pipelines, the inference worker and the kept results of one server.

    Args:
        config: the server's settings (default :class:`WebConfig`).

    Raises:
        ValueError: a bad device; WeightsError: a weights folder that does not exist.
    """

    def __init__(self, config: WebConfig | None = None) -> None:
        from faceswap_pipeline.api import resolve_device
        from faceswap_pipeline.weights import check_explicit_dir

        self.config = config or WebConfig()
        self.device = resolve_device(self.config.device)
        check_explicit_dir(self.config.weights_dir)
        self.root = Path(tempfile.mkdtemp(prefix="faceswap-web-", dir=self.config.temp_parent))
        (self.root / "zips").mkdir()
        self.store = ResultStore(self.config.max_results, self.config.max_store_bytes)
        self._pipelines: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceswap-web-worker")
        self._pending = 0
        self._lock = threading.Lock()
        self.completed = 0
        self.failed = 0
        self._closed = False
        self._direction_status: dict[str, str | None] | None = None
        log.info("web service: device %s, temporary folder %s", self.device, self.root)

    # ------------------------------------------------------------------ options
    def direction_status(self) -> dict[str, str | None]:
        """Every direction -> None if it can run, else why not (its generator is not trained).

        Read from the weights manifests once; a model added while the server runs needs a restart.
        """
        if self._direction_status is None:
            self._direction_status = self._read_direction_status()
        return dict(self._direction_status)

    def _read_direction_status(self) -> dict[str, str | None]:
        from faceswap_pipeline.api import AUTO_GENDER
        from faceswap_pipeline.stages.translate import DIRECTIONS, generator_name
        from faceswap_pipeline.weights import has_model

        wd = self.config.weights_dir
        status: dict[str, str | None] = {}
        for d in DIRECTIONS:
            status[d] = None if has_model(generator_name(d), wd) else f"no trained generator yet ({generator_name(d)})"
        missing = [n for n in ("cyclegan.male2female", "cyclegan.female2male", "attributes.v1") if not has_model(n, wd)]
        status[AUTO_GENDER] = f"needs {', '.join(missing)}" if missing else None
        return status

    def describe(self) -> dict[str, Any]:
        """What the page offers: every request field with its choices and default, and the limits."""
        from faceswap_pipeline.api import DETECTORS, UPSCALERS

        default = SwapOptions()
        dirs = self.direction_status()
        labels = {"auto-gender": "auto (each face to the other gender)"}
        return {
            "fields": {
                "direction": {"default": default.direction, "choices": [
                    {"value": d, "label": labels.get(d, d.replace("2", " \u2192 ")), "available": why is None, "reason": why}
                    for d, why in sorted(dirs.items(), key=lambda kv: (kv[0] != "auto-gender", kv[1] is not None))]},
                "detector": {"default": default.detector, "choices": [
                    {"value": d, "label": DETECTOR_LABELS.get(d, d), "available": True, "reason": None} for d in DETECTORS]},
                "upscaler": {"default": default.upscaler, "choices": [
                    {"value": u, "label": UPSCALER_LABELS.get(u, u), "available": True, "reason": None}
                    for u in sorted(UPSCALERS, key=lambda u: u != default.upscaler)]},
                "strength": {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05, "adjustable": True,
                             "note": "1: the full swap, 0: the photo unchanged"},
            },
            "limits": {"max_upload_bytes": self.config.max_upload_bytes, "max_pixels": self.config.max_pixels,
                       "max_pending": self.config.max_pending, "max_results": self.config.max_results},
            "device": str(self.device),
        }

    def check(self, opts: SwapOptions) -> None:
        """Raise :class:`WebError` 422 ``unavailable`` if ``opts.direction`` has no trained model."""
        why = self.direction_status().get(opts.direction)
        if why:
            raise WebError(422, "unavailable", f"direction {opts.direction} cannot run: {why}")

    # ------------------------------------------------------------------ models (worker thread only)
    def pipeline(self, opts: SwapOptions) -> Any:
        """The shared pipeline for ``opts`` (loaded and warmed up on first use). Call on the worker thread."""
        from faceswap_pipeline.api import load_pipeline

        key = opts.key()
        with self._lock:
            pipe = self._pipelines.get(key)
            if pipe is not None:
                self._pipelines.move_to_end(key)
                return pipe
        t0 = time.perf_counter()
        pipe = load_pipeline(opts.direction, detector=opts.detector, upscaler=opts.upscaler, device=self.device,
                             weights_dir=self.config.weights_dir)
        pipe.warmup()
        log.info("loaded pipeline %s in %.2f s", "/".join(key), time.perf_counter() - t0)
        with self._lock:
            self._pipelines[key] = pipe
            while len(self._pipelines) > self.config.max_pipelines:
                old, _ = self._pipelines.popitem(last=False)
                log.info("unloaded pipeline %s (more than %d loaded)", "/".join(old), self.config.max_pipelines)
        return pipe

    def loaded_pipelines(self) -> list[str]:
        with self._lock:
            return ["/".join(k) for k in self._pipelines]

    def preload(self, opts: SwapOptions | None = None) -> Future:
        """Load ``opts``' pipeline (default options) on the worker now; requests queue behind it."""
        opts = opts or SwapOptions()

        def job() -> None:
            try:
                self.pipeline(opts)
            except Exception as e:  # noqa: BLE001 - the first request reports it again
                log.warning("could not preload pipeline %s: %s", "/".join(opts.key()), e)

        return self._executor.submit(job)

    # ------------------------------------------------------------------ requests
    @property
    def pending(self) -> int:
        """Requests waiting for or running on the worker."""
        return self._pending

    async def swap(self, upload: BinaryIO, filename: str | None, opts: SwapOptions) -> StoredResult:
        """Process one uploaded photo on the worker thread; the event loop only awaits it.

        Args:
            upload: the file's bytes (read from its current position; e.g. a spooled temporary file).
            filename: the name the client gave the file (only used in messages and the download name).
            opts: the swap options.

        Raises:
            WebError: the limits, unreadable files, a busy server, a failed pipeline.
        """
        self.check(opts)
        with self._lock:
            if self._closed:
                raise WebError(503, "shutting_down", "the server is shutting down")
            if self._pending >= self.config.max_pending:
                raise WebError(503, "busy", f"the server is busy ({self._pending} photos waiting or running); "
                                            "try again in a moment", retry_after=2)
            self._pending += 1
        t_queued = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            res = await loop.run_in_executor(self._executor, self._swap_sync, upload, clean_filename(filename), opts, t_queued)
        except WebError:
            self.failed += 1
            raise
        finally:
            with self._lock:
                self._pending -= 1
        self.completed += 1
        return res

    def _swap_sync(self, upload: BinaryIO, name: str, opts: SwapOptions, t_queued: float) -> StoredResult:
        from faceswap_pipeline.folder import PipelineBatch
        from faceswap_pipeline.folder.writer import write_output
        from faceswap_pipeline.io import ImageReadError, read_image

        t0 = time.perf_counter()
        rid = uuid.uuid4().hex
        folder = self.root / rid
        folder.mkdir()
        try:
            upload_path = folder / "upload"
            n = _copy_limited(upload, upload_path, self.config.max_upload_bytes, name)
            if n == 0:
                raise WebError(400, "empty_file", f"{name}: empty file (0 bytes)")
            try:
                loaded = read_image(upload_path, max_pixels=self.config.max_pixels)
            except ImageReadError as e:
                raise _read_error(e, name, self.config.max_pixels) from None
            t_decoded = time.perf_counter()
            pipe = self.pipeline(opts)
            for stage in pipe.stages:  # one worker thread runs every request: set this request's strength
                if stage.name == "translate":
                    stage.strength = opts.strength
            t_loaded = time.perf_counter()
            (item,) = PipelineBatch(pipe)([loaded])
            if isinstance(item, BaseException):
                raise WebError(500, "processing_failed", f"{name}: the pipeline failed: {item}")
            t_processed = time.perf_counter()
            suffix = output_suffix(name, loaded.format)
            result_file = folder / f"result{suffix}"
            err, _, written = write_output(loaded, result_file, item.image, None)
            if err is not None:
                raise WebError(500, "encode_failed", f"{name}: could not write the result: {err}")
            out_rgb = loaded.rgb if item.image is None else item.image
            in_prev, out_prev = folder / "input.png", folder / "output.png"
            _write_preview(loaded.rgb, in_prev, self.config.preview_max_side)
            _write_preview(out_rgb, out_prev, self.config.preview_max_side)
            upload_path.unlink()
            t_done = time.perf_counter()
            download = f"{Path(name).stem or 'image'}_swapped{suffix}"
            report = {
                "id": rid,
                "filename": name,
                "download_name": download,
                "options": opts.to_dict(),
                "input": {**loaded.summary(), "bytes": n},
                "output": {**(written or {}), "width": int(out_rgb.shape[1]), "height": int(out_rgb.shape[0]),
                           "bytes": result_file.stat().st_size, "changed": item.image is not None},
                "n_faces": item.info.get("n_faces", 0),
                "faces": item.info.get("faces", []),
                "seconds": {"queue": round(t0 - t_queued, 4), "decode": round(t_decoded - t0, 4),
                            "load_models": round(t_loaded - t_decoded, 4), "process": round(t_processed - t_loaded, 4),
                            "encode": round(t_done - t_processed, 4), "total": round(t_done - t_queued, 4)},
                "stage_s": item.info.get("stage_s", {}),
            }
            nbytes = sum(p.stat().st_size for p in folder.iterdir())
            media = mimetypes.types_map.get(suffix, "application/octet-stream")
            res = StoredResult(rid, folder, result_file, download, media, in_prev, out_prev, report, nbytes)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.store.add(res)
        log.info("%s: %d face(s), %.2f s (%s)", name, report["n_faces"], report["seconds"]["total"], "/".join(opts.key()))
        return res

    def zip_results(self, ids: list[str]) -> Path:
        """A zip (in the temporary folder) of the results ``ids`` and a ``report.json``; the caller deletes it."""
        import json

        if not ids:
            raise WebError(422, "bad_option", "no result ids given (ids=ID,ID,...)")
        if len(ids) > self.config.max_results:
            raise WebError(422, "bad_option", f"at most {self.config.max_results} results per zip")
        results = [self.store.get(i) for i in ids]
        path = self.root / "zips" / f"{uuid.uuid4().hex}.zip"
        used: set[str] = set()
        reports = []
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:  # photos are compressed already
            for r in results:
                name, k = r.download_name, 2
                while name.lower() in used:
                    stem, suf = os.path.splitext(r.download_name)
                    name, k = f"{stem} ({k}){suf}", k + 1
                used.add(name.lower())
                z.write(r.result_file, arcname=name)
                reports.append({**r.report, "zip_name": name})
            z.writestr("report.json", json.dumps({"results": reports}, indent=1))
        return path

    def close(self) -> None:
        """Stop the worker (waiting for the photo it is on) and remove the temporary folder."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _copy_limited(src: BinaryIO, dst: Path, limit: int, name: str) -> int:
    """Copy at most ``limit`` bytes from ``src`` to ``dst``; :class:`WebError` 413 if there are more."""
    n = 0
    with open(dst, "wb") as f:
        while chunk := src.read(MiB):
            n += len(chunk)
            if n > limit:
                raise WebError(413, "too_large", f"{name}: file too large (over {limit / MiB:g} MB); this server takes "
                                                 f"photos up to {limit / MiB:g} MB")
            f.write(chunk)
    return n


def _write_preview(rgb: Any, path: Path, max_side: int) -> None:
    """A PNG for the page: the photo, shrunk so its longer side is at most ``max_side``."""
    from PIL import Image

    im = Image.fromarray(rgb)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    im.save(path, format="PNG", compress_level=1)
