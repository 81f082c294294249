"""CycleGAN networks exactly as the original face-swap design specifies them.

Generator ``c7s1-32, d64, d128, R128 x9, u64, u32, c7s1-3`` (Zhu et al. 2017 notation):

* ``c7s1-k``: 7x7 conv, stride 1, reflection padding 3, InstanceNorm, ReLU.
* ``dk``: 3x3 conv, stride 2, InstanceNorm, ReLU.
* ``Rk``: residual block of two 3x3 convs (reflection padding) with InstanceNorm.
* ``uk``: 3x3 fractionally strided (transposed) conv, stride 1/2, InstanceNorm, ReLU.
* the last ``c7s1-3`` has no norm and a ``tanh`` output.

Discriminator: 70x70 PatchGAN ``C64-C128-C256-C512`` with 4x4 convs, LeakyReLU(0.2) and
InstanceNorm on every layer except the first, followed by a 1-channel 4x4 conv giving a map of
real/fake scores (LSGAN: raw scores, no sigmoid).

Both networks work on images in ``[-1, 1]``; the pipeline's ``[0, 1]`` contract is converted in
``stages/translate.py`` only.
"""

from __future__ import annotations

import torch
from torch import nn

from faceswap_pipeline.registry import ARCHS


def _norm(ch: int) -> nn.Module:
    # affine=False and no running stats, as in the reference CycleGAN ("instance" norm).
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """``Rk``: x + IN(conv3x3(ReLU(IN(conv3x3(x))))) with reflection padding.

    Shape: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=True),
            _norm(ch),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=True),
            _norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@ARCHS.register("cyclegan_resnet")
class ResnetGenerator(nn.Module):
    """The original design's generator: ``c7s1-ngf, d(2ngf), d(4ngf), R(4ngf) x n_blocks, u(2ngf), u(ngf), c7s1-3``.

    Defaults are the original design's exact network (``ngf=32``, ``n_blocks=9``; about 2.9M parameters).
    Fully convolutional; H and W must be divisible by 4.

    Shape: (B, 3, H, W) float in [-1, 1] -> (B, 3, H, W) float in [-1, 1].
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 32, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7, bias=True),
            _norm(ngf),
            nn.ReLU(inplace=True),
        ]
        ch = ngf
        for _ in range(2):  # d64, d128
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=True), _norm(ch * 2), nn.ReLU(inplace=True)]
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(n_blocks)]
        for _ in range(2):  # u64, u32
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                _norm(ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@ARCHS.register("patchgan")
class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN ``C64-C128-C256-C512`` (``ndf=64``, ``n_layers=3``).

    Shape: (B, 3, H, W) float in [-1, 1] -> (B, 1, H', W') raw LSGAN scores
    (H' = H/8 - 2 for H divisible by 8; 14x14 for 128x128 input).
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            nxt = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, nxt, 4, stride=stride, padding=1, bias=True), _norm(nxt), nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        layers += [nn.Conv2d(ch, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FeatureDiscriminator(nn.Module):
    """Discriminator heads on a frozen network's feature maps (a "vision-aided" discriminator).

    Each head maps one feature map to patch scores: ``Conv3x3(c, width) - LeakyReLU - Conv1x1(width, 1)``.
    The frozen backbone (here the attribute network, which knows gender and race) is not part of
    this module: the trainer computes its features and passes them in, so the same backbone pass
    serves both domains' heads and no backbone weights are ever trained or saved twice.

    Shape: a list of ``(B, c_i, h_i, w_i)`` feature maps (``c_i = channels[i]``) -> a list of
    ``(B, 1, h_i, w_i)`` raw LSGAN scores.
    """

    def __init__(self, channels: tuple[int, ...] = (128, 256), width: int = 64) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(width, 1, 1)) for c in channels
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.heads):
            raise ValueError(f"expected {len(self.heads)} feature maps, got {len(feats)}")
        return [h(f) for h, f in zip(self.heads, feats)]
