"""Face attributes (gender, race, age) per face, and the choice of each face's swap direction.

:class:`AttributeClassifier` runs the attribute network (``attributes.v1``) with the original
design's 45-window test-time voting on every letterboxed face; :class:`DirectionChooser` then sets
``face.direction``: one fixed direction for all faces, or ``auto-gender`` (each face to the other
gender).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pipeline.labels import AUTO_GENDER, RACES
from faceswap_pipeline.ops.voting import DEFAULT_SCALES, DEFAULT_SHIFT, jitter_params, jittered_windows, vote
from faceswap_pipeline.stages.base import ModelStage, for_chunks
from faceswap_pipeline.types import ImageRecord


def predict(
    model: nn.Module,
    crops: torch.Tensor,
    voting: bool = True,
    batch_size: int = 64,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    shift: float = DEFAULT_SHIFT,
) -> dict[str, torch.Tensor]:
    """Attribute probabilities of letterboxed faces.

    With ``voting`` each face is first resized to the network's input size (antialiased, as the
    network itself would), cut into 45 jittered windows (:func:`~faceswap_pipeline.ops.voting.jittered_windows`)
    and the softmax outputs (and age estimates) are averaged over the windows.

    Args:
        model: an :class:`~faceswap_pipeline.archs.attributes.AttributeNet` in eval mode.
        crops: ``(N, 3, S, S)`` float32 in [0, 1].
        voting: use the 45-window vote (45x the compute) instead of one pass.
        batch_size: faces per forward pass (times 45 windows when voting).
        scales, shift: the voting windows.

    Returns:
        ``{"gender": (N, 2) [p_male, p_female], "race": (N, 5) probabilities (order :data:`RACES`),
        "age": (N,) years}``, float32 on the crops' device.
    """
    if crops.dim() != 4 or crops.shape[1] != 3:
        raise ValueError(f"expected (N, 3, S, S) crops, got {tuple(crops.shape)}")
    dev = next(model.parameters()).device
    in_size = int(getattr(model, "in_size", crops.shape[-1]))
    k = len(jitter_params(scales, shift))
    outs: dict[str, list[torch.Tensor]] = {"gender": [], "race": [], "age": []}
    for i in range(0, crops.shape[0], batch_size):
        x = crops[i : i + batch_size].to(dev, torch.float32)
        if voting:
            if x.shape[-1] != in_size:
                x = F.interpolate(x, size=(in_size, in_size), mode="bilinear", align_corners=False, antialias=True)
            o = model(jittered_windows(x, scales, shift))
            outs["gender"].append(vote(o["gender"].float().softmax(1), k))
            outs["race"].append(vote(o["race"].float().softmax(1), k))
            outs["age"].append(vote(o["age"].float()[:, None], k)[:, 0])
        else:
            o = model(x)
            outs["gender"].append(o["gender"].float().softmax(1))
            outs["race"].append(o["race"].float().softmax(1))
            outs["age"].append(o["age"].float())
    if not outs["age"]:
        return {"gender": crops.new_zeros(0, 2), "race": crops.new_zeros(0, len(RACES)), "age": crops.new_zeros(0)}
    return {key: torch.cat(v).to(crops.device) for key, v in outs.items()}


class AttributeClassifier(ModelStage):
    """Stage: sets ``face.attributes`` for every face that has a crop.

    ``face.attributes`` becomes ``{"p_female", "p_white", "p_black", "p_asian", "p_indian",
    "p_other", "age"}`` (probabilities in [0, 1], age in years). The faces of all records in the
    call are batched together.

    Args:
        model: the attribute network (input ``(B, 3, S, S)`` float32 in [0, 1]).
        device: where it runs.
        batch_size: faces per forward pass (each is 45 windows when voting).
        voting: 45-window test-time voting; False = one pass per face.
    """

    name = "classify"

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", batch_size: int = 16, voting: bool = True) -> None:
        super().__init__(device, batch_size)
        self.voting = bool(voting)
        self.modules = {"attributes": model.eval()}
        self.to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        name: str = "attributes.v1",
        device: str | torch.device = "cpu",
        weights_dir: str | os.PathLike[str] | None = None,
        **kwargs,
    ) -> AttributeClassifier:
        """Load shipped weights ``name`` (sha256-verified) and wrap them in the stage."""
        from faceswap_pipeline.weights import load_model

        return cls(load_model(name, weights_dir=weights_dir, device=device), device=device, **kwargs)

    def process(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        faces = [f for rec in batch for f in rec.faces if f.crop is not None]
        if not faces:
            return batch

        def run(chunk: list) -> None:
            crops = torch.stack([f.crop for f in chunk]).to(self.device)
            p = predict(self.modules["attributes"], crops, voting=self.voting, batch_size=self.batch_size)
            self._assign(chunk, p)

        for_chunks(self, faces, run)
        return batch

    def _assign(self, faces: list, p: dict[str, torch.Tensor]) -> None:
        g, r, a = p["gender"].cpu(), p["race"].cpu(), p["age"].cpu()
        for i, f in enumerate(faces):
            attrs = {"p_female": float(g[i, 1])}
            attrs.update({f"p_{rn}": float(r[i, j]) for j, rn in enumerate(RACES)})
            attrs["age"] = float(a[i])
            f.attributes = {**f.attributes, **attrs}

    def work(self, rec: ImageRecord) -> float:
        """An image's share of a batch's work: its faces with a crop."""
        return float(sum(1 for f in rec.faces if f.crop is not None))

    def warmup(self, size: int = 128) -> None:
        """One prediction on a blank ``size`` px face (one-off costs up front)."""
        with torch.inference_mode():
            predict(self.modules["attributes"], torch.zeros((1, 3, size, size), device=self.device), voting=self.voting)

    def __repr__(self) -> str:
        return f"AttributeClassifier(voting={self.voting}, batch_size={self.batch_size}, device={self.device})"


class DirectionChooser:
    """Stage: sets ``face.direction`` for every face.

    Args:
        direction: a fixed direction (e.g. ``"male2female"``) given to every face, or
            ``"auto-gender"``: faces the attribute network calls male (``p_female < threshold``)
            get ``"male2female"``, the others ``"female2male"`` (needs :class:`AttributeClassifier`
            earlier in the pipeline).
        threshold: decision threshold on ``p_female`` for ``auto-gender``.
    """

    name = "direction"
    batched = False

    def __init__(self, direction: str, threshold: float = 0.5) -> None:
        if not direction or not isinstance(direction, str):
            raise ValueError("direction must be a non-empty string such as 'male2female' or 'auto-gender'")
        self.direction = direction
        self.threshold = float(threshold)

    def choose(self, attributes: dict[str, float]) -> str:
        """The direction for one face with these attributes."""
        if self.direction != AUTO_GENDER:
            return self.direction
        if "p_female" not in attributes:
            raise ValueError("auto-gender needs face.attributes['p_female']: put AttributeClassifier before DirectionChooser")
        return "female2male" if attributes["p_female"] >= self.threshold else "male2female"

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        for rec in batch:
            for f in rec.faces:
                f.direction = self.choose(f.attributes)
        return batch

    def __repr__(self) -> str:
        return f"DirectionChooser({self.direction!r})"


__all__ = ["predict", "AttributeClassifier", "DirectionChooser", "AUTO_GENDER", "RACES"]
