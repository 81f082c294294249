"""The six small nets of the CNN face-detection cascade (Li et al., CVPR 2015).

Three face/non-face classifiers at 12, 24 and 48 px and three calibration nets at the same sizes
that classify a window's misalignment into 45 patterns (see :mod:`faceswap_pipeline.ops.nms`).
All use BatchNorm after every convolution and dropout before the dense layers (what stabilised the original design's training);
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

from faceswap_pipeline.machine import native_bf16  # noqa: F401  (re-exported: older imports)
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


class SlicedMaxPool2d(nn.Module):
    """``MaxPool2d(k, s)`` (no padding, floor mode) as a separable max over strided slices.

    Same values as ``nn.MaxPool2d``; several times faster on CPU for the few-channel, large maps
    of the 12-net's fully convolutional scan (PyTorch's CPU max-pool is slow on them).
    """

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.k, self.s = int(kernel_size), int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.k, self.s
        ho = (x.shape[-2] - k) // s + 1
        wo = (x.shape[-1] - k) // s + 1
        r = x[..., 0 : (ho - 1) * s + 1 : s, :]
        for d in range(1, k):
            r = torch.maximum(r, x[..., d : d + (ho - 1) * s + 1 : s, :])
        c = r[..., 0 : (wo - 1) * s + 1 : s]
        for d in range(1, k):
            c = torch.maximum(c, r[..., d : d + (wo - 1) * s + 1 : s])
        return c


class FusedCascadeNet(CascadeNet):
    """Inference-only form of a cascade net (see :func:`fuse`): same outputs, fewer passes.

    With ``channels_last`` the weights and the input are laid out NHWC: PyTorch's CPU (oneDNN)
    convolutions are several times faster that way on these 3-channel inputs (measured: the
    24-net's 5x5 conv on 247 windows 19 ms -> 5.5 ms, one thread).
    """

    def __init__(self, body: nn.Sequential, size: int, n_out: int, channels_last: bool = False) -> None:
        super().__init__()
        self.body = body
        self.size, self.n_out = size, n_out
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.body.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: as the unfused net; input (B, 3, S, S) float32 in [0, 1]; output float32 logits.

        If the net was cast to another dtype (e.g. ``.to(torch.bfloat16)``), the input is cast to it
        and the logits back to float32.
        """
        dtype = self.body[0].weight.dtype
        x = x.to(dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.body(x).float()
        if y.shape[-1] == 1 and y.shape[-2] == 1:
            return y.flatten(1)
        return y


@torch.no_grad()
def fuse(net: CascadeNet, channels_last: bool = False) -> FusedCascadeNet:
    """Fold the input normalisation and every eval-mode BatchNorm into the convolutions.

    Dropout is dropped and ``ReLU -> MaxPool`` becomes ``MaxPool -> ReLU`` (equal, as ReLU is
    monotonic, and cheaper on the smaller map), the pooling a :class:`SlicedMaxPool2d`. Outputs equal the net's in eval mode up to float
    rounding. The result is for inference only (no BatchNorm statistics to train).
    ``channels_last``: run NHWC (see :class:`FusedCascadeNet`; same values up to float rounding).
    """
    layers = list(net.body)
    out: list[nn.Module] = []
    first = True
    i = 0
    while i < len(layers):
        m = layers[i]
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach().clone().float()
            b = m.bias.detach().clone().float() if m.bias is not None else torch.zeros(w.shape[0])
            if first:  # (x - mean) / std folded in (no padding anywhere, so this is exact)
                b = b - w.sum(dim=(1, 2, 3)) * _MEAN / _STD
                w = w / _STD
                first = False
            if i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
                bn = layers[i + 1]
                g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                w = w * g[:, None, None, None]
                b = (b - bn.running_mean) * g + bn.bias
                i += 1
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, bias=True)
            conv.weight.copy_(w)
            conv.bias.copy_(b)
            out.append(conv.to(m.weight.device))
        elif isinstance(m, nn.ReLU):
            if i + 1 < len(layers) and isinstance(layers[i + 1], nn.MaxPool2d):
                mp = layers[i + 1]
                out += [SlicedMaxPool2d(mp.kernel_size, mp.stride), nn.ReLU(inplace=True)]
                i += 1
            else:
                out.append(nn.ReLU(inplace=True))
        elif isinstance(m, nn.Dropout):
            pass
        else:
            out.append(m)
        i += 1
    return FusedCascadeNet(nn.Sequential(*out), net.size, net.n_out, channels_last).eval()


NETS = {
    "12net": "cascade_12net",
    "12cal": "cascade_12cal",
    "24net": "cascade_24net",
    "24cal": "cascade_24cal",
    "48net": "cascade_48net",
    "48cal": "cascade_48cal",
}
"""Cascade member -> registered architecture name (weights are ``cascade.<member>``)."""

__all__ = ["NETS", "FusedCascadeNet", "SlicedMaxPool2d", "fuse", "native_bf16", "Cal12", "Cal24", "Cal48", "CascadeNet", "Net12", "Net24", "Net48"]
