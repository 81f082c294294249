"""Degradation model for SR training: LR inputs that look like what the SR stage is fed.

The SR stage never sees clean bicubic-downscaled faces: it gets the CycleGAN generator's 128 px
output, made from a face cut out of a JPEG photo and resized, and carrying the generator's soft
texture and its 2-px checkerboard. Training on bicubic LR only teaches the network to sharpen
whatever it gets, dots included. This module makes LR images the way BSRGAN (Zhang et al. 2021)
and Real-ESRGAN (Wang et al. 2021) do: a random chain of

* **blur**: isotropic or anisotropic, rotated Gaussian kernels (kornia
  ``get_gaussian_kernel2d`` + ``geometry.rotate``, applied with ``filters.filter2d``),
* **resize**: an intermediate resize with a random method (``area``, ``bilinear``, ``bicubic``;
  antialiased), the final one to the LR size with a random method too,
* **noise**: Gaussian, colour or grey,
* **JPEG**: a real JPEG round trip (PIL) at a random quality,

in a random order, then optionally a **grid**: a faint 2-px (or 4-px) checkerboard or stripe
pattern added in LR pixels, modulated by the local brightness (the kind of artefact transposed
convolutions leave), and 8-bit quantisation. A share of samples stays clean (antialiased bicubic
only), so PSNR on clean inputs is still trained. The HR target is never changed: the network
learns to return the clean image.

:class:`GeneratorLR` adds the real thing: the shipped CycleGAN generators run on the downscaled
face, their output is the LR input, and the HR target keeps the HR face's detail with the
generator's low-frequency change (tone, shape) moved onto it, so the network is not taught to
undo the swap. It is an augmentation (the content is not exactly paired).

Every random choice comes from a ``numpy.random.Generator`` the caller owns (the trainer
checkpoints it), so a run is reproducible and resumable bit-exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass
class DegradeConfig:
    """Probabilities and ranges of the degradation chain (defaults: a mild, face-pipeline mix)."""

    clean_prob: float = 0.3  # share of samples with plain antialiased bicubic LR
    blur_prob: float = 0.7
    blur_sigma: tuple[float, float] = (0.2, 0.6)  # Gaussian sigma range, in units of the scale factor (HR px / scale)
    aniso_prob: float = 0.4  # share of blurs with two different sigmas, rotated
    resize_prob: float = 0.5  # intermediate resize (to a random size between LR and HR)
    noise_prob: float = 0.4
    noise_sigma: tuple[float, float] = (1.0, 8.0)  # Gaussian noise std, grey levels (0-255)
    grey_noise_prob: float = 0.4
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 95)
    grid_prob: float = 0.3  # add a faint 2-/4-px grid in LR pixels after the chain
    grid_amp: tuple[float, float] = (0.5, 4.0)  # grid amplitude, grey levels (0-255), times local brightness
    shuffle: bool = True  # random order of blur / resize / noise / JPEG

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def gaussian_kernel(sigma_xy: tuple[float, float], angle_deg: float, size: int | None = None) -> torch.Tensor:
    """A normalised (possibly anisotropic, rotated) Gaussian blur kernel, ``(1, k, k)`` float32.

    Built with kornia: ``get_gaussian_kernel2d`` for the axis-aligned kernel, ``rotate`` to turn it.
    """
    from kornia.filters import get_gaussian_kernel2d
    from kornia.geometry.transform import rotate

    sx, sy = (max(1e-3, float(s)) for s in sigma_xy)
    if size is None:
        size = 2 * int(np.ceil(3 * max(sx, sy))) + 1
    k = get_gaussian_kernel2d((size, size), torch.tensor([[sy, sx]], dtype=torch.float32))
    if angle_deg:
        k = rotate(k[:, None], torch.tensor([float(angle_deg)]), mode="bilinear", align_corners=True)[:, 0]
    return k / k.sum(dim=(-2, -1), keepdim=True)


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve ``(1, C, H, W)`` with a ``(1, k, k)`` kernel, reflect borders (kornia ``filter2d``)."""
    from kornia.filters import filter2d

    k = kernel.shape[-1]
    if k // 2 >= min(img.shape[-2:]):  # reflect padding needs the image larger than the radius
        img = F.pad(img, [k // 2] * 4, mode="replicate")
        return filter2d(img, kernel, border_type="replicate")[..., k // 2 : -(k // 2), k // 2 : -(k // 2)]
    return filter2d(img, kernel, border_type="reflect")


def resize_to(img: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``hw`` with ``mode`` (area | bilinear | bicubic, antialiased), clamped to [0, 1]."""
    if tuple(img.shape[-2:]) == tuple(hw):
        return img
    if mode == "area":
        out = F.interpolate(img, size=hw, mode="area") if hw[0] <= img.shape[-2] else F.interpolate(
            img, size=hw, mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(img, size=hw, mode=mode, align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """A real JPEG round trip (PIL, 4:2:0) of a ``(1, 3, H, W)`` image in [0, 1] at ``quality``."""
    from faceswap_pipeline.train.packs import decode_jpeg, encode_jpeg

    u8 = (img[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    back = decode_jpeg(encode_jpeg(u8, quality=int(quality)))
    return torch.from_numpy(back.copy()).permute(2, 0, 1)[None].float().div_(255.0)


def grid_pattern(h: int, w: int, kind: str, period: int = 2) -> torch.Tensor:
    """``(1, 1, h, w)`` zero-mean +-1 pattern: ``checker``, ``rows`` or ``cols`` with ``period`` px."""
    yy = (torch.arange(h) // (period // 2)) % 2
    xx = (torch.arange(w) // (period // 2)) % 2
    if kind == "checker":
        p = (yy[:, None] + xx[None, :]) % 2
    elif kind == "rows":
        p = yy[:, None].expand(h, w)
    elif kind == "cols":
        p = xx[None, :].expand(h, w)
    else:
        raise ValueError(f"unknown grid kind {kind!r}")
    return (p.float() * 2.0 - 1.0)[None, None]


def quantise(img: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits (values stay float in [0, 1])."""
    return torch.round(img.clamp(0.0, 1.0) * 255.0) / 255.0


def degrade_one(hr: torch.Tensor, scale: int, cfg: DegradeConfig, rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
    """LR image of one HR image through a random degradation chain.

    Args:
        hr: ``(1, 3, H, W)`` float in [0, 1], H and W multiples of ``scale``.
        scale: SR factor; the LR is ``(H / scale, W / scale)``.
        cfg: probabilities and ranges.
        rng: all random choices come from it.

    Returns:
        ``(lr, ops)``: ``(1, 3, H/scale, W/scale)`` 8-bit-quantised float, and the names of the
        operations applied in order (for logs and tests).
    """
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {(h, w)} is not a multiple of {scale}")
    lr_hw = (h // scale, w // scale)
    if rng.random() < cfg.clean_prob:
        return quantise(resize_to(hr, lr_hw, "bicubic")), ["clean"]
    steps = []
    if rng.random() < cfg.blur_prob:
        steps.append("blur")
    if rng.random() < cfg.resize_prob:
        steps.append("resize")
    if rng.random() < cfg.noise_prob:
        steps.append("noise")
    if rng.random() < cfg.jpeg_prob:
        steps.append("jpeg")
    if cfg.shuffle:
        steps = [steps[i] for i in rng.permutation(len(steps))]
    x, ops = hr, []
    for op in steps:
        if op == "blur":
            cur = x.shape[-1] / lr_hw[1]  # blur sigma is given per LR pixel; scale it to the current size
            s1 = _uniform(rng, cfg.blur_sigma) * cur
            s2 = _uniform(rng, cfg.blur_sigma) * cur if rng.random() < cfg.aniso_prob else s1
            ang = float(rng.uniform(0, 180)) if s1 != s2 else 0.0
            x = blur(x, gaussian_kernel((s1, s2), ang))
            ops.append(f"blur({s1:.2f},{s2:.2f},{ang:.0f})")
        elif op == "resize":
            f = float(rng.uniform(1.0 / scale, 1.0))
            hw = (max(lr_hw[0], round(h * f)), max(lr_hw[1], round(w * f)))
            mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
            x = resize_to(x, hw, mode)
            ops.append(f"resize({hw[1]}x{hw[0]},{mode})")
        elif op == "noise":
            sd = _uniform(rng, cfg.noise_sigma) / 255.0
            g = torch.Generator().manual_seed(int(rng.integers(2**31)))
            shape = (1, 1, *x.shape[-2:]) if rng.random() < cfg.grey_noise_prob else tuple(x.shape)
            x = (x + sd * torch.randn(shape, generator=g)).clamp(0.0, 1.0)
            ops.append(f"noise({sd * 255:.1f})")
        elif op == "jpeg":
            q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            x = jpeg(x, q)
            ops.append(f"jpeg({q})")
    mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
    x = resize_to(x, lr_hw, mode)
    ops.append(f"final({mode})")
    if rng.random() < cfg.grid_prob:
        kind = ("checker", "rows", "cols")[int(rng.integers(3))]
        period = 2 if rng.random() < 0.75 else 4
        amp = _uniform(rng, cfg.grid_amp) / 255.0
        x = x + amp * (0.5 + x.mean(1, keepdim=True)) * grid_pattern(*lr_hw, kind, period)
        ops.append(f"grid({kind},{period},{amp * 255:.1f})")
    return quantise(x), ops


def degrade_batch(hr: torch.Tensor, scale: int, cfg: DegradeConfig, rng: np.random.Generator) -> torch.Tensor:
    """:func:`degrade_one` on each image of ``(B, 3, H, W)`` -> ``(B, 3, H/scale, W/scale)``."""
    return torch.cat([degrade_one(hr[i : i + 1], scale, cfg, rng)[0] for i in range(len(hr))])


class GeneratorLR:
    """LR inputs from the shipped CycleGAN generators (an augmentation of the SR training data).

    For a 128 px training face ``hr`` (a pack crop, the generator's framing): ``lr0`` = ``hr``
    shrunk by ``scale`` (antialiased bicubic), ``g`` = the generator of the face's gender run on
    ``lr0`` (its 2-px checkerboard and soft texture are then at LR pixels, as in the pipeline),
    LR input = ``g`` (8-bit). The target = ``hr`` + bicubic-upscaled Gaussian-blurred ``g - lr0``:
    the HR detail with the generator's low-frequency change (tone, shape) added, so SR learns to
    keep the swap and drop the grid, not to revert the face.

    Args:
        generators: ``{0: male2female, 1: female2male}`` generator modules ([-1, 1] in and out).
        sigma: blur (LR px) of the low-frequency transfer; removes the grid from ``g - lr0``.
    """

    def __init__(self, generators: dict[int, torch.nn.Module], sigma: float = 1.5) -> None:
        self.generators = {k: g.eval() for k, g in generators.items()}
        self.kernel = gaussian_kernel((sigma, sigma), 0.0)

    @torch.no_grad()
    def pair(self, hr: torch.Tensor, gender: int, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lr, target)`` for one ``(1, 3, H, W)`` HR face (H, W multiples of 4 * scale)."""
        from faceswap_pipeline.stages.translate import translate

        h, w = hr.shape[-2:]
        lr0 = resize_to(hr, (h // scale, w // scale), "bicubic")
        g = translate(self.generators[int(gender)], lr0)
        low = blur(g - lr0, self.kernel)
        target = (hr + F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False, antialias=True)).clamp(0.0, 1.0)
        return quantise(g), target


def load_generators(names: tuple[str, str] = ("cyclegan.male2female", "cyclegan.female2male"),
                    weights_dir: str | None = None) -> dict[int, torch.nn.Module]:
    """The shipped generators keyed by the source gender (0 male -> ``names[0]``, 1 female -> ``names[1]``)."""
    from faceswap_pipeline.weights import load_model

    return {i: load_model(n, weights_dir).eval() for i, n in enumerate(names)}
