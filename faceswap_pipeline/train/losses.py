"""Losses shared by the trainers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PerceptualLoss(nn.Module):
    """Mean L1 distance between feature maps of a frozen network (the project's stand-in for VGG-16).

    Args:
        net: a module with ``features(x) -> list[Tensor]`` taking (B, 3, H, W) float in [0, 1]
            (e.g. :class:`~faceswap_pipeline.archs.attributes.AttributeNet`). It is frozen and put
            in eval mode here.
        layers: which entries of ``features`` to compare.
        weights: one weight per layer (default 1 each).

    Shape: two (B, 3, H, W) tensors in [0, 1] -> scalar.
    """

    def __init__(self, net: nn.Module, layers: Sequence[int] = (1, 2), weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.layers = tuple(layers)
        self.weights = tuple(weights) if weights is not None else (1.0,) * len(self.layers)
        if len(self.weights) != len(self.layers):
            raise ValueError("one weight per layer")

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.net.eval()  # BatchNorm statistics of the frozen net never update
        return self

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fx = self.net.features(x)
        with torch.no_grad():
            ft = self.net.features(target)
        return sum(w * F.l1_loss(fx[i], ft[i]) for i, w in zip(self.layers, self.weights))


def texture_excess(fake: torch.Tensor, real: torch.Tensor, window: int = 8) -> torch.Tensor:
    """Texture hinge: local high-frequency energy a generator adds beyond its input's.

    A generator that fools a frozen classifier (or shows the 2-px grid of transposed
    convolutions) does it with fine texture: stripes, dots, blotches. This loss compares the
    energy of a 3x3 Laplacian of ``fake`` and of ``real`` averaged over ``window``-px cells and
    penalises only the excess, ``mean(relu(E_fake - E_real))``, so real edits (a beard that
    replaces smooth skin comes with the input's texture level somewhere else) cost little while
    texture the input never had costs in proportion to its energy.

    Shape: ``fake``, ``real`` (B, C, H, W) float in [-1, 1], H and W multiples of ``window`` ->
    scalar (float32). ``real`` is treated as a constant.
    """
    k = fake.new_tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]]).view(1, 1, 3, 3) / 4.0
    c = fake.shape[1]

    def energy(x: torch.Tensor) -> torch.Tensor:
        lap = F.conv2d(F.pad(x.float(), (1, 1, 1, 1), mode="reflect"), k.float().expand(c, 1, 3, 3), groups=c)
        return F.avg_pool2d(lap.pow(2).mean(1, keepdim=True), window)

    with torch.no_grad():
        e_real = energy(real)
    return (energy(fake) - e_real).clamp_min(0.0).mean()
