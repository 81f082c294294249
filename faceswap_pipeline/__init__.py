"""faceswap_pipeline: change the apparent gender or race of every face in a photo.

Data flow (each a stage object, all run the same way by :class:`Pipeline`)::

    photo (H, W, 3) uint8 RGB
      -> detect   (HogDetector | CascadeDetector)       faces: Detection(box=(x0, y0, x1, y1), score)
      -> crop     (CropLetterbox: model's framing)       face.crop (3, 128, 128) float32 [0, 1]
      -> translate(Translator: CycleGAN generator)       face.output (3, 128, 128) float32 [0, 1]
      -> upscale  (SRUpscaler, optional)                 face.output (3, 512, 512) float32 [0, 1]
      -> blend    (FeatherBlend: inverse of the crop)    result (H, W, 3) uint8 RGB

Importing the package loads no model and does not import dlib; everything below is lazy.

"The original design", in the docstrings, is the set of write-ups this project implements: the
face swap (dlib HOG detection, per-side box rescale, letterboxed 128 px CycleGAN, SRResNet x4,
feathered paste-back), a CNN cascade detector (Li et al. 2015), an attribute CNN with 45-window
test-time voting and a 68-point landmark CNN. Where the code departs from them, it says so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Pipeline": "faceswap_pipeline.pipeline",
    "PipelineError": "faceswap_pipeline.pipeline",
    "load_pipeline": "faceswap_pipeline.api",
    "load_detector": "faceswap_pipeline.api",
    "load_upscaler": "faceswap_pipeline.api",
    "DIRECTIONS": "faceswap_pipeline.stages.translate",
    "Detection": "faceswap_pipeline.types",
    "CropTransform": "faceswap_pipeline.types",
    "FaceRecord": "faceswap_pipeline.types",
    "ImageRecord": "faceswap_pipeline.types",
    "WeightsError": "faceswap_pipeline.weights",
    "read_image": "faceswap_pipeline.io",
    "write_image": "faceswap_pipeline.io",
}

__all__ = [
    "DIRECTIONS", "CropTransform", "Detection", "FaceRecord", "ImageRecord", "Pipeline", "PipelineError",
    "WeightsError", "__version__", "load_detector", "load_pipeline", "load_upscaler", "read_image", "write_image",
]
assert set(__all__) == {*_LAZY, "__version__"}

if TYPE_CHECKING:  # pragma: no cover
    from faceswap_pipeline.api import load_detector, load_pipeline, load_upscaler
    from faceswap_pipeline.io import read_image, write_image
    from faceswap_pipeline.pipeline import Pipeline, PipelineError
    from faceswap_pipeline.stages.translate import DIRECTIONS
    from faceswap_pipeline.types import CropTransform, Detection, FaceRecord, ImageRecord
    from faceswap_pipeline.weights import WeightsError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceswap_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
