"""Stage 4: CycleGAN translation of the letterboxed faces (the only place [-1, 1] exists)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from faceswap_pipeline.stages.base import ModelStage, for_chunks
from faceswap_pipeline.types import ImageRecord

DIRECTIONS: tuple[str, ...] = (
    "male2female",
    "female2male",
    "white2asian",
    "asian2white",
    "white2black",
    "black2white",
)
"""Translations a generator can be trained for; each has the weights name ``cyclegan.<direction>``."""


def generator_name(direction: str) -> str:
    """Weights name of the generator for ``direction`` (raises ``ValueError`` for unknown ones)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    return f"cyclegan.{direction}"


def translate(generator: nn.Module, faces: torch.Tensor) -> torch.Tensor:
    """Run a generator on letterboxed faces, converting the value range on the way in and out.

    Shape: (N, 3, S, S) float32 in [0, 1] -> (N, 3, S, S) float32 in [0, 1].
    """
    y = generator(faces * 2.0 - 1.0)
    return ((y.float() + 1.0) * 0.5).clamp_(0.0, 1.0)


class Translator(ModelStage):
    """Stage: sets ``face.output`` (3, S, S) float32 in [0, 1] for faces with a direction it serves.

    Faces of every record in the call are batched together (``batch_size`` per forward pass) per
    direction. A face whose ``direction`` is None gets ``default_direction`` (when given); faces
    whose direction this stage has no generator for, and faces a policy left out
    (``face.selected`` False), are left untouched (not swapped).

    ``strength`` s in [0, 1] sets how far each face moves: ``output = crop + s * (G(crop) - crop)``
    in the generator's [0, 1] output space (1: the full translation; 0: the face is not touched at
    all, so the photo comes back bit-identical). It is recorded per face (``face.strength``).

    Args:
        generators: direction -> generator taking (N, 3, S, S) in [-1, 1].
        default_direction: direction for faces no earlier stage assigned one to.
        device: where the generators run.
        batch_size: faces per forward pass.
        amp: use bf16 autocast on CUDA (ignored on CPU, where it is slower for small batches and
            changes results).
        strength: edit strength in [0, 1] (default 1).
    """

    name = "translate"

    def __init__(
        self,
        generators: Mapping[str, nn.Module],
        default_direction: str | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        amp: bool = True,
        strength: float = 1.0,
    ) -> None:
        super().__init__(device, batch_size)
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.strength = float(strength)
        self.modules = {d: g.eval() for d, g in generators.items()}
        self.default_direction = default_direction
        self.amp = amp
        self.to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        directions: str | list[str],
        weights_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        **kwargs,
    ) -> Translator:
        """Load verified generators from ``weights/`` for one or more directions.

        A single direction becomes the default direction.
        """
        from faceswap_pipeline.weights import load_model

        dirs = [directions] if isinstance(directions, str) else list(directions)
        gens = {d: load_model(generator_name(d), weights_dir) for d in dirs}
        if isinstance(directions, str):
            kwargs.setdefault("default_direction", directions)
        return cls(gens, device=device, **kwargs)

    def process(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        todo: dict[str, list] = {}
        for rec in batch:
            for face in rec.faces:
                if face.direction is None:
                    face.direction = self.default_direction
                if face.selected and face.direction in self.modules and face.crop is not None:
                    if self.strength == 0.0:  # nothing to change: the face keeps its input pixels
                        face.strength = 0.0
                        face.actions.append("strength:0")
                    else:
                        todo.setdefault(face.direction, []).append(face)
        s = self.strength
        cuda = self.device.type == "cuda"
        for direction, faces in todo.items():
            gen = self.modules[direction]

            def run(chunk: list, gen: nn.Module = gen, direction: str = direction) -> None:
                x = torch.stack([f.crop for f in chunk]).to(self.device, non_blocking=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and self.amp):
                    y = translate(gen, x).float()
                if s < 1.0:
                    y = x.float().lerp(y, s)
                y = y.cpu()
                for f, out in zip(chunk, y):
                    f.output = out
                    f.strength = s
                    f.actions.append(f"translate:{direction}")

            for_chunks(self, faces, run)
        return batch

    def settings(self) -> dict:
        """The directions, the default one and a digest of each generator (``amp`` is precision only: left out)."""
        from faceswap_pipeline.stages.base import module_digest

        return {"class": "Translator", "default_direction": self.default_direction, "strength": self.strength,
                "models": {d: module_digest(g) for d, g in sorted(self.modules.items())}}

    def work(self, rec: ImageRecord) -> float:
        """An image's share of a batch's work: its faces this stage translates."""
        if self.strength == 0.0:
            return 0.0
        return float(sum(1 for f in rec.faces if f.selected and f.crop is not None and (f.direction or self.default_direction) in self.modules))

    def warmup(self, size: int = 128) -> None:
        """One forward pass per generator on a blank ``size`` px face (one-off costs up front)."""
        x = torch.zeros((1, 3, size, size), device=self.device)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda" and self.amp):
            for gen in self.modules.values():
                translate(gen, x)

    def __repr__(self) -> str:
        return f"Translator(directions={sorted(self.modules)}, strength={self.strength}, device={self.device}, batch_size={self.batch_size})"
