"""Stage: a second detector for the photos the first one found no face in.

dlib HOG misses more faces of some groups than of others (on held-out UTKFace photos: 94.1 % of
Black adults' faces vs 96.8 % of White adults'; ``benchmarks/bench_detection_fairness.py``); the
cascade misses different ones. Run after the first detector (and its verifier), this stage runs
a second verified detector only on the photos left without a face, so it costs nothing where the
first succeeded and changes no photo in which the first found a face.
"""

from __future__ import annotations

from typing import Any

from faceswap_pipeline.stages.base import stage_settings
from faceswap_pipeline.types import ImageRecord


class SecondPass:
    """Stage: ``detector`` on the records that have no faces yet (action ``"second_pass"`` per face found).

    Args:
        detector: a detection stage for whole records, normally a
            :class:`~faceswap_pipeline.stages.verify.VerifiedDetector` (detector + verifier).
    """

    name = "detect_fallback"
    batched = False

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        empty = [rec for rec in batch if not rec.faces]
        if empty:
            self.detector(empty)
            for rec in empty:
                for face in rec.faces:
                    face.actions.append("second_pass")
        return batch

    def work(self, rec: ImageRecord) -> float:
        """Only photos without faces cost anything (the timing split follows)."""
        return 0.0 if rec.faces else 1.0

    def warmup(self) -> None:
        """Warm up the second detector."""
        fn = getattr(self.detector, "warmup", None)
        if callable(fn):
            fn()

    def settings(self) -> dict[str, Any]:
        """The second detector's settings."""
        return {"class": "SecondPass", "detector": stage_settings(self.detector)}

    def __repr__(self) -> str:
        return f"SecondPass({self.detector!r})"
