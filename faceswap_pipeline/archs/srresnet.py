"""SRResNet (Ledig et al. 2017), the original design's x4 super-resolution network, and its EDSR-style variant.

Step 4 of the original face-swap design: 16 residual blocks of 64 filters, 3x3 convolutions, BatchNorm, PReLU, a global
skip connection, and two sub-pixel (PixelShuffle) x2 stages for x4. The head and tail convolutions
are 9x9 as in Ledig et al. (``head_kernel``); everything inside the trunk is 3x3.

``variant="edsr"`` (Lim et al. 2017) removes every BatchNorm, uses ReLU inside the blocks and
scales each block's residual by ``res_scale`` before adding it; the original design tried it and found it
trained slower without being better, so it is an option, not the default.

Options beyond the original design:

* ``img_skip``: add the interpolated input image to the output (an image-level global skip, as in
  VDSR), so the network learns only the missing detail. ``"bicubic"`` is torch's bicubic (Keys
  a = -0.75), which does *not* reproduce linear ramps: on a gradient it leaves a ripple with the
  period of the scale (2 px at x2, 4 px at x4). ``"bicubic_aa"`` is Keys a = -0.5 (MATLAB
  ``imresize``, torch's antialiased bicubic, the pipeline's ``resize``), which reproduces ramps
  exactly; the degradation-aware weights use it.
* ICNR initialisation (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution"):
  each ``conv(nf -> 4 nf)`` before a PixelShuffle starts with its 4 sub-pixel filters equal, so
  at initialisation the upsampler is a convolution followed by nearest-neighbour upsampling and
  has no checkerboard. :func:`icnr_` initialises a conv, :func:`icnr_project_` projects trained
  weights onto that form, :func:`load_matching` warm-starts one scale from another.

Value range: input and output are images in [0, 1]. The network's last layer is a plain
convolution (no activation), so raw outputs may leave [0, 1] slightly; it is *not* clamped inside
``forward`` (training sees the unclamped value); inference code clamps
(:mod:`faceswap_pipeline.stages.upscale` does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceswap_pipeline.registry import ARCHS

VARIANTS = ("srresnet", "edsr")
IMG_SKIPS = ("none", "bicubic", "bicubic_aa", "bilinear")


@torch.no_grad()
def icnr_(conv: nn.Conv2d, upscale: int = 2, init=nn.init.kaiming_normal_) -> nn.Conv2d:
    """ICNR-initialise the convolution that feeds ``PixelShuffle(upscale)`` (in place; returns it).

    A sub-kernel of shape ``(out / upscale^2, in, k, k)`` is drawn with ``init`` and repeated for
    each of the ``upscale^2`` sub-pixel positions (PixelShuffle reads output channel
    ``c * upscale^2 + i`` as position ``i`` of feature ``c``), so conv + PixelShuffle equals conv +
    nearest-neighbour upsampling: no checkerboard at initialisation. The bias is zeroed.
    """
    r2 = upscale * upscale
    out_ch = conv.weight.shape[0]
    if out_ch % r2:
        raise ValueError(f"{out_ch} output channels are not a multiple of upscale^2 = {r2}")
    sub = torch.empty(out_ch // r2, *conv.weight.shape[1:], dtype=conv.weight.dtype, device=conv.weight.device)
    init(sub)
    conv.weight.copy_(sub.repeat_interleave(r2, dim=0))
    if conv.bias is not None:
        conv.bias.zero_()
    return conv


@torch.no_grad()
def icnr_project_(conv: nn.Conv2d, upscale: int = 2) -> nn.Conv2d:
    """Replace trained sub-pixel filters by their mean over the ``upscale^2`` positions (in place).

    The nearest projection (least squares) of a trained conv onto the ICNR form: afterwards
    conv + PixelShuffle is conv + nearest-neighbour upsampling, grid-free, and fine-tuning
    continues from there.
    """
    r2 = upscale * upscale
    w = conv.weight
    conv.weight.copy_(w.view(w.shape[0] // r2, r2, *w.shape[1:]).mean(1, keepdim=True).expand_as(
        w.view(w.shape[0] // r2, r2, *w.shape[1:])).reshape_as(w))
    if conv.bias is not None:
        b = conv.bias
        conv.bias.copy_(b.view(-1, r2).mean(1, keepdim=True).expand(-1, r2).reshape_as(b))
    return conv


def load_matching(model: nn.Module, state: dict[str, Tensor]) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``state`` whose name and shape match ``model``'s; the rest keep their init.

    Warm-starts an x2 SRResNet from x4 weights (head, trunk, the first upsampling stage and the
    tail carry over; the second upsampling stage has no counterpart) and vice versa.

    Returns:
        ``(loaded, kept)``: names copied from ``state``, and names of the model left as initialised.
    """
    own = model.state_dict()
    loaded = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    own.update({k: state[k].to(own[k].dtype) for k in loaded})
    model.load_state_dict(own)
    return loaded, [k for k in own if k not in set(loaded)]


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


