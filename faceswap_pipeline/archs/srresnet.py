"""SRResNet (Ledig et al. 2017), the seed's x4 super-resolution network, and its EDSR-style variant.

Seed 002, step 4: 16 residual blocks of 64 filters, 3x3 convolutions, BatchNorm, PReLU, a global
skip connection, and two sub-pixel (PixelShuffle) x2 stages for x4. The head and tail convolutions
are 9x9 as in Ledig et al. (``head_kernel``); everything inside the trunk is 3x3.

``variant="edsr"`` (Lim et al. 2017) removes every BatchNorm, uses ReLU inside the blocks and
scales each block's residual by ``res_scale`` before adding it; the seed tried it and found it
trained slower without being better, so it is an option, not the default.

Option beyond the seed: ``img_skip="bicubic"`` adds the bicubic-upscaled input image to the
output (an image-level global skip, as in VDSR), which the shipped weights use.

Value range: input and output are images in [0, 1]. The network's last layer is a plain
convolution (no activation), so raw outputs may leave [0, 1] slightly; it is *not* clamped inside
``forward`` (training sees the unclamped value); inference code clamps
(:mod:`faceswap_pipeline.stages.upscale` does).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from faceswap_pipeline.registry import ARCHS

VARIANTS = ("srresnet", "edsr")
IMG_SKIPS = ("none", "bicubic", "bilinear")


class ResidualBlock(nn.Module):
    """``x + s * conv-(BN)-act-conv-(BN)(x)``; BN and PReLU for SRResNet, no BN and ReLU for EDSR.

    Shape: (B, nf, h, w) -> (B, nf, h, w).
    """

    def __init__(self, nf: int = 64, bn: bool = True, res_scale: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(nf, nf, 3, padding=1, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(nf))
        layers.append(nn.PReLU(nf) if bn else nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(nf, nf, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(nf))
        self.body = nn.Sequential(*layers)
        self.res_scale = float(res_scale)

    def forward(self, x: Tensor) -> Tensor:
        r = self.body(x)
        return x + (r * self.res_scale if self.res_scale != 1.0 else r)


def _upsampler(nf: int, scale: int, prelu: bool) -> nn.Sequential:
    """``log2(scale)`` stages of conv(nf -> 4 nf) + PixelShuffle(2) + activation."""
    if scale not in (2, 4, 8):
        raise ValueError(f"scale must be 2, 4 or 8, not {scale}")
    layers: list[nn.Module] = []
    for _ in range({2: 1, 4: 2, 8: 3}[scale]):
        layers += [nn.Conv2d(nf, 4 * nf, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(nf) if prelu else nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


@ARCHS.register("srresnet")
class SRResNet(nn.Module):
    """SRResNet / EDSR-style super-resolution network.

    Args:
        scale: upscaling factor, 2, 4 (two PixelShuffle x2 stages, the seed's) or 8.
        n_blocks: residual blocks in the trunk (16 in the seed).
        nf: feature channels (64 in the seed).
        variant: ``"srresnet"`` (BatchNorm + PReLU) or ``"edsr"`` (no BatchNorm, ReLU, residual scaling).
        res_scale: residual scaling of each block; default 1.0 for SRResNet and 0.1 for EDSR.
        head_kernel: kernel of the first and last convolution (9 in Ledig et al.).
        img_skip: ``"none"`` (Ledig et al.: the output is the tail convolution) or ``"bicubic"`` /
            ``"bilinear"``: the interpolated input image is added to the output, so the network
            predicts only the detail bicubic misses (VDSR-style residual learning; the tail
            convolution is zero-initialised, so an untrained network *is* bicubic). Not in the
            seed: it makes short CPU training reach a useful model (see ``weights/srresnet.x4.md``).

    Shape:
        input: (B, 3, h, w) float32 in [0, 1].
        output: (B, 3, scale*h, scale*w) float32, approximately in [0, 1] (not clamped; clamp at inference).

    Example:
        >>> import torch
        >>> SRResNet(scale=4, n_blocks=1, nf=8)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(
        self,
        scale: int = 4,
        n_blocks: int = 16,
        nf: int = 64,
        variant: str = "srresnet",
        res_scale: float | None = None,
        head_kernel: int = 9,
        img_skip: str = "none",
    ) -> None:
        super().__init__()
        if img_skip not in IMG_SKIPS:
            raise ValueError(f"img_skip must be one of {IMG_SKIPS}, not {img_skip!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.scale = int(scale)
        bn = variant == "srresnet"
        if res_scale is None:
            res_scale = 1.0 if bn else 0.1
        pad = head_kernel // 2
        self.head = nn.Sequential(nn.Conv2d(3, nf, head_kernel, padding=pad), nn.PReLU(nf) if bn else nn.Identity())
        self.body = nn.Sequential(*[ResidualBlock(nf, bn=bn, res_scale=res_scale) for _ in range(n_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1, bias=not bn), nn.BatchNorm2d(nf) if bn else nn.Identity())
        self.upsample = _upsampler(nf, self.scale, prelu=bn)
        self.tail = nn.Conv2d(nf, 3, head_kernel, padding=pad)
        self.img_skip = img_skip
        if img_skip != "none":  # start exactly at the interpolated input; learn the residual
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        h = h + self.body_tail(self.body(h))  # global skip (Ledig et al., Fig. 4)
        out = self.tail(self.upsample(h))
        if self.img_skip != "none":
            out = out + F.interpolate(x, scale_factor=self.scale, mode=self.img_skip, align_corners=False)
        return out
