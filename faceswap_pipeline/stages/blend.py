"""Stage 6: feathered paste-back of every processed face into a copy of the photo."""

from __future__ import annotations

from faceswap_pipeline.ops.blend import paste
from faceswap_pipeline.types import ImageRecord


class FeatherBlend:
    """Stage: sets ``rec.result`` = the photo with every face that has an ``output`` blended in.

    Faces are pasted in detection order. Pixels outside every face's blending mask stay
    bit-identical to the input.

    Args:
        feather: fall-off width as a fraction of the face window's shorter side (relative to face size).
        shape: ``"ellipse"`` (default) or ``"rect"``, see :func:`~faceswap_pipeline.ops.blend.feather_mask`.
    """

    name = "blend"

    def __init__(self, feather: float = 0.12, shape: str = "ellipse") -> None:
        if not 0.0 <= feather <= 0.5:
            raise ValueError(f"feather must be in [0, 0.5], got {feather}")
        self.feather = float(feather)
        self.shape = shape

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        for rec in batch:
            out = rec.image.copy()
            for face in rec.faces:
                if face.output is not None and face.transform is not None:
                    paste(out, face.output, face.transform, self.feather, self.shape)
                    face.actions.append("blend")
            rec.result = out
        return batch

    def __repr__(self) -> str:
        return f"FeatherBlend(feather={self.feather}, shape={self.shape!r})"