def _upsampler(nf: int, scale: int, prelu: bool, icnr: bool = True) -> nn.Sequential:
    """``log2(scale)`` stages of conv(nf -> 4 nf) + PixelShuffle(2) + activation (convs ICNR-initialised)."""
    if scale not in (2, 4, 8):
        raise ValueError(f"scale must be 2, 4 or 8, not {scale}")
    layers: list[nn.Module] = []
    for _ in range({2: 1, 4: 2, 8: 3}[scale]):
        conv = nn.Conv2d(nf, 4 * nf, 3, padding=1)
        if icnr:
            icnr_(conv, 2)
        layers += [conv, nn.PixelShuffle(2), nn.PReLU(nf) if prelu else nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def upsample_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The convolutions that feed a PixelShuffle(2), in order (for :func:`icnr_project_`)."""
    mods = list(model.upsample)
    return [m for m, nxt in zip(mods, mods[1:]) if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.PixelShuffle)]


@ARCHS.register("srresnet")
class SRResNet(nn.Module):
    """SRResNet / EDSR-style super-resolution network.

    Args:
        scale: upscaling factor, 2, 4 (two PixelShuffle x2 stages, the original design's) or 8.
        n_blocks: residual blocks in the trunk (16 in the original design).
        nf: feature channels (64 in the original design).
        variant: ``"srresnet"`` (BatchNorm + PReLU) or ``"edsr"`` (no BatchNorm, ReLU, residual scaling).
        res_scale: residual scaling of each block; default 1.0 for SRResNet and 0.1 for EDSR.
        head_kernel: kernel of the first and last convolution (9 in Ledig et al.).
        img_skip: ``"none"`` (Ledig et al.: the output is the tail convolution) or ``"bicubic"`` /
            ``"bicubic_aa"`` / ``"bilinear"``: the interpolated input image is added to the output
            (``bicubic_aa``: Keys a = -0.5, ripple-free on ramps; ``bicubic``: a = -0.75), so the network
            predicts only the detail bicubic misses (VDSR-style residual learning; the tail
            convolution is zero-initialised, so an untrained network *is* bicubic). Not in the
            seed: it makes short CPU training reach a useful model (see ``weights/srresnet.x4.md``).
        icnr: ICNR-initialise the sub-pixel convolutions (no checkerboard at initialisation).
            Only the initialisation; loaded weights replace it.

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
        icnr: bool = True,
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
        self.upsample = _upsampler(nf, self.scale, prelu=bn, icnr=icnr)
        self.tail = nn.Conv2d(nf, 3, head_kernel, padding=pad)
        self.img_skip = img_skip
        if img_skip != "none":  # start exactly at the interpolated input; learn the residual
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        h = h + self.body_tail(self.body(h))  # global skip (Ledig et al., Fig. 4)
        out = self.tail(self.upsample(h))
        if self.img_skip == "bicubic_aa":  # antialias=True selects Keys a = -0.5 (upscaling: plain 4 taps)
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False, antialias=True)
        elif self.img_skip != "none":
            out = out + F.interpolate(x, scale_factor=self.scale, mode=self.img_skip, align_corners=False)
        return out
