"""Stage 1b: second opinion on detections (drop dlib HOG's weak false positives).

dlib's HOG detector at its default threshold (0) finds 1 non-face per ~150 photos, and every
detection gets swapped: the bundled demo photo has one (score 0.12, the mission patch), so the
generator paints a face-like texture onto it. :class:`FaceVerifier` asks the cascade's 48-net
(``cascade.48net``, a 48x48 face/non-face CNN trained on this project's data) about each detected
window and drops those it scores below ``threshold``. It runs after the detector and before the
crop, on a few windows per photo (~1 ms per face on one CPU core), so it costs far less than
raising HOG's threshold, which loses real faces.

The window it scores is the cascade's own square, recovered from the HOG-framed box by
:func:`~faceswap_pipeline.ops.framing.cascade_window` (the inverse of the fitted framing
transform stored with the cascade weights), so the net sees faces framed as in training.

Every detection path goes through this one stage: :func:`~faceswap_pipeline.api.load_detector`
returns a :class:`VerifiedDetector` (detector + verifier) for either detector, and
:func:`~faceswap_pipeline.api.load_pipeline`, the ``run`` and ``detect`` commands and the
examples all build their detector with it. So ``fp.load_detector("hog")(image)``, the pipeline
and the CLI give the same faces, and a better second opinion added here reaches all of them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from faceswap_pipeline.ops.framing import IDENTITY_FRAMING, cascade_meta, cascade_window
from faceswap_pipeline.ops.geometry import crop_letterbox
from faceswap_pipeline.stages.base import DetectorStage, ModelStage, stage_settings
from faceswap_pipeline.types import Box, Detection, FaceRecord, ImageRecord

log = logging.getLogger(__name__)

CHECK_MODEL = "facecheck.v1"
"""Manifest name of the face-check net (the second opinion that is not the detector)."""

DEFAULT_THRESHOLD = 0.001
"""Fallback 48-net face probability below which a detection is dropped, for cascade weights that
record no threshold of their own (see :func:`stored_threshold`; the shipped weights record 0.001)."""


def stored_threshold(weights_dir: str | os.PathLike[str] | None = None) -> float:
    """The verify threshold recorded with the cascade weights in use, else :data:`DEFAULT_THRESHOLD`.

    It lives beside the cascade's own thresholds (manifest entry ``cascade.12net``, field
    ``cascade`` -> ``verify_threshold``) because it belongs to that ``cascade.48net``:
    ``benchmarks/bench_verify.py --register`` writes it, as the highest candidate threshold that
    keeps every held-out colour UTKFace face. For the shipped weights: 0.001 (the lowest face
    scores 0.0012, a close-up whose window runs past the photo; the demo's mission patch 2.5e-7).
    """
    return _recorded_threshold(cascade_meta(None if weights_dir is None else str(weights_dir)))


def _recorded_threshold(meta: dict[str, Any]) -> float:
    t = meta.get("verify_threshold")
    return DEFAULT_THRESHOLD if t is None else float(t)


class FaceVerifier(ModelStage):
    """Pipeline stage: keep only detections the 48-net *and* the face-check net call a face.

    Args:
        net: the 48-net (``CascadeNet`` with ``face_prob``), input ``(N, 3, 48, 48)`` float32 RGB
            in [0, 1], output ``(N,)`` face probability.
        framing: the cascade -> HOG framing transform ``{"ax", "ay", "sw", "sh"}``.
        threshold: faces scoring below it are dropped; 0 keeps every face (only scores them).
        device, batch_size: where and how many windows per forward pass.
        check: the second opinion that is *not* the detector: the face-check net
            (``facecheck.v1``, :class:`~faceswap_pipeline.archs.facecheck.FaceCheckNet`, trained on
            colour and grey faces and on both detectors' false positives on colour photos), or None.
        check_threshold: faces whose check probability is below it are dropped.
        check_context: the check window's side relative to the box (:mod:`~faceswap_pipeline.stages.facecheck`).

    The 48-net alone cannot veto the cascade's own detections (it scored them >= 0.99 already);
    the check net sees a larger window at another resolution and was trained on colour negatives.

    As a stage it sets ``face.attributes["face_prob"]`` (48-net) and ``["check_prob"]`` on every
    kept face and removes the rest (logged at INFO with their boxes).
    ``verifier.face_probs(image, boxes)`` / ``verifier.check_probs(image, boxes)`` score boxes directly.
    """

    name = "verify"
    batched = False  # a few windows per image, scored image by image

    def __init__(
        self,
        net: nn.Module,
        framing: dict[str, float] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        check: nn.Module | None = None,
        check_threshold: float = 0.5,
        check_context: float | None = None,
    ) -> None:
        super().__init__(device, batch_size)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        if not 0.0 <= check_threshold < 1.0:
            raise ValueError(f"check_threshold must be in [0, 1), got {check_threshold}")
        self.modules = {"net": net.eval().to(self.device)}
        if check is not None:
            self.modules["check"] = check.eval().to(self.device)
        from faceswap_pipeline.stages.facecheck import DEFAULT_CONTEXT

        self.check_threshold = float(check_threshold)
        self.check_context = float(DEFAULT_CONTEXT if check_context is None else check_context)
        self.check_size = int(getattr(check, "in_size", 64))
        self.framing = dict(framing or IDENTITY_FRAMING)
        self.threshold = float(threshold)
        self.size = int(getattr(net, "in_size", 48))

    @classmethod
    def from_pretrained(
        cls, threshold: float | None = None, device: str | torch.device = "cpu",
        weights_dir: str | os.PathLike[str] | None = None, check: bool = True, **kwargs: Any,
    ) -> FaceVerifier:
        """The verifier with the shipped ``cascade.48net``, the framing stored with the cascade and,
        when the weights hold one and ``check`` is True, the face-check net ``facecheck.v1`` with
        the threshold recorded in its manifest entry (``check`` -> ``threshold``).

        ``threshold`` None: the one recorded with those weights (:func:`stored_threshold`); 0 keeps
        every face (both nets only score them).
        """
        from faceswap_pipeline.weights import has_model, load_model, model_entry

        net = load_model("cascade.48net", weights_dir, device=device)
        meta = cascade_meta(weights_dir)
        if threshold is None:
            threshold = _recorded_threshold(meta)
        if threshold == 0.0:  # 0 keeps every face (only scores them): the check too
            kwargs.setdefault("check_threshold", 0.0)
        if check and has_model(CHECK_MODEL, weights_dir) and "check" not in kwargs:
            entry = model_entry(CHECK_MODEL, weights_dir)
            kwargs["check"] = load_model(CHECK_MODEL, weights_dir, device=device)
            kwargs.setdefault("check_threshold", float(entry.get("check", {}).get("threshold", 0.5)))
            kwargs.setdefault("check_context", float(entry.get("io", {}).get("window", {}).get("context", 1.25)))
        return cls(net, meta.get("framing"), threshold, device, **kwargs)

    def face_probs(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """48-net face probability of HOG-framed ``boxes`` in ``image``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            boxes: ``(x0, y0, x1, y1)`` source pixels, HOG framing.

        Returns:
            ``(len(boxes),)`` float32 in [0, 1].
        """
        if not boxes:
            return np.zeros(0, np.float32)
        crops = torch.stack([crop_letterbox(image, cascade_window(b, self.framing), self.size)[0] for b in boxes])
        net = self.modules["net"]
        with torch.inference_mode():
            p = [net.face_prob(crops[i : i + self.batch_size].to(self.device)).float().cpu() for i in range(0, len(crops), self.batch_size)]
        return torch.cat(p).numpy()

    def check_probs(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """Face-check net probability of ``boxes`` (HOG framing) in ``image``; ones when there is no check net."""
        if "check" not in self.modules:
            return np.ones(len(boxes), np.float32)
        if not boxes:
            return np.zeros(0, np.float32)
        from faceswap_pipeline.stages.facecheck import check_crops

        crops = check_crops(image, boxes, self.check_size, self.check_context)
        net = self.modules["check"]
        with torch.inference_mode():
            p = [net.face_prob(crops[i : i + self.batch_size].to(self.device)).float().cpu() for i in range(0, len(crops), self.batch_size)]
        return torch.cat(p).numpy()

    def process(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        for rec in batch:
            if not rec.faces:
                continue
            boxes = [f.detection.box for f in rec.faces]
            probs = self.face_probs(rec.image, boxes)
            checks = self.check_probs(rec.image, boxes)
            kept = []
            for face, p, c in zip(rec.faces, probs, checks):
                if p >= self.threshold and c >= self.check_threshold:
                    face.attributes["face_prob"] = float(p)
                    if "check" in self.modules:
                        face.attributes["check_prob"] = float(c)
                    kept.append(face)
                else:
                    why = (f"48-net face probability {p:.3g} < {self.threshold:.3g}" if p < self.threshold
                           else f"face-check probability {c:.3g} < {self.check_threshold:.3g}")
                    log.info("%s: dropped detection %s (score %.3f): %s",
                             rec.key or "image", [round(v, 1) for v in face.detection.box], face.detection.score, why)
            rec.faces = kept
        return batch

    def warmup(self) -> None:
        """One forward pass on a blank window (one-off costs before the first photo)."""
        blank, box = np.zeros((self.size, self.size, 3), np.uint8), [(0.0, 0.0, float(self.size), float(self.size))]
        self.face_probs(blank, box)
        self.check_probs(blank, box)

    def __repr__(self) -> str:
        check = f", check_threshold={self.check_threshold:.4g}" if "check" in self.modules else ", check=None"
        return f"FaceVerifier(threshold={self.threshold}{check}, framing={self.framing})"


def resolve_threshold(verify_threshold: float | str | None) -> float | None:
    """Normalise a ``verify_threshold`` argument: ``"auto"`` -> None (the recorded one), None or
    0 -> 0.0 (verification off), a number in [0, 1) -> itself.

    Raises:
        ValueError: any other value.
    """
    if verify_threshold is None:
        return 0.0
    if isinstance(verify_threshold, str):
        if verify_threshold != "auto":
            raise ValueError(f"verify_threshold must be a number in [0, 1), None or 'auto', not {verify_threshold!r}")
        return None
    t = float(verify_threshold)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"verify_threshold must be in [0, 1), got {verify_threshold}")
    return t


class VerifiedDetector(DetectorStage):
    """A face detector followed by the :class:`FaceVerifier`: the one detection path.

    Both detectors go through it (:func:`~faceswap_pipeline.api.load_detector` builds it), so the
    API, the pipeline and the ``run`` / ``detect`` commands report the same faces.

    Args:
        detector: a detection stage (``HogDetector``, ``CascadeDetector`` or your own).
        verifier: the second opinion, or None to keep every detection.

    Calling it works like any detector: ``det(image)`` -> ``list[Detection]`` (verified),
    ``det(list[ImageRecord])`` -> the stage protocol (faces set, ``face_prob`` in their
    attributes). In a :class:`~faceswap_pipeline.pipeline.Pipeline` it runs as its two stages
    (``detect``, ``verify``; see :attr:`stages`), each timed on its own.
    """

    name = "detect"

    def __init__(self, detector: Any, verifier: FaceVerifier | None = None) -> None:
        self.detector = detector
        self.verifier = verifier

    @property
    def stages(self) -> list[Any]:
        """``[detector, verifier]`` (or just the detector when verification is off)."""
        return [self.detector] + ([self.verifier] if self.verifier is not None else [])

    @property
    def batched(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.detector, "batched", False))

    def detect_faces(self, image: np.ndarray) -> list[FaceRecord]:
        """Verified faces of one ``(H, W, 3)`` uint8 RGB image (``face.attributes["face_prob"]`` set)."""
        (rec,) = self([ImageRecord(image=image)])
        return rec.faces

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Verified detections in ``image`` (``(H, W, 3)`` uint8 RGB), highest score first."""
        return [f.detection for f in self.detect_faces(image)]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Verified detections in each image."""
        recs = self([ImageRecord(image=im) for im in images])
        return [[f.detection for f in r.faces] for r in recs]

    def __call__(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return self.detect(x)
        self.detector(x)
        if self.verifier is not None:
            self.verifier(x)
        return x

    def warmup(self) -> None:
        """Warm up the detector and the verifier."""
        for stage in self.stages:
            if callable(getattr(stage, "warmup", None)):
                stage.warmup()

    def settings(self) -> dict[str, Any]:
        """The detector's and the verifier's settings."""
        return {"detector": stage_settings(self.detector),
                "verifier": None if self.verifier is None else stage_settings(self.verifier)}

    def __repr__(self) -> str:
        return f"VerifiedDetector({self.detector!r}, {self.verifier!r})"
