"""Super-resolution stage: upscale translated 128 px faces before they are pasted back, and whole images.

Two entry points:

* :class:`SRUpscaler` — the pipeline stage. After translation each :class:`FaceRecord` holds
  ``output`` (3, 128, 128) float32 in [0, 1] (a letterboxed square) and ``transform``, whose
  ``crop_size`` is the region it will be pasted into. Per face, from the paste size
  ``max(crop_size)``: <= ``sr_above`` (128) -> left as is (small faces cost nothing);
  <= 256 (twice the generator's 128 px) -> x2 if an x2 model is loaded, else x4; larger -> x4. The stage replaces
  ``output`` by the (3, k*128, k*128) square and appends ``"upscale:x4"`` (or ``x2``) to
  ``actions``; the blend stage then does the exact resize to the crop size via
  :func:`~faceswap_pipeline.ops.geometry.content_of`.
* :class:`ImageUpscaler` — any photo, uint8 in, uint8 out, tiled with overlap
  (:func:`~faceswap_pipeline.ops.tiling.upscale_tiled`) so large images fit in memory with no seams.

Both accept ``model="resize"``: no network, antialiased bicubic
(:func:`~faceswap_pipeline.ops.geometry.resize`) — a baseline that needs no weights. In the
pipeline stage, resize mode leaves ``output`` at 128 px (the blend stage's exact resize *is* the
bicubic upscale) and records ``"upscale:resize"`` on faces above ``sr_above``.

The SR networks' raw outputs are clamped to [0, 1] here (the architecture does not clamp).

Precision: ``bf16="auto"`` (the default) runs the networks under bf16 autocast on CUDA and on
CPUs with native bf16 instructions (AVX512-BF16 / AMX, :func:`faceswap_pipeline.machine.native_bf16`),
and in float32 elsewhere (emulated bf16 is slower than float32); ``True`` / ``False`` force it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from faceswap_pipeline.ops.geometry import resize
from faceswap_pipeline.ops.tiling import upscale_tiled
from faceswap_pipeline.stages.base import ModelStage, for_chunks
from faceswap_pipeline.types import ImageRecord

log = logging.getLogger(__name__)

RESIZE = "resize"
"""Model name of the weight-free antialiased-bicubic mode."""


def choose_scale(paste_size: float, sr_above: int = 128, have_x2: bool = False, face_size: int = 128) -> int:
    """SR factor for a face that will be pasted at ``paste_size`` px (its larger side).

    Args:
        paste_size: ``max(transform.crop_size)``, the side of the region in the source photo.
        sr_above: faces pasted larger than this are super-resolved; at or below it no SR is done (1).
        have_x2: whether an x2 model is available.
        face_size: side of the square the generator produced (128).

    Returns:
        1, 2 or 4: 1 when ``paste_size <= sr_above``; 2 when ``paste_size <= 2 * face_size`` and
        ``have_x2``; 4 otherwise.

    Example:
        >>> choose_scale(100), choose_scale(200), choose_scale(200, have_x2=True), choose_scale(600)
        (1, 4, 2, 4)
    """
    if paste_size <= sr_above:
        return 1
    if have_x2 and paste_size <= 2 * face_size:
        return 2
    return 4


def resolve_bf16(bf16: bool | str, device: str | torch.device) -> bool:
    """``True`` / ``False``, or ``"auto"`` (bf16 on CUDA and native-bf16 CPUs; see :func:`~faceswap_pipeline.machine.resolve_amp`)."""
    if isinstance(bf16, str):
        from faceswap_pipeline.machine import resolve_amp

        return resolve_amp({"auto": "auto", "bf16": "bf16", "none": "none", "fp32": "none"}.get(bf16, bf16), torch.device(device).type)
    return bool(bf16)


def _run(model: nn.Module, x: torch.Tensor, bf16: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Network output clamped to [0, 1] (float32); ``bf16`` runs it under bf16 autocast."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        y = model(x)
    return y.float().contiguous().clamp_(0.0, 1.0)


class SRUpscaler(ModelStage):
    """Pipeline stage that super-resolves translated faces when they will be pasted large.

    Args:
        model: an SR network (``(B, 3, h, w)`` in [0, 1] -> ``(B, 3, 4h, 4w)``), or ``"resize"``.
        device: where the network runs.
        batch_size: faces per forward pass (a 128 px face needs ~0.3 GB of activations at x4).
        sr_above: faces pasted larger than this many px are super-resolved (at or below: no SR).
        model_x2: optional x2 network, used for paste sizes in ``(sr_above, 256]``.
        bf16: bf16 autocast: ``"auto"`` (default: on CUDA and native-bf16 CPUs), True or False
            (measured speed and quality in ``docs/benchmarks/sr.md``).
        channels_last: run the networks in channels-last memory format (default: on; ~10-15 %
            faster with bf16 on this project's CPU, ``docs/benchmarks/sr.md``).

    Shape:
        ``face.output``: (3, 128, 128) float32 in [0, 1] -> (3, k*128, k*128), k in {1, 2, 4}.
    """

    name = "upscale"

    def __init__(
        self,
        model: nn.Module | str,
        device: str | torch.device = "cpu",
        batch_size: int = 4,
        sr_above: int = 128,
        model_x2: nn.Module | None = None,
        bf16: bool | str = "auto",
        channels_last: bool = True,
    ) -> None:
        super().__init__(device, batch_size)
        self.sr_above = int(sr_above)
        self.bf16 = resolve_bf16(bf16, self.device)
        self.channels_last = bool(channels_last)
        self.resize_only = isinstance(model, str)
        if self.resize_only and model != RESIZE:
            raise ValueError(f"model must be an nn.Module or {RESIZE!r}, not {model!r}")
        if not self.resize_only:
            self.modules["x4"] = model.eval()
        if model_x2 is not None:
            self.modules["x2"] = model_x2.eval()
        self.to(self.device)
        if self.channels_last:
            for m in self.modules.values():
                m.to(memory_format=torch.channels_last)

    @classmethod
    def from_pretrained(
        cls,
        name: str = "srresnet.x4",
        device: str | torch.device = "cpu",
        weights_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 4,
        sr_above: int = 128,
        x2_name: str | None = "srresnet.x2",
        bf16: bool | str = "auto",
        channels_last: bool = True,
    ) -> SRUpscaler:
        """Load shipped weights (sha256-verified); ``name="resize"`` needs none.

        ``x2_name`` is loaded too when the manifest has it (otherwise x4 serves every large face).
        """
        if name == RESIZE:
            return cls(RESIZE, device, batch_size, sr_above, bf16=bf16)
        from faceswap_pipeline.weights import has_model, load_model

        model = load_model(name, weights_dir=weights_dir, device=device)
        x2 = load_model(x2_name, weights_dir=weights_dir, device=device) if x2_name and has_model(x2_name, weights_dir) else None
        return cls(model, device, batch_size, sr_above, model_x2=x2, bf16=bf16, channels_last=channels_last)

    def scale_for(self, paste_size: float) -> int:
        """The factor this stage applies to a face pasted at ``paste_size`` px (see :func:`choose_scale`)."""
        return choose_scale(paste_size, self.sr_above, have_x2="x2" in self.modules)

    def work(self, rec: ImageRecord) -> float:
        """An image's share of a batch's SR work: output pixels of its super-resolved faces (in units of a 128 px face)."""
        if self.resize_only:
            return 0.0
        return float(sum(self.scale_for(max(f.transform.crop_size)) ** 2 for f in rec.faces
                         if f.output is not None and f.transform is not None and self.scale_for(max(f.transform.crop_size)) > 1))

    def warmup(self, size: int = 128) -> None:
        """One forward pass per SR network on a blank ``size`` px face (one-off costs up front)."""
        x = torch.zeros((1, 3, size, size), device=self.device)
        with torch.inference_mode():
            for net in self.modules.values():
                _run(net, x, self.bf16, self.channels_last)

    def process(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        jobs: dict[int, list[Any]] = {2: [], 4: []}
        for rec in batch:
            for face in rec.faces:
                if face.output is None or face.transform is None:
                    continue
                k = self.scale_for(max(face.transform.crop_size))
                if k == 1:
                    continue
                if self.resize_only:
                    face.actions.append("upscale:resize")
                    continue
                jobs[k].append(face)
        for k, faces in jobs.items():
            net = self.modules.get(f"x{k}")

            def run(chunk: list, net: Any = net, k: int = k) -> None:
                x = torch.stack([f.output for f in chunk]).to(self.device, torch.float32)
                y = _run(net, x, self.bf16, self.channels_last)
                for f, out in zip(chunk, y):
                    f.output = out.to(f.output.device)
                    f.actions.append(f"upscale:x{k}")

            for_chunks(self, faces, run)
        return batch

    def settings(self) -> dict[str, Any]:
        """What changes which faces are upscaled and how: the models (weight digests) and ``sr_above``.

        Precision and memory layout (``bf16``, ``channels_last``) are left out: they change
        results by rounding only, and a resumed run on another machine may differ in them.
        """
        from faceswap_pipeline.stages.base import module_digest

        return {"class": "SRUpscaler", "sr_above": self.sr_above,
                "models": RESIZE if self.resize_only else {k: module_digest(m) for k, m in sorted(self.modules.items())}}

    def __repr__(self) -> str:
        models = RESIZE if self.resize_only else "+".join(sorted(self.modules))
        return f"SRUpscaler({models}, sr_above={self.sr_above}, bf16={self.bf16}, device={self.device}, batch_size={self.batch_size})"


class ImageUpscaler:
    """Upscale whole photos: tiled SR (no seams, bounded memory) or plain antialiased bicubic.

    Args:
        model: an SR network, or ``"resize"``.
        device: where the network runs.
        tile: LR tile side for tiled inference.
        overlap: minimum LR pixels shared by neighbouring tiles (24 keeps SRResNet within 1/255 of untiled).
        scale: the factor; taken from ``model.scale`` for a network, required (default 4) for resize.
        bf16: bf16 autocast: ``"auto"`` (default: on CUDA and native-bf16 CPUs), True or False.

    Example:
        >>> up = ImageUpscaler("resize", scale=2)
        >>> up(np.zeros((10, 20, 3), np.uint8)).shape
        (20, 40, 3)
    """

    name = "image_upscale"

    def __init__(
        self,
        model: nn.Module | str,
        device: str | torch.device = "cpu",
        tile: int = 128,
        overlap: int = 24,
        scale: int | None = None,
        bf16: bool | str = "auto",
    ) -> None:
        self.device = torch.device(device)
        self.bf16 = resolve_bf16(bf16, self.device)
        self.tile, self.overlap = int(tile), int(overlap)
        if isinstance(model, str):
            if model != RESIZE:
                raise ValueError(f"model must be an nn.Module or {RESIZE!r}, not {model!r}")
            self.model: nn.Module | None = None
            self.scale = int(scale or 4)
        else:
            self.model = model.eval().to(self.device)
            self.scale = int(getattr(model, "scale", scale or 4))
            if scale is not None and scale != self.scale:
                raise ValueError(f"the model upscales x{self.scale}, not x{scale}")

    @classmethod
    def resize(cls, scale: int = 4) -> ImageUpscaler:
        """The weight-free upscaler: antialiased bicubic by ``scale`` (same as ``ImageUpscaler("resize", scale=scale)``)."""
        return cls(RESIZE, "cpu", scale=scale)

    @classmethod
    def from_pretrained(
        cls,
        name: str = "srresnet.x4",
        device: str | torch.device = "cpu",
        weights_dir: str | os.PathLike[str] | None = None,
        tile: int = 128,
        overlap: int = 24,
        bf16: bool | str = "auto",
    ) -> ImageUpscaler:
        """Load shipped weights (sha256-verified); ``name="resize"`` gives the bicubic x4 upscaler."""
        if name == RESIZE:
            return cls(RESIZE, device, tile, overlap)
        from faceswap_pipeline.weights import load_model

        return cls(load_model(name, weights_dir=weights_dir, device=device), device, tile, overlap, bf16=bf16)

    def settings(self) -> dict[str, Any]:
        """What changes the output: the model (a digest of its weights, or ``"resize"``) and the scale.

        Tile, overlap and precision are left out: they change results by rounding only.
        """
        from faceswap_pipeline.stages.base import module_digest

        return {"class": "ImageUpscaler", "model": RESIZE if self.model is None else module_digest(self.model),
                "scale": self.scale}

    def upscale_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (1, 3, H, W) float32 in [0, 1] -> (1, 3, sH, sW) float32 in [0, 1]."""
        x = x.to(self.device, torch.float32)
        if self.model is None:
            return resize(x, (x.shape[-2] * self.scale, x.shape[-1] * self.scale), "bicubic")
        model = self.model
        with torch.inference_mode():
            return upscale_tiled(lambda t: _run(model, t, self.bf16), x, self.scale, self.tile, self.overlap).clamp_(0.0, 1.0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Upscale one photo.

        Args:
            image: (H, W, 3) uint8 RGB (a grey (H, W) image is expanded to 3 channels).

        Returns:
            (scale*H, scale*W, 3) uint8 RGB.
        """
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(image[:, :, :3])).permute(2, 0, 1)[None].float().div_(255.0)
        y = self.upscale_tensor(x)
        return (y[0].permute(1, 2, 0).mul(255.0).round_().clamp_(0, 255)).to(torch.uint8).cpu().numpy()
