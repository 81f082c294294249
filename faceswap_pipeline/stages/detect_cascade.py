"""Stage 1 (alternative): the CNN cascade face detector (Li et al. 2015), or a sliding-window mode.

``12-net -> 12-cal -> NMS -> 24-net -> 24-cal -> NMS -> 48-net -> NMS -> 48-cal -> global NMS``.

* The 12-net runs fully convolutionally over every level of an image pyramid (scales
  ``12 / min_face * factor**k``), so the first stage is a few convolutions per level, not a loop
  over windows. Images of the same size are stacked and scanned together.
* Later stages crop *all* surviving windows of *all* images of the batch at once
  (:func:`~faceswap_pipeline.ops.windows.crop_windows`, zero padding outside the image) and run
  them through the net in chunks.
* Calibration nets move each window by the probability-weighted mean of the 45 patterns
  (:func:`~faceswap_pipeline.ops.nms.calibrate`).
* ``mode="sliding"`` is the original design's first, exhaustive detector instead: the image resized to a fixed
  width, windows of fixed sizes and strides, one batch through the 48-net, greedy IoU NMS.

Boxes come out in **HOG framing**: the cascade's own window (a square it was trained on) is mapped
by a box transform fitted on UTKFace training faces so that, for the same face, the cascade's box
matches dlib HOG's. The crop stage's per-side factors therefore frame faces the same way whichever
detector ran. The transform is ``cx' = cx + ax w``, ``cy' = cy + ay h``, ``w' = sw w``,
``h' = sh h`` (centre/size, relative to the window), stored in the manifest entry
``cascade.12net`` under ``"cascade" -> "framing"``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pipeline.ops.framing import IDENTITY_FRAMING, apply_framing, cascade_meta, cascade_window  # noqa: F401 - re-exported
from faceswap_pipeline.ops.nms import batched_nms, calibrate
from faceswap_pipeline.ops.windows import (
    crop_windows,
    level_from_octaves,
    level_shape,
    map_windows,
    octave_pyramid,
    pyramid_scales,
)
from faceswap_pipeline.stages.base import DetectorStage
from faceswap_pipeline.types import Detection

log = logging.getLogger(__name__)

MEMBERS = ("12net", "12cal", "24net", "24cal", "48net", "48cal")
SLIDING_WINDOWS = ((48, 16), (72, 24), (144, 48))
"""Seed 001's (window side, stride) pairs on a 512-px-wide image."""


