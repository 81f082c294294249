"""Face attribute network (the original classifier design's recipe and 48 px input): gender, race and age of a face.

Also the project's own perceptual feature space: no pretrained VGG-16 can be downloaded here, so
the CycleGAN identity loss and the SR perceptual loss use :meth:`AttributeNet.features`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pipeline.labels import RACES
from faceswap_pipeline.registry import ARCHS

"""UTKFace race labels 0..4, in order."""

# Channel statistics of UTKFace letterboxed crops (approximate; only centres the input).
_MEAN = (0.55, 0.44, 0.38)
_STD = (0.27, 0.24, 0.24)


def _block(cin: int, cout: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


@ARCHS.register("attribute_cnn")
class AttributeNet(nn.Module):
    """Small BatchNorm CNN: 4 conv blocks (widths ``w, 2w, 4w, 8w``), dense 256, three heads.

    The input is resized to ``in_size`` inside the network, so callers always pass the pipeline's
    letterboxed crops. Defaults are those of the shipped ``attributes.v1`` (48 px: ~2.7x faster
    to train on one CPU thread than 64 px, which fit 4 epochs into the 30-minute budget).

    Shape:
        input: (B, 3, H, W) float32 in [0, 1] (H = W = 128 normally).
        output: dict with ``gender`` (B, 2) logits [male, female], ``race`` (B, 5) logits
        (order :data:`RACES`), ``age`` (B,) years (regression).
    """

    def __init__(self, width: int = 32, in_size: int = 48, dropout: float = 0.4) -> None:
        super().__init__()
        self.in_size = int(in_size)
        w = int(width)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.blocks = nn.ModuleList([_block(3, w, 2), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 8 * w, 1)])
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * w, 256), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.gender = nn.Linear(256, 2)
        self.race = nn.Linear(256, len(RACES))
        self.age = nn.Linear(256, 1)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_size or x.shape[-2] != self.in_size:
            x = F.interpolate(x, size=(self.in_size, self.in_size), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each conv block (before pooling), for perceptual losses.

        Shape: (B, 3, H, W) in [0, 1] -> [(B, w, s, s), (B, 2w, s/2, s/2), (B, 4w, s/4, s/4),
        (B, 8w, s/8, s/8)] with ``s = in_size``. Differentiable with respect to ``x``.
        """
        h = self._prep(x)
        feats = []
        for i, blk in enumerate(self.blocks):
            if i:
                h = F.max_pool2d(h, 2)
            h = blk(h)
            feats.append(h)
        return feats

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = F.adaptive_avg_pool2d(self.features(x)[-1], 1)
        z = self.head(h)
        return {"gender": self.gender(z), "race": self.race(z), "age": self.age(z).squeeze(1)}
