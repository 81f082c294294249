"""68-point facial landmark regressor: 128x128 grey in, 8 conv layers + dense, 136 outputs.

The network predicts the ``(x, y)`` of dlib's 68 points (iBUG 300-W order) in the coordinates of
the letterboxed face square, as fractions of its side (0..1). The last layer's bias starts at the
mean face shape, so training starts from the mean shape and learns offsets from it.
"""

from __future__ import annotations

import torch
from torch import nn

from faceswap_pipeline.registry import ARCHS

N_POINTS = 68

LUMA = (0.299, 0.587, 0.114)

FLIP_PERM: tuple[int, ...] = (
    *range(16, -1, -1),  # jaw 0..16 mirrored
    *range(26, 16, -1),  # brows 17..26
    27, 28, 29, 30,  # nose bridge stays
    35, 34, 33, 32, 31,  # nostrils
    45, 44, 43, 42, 47, 46,  # right eye <- left eye
    39, 38, 37, 36, 41, 40,  # left eye <- right eye
    54, 53, 52, 51, 50, 49, 48,  # outer lip top
    59, 58, 57, 56, 55,  # outer lip bottom
    64, 63, 62, 61, 60,  # inner lip top
    67, 66, 65,  # inner lip bottom
)
"""Index map of the 68 points under a horizontal flip: point ``i`` of the flipped face is point
``FLIP_PERM[i]`` of the original (mirrored)."""


def _conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@ARCHS.register("landmark_cnn")
class LandmarkNet(nn.Module):
    """Eight 3x3 conv layers (BatchNorm, ReLU; four of them stride 2), pooled to 4x4, dense, 136 outputs.

    Widths ``w, w, 2w, 2w, 4w, 4w, 8w, 8w``; the original design used dense 1024 (``dense``).

    Shape:
        input: ``(B, 1, 128, 128)`` grey or ``(B, 3, 128, 128)`` RGB (converted to luma inside),
        float32 in [0, 1]. Other sizes are resized to 128 inside.
        output: ``(B, 68, 2)`` float32, ``(x, y)`` as fractions of the input side.
    """

    def __init__(self, width: int = 16, dense: int = 512, dropout: float = 0.2, in_size: int = 128) -> None:
        super().__init__()
        w = int(width)
        self.in_size = int(in_size)
        chans = [w, w, 2 * w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w]
        strides = [2, 1, 2, 1, 2, 1, 2, 1]
        layers: list[nn.Module] = []
        cin = 1
        for c, s in zip(chans, strides):
            layers += _conv(cin, c, s)
            cin = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * 16, int(dense)), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(int(dense), 2 * N_POINTS)
        )
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def set_mean_shape(self, shape: torch.Tensor) -> None:
        """Start from ``shape`` ``(68, 2)`` (fractions of the side): last bias = shape, weights small."""
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.bias.copy_(shape.reshape(-1).to(last.bias))
            last.weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 3:
            x = (x * self.luma).sum(1, keepdim=True)
        if x.shape[-1] != self.in_size or x.shape[-2] != self.in_size:
            x = nn.functional.interpolate(x, size=(self.in_size, self.in_size), mode="bilinear", align_corners=False, antialias=True)
        return self.head(self.features(x - 0.5)).view(-1, N_POINTS, 2)