@dataclass
class Candidates:
    """Windows surviving a stage: ``image`` (N,) int64, ``boxes`` (N, 4) xyxy source px, ``scores`` (N,)."""

    image: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor

    def take(self, idx: torch.Tensor) -> Candidates:
        return Candidates(self.image[idx], self.boxes[idx], self.scores[idx])

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def images_to_batch(images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Stack uint8 images (``(H, W, 3)`` RGB, ``(H, W)`` or ``(H, W, 1)`` grey) into one zero-padded batch.

    Returns:
        ``(batch, shapes)``: ``(B, 3, Hmax, Wmax)`` float32 in [0, 1] (zeros right/below each image)
        and each image's ``(H, W)``.
    """
    arrs = []
    for im in images:
        a = np.asarray(im)
        if a.dtype != np.uint8:
            raise ValueError(f"expected uint8 images, got {a.dtype}")
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
            raise ValueError(f"expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got {a.shape}")
        if a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        arrs.append(a[:, :, :3])
    shapes = [(a.shape[0], a.shape[1]) for a in arrs]
    hmax = max(s[0] for s in shapes)
    wmax = max(s[1] for s in shapes)
    batch = torch.zeros((len(arrs), 3, hmax, wmax), dtype=torch.float32, device=device)
    for i, a in enumerate(arrs):
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device)
        batch[i, :, : a.shape[0], : a.shape[1]] = t.permute(2, 0, 1).float() / 255.0
    return batch, shapes


def _chunked(net: nn.Module, x: torch.Tensor, fn: str, chunk: int = 2048) -> torch.Tensor:
    outs = [getattr(net, fn)(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return torch.cat(outs) if outs else x.new_zeros((0,))


def scan12(
    net12: nn.Module,
    batch: torch.Tensor,
    shapes: Sequence[tuple[int, int]],
    min_face: float,
    factor: float,
    threshold: float,
    max_face: float | None = None,
    peaks: int = 5,
    octaves: list[torch.Tensor] | None = None,
) -> tuple[Candidates, torch.Tensor]:
    """Run the 12-net fully convolutionally over the pyramid of every image.

    Images of equal size are scanned together (one conv per level for the whole group). With
    ``peaks`` > 1, only cells that are local maxima of the probability map over a ``peaks`` x
    ``peaks`` neighbourhood are kept (grid NMS within a level: windows 1 cell = 2 level pixels
    apart overlap by IoU 0.71, 2 cells apart by 0.5).

    ``octaves``: ``octave_pyramid(batch, min_side=6)`` if already computed (used when all images
    of the batch have the batch's size, e.g. a single image).

    Returns:
        ``(candidates, level)``: windows with face probability > ``threshold`` and their pyramid
        level index (for per-level NMS).
    """
    dev = batch.device
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(shapes):
        groups.setdefault(tuple(s), []).append(i)
    imgs, boxes, scores, levels = [], [], [], []
    for (h, w), members in groups.items():
        idx = torch.tensor(members, dtype=torch.long, device=dev)
        if octaves is not None and len(members) == batch.shape[0] and (h, w) == tuple(batch.shape[-2:]):
            group_octaves = octaves
        else:
            group_octaves = octave_pyramid(batch[idx, :, :h, :w], min_side=6)
        for k, s in enumerate(pyramid_scales(h, w, min_face, 12, factor, max_face)):
            lh, lw = level_shape(h, w, s)
            if min(lh, lw) < 12:
                continue
            prob = net12.face_prob(level_from_octaves(group_octaves, (lh, lw), (h, w)))  # (b, h', w')
            if prob.dim() == 1:  # a 1 x 1 map comes back flattened
                prob = prob[:, None, None]
            keep = prob > threshold
            if peaks > 1:
                keep &= prob >= F.max_pool2d(prob[:, None], peaks, 1, peaks // 2)[:, 0]
            pos = torch.nonzero(keep)
            if pos.shape[0] == 0:
                continue
            imgs.append(idx[pos[:, 0]])
            boxes.append(map_windows(pos[:, 1:], (lh, lw), (h, w), 12, 2))
            scores.append(prob[pos[:, 0], pos[:, 1], pos[:, 2]])
            levels.append(torch.full((pos.shape[0],), k, dtype=torch.long, device=dev))
    if not boxes:
        z = torch.zeros(0, dtype=torch.long, device=dev)
        return Candidates(z, torch.zeros((0, 4), device=dev), torch.zeros(0, device=dev)), z
    return Candidates(torch.cat(imgs), torch.cat(boxes), torch.cat(scores)), torch.cat(levels)


def refine(
    net: nn.Module | None,
    cal: nn.Module | None,
    pyramid: list[torch.Tensor],
    cand: Candidates,
    size: int,
    threshold: float,
    nms_iou: float | None,
    cal_floor: float,
    cal_before_nms: bool = True,
) -> Candidates:
    """One cascade level on candidate windows: classify, threshold, calibrate, NMS per image.

    The windows are cropped once: the calibration net sees the same crops as the detection net
    (the boxes do not move between the two), so they are indexed, not cropped again.
    """
    if len(cand) == 0:
        return cand
    crops: torch.Tensor | None = None
    if net is not None:
        crops = crop_windows(pyramid, cand.image, cand.boxes, size)
        p = _chunked(net, crops, "face_prob")
        keep = torch.nonzero(p > threshold).squeeze(1)
        cand = Candidates(cand.image[keep], cand.boxes[keep], p[keep])
        crops = crops[keep]
        if len(cand) == 0:
            return cand
    if cal is not None and cal_before_nms:
        cand = _calibrate(cal, pyramid, cand, size, cal_floor, crops)
        crops = None  # the boxes moved
    if nms_iou is not None:
        idx = batched_nms(cand.boxes, cand.scores, cand.image, nms_iou)
        cand = cand.take(idx)
        crops = None if crops is None else crops[idx]
    if cal is not None and not cal_before_nms:
        cand = _calibrate(cal, pyramid, cand, size, cal_floor, crops)
    return cand


def _calibrate(cal: nn.Module, pyramid: list[torch.Tensor], cand: Candidates, size: int, floor: float, crops: torch.Tensor | None = None) -> Candidates:
    if crops is None:
        crops = crop_windows(pyramid, cand.image, cand.boxes, size)
    probs = _chunked(cal, crops, "probs")
    return Candidates(cand.image, calibrate(cand.boxes, probs, floor), cand.scores)


class CascadeDetector(DetectorStage):
    """CNN cascade face detector, a drop-in replacement for :class:`~faceswap_pipeline.stages.detect_hog.HogDetector`.

    Args:
        min_face: smallest face side (source pixels) searched for (sets the first pyramid scale).
        thresholds: face-probability thresholds of the 12-, 24- and 48-net. None: the values stored
            with the shipped weights (chosen on held-out UTKFace training faces), else (0.5, 0.5, 0.7).
        final_threshold: if given, replaces only the 48-net's threshold (the score of the
            detections; the CLI's ``--threshold`` for the cascade), keeping the other two.
        nms: IoU thresholds of the NMS after the 12-, 24- and 48-level and of the final global NMS.
        device: torch device.
        mode: ``"cascade"`` (default) or ``"sliding"`` (exhaustive: fixed windows, one batch, 48-net).
        factor: pyramid scale step (0.709 = two levels per octave).
        max_face: largest face side searched for (None: up to the whole image).
        nets: the six modules keyed ``"12net", "12cal", ...`` (None: load the shipped weights on
            first use).
        framing: cascade window -> HOG framing transform ``{"ax", "ay", "sw", "sh"}`` (None: the
            one stored with the weights, identity if none).
        cal_floor: calibration probability floor (1/45).
        chunk: windows per forward pass in the later stages.
        sliding_width: image width for ``mode="sliding"``.
        sliding_windows: ``(side, stride)`` pairs for ``mode="sliding"``.
        sliding_threshold: 48-net probability threshold for ``mode="sliding"``.
        weights_dir: weights folder for lazy loading (None: the default search order).
        fuse: fold BatchNorm and input normalisation into the convolutions (same outputs, faster).
        peaks: grid-NMS neighbourhood of the 12-net scan (keep cells that are the maximum of their
            ``peaks`` x ``peaks`` neighbourhood within a level; 1 disables it).
        channels_last: run the fused nets in NHWC layout (faster oneDNN convolutions on CPU; same
            outputs up to float rounding). Only with ``fuse``.
        precision: arithmetic of the 24- and 48-level nets (the 12-net scan is always float32):
            ``"fp32"``, ``"bf16"`` (bfloat16 weights and activations, float32 softmax; about
            twice as fast on CPUs with native bf16, probabilities within ~0.02 of float32) or
            ``"auto"``: bf16 on a CPU with native bf16 instructions (AVX512-BF16 / AMX), with
            ``fuse``, else fp32. Only fused nets are cast.

    ``detect(image)`` takes ``(H, W, 3)`` uint8 RGB (or greyscale ``(H, W)``) and returns
    :class:`Detection` boxes ``(x0, y0, x1, y1)`` in source pixels, HOG framing, score = 48-net
    face probability in [0, 1], highest first.
    """

    name = "detect"
    batched = True  # all windows of all images of a batch go through the nets together

    def __init__(
        self,
        min_face: float = 24,
        thresholds: Sequence[float] | None = None,
        nms: Sequence[float] = (0.5, 0.5, 0.5, 0.3),
        device: str | torch.device = "cpu",
        mode: str = "cascade",
        factor: float = 0.709,
        max_face: float | None = None,
        nets: dict[str, nn.Module] | None = None,
        framing: dict[str, float] | None = None,
        cal_floor: float = 1.0 / 45,
        chunk: int = 2048,
        sliding_width: int = 512,
        sliding_windows: Sequence[tuple[int, int]] = SLIDING_WINDOWS,
        sliding_threshold: float = 0.5,
        weights_dir: str | None = None,
        fuse: bool = True,
        peaks: int = 5,
        channels_last: bool = True,
        precision: str = "auto",
        final_threshold: float | None = None,
    ) -> None:
        if mode not in ("cascade", "sliding"):
            raise ValueError(f"mode must be 'cascade' or 'sliding', not {mode!r}")
        self.min_face = float(min_face)
        self._thresholds = None if thresholds is None else tuple(float(t) for t in thresholds)
        if final_threshold is not None and not 0.0 <= float(final_threshold) < 1.0:
            raise ValueError(f"final_threshold must be in [0, 1), got {final_threshold}")
        self.final_threshold = None if final_threshold is None else float(final_threshold)
        self.nms = tuple(float(t) for t in nms)
        if len(self.nms) != 4:
            raise ValueError(f"nms needs 4 IoU thresholds (12, 24, 48, global), got {nms}")
        self.device = torch.device(device)
        self.mode = mode
        self.factor = float(factor)
        self.max_face = max_face
        self.cal_floor = float(cal_floor)
        self.chunk = int(chunk)
        self.sliding_width = int(sliding_width)
        self.sliding_windows = tuple((int(a), int(b)) for a, b in sliding_windows)
        self.sliding_threshold = float(sliding_threshold)
        self.weights_dir = weights_dir
        self.fuse = bool(fuse)
        self.peaks = int(peaks)
        self.channels_last = bool(channels_last)
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r}")
        self.precision = precision
        self._framing = framing
        self.meta: dict[str, Any] = {}
        self.nets: dict[str, nn.Module] | None = None
        if nets is not None:
            self._set_nets(nets)

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, device: str | torch.device = "cpu", weights_dir: str | None = None, **kwargs: Any) -> CascadeDetector:
        """The detector with the six shipped nets (``cascade.12net`` ... ``cascade.48cal``).

        Thresholds and the HOG-framing transform default to those stored in the manifest entry
        ``cascade.12net`` (field ``"cascade"``); keyword arguments override any constructor argument.
        """
        det = cls(device=device, weights_dir=weights_dir, **kwargs)
        det._load()
        return det

    def _load(self) -> None:
        from faceswap_pipeline.weights import load_model

        nets = {m: load_model(f"cascade.{m}", self.weights_dir, device=self.device) for m in MEMBERS}
        self.meta = cascade_meta(self.weights_dir)
        self._set_nets(nets)

    def _set_nets(self, nets: dict[str, nn.Module]) -> None:
        from faceswap_pipeline.archs.cascade import CascadeNet, fuse

        self.nets = {}
        for k, v in nets.items():
            if v is None:
                continue
            v = v.eval()
            if self.fuse and isinstance(v, CascadeNet) and any(isinstance(m, nn.BatchNorm2d) for m in v.modules()):
                v = fuse(v, channels_last=self.channels_last)
                if k[:2] in ("24", "48") and self.window_dtype == torch.bfloat16:
                    v = v.to(torch.bfloat16)
            self.nets[k] = v.to(self.device).eval()

    @property
    def window_dtype(self) -> torch.dtype:
        """dtype of the fused 24/48-level nets (see ``precision``)."""
        if self.precision == "bf16":
            return torch.bfloat16
        if self.precision == "auto" and self.device.type == "cpu":
            from faceswap_pipeline.archs.cascade import native_bf16

            return torch.bfloat16 if native_bf16() else torch.float32
        return torch.float32

    def _ensure(self) -> dict[str, nn.Module]:
        if self.nets is None:
            self._load()
        assert self.nets is not None
        return self.nets

    @property
    def thresholds(self) -> tuple[float, float, float]:
        """The 12-, 24- and 48-net thresholds in use (see ``thresholds`` and ``final_threshold``)."""
        if self._thresholds is not None:
            t = self._thresholds
        else:
            stored = self.meta.get("thresholds")
            t = tuple(float(x) for x in stored) if stored else (0.5, 0.5, 0.7)
        if self.final_threshold is not None:
            t = (t[0], t[1], self.final_threshold)
        return t  # type: ignore[return-value]

    @property
    def framing(self) -> dict[str, float]:
        if self._framing is not None:
            return self._framing
        return dict(self.meta.get("framing", IDENTITY_FRAMING))

    def to(self, device: str | torch.device) -> CascadeDetector:
        """Move the nets to ``device``; returns self."""
        self.device = torch.device(device)
        if self.nets is not None:
            for m in self.nets.values():
                m.to(self.device)
        return self

    # ----- detection ----------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (``(H, W, 3)`` uint8 RGB or ``(H, W)`` grey), highest score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image of a batch (all windows of all images go through the nets together)."""
        if len(images) == 0:
            return []
        with torch.inference_mode():
            batch, shapes = images_to_batch(images, self.device)
            cand = self.raw_detect(batch, shapes)
            boxes = apply_framing(cand.boxes, self.framing)
        return _to_detections(cand.image, boxes, cand.scores, len(images))

    def raw_detect(self, batch: torch.Tensor, shapes: Sequence[tuple[int, int]], stages: int = 3) -> Candidates:
        """Cascade windows (the net's own square framing, before the HOG-framing transform).

        Args:
            batch: ``(B, 3, H, W)`` float32 in [0, 1], images zero-padded to a common size.
            shapes: each image's ``(H, W)``.
            stages: run only the first 1, 2 or 3 levels (used by hard-negative mining).
        """
        nets = self._ensure()
        if self.mode == "sliding":
            return self._sliding(nets, batch, shapes)
        t12, t24, t48 = self.thresholds
        oct6 = octave_pyramid(batch, min_side=6)
        cand, _ = scan12(nets["12net"], batch, shapes, self.min_face, self.factor, t12, self.max_face, self.peaks, oct6)
        # octave_pyramid(batch) (min_side 8) is a prefix of the min_side 6 one: no second pass
        pyr = [oct6[0]] + [lv for lv in oct6[1:] if min(lv.shape[-2:]) >= 8]
        cand = refine(None, nets.get("12cal"), pyr, cand, 12, 0.0, self.nms[0], self.cal_floor)
        if stages >= 2:
            cand = refine(nets.get("24net"), nets.get("24cal"), pyr, cand, 24, t24, self.nms[1], self.cal_floor)
        if stages >= 3:
            cand = refine(nets.get("48net"), nets.get("48cal"), pyr, cand, 48, t48, self.nms[2], self.cal_floor, cal_before_nms=False)
            if len(cand):
                cand = cand.take(batched_nms(cand.boxes, cand.scores, cand.image, self.nms[3]))
        return cand

    def _sliding(self, nets: dict[str, nn.Module], batch: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> Candidates:
        """Seed 001: fixed windows/strides on a ``sliding_width``-wide copy, one batch, IoU NMS."""
        dev = batch.device
        imgs, boxes = [], []
        for i, (h, w) in enumerate(shapes):
            f = w / self.sliding_width  # source px per resized px
            hh = h / f
            for side, stride in self.sliding_windows:
                xs = torch.arange(0, max(self.sliding_width - side, 0) + 1, stride, device=dev, dtype=torch.float32)
                ys = torch.arange(0, max(hh - side, 0) + 1, stride, device=dev, dtype=torch.float32)
                gy, gx = torch.meshgrid(ys, xs, indexing="ij")
                b = torch.stack([gx, gy, gx + side, gy + side], -1).reshape(-1, 4) * f
                boxes.append(b)
                imgs.append(torch.full((b.shape[0],), i, dtype=torch.long, device=dev))
        cand = Candidates(torch.cat(imgs), torch.cat(boxes), torch.zeros(sum(b.shape[0] for b in boxes), device=dev))
        pyr = octave_pyramid(batch)
        return refine(nets["48net"], None, pyr, cand, 48, self.sliding_threshold, 0.3, self.cal_floor)

    # ----- stage protocol -----------------------------------------------------------------
    def work(self, rec: Any) -> float:
        """An image's share of a batch's detection work: its pixel count."""
        return float(rec.image.shape[0] * rec.image.shape[1])

    def warmup(self) -> None:
        """Load the nets (if not yet) and run them once on a blank image."""
        self.detect(np.zeros((64, 64, 3), np.uint8))

    def settings(self) -> dict[str, Any]:
        """What changes the detections: thresholds, pyramid, NMS, framing and a digest of each net."""
        from faceswap_pipeline.stages.base import module_digest

        nets = self._ensure()
        return {
            "class": "CascadeDetector", "mode": self.mode, "min_face": self.min_face, "max_face": self.max_face,
            "factor": self.factor, "thresholds": list(self.thresholds), "nms": list(self.nms), "peaks": self.peaks,
            "framing": dict(sorted(self.framing.items())), "models": {k: module_digest(m) for k, m in sorted(nets.items())},
        }

    def __repr__(self) -> str:
        return (
            f"CascadeDetector(min_face={self.min_face}, thresholds={self.thresholds}, nms={self.nms}, "
            f"mode={self.mode!r}, device={str(self.device)!r})"
        )


def _to_detections(image: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor, n: int) -> list[list[Detection]]:
    out: list[list[Detection]] = [[] for _ in range(n)]
    im = image.cpu().tolist()
    bx = boxes.float().cpu().tolist()
    sc = scores.float().cpu().tolist()
    for i, b, s in zip(im, bx, sc):
        out[i].append(Detection(box=(b[0], b[1], b[2], b[3]), score=float(s)))
    for lst in out:
        lst.sort(key=lambda d: -d.score)
    return out


__all__ = ["Candidates", "CascadeDetector", "MEMBERS", "apply_framing", "images_to_batch", "refine", "scan12"]
