"""The FastAPI application behind ``faceswap-pipeline serve``: the page and its JSON API.

Routes (the OpenAPI schema is at ``/api/openapi.json``; every error is
``{"error": {"code", "message", "status"}}``):

=======  ===============================  ============================================================
GET      ``/``                            the page (``static/``: HTML, CSS, JS; no CDN, no fonts)
GET      ``/api/health``                  liveness, device, loaded pipelines, queue
GET      ``/api/options``                 the request fields with their choices and defaults, the limits
POST     ``/api/swap``                    multipart: ``file`` + ``direction``, ``detector``, ``upscaler``
                                          -> the per-face report and the result's URLs
GET      ``/api/results/{id}``            the swapped photo (the upload's format; ``?download=0``: inline)
GET      ``/api/results/{id}/report``     the report again
GET      ``/api/results/{id}/preview/X``  X = ``input`` | ``output``: PNG previews for the page
DELETE   ``/api/results/{id}``            forget a result now
GET      ``/api/results.zip?ids=A,B``     several results and a ``report.json`` in one zip
=======  ===============================  ============================================================

Requests are checked before the models see them: bodies over the upload limit are refused from
``Content-Length`` (or as soon as the stream passes the limit) with 413; the ``Host`` header must
name the loopback address the server listens on (against DNS rebinding), and a POST or DELETE
from a page of another origin is refused (403).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceswap_pipeline import __version__
from faceswap_pipeline.web.service import SwapOptions, SwapService, WebConfig, WebError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
MULTIPART_SLACK = 64 * 1024
"""Bytes a multipart body may carry beyond the photo itself (boundaries, headers, option fields)."""

CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


# ---------------------------------------------------------------------------------------- schema
class ErrorBody(BaseModel):
    code: str = Field(description="stable reason: too_large, too_many_pixels, empty_file, not_an_image, "
                                  "unreadable_image, bad_option, unavailable, busy, not_found, processing_failed...")
    message: str = Field(description="what is wrong, for people; names the file as the client sent it")
    status: int


class ErrorResponse(BaseModel):
    error: ErrorBody


class FaceReport(BaseModel):
    box: list[float] = Field(description="detected face (x0, y0, x1, y1) in pixels of the upright photo; x1, y1 exclusive")
    score: float = Field(description="detector score (HOG: SVM margin; cascade: probability)")
    crop_box: list[int] | None = Field(None, description="window cut out, translated and pasted back (x0, y0, x1, y1); "
                                                         "pixels outside it are never changed")
    direction: str | None = Field(None, description="the swap this face got (auto-gender: chosen per face), None: left as is")
    attributes: dict[str, float] = Field(default_factory=dict,
                                         description="scores where available: face_prob (the verifier's face probability); "
                                                     "with auto-gender p_female, race probabilities and age of the input face")
    actions: list[str] = Field(default_factory=list, description="what was done, e.g. translate:male2female, upscale:srresnet.x4, blend")
    strength: float | None = Field(None, description="edit strength the face was translated with (0: unchanged .. 1: full); None: not translated")
    selected: bool = Field(True, description="False when the face policy left this face out")
    rotation: float = Field(0.0, description="degrees the face was turned upright by before the generator (0: not aligned)")


class ResultUrls(BaseModel):
    result: str = Field(description="the swapped photo, as a download")
    inline: str = Field(description="the swapped photo, for display")
    input_preview: str = Field(description="PNG of the upright input (at most preview_max_side px)")
    output_preview: str = Field(description="PNG of the result (at most preview_max_side px)")
    report: str


class SwapResult(BaseModel):
    id: str
    filename: str = Field(description="the upload's file name as sent")
    download_name: str
    options: dict[str, Any] = Field(description="direction, detector, upscaler, strength as applied")
    input: dict[str, Any] = Field(description="width, height, format, mode, bits, alpha, quality, orientation, bytes")
    output: dict[str, Any] = Field(description="format, mode, bits, width, height, bytes, changed (False: no face was swapped, "
                                               "the result is the upload's own bytes)")
    n_faces: int
    faces: list[FaceReport]
    seconds: dict[str, float] = Field(description="queue, decode, load_models, process, encode, total")
    stage_s: dict[str, float] = Field(description="seconds per pipeline stage")
    urls: ResultUrls


_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in {400: "empty file, malformed request", 403: "cross-origin request", 404: "unknown or expired result",
                 413: "file over the upload limit, or photo over the pixel limit", 415: "not an image",
                 422: "bad option, unavailable direction, corrupt image", 503: "queue full (Retry-After) or shutting down"}.items()
}


# ---------------------------------------------------------------------------------------- middleware
def _json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(WebError(status, code, message).to_dict(), status_code=status, headers=headers)


class RequestGuard:
    """Pure ASGI middleware: upload size limit, Host check, cross-origin refusal, security headers."""

    def __init__(self, app: Any, max_body: int, allowed_hosts: Sequence[str] | None) -> None:
        self.app, self.max_body = app, max_body
        self.allowed = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.allowed is not None and _hostname(host) not in self.allowed:
            return await _json_error(400, "bad_host", f"Host {host!r} is not served here (use http://127.0.0.1 or "
                                                      "http://localhost)")(scope, receive, send)
        method = scope["method"]
        origin = headers.get("origin")
        if method not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
            return await _json_error(403, "cross_origin", f"requests from pages of other sites ({origin}) are refused")(scope, receive, send)

        async def send_with_headers(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"content-security-policy", CSP.encode())]
                msg = {**msg, "headers": [*msg.get("headers", []), *extra]}
            await send(msg)

        if method not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send_with_headers)
        limit_mb = (self.max_body - MULTIPART_SLACK) / (1 << 20)
        too_large = f"upload too large; this server takes photos up to {limit_mb:g} MB"
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = 0
        if length > self.max_body:
            return await _json_error(413, "too_large", too_large + f" (this request has {length / (1 << 20):.1f} MB)",
                                     {"connection": "close"})(scope, receive, send_with_headers)
        received, exceeded, sent = 0, False, False

        async def limited_receive() -> dict:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_body:
                    exceeded = True
                    return {"type": "http.disconnect"}  # the app stops reading; its reply is replaced below
            return msg

        async def guarded_send(msg: dict) -> None:
            nonlocal sent
            if not exceeded:
                sent = True
                await send_with_headers(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not sent:
            await _json_error(413, "too_large", too_large, {"connection": "close"})(scope, receive, send_with_headers)


def _hostname(host_header: str) -> str:
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:].split("]")[0]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


# ---------------------------------------------------------------------------------------- the app
def create_app(service: SwapService | None = None, *, config: WebConfig | None = None,
               allowed_hosts: Sequence[str] | None = LOOPBACK_NAMES) -> FastAPI:
    """The application: the page, the JSON API and the OpenAPI schema.

    Args:
        service: the shared :class:`SwapService` (default: a new one from ``config``, closed with the app).
        config: settings for a new service.
        allowed_hosts: host names the ``Host`` header may carry (default: the loopback names);
            None accepts any (a server listening on a public address).
    """
    own = service is None
    svc = service if service is not None else SwapService(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if svc.config.preload:
            svc.preload()
        yield
        if own:
            svc.close()

    app = FastAPI(
        title="faceswap_pipeline",
        version=__version__,
        summary="Swap the apparent gender of every face in a photo: detect, translate (CycleGAN), upscale, paste back.",
        description="The JSON API behind the `faceswap-pipeline serve` page. Send one photo per `POST /api/swap`; "
                    "photos are processed one at a time by models shared by all requests. Errors are "
                    '`{"error": {"code", "message", "status"}}`.',
        docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",  # the bundled doc pages load scripts from a CDN
        lifespan=lifespan,
    )
    app.state.service = svc
    app.add_middleware(RequestGuard, max_body=svc.config.max_upload_bytes + MULTIPART_SLACK, allowed_hosts=allowed_hosts)

    @app.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> JSONResponse:
        headers = {"retry-after": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
            missing_file = where == "file" and e.get("type") == "missing"
            parts.append(f"{where}: " + ("missing (send the photo as the multipart field file)" if missing_file else str(e.get("msg"))))
        return _json_error(422 if parts else 400, "bad_request", "; ".join(parts) or "malformed request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _json_error(exc.status_code, f"http_{exc.status_code}", str(exc.detail), getattr(exc, "headers", None))

    def with_urls(report: dict[str, Any]) -> dict[str, Any]:
        base = f"/api/results/{report['id']}"
        return {**report, "urls": {"result": base, "inline": f"{base}?download=0", "input_preview": f"{base}/preview/input",
                                   "output_preview": f"{base}/preview/output", "report": f"{base}/report"}}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/health", tags=["server"])
    async def health() -> dict[str, Any]:
        """Whether the server is up, its device, the loaded pipelines and the queue."""
        return {"status": "ok", "version": __version__, "device": str(svc.device), "pipelines": svc.loaded_pipelines(),
                "pending": svc.pending, "completed": svc.completed, "failed": svc.failed, "results": len(svc.store)}

    @app.get("/api/options", tags=["server"])
    async def options() -> dict[str, Any]:
        """The fields of `POST /api/swap` with their choices (unavailable ones say why), defaults and the limits."""
        return svc.describe()

    @app.post("/api/swap", response_model=SwapResult, tags=["swap"], responses=_ERRORS)
    async def swap(
        request: Request,
        file: Annotated[UploadFile, File(description="the photo: JPEG, PNG, WebP, TIFF, BMP or GIF (EXIF orientation is applied)")],
        direction: Annotated[str, Form(description="male2female, female2male, auto-gender (per face), or a race direction "
                                                   "once its generator is trained (see /api/options)")] = "auto-gender",
        detector: Annotated[str, Form(description="hog or cascade")] = "hog",
        upscaler: Annotated[str, Form(description="srresnet or resize")] = "srresnet",
        strength: Annotated[float | None, Form(description="reserved: only 1 (the generator's full output) for now")] = None,
    ) -> dict[str, Any]:
        """Swap every face of one photo; returns the per-face report and where to fetch the result."""
        form = await request.form()  # already parsed (cached): refuse fields this version does not know
        fields = {k: v for k, v in form.items() if k != "file"}
        opts = SwapOptions.from_fields({k: v for k, v in fields.items() if isinstance(v, str)})
        try:
            res = await svc.swap(file.file, file.filename, opts)
        finally:
            await file.close()
        return with_urls(res.report)

    @app.get("/api/results.zip", tags=["results"], responses={200: {"content": {"application/zip": {}}}, **_ERRORS})
    async def results_zip(ids: Annotated[str, Query(description="result ids, comma-separated")]) -> FileResponse:
        """Several results (and a report.json of all of them) in one zip."""
        from starlette.concurrency import run_in_threadpool

        path = await run_in_threadpool(svc.zip_results, [i for i in ids.split(",") if i])
        return FileResponse(path, media_type="application/zip", filename="faceswap-results.zip",
                            background=BackgroundTask(os.unlink, path))

    @app.get("/api/results/{rid}", tags=["results"], responses={200: {"content": {"image/*": {}}}, **_ERRORS})
    async def result(rid: str, download: Annotated[bool, Query(description="as an attachment (else inline)")] = True) -> FileResponse:
        """The swapped photo, in the upload's format with its metadata."""
        r = svc.store.get(rid)
        return FileResponse(r.result_file, media_type=r.media_type, filename=r.download_name,
                            content_disposition_type="attachment" if download else "inline")

    @app.get("/api/results/{rid}/report", response_model=SwapResult, tags=["results"], responses=_ERRORS)
    async def result_report(rid: str) -> dict[str, Any]:
        """The report `POST /api/swap` returned."""
        return with_urls(svc.store.get(rid).report)

    @app.get("/api/results/{rid}/preview/{which}", tags=["results"], responses={200: {"content": {"image/png": {}}}, **_ERRORS})
    async def preview(rid: str, which: Literal["input", "output"]) -> FileResponse:
        """PNG preview of the upright input or of the result (shrunk to the preview size)."""
        r = svc.store.get(rid)
        return FileResponse(r.input_preview if which == "input" else r.output_preview, media_type="image/png")

    @app.delete("/api/results/{rid}", status_code=204, tags=["results"], responses=_ERRORS)
    async def delete_result(rid: str) -> Response:
        """Forget a result and delete its files now."""
        svc.store.remove(rid)
        return Response(status_code=204)

    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or name (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(host: str = "127.0.0.1", port: int = 8000, config: WebConfig | None = None, log_level: str = "info") -> None:
    """Run the page and API with uvicorn until interrupted (Ctrl-C, SIGINT or SIGTERM), then return.

    Listens on loopback by default. Another address makes the page reachable from other machines
    with no authentication: a warning says so, and the ``Host`` check is then off. ``port`` 0
    takes a free port. Once listening, one JSON line goes to stdout:
    ``{"serving": "http://127.0.0.1:PORT/", "device": ...}``.

    Raises:
        OSError: the address cannot be bound (e.g. the port is in use).
    """
    import socket

    import uvicorn

    config = config or WebConfig()
    if is_loopback(host):
        allowed: Sequence[str] | None = (*LOOPBACK_NAMES, host)
    else:
        allowed = None
        log.warning("listening on %s: anyone who can reach this address can use the page (there is no authentication)", host)
    family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)  # connections queue from now on, before uvicorn accepts them
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    app = create_app(config=config, allowed_hosts=allowed)
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    print(json.dumps({"serving": f"http://{shown}:{bound}/", "device": str(app.state.service.device)}), flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, limit_concurrency=config.max_pending + 32,
                                           timeout_keep_alive=5, server_header=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down gracefully (lifespan done), then re-raises the Ctrl-C
        pass
