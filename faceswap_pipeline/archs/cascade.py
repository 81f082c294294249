"""The six small nets of the CNN face-detection cascade (seed 004; Li et al., CVPR 2015).

Three face/non-face classifiers at 12, 24 and 48 px and three calibration nets at the same sizes
that classify a window's misalignment into 45 patterns (see :mod:`faceswap_pipeline.ops.nms`).
All use BatchNorm after every convolution and dropout before the dense layers (seed 004's lessons);
dense layers are written as convolutions so every net also runs fully convolutionally.

Inputs are windows ``(B, 3, S, S)`` float32 in [0, 1] (greyscale images replicated to 3 channels);
each net normalises internally. Outputs are logits; :meth:`CascadeNet.face_prob` /
:meth:`CascadeNet.probs` apply the softmax.

The 12-net is exactly fully convolutional: on a ``(B, 3, H, W)`` image its output ``(B, 2, H', W')``
cell ``(i, j)`` equals the net applied to the window ``[2i, 2i + 12) x [2j, 2j + 12)``
(output stride 2, no padding anywhere).
"""

from __future__ import annotations

import torch
from torch import nn

from faceswap_pipeline.registry import ARCHS

_MEAN, _STD = 0.5, 0.25


def _cbr(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CascadeNet(nn.Module):
    """Shared behaviour: input normalisation, logits, softmax helpers."""

    size: int = 12
    n_out: int = 2

    def __init__(self) -> None:
        super().__init__()
        self.body: nn.Sequential = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (B, 3, S, S) float32 in [0, 1] -> (B, n_out) logits; larger inputs give maps
        (B, n_out, H', W') for fully convolutional nets."""
        y = self.body((x - _MEAN) / _STD)
        if y.shape[-1] == 1 and y.shape[-2] == 1:
            return y.flatten(1)
        return y

    def face_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Probability of "face": (B,) for windows, (B, H', W') for maps."""
        y = self.forward(x)
        return torch.softmax(y, dim=1)[:, 1]

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax over the outputs: (B, n_out)."""
        return torch.softmax(self.forward(x), dim=1)


@ARCHS.register("cascade_12net")
class Net12(CascadeNet):
    """12-net: conv3x3(w) - maxpool3/2 - dense(hidden) as conv4x4 - dense(2) as conv1x1.

    Shape: (B, 3, 12, 12) -> (B, 2); (B, 3, H, W) -> (B, 2, (H - 12) // 2 + 1, (W - 12) // 2 + 1).
    """

    size, n_out = 12, 2

    def __init__(self, width: int = 10, hidden: int = 16, dropout: float = 0.2, n_out: int = 2) -> None:
        super().__init__()
        self.n_out = int(n_out)
        w = int(width)
        self.body = nn.Sequential(
            *_cbr(3, w, 3),
            nn.MaxPool2d(3, 2),
            *_cbr(w, hidden, 4),
            nn.Dropout(dropout),
            nn.Conv2d(hidden, self.n_out, 1),
        )


@ARCHS.register("cascade_12cal")
class Cal12(Net12):
    """12-cal: the 12-net's body with a wider dense layer and 45 outputs (calibration classes)."""

    def __init__(self, width: int = 16, hidden: int = 64, dropout: float = 0.2, n_out: int = 45) -> None:
        super().__init__(width=width, hidden=hidden, dropout=dropout, n_out=n_out)


@ARCHS.register("cascade_24net")
class Net24(CascadeNet):
    """24-net: conv5x5(w) - pool3/2 - conv3x3(2w) - pool3/2 - dense(128) - dense(n_out).

    Shape: (B, 3, 24, 24) -> (B, n_out).
    """

    size, n_out = 24, 2

    def __init__(self, width: int = 32, hidden: int = 128, dropout: float = 0.4, n_out: int = 2) -> None:
        super().__init__()
        self.n_out = int(n_out)
        w = int(width)
        self.body = nn.Sequential(
            *_cbr(3, w, 5),  # 20
            nn.MaxPool2d(3, 2),  # 9
            *_cbr(w, 2 * w, 3),  # 7
            nn.MaxPool2d(3, 2),  # 3
            nn.Dropout(dropout),
            *_cbr(2 * w, hidden, 3),  # 1  (dense on the 3x3 map)
            nn.Dropout(dropout),
            nn.Conv2d(hidden, self.n_out, 1),
        )


@ARCHS.register("cascade_24cal")
class Cal24(Net24):
    """24-cal: the 24-net's structure with 45 outputs."""

    def __init__(self, width: int = 32, hidden: int = 128, dropout: float = 0.4, n_out: int = 45) -> None:
        super().__init__(width=width, hidden=hidden, dropout=dropout, n_out=n_out)


@ARCHS.register("cascade_48net")
class Net48(CascadeNet):
    """48-net: conv3x3(w) - pool - conv3x3(2w) - pool - conv3x3(4w) - pool - dense(hidden) - dense.

    Shape: (B, 3, 48, 48) -> (B, n_out).
    """

    size, n_out = 48, 2

    def __init__(self, width: int = 16, hidden: int = 128, dropout: float = 0.4, n_out: int = 2) -> None:
        super().__init__()
        self.n_out = int(n_out)
        w = int(width)
        self.body = nn.Sequential(
            *_cbr(3, w, 3),  # 46
            nn.MaxPool2d(3, 2),  # 22
            *_cbr(w, 2 * w, 3),  # 20
            nn.MaxPool2d(3, 2),  # 9
            *_cbr(2 * w, 4 * w, 3),  # 7
            nn.MaxPool2d(3, 2),  # 3
            nn.Dropout(dropout),
            *_cbr(4 * w, hidden, 3),  # 1
            nn.Dropout(dropout),
            nn.Conv2d(hidden, self.n_out, 1),
        )


@ARCHS.register("cascade_48cal")
class Cal48(Net48):
    """48-cal: the 48-net's structure with 45 outputs."""

    def __init__(self, width: int = 16, hidden: int = 128, dropout: float = 0.4, n_out: int = 45) -> None:
        super().__init__(width=width, hidden=hidden, dropout=dropout, n_out=n_out)


NETS = {
    "12net": "cascade_12net",
    "12cal": "cascade_12cal",
    "24net": "cascade_24net",
    "24cal": "cascade_24cal",
    "48net": "cascade_48net",
    "48cal": "cascade_48cal",
}
"""Cascade member -> registered architecture name (weights are ``cascade.<member>``)."""

__all__ = ["NETS", "Cal12", "Cal24", "Cal48", "CascadeNet", "Net12", "Net24", "Net48"]
