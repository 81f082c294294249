"""The public entry points: ready-made pipelines, detectors and upscalers from shipped weights."""

from __future__ import annotations

import os
from typing import Any

import torch

from faceswap_pipeline.ops.geometry import SEED_RESCALE
from faceswap_pipeline.pipeline import Pipeline
from faceswap_pipeline.stages.translate import DIRECTIONS, generator_name

AUTO_GENDER = "auto-gender"
DETECTORS = ("hog", "cascade")
UPSCALERS = ("resize", "srresnet")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU (use --device cpu or auto)")
    return dev


def load_detector(name: str = "hog", device: str | torch.device = "auto", weights_dir: str | os.PathLike[str] | None = None, **kwargs: Any):
    """A face detector: ``det(image) -> list[Detection]`` (``.box`` xyxy source pixels, ``.score``).

    Args:
        name: ``"hog"`` (dlib HOG + linear SVM, seed 002) or ``"cascade"`` (this project's CNN
            cascade, seed 004; boxes calibrated to the HOG framing).
        device: for the cascade (``"auto"``, ``"cpu"``, ``"cuda"``); HOG always runs on the CPU.
        weights_dir: folder with ``manifest.json`` (default: the shipped weights).
        **kwargs: detector options (HOG: ``upsample``, ``min_size``, ``threshold``, ``max_side``).

    Returns:
        A detection stage object; call it on a ``(H, W, 3)`` uint8 RGB array.
    """
    if name == "hog":
        from faceswap_pipeline.stages.detect_hog import HogDetector

        return HogDetector(**kwargs)
    if name == "cascade":
        from faceswap_pipeline.stages.detect_cascade import CascadeDetector

        return CascadeDetector.from_pretrained(device=resolve_device(device), weights_dir=weights_dir, **kwargs)
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


def load_upscaler(name: str = "srresnet", scale: int = 4, device: str | torch.device = "auto", weights_dir: str | os.PathLike[str] | None = None, **kwargs: Any):
    """An image upscaler: ``up(image) -> image`` (``(H, W, 3)`` uint8 -> ``(scale*H, scale*W, 3)`` uint8).

    Args:
        name: ``"srresnet"`` (trained SRResNet, tiled so large images fit in memory) or
            ``"resize"`` (antialiased bicubic).
        scale: upscaling factor (SRResNet: a factor a shipped model has).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        weights_dir: folder with ``manifest.json`` (default: the shipped weights).
        **kwargs: ``tile`` / ``overlap`` for SRResNet.
    """
    from faceswap_pipeline.stages.upscale import ImageUpscaler

    if name == "resize":
        return ImageUpscaler.resize(scale=scale)
    if name == "srresnet":
        return ImageUpscaler.from_pretrained(f"srresnet.x{scale}", device=resolve_device(device), weights_dir=weights_dir, **kwargs)
    raise ValueError(f"unknown upscaler {name!r}; choose one of {', '.join(UPSCALERS)}")


def model_framing(directions: list[str], weights_dir: str | os.PathLike[str] | None = None) -> tuple[tuple[float, ...], int]:
    """The crop framing ``(rescale, size)`` the generators for ``directions`` were trained with.

    Raises ``ValueError`` if they differ (one crop stage feeds them all).
    """
    from faceswap_pipeline.weights import model_entry

    framings = set()
    for d in directions:
        fr = model_entry(generator_name(d), weights_dir).get("framing", {})
        framings.add((tuple(float(f) for f in fr.get("rescale", SEED_RESCALE)), int(fr.get("size", 128))))
    if len(framings) != 1:
        raise ValueError(f"generators for {directions} were trained with different framings: {framings}")
    return framings.pop()


def load_pipeline(
    direction: str = "male2female",
    detector: str = "hog",
    upscaler: str = "srresnet",
    device: str | torch.device = "auto",
    weights_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    feather: float = 0.12,
    detector_kwargs: dict[str, Any] | None = None,
    verify_threshold: float | str | None = "auto",
) -> Pipeline:
    """The full face-swap pipeline from shipped weights.

    Args:
        direction: one of :data:`~faceswap_pipeline.stages.translate.DIRECTIONS`, or
            ``"auto-gender"`` (the attribute network picks male2female or female2male per face).
        detector: ``"hog"`` or ``"cascade"``.
        upscaler: ``"srresnet"`` (default: SR x4 for faces pasted larger than 128 px, none for
            smaller ones) or ``"resize"`` (bicubic paste-back only).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        weights_dir: folder with ``manifest.json`` (default: the shipped weights, or
            ``$FACESWAP_WEIGHTS``).
        batch_size: faces per network forward pass (faces of many images are batched together).
        feather: blending fall-off as a fraction of the face window's shorter side.
        detector_kwargs: options for the detector (see :func:`load_detector`).
        verify_threshold: with the HOG detector, drop detections that the cascade's 48-net scores
            below this face probability (:class:`~faceswap_pipeline.stages.verify.FaceVerifier`);
            ``"auto"`` (default): the threshold recorded with the cascade weights
            (:func:`~faceswap_pipeline.stages.verify.stored_threshold`); None or 0 keeps every
            detection. Not used with the cascade detector, whose last stage is that net.

    Returns:
        A :class:`~faceswap_pipeline.pipeline.Pipeline`: ``pipe(image) -> (out_image, faces)``
        and ``pipe.run_folder(in_dir, out_dir, ...)``.

    Raises:
        WeightsError: a needed model is not shipped or its file fails verification.
    """
    from faceswap_pipeline.stages.blend import FeatherBlend
    from faceswap_pipeline.stages.crop import CropLetterbox
    from faceswap_pipeline.stages.translate import Translator

    dev = resolve_device(device)
    if direction == AUTO_GENDER:
        directions = ["male2female", "female2male"]
    elif direction in DIRECTIONS:
        directions = [direction]
    else:
        raise ValueError(f"unknown direction {direction!r}; choose one of {', '.join((*DIRECTIONS, AUTO_GENDER))}")
    if upscaler not in UPSCALERS:
        raise ValueError(f"unknown upscaler {upscaler!r}; choose one of {', '.join(UPSCALERS)}")
    rescale, size = model_framing(directions, weights_dir)
    stages: list[Any] = [load_detector(detector, dev, weights_dir, **(detector_kwargs or {}))]
    if isinstance(verify_threshold, str) and verify_threshold != "auto":
        raise ValueError(f"verify_threshold must be a number, None or 'auto', not {verify_threshold!r}")
    if verify_threshold and detector == "hog":
        from faceswap_pipeline.stages.verify import FaceVerifier

        t = None if verify_threshold == "auto" else float(verify_threshold)
        stages.append(FaceVerifier.from_pretrained(t, dev, weights_dir))
    stages.append(CropLetterbox(rescale, size))
    if direction == AUTO_GENDER:
        from faceswap_pipeline.stages.classify import AttributeClassifier, DirectionChooser

        stages += [AttributeClassifier.from_pretrained(device=dev, weights_dir=weights_dir, batch_size=batch_size), DirectionChooser(AUTO_GENDER)]
        translator = Translator.from_pretrained(directions, weights_dir, dev, batch_size=batch_size)
    else:
        translator = Translator.from_pretrained(direction, weights_dir, dev, batch_size=batch_size)
    stages.append(translator)
    if upscaler == "srresnet":
        from faceswap_pipeline.stages.upscale import SRUpscaler

        stages.append(SRUpscaler.from_pretrained(device=dev, weights_dir=weights_dir, batch_size=batch_size))
    stages.append(FeatherBlend(feather=feather))
    return Pipeline(stages)
