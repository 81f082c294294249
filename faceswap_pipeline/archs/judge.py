"""The independent judge's heads: linear probes on dlib's 128-D face descriptors.

No training loss of this project ever sees these probes or dlib's descriptor network: they exist
only to *measure* swaps. They are fitted by ``faceswap_pipeline.train.judge`` with
logistic regression on training-split faces and shipped like every other model (safetensors,
sha256 in the manifest).
"""

from __future__ import annotations

import torch
from torch import nn

from faceswap_pipeline.labels import AGE_BANDS, GENDERS, RACES
from faceswap_pipeline.registry import ARCHS


@ARCHS.register("descriptor_probes")
class DescriptorProbes(nn.Module):
    """Three linear heads (multinomial logistic regressions) over a face descriptor.

    Shape:
        input: (B, dim) float32 dlib face descriptors (unit-scale, as dlib returns them).
        output: dict of logits ``gender`` (B, 2) [male, female], ``race`` (B, 5) (order
        :data:`~faceswap_pipeline.labels.RACES`), ``age_band`` (B, 5) (order
        :data:`~faceswap_pipeline.labels.AGE_BANDS`).
    """

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.gender = nn.Linear(dim, len(GENDERS))
        self.race = nn.Linear(dim, len(RACES))
        self.age_band = nn.Linear(dim, len(AGE_BANDS))

    def forward(self, desc: torch.Tensor) -> dict[str, torch.Tensor]:
        desc = desc.float()
        return {"gender": self.gender(desc), "race": self.race(desc), "age_band": self.age_band(desc)}
