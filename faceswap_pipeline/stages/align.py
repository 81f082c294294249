"""Stage: turn tilted faces upright before the generator (``--align``)."""

from __future__ import annotations

from faceswap_pipeline.ops.align import rotated_window, tilt_degrees
from faceswap_pipeline.ops.geometry import letterbox_patch
from faceswap_pipeline.types import ImageRecord


class FaceAligner:
    """Stage: re-crops faces whose eyes tilt by ``min_angle`` degrees or more with the eyes level.

    Needs landmarks (the landmark stage before it) and the crop stage's transform. The crop
    window stays the same; its content is rotated about the window's centre
    (:func:`~faceswap_pipeline.ops.align.rotated_window`) and letterboxed as usual, and
    ``face.rotation`` records the angle so paste-back turns the output back (action
    ``"align:<degrees>"``). Faces tilted less keep their plain crop (bit-identical to no alignment).

    Args:
        min_angle: smallest tilt worth a re-crop, degrees.
        max_angle: larger tilts are taken as landmark failures and left alone.
    """

    name = "align"
    batched = False

    def __init__(self, min_angle: float = 5.0, max_angle: float = 60.0) -> None:
        if not 0.0 <= min_angle <= max_angle:
            raise ValueError(f"need 0 <= min_angle <= max_angle, got {min_angle}, {max_angle}")
        self.min_angle = float(min_angle)
        self.max_angle = float(max_angle)

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        for rec in batch:
            for face in rec.faces:
                pts = face.detection.landmarks
                if pts is None or face.transform is None or not face.selected:
                    continue
                angle = tilt_degrees(pts)
                if not self.min_angle <= abs(angle) <= self.max_angle:
                    continue
                face.crop = letterbox_patch(rotated_window(rec.image, face.transform.box, angle), face.transform)
                face.rotation = angle
                face.actions.append(f"align:{angle:.1f}")
        return batch

    def __repr__(self) -> str:
        return f"FaceAligner(min_angle={self.min_angle}, max_angle={self.max_angle})"
