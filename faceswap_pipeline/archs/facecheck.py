"""Face-check net: the verify stage's second opinion, independent of the cascade detector.

A small face/non-face CNN on a 64 x 64 window with context around the detected box (the square of
side ``context * sqrt(w h)`` centred on the HOG-framed box). It shares no weights, no input size
and no training data pipeline with the cascade's nets; it is trained on colour and grey faces and
on both detectors' false positives on colour non-face photos (``faceswap_pipeline.train.facecheck``).

Input ``(B, 3, 64, 64)`` float32 RGB in [0, 1]; output ``(B, 2)`` logits ``[non-face, face]``.
"""

from __future__ import annotations

import torch
from torch import nn

from faceswap_pipeline.registry import ARCHS


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@ARCHS.register("face_check_cnn")
class FaceCheckNet(nn.Module):
    """A stride-2 conv3x3 (``w``), then conv3x3-BN-ReLU + maxpool stages of ``2w, 4w, 6w`` and a last
    conv of ``8w`` at 4 px, global average and max pooling, dropout, linear(2) (~15 MFLOPs at 64 px)."""

    def __init__(self, width: int = 16, dropout: float = 0.3, in_size: int = 64) -> None:
        super().__init__()
        w = int(width)
        self.in_size = int(in_size)
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            *_block(w, 2 * w), nn.MaxPool2d(2),
            *_block(2 * w, 4 * w), nn.MaxPool2d(2),
            *_block(4 * w, 6 * w), nn.MaxPool2d(2),
            *_block(6 * w, 8 * w),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16 * w, 2)
        self.register_buffer("mean", torch.tensor([0.5, 0.45, 0.42]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 2) logits."""
        f = self.features((x - self.mean) / 0.25)
        f = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return self.head(self.drop(f))

    def face_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) probability of "face"."""
        return torch.softmax(self.forward(x).float(), dim=1)[:, 1]


__all__ = ["FaceCheckNet"]
