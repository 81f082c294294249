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
