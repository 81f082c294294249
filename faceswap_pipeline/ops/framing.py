"""The cascade detector's box framing: its square window <-> HOG-framed boxes.

The cascade's boxes are mapped by a centre/size transform fitted on UTKFace training faces
(``cx' = cx + ax w``, ``cy' = cy + ay h``, ``w' = sw w``, ``h' = sh h``) so that, for the same face,
they match dlib HOG's; the transform is stored in the manifest entry ``cascade.12net`` under
``"cascade" -> "framing"`` (:func:`cascade_meta`). The detector applies it, the verifier inverts it.
"""

from __future__ import annotations

from typing import Any

import torch

IDENTITY_FRAMING = {"ax": 0.0, "ay": 0.0, "sw": 1.0, "sh": 1.0}
"""The framing that leaves the cascade's windows as they are."""


def apply_framing(boxes: torch.Tensor, framing: dict[str, float]) -> torch.Tensor:
    """Map ``(N, 4)`` cascade windows to HOG framing with the fitted centre/size transform."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = boxes[:, 2:] - boxes[:, :2]
    cx = c[:, 0] + framing["ax"] * wh[:, 0]
    cy = c[:, 1] + framing["ay"] * wh[:, 1]
    w = framing["sw"] * wh[:, 0]
    h = framing["sh"] * wh[:, 1]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def cascade_window(box: tuple[float, float, float, float], framing: dict[str, float]) -> tuple[float, float, float, float]:
    """Inverse of :func:`apply_framing` for one box: a HOG-framed box -> the cascade's square window.

    The result is made square (side = the longer of the un-scaled ``w`` and ``h``).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w = (x1 - x0) / framing["sw"]
    h = (y1 - y0) / framing["sh"]
    cx = (x0 + x1) / 2 - framing["ax"] * w
    cy = (y0 + y1) / 2 - framing["ay"] * h
    s = max(w, h)
    return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)


def cascade_meta(weights_dir: str | None = None) -> dict[str, Any]:
    """The cascade's stored settings (``thresholds``, ``framing``): manifest entry ``cascade.12net``, field ``cascade``."""
    from faceswap_pipeline.weights import model_entry

    return dict(model_entry("cascade.12net", weights_dir).get("cascade", {}))


__all__ = ["IDENTITY_FRAMING", "apply_framing", "cascade_meta", "cascade_window"]
