"""A local web page and JSON API over :func:`faceswap_pipeline.load_pipeline` (``faceswap-pipeline serve``).

* :mod:`faceswap_pipeline.web.service` - framework-free core: option checking, one shared
  pipeline per ``(direction, detector, upscaler)``, a single inference worker thread (requests
  wait in a bounded queue, never on the event loop), upload and pixel limits, results kept in a
  bounded temporary folder.
* :mod:`faceswap_pipeline.web.app` - the FastAPI application (routes, OpenAPI schema, request
  limits, host/origin checks) and :func:`serve` (uvicorn, loopback by default).
* ``static/`` - the page (plain HTML, CSS and JavaScript served by the package; nothing from a CDN).

Needs the ``web`` extra: ``pip install "faceswap_pipeline[web]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from faceswap_pipeline.web.app import create_app, serve
    from faceswap_pipeline.web.service import SwapOptions, SwapService, WebConfig, WebError

__all__ = ["SwapOptions", "SwapService", "WebConfig", "WebError", "create_app", "serve"]

_LAZY = {
    "create_app": "faceswap_pipeline.web.app",
    "serve": "faceswap_pipeline.web.app",
    "SwapOptions": "faceswap_pipeline.web.service",
    "SwapService": "faceswap_pipeline.web.service",
    "WebConfig": "faceswap_pipeline.web.service",
    "WebError": "faceswap_pipeline.web.service",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceswap_pipeline.web' has no attribute {name!r}")
