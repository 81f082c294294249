"""The public entry points: ready-made pipelines, detectors and upscalers from shipped weights."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from faceswap_pipeline.labels import AUTO_GENDER
from faceswap_pipeline.ops.masks import LANDMARK_MASKS, MASK_SHAPES
from faceswap_pipeline.pipeline import Pipeline
from faceswap_pipeline.stages.translate import DIRECTIONS, generator_name
from faceswap_pipeline.weights import manifests_read_once

if TYPE_CHECKING:
    from faceswap_pipeline.stages.upscale import ImageUpscaler
    from faceswap_pipeline.stages.verify import VerifiedDetector

DETECTORS = ("hog", "cascade")
UPSCALERS = ("resize", "srresnet")
BLEND_MODES = ("feather", "laplacian", "poisson")
LANDMARKERS = ("cnn", "dlib")


DEVICE_HELP = "auto (CUDA if torch sees a GPU, else CPU), cpu, cuda or cuda:N"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as such.

    Raises:
        ValueError: a device name that is none of those (e.g. ``"tpu"``), or a CUDA device that
            torch does not see. The message says what is available.
    """
    if isinstance(device, torch.device):
        dev = device
    elif str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        name = str(device).strip().lower()
        head, _, index = name.partition(":")
        if head not in ("cpu", "cuda") or (index and not index.isdigit()) or (head == "cpu" and index):
            raise ValueError(f"unknown device {device!r}; use {DEVICE_HELP}")
        dev = torch.device(name)
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"device {str(device)!r} was asked for but torch sees no CUDA GPU (use cpu or auto)")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"device {str(device)!r} was asked for but torch sees {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
    elif dev.type != "cpu":
        raise ValueError(f"unknown device {str(device)!r}; use {DEVICE_HELP}")
    return dev


def default_batch_size(device: str | torch.device = "auto") -> int:
    """Images processed together by a folder run: 8 on a GPU (their faces share network passes),
    1 on a CPU (batching gains little there, and every photo then finishes, shows on the progress
    bar and is timed on its own)."""
    return 8 if resolve_device(device).type == "cuda" else 1


@manifests_read_once()
def load_detector(
    name: str = "hog",
    device: str | torch.device = "auto",
    weights_dir: str | os.PathLike[str] | None = None,
    verify_threshold: float | str | None = "auto",
    **kwargs: Any,
) -> VerifiedDetector:
    """A face detector with its second opinion: ``det(image) -> list[Detection]``.

    Every detection path (this function, :func:`load_pipeline`, the ``run`` and ``detect``
    commands) is built here, so they all give the same faces: the detector, then the
    :class:`~faceswap_pipeline.stages.verify.FaceVerifier` (the cascade's 48-net re-scores each
    detected window and drops those below ``verify_threshold``).

    Args:
        name: ``"hog"`` (dlib's HOG + linear-SVM frontal face detector) or ``"cascade"`` (this
            project's CNN cascade, Li et al. 2015; boxes calibrated to the HOG framing).
        device: for the networks (``"auto"``, ``"cpu"``, ``"cuda"``); HOG always runs on the CPU.
        weights_dir: folder with ``manifest.json`` (default: the shipped weights).
        verify_threshold: ``"auto"`` (default): the face-probability threshold recorded with the
            cascade weights (:func:`~faceswap_pipeline.stages.verify.stored_threshold`, 0.001 for
            the shipped ones); a number in [0, 1); None or 0: no verification.
        **kwargs: detector options (HOG: ``upsample``, ``min_face``, ``threshold``, ``max_side``;
            cascade: see :class:`~faceswap_pipeline.stages.detect_cascade.CascadeDetector`).

    Returns:
        A :class:`~faceswap_pipeline.stages.verify.VerifiedDetector`: call it on a
        ``(H, W, 3)`` uint8 RGB array (``.detect_faces(image)`` also gives each face's
        ``face_prob``); ``.detector`` / ``.verifier`` are its two parts.
    """
    from faceswap_pipeline.stages.verify import FaceVerifier, VerifiedDetector, resolve_threshold

    threshold = resolve_threshold(verify_threshold)
    if name == "hog":
        from faceswap_pipeline.stages.detect_hog import HogDetector

        det: Any = HogDetector(**kwargs)
    elif name == "cascade":
        from faceswap_pipeline.stages.detect_cascade import CascadeDetector

        det = CascadeDetector.from_pretrained(device=resolve_device(device), weights_dir=None if weights_dir is None else str(weights_dir), **kwargs)
    else:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    verifier = None
    if threshold != 0.0:  # None: the threshold recorded with the cascade weights
        verifier = FaceVerifier.from_pretrained(threshold, resolve_device(device), weights_dir)
    return VerifiedDetector(det, verifier)


@manifests_read_once()
def load_upscaler(name: str = "srresnet", scale: int = 4, device: str | torch.device = "auto",
                  weights_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> ImageUpscaler:
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

    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
    if name == "resize":
        return ImageUpscaler.resize(scale=scale)
    if name == "srresnet":
        from faceswap_pipeline.weights import has_model

        if not has_model(f"srresnet.x{scale}", weights_dir):
            have = sorted(int(k.split(".x")[1]) for k in sr_models(weights_dir))
            raise ValueError(f"no SRResNet model for x{scale} (trained: {', '.join(f'x{k}' for k in have) or 'none'}); "
                             "use upscaler 'resize' for other factors")
        return ImageUpscaler.from_pretrained(f"srresnet.x{scale}", device=resolve_device(device), weights_dir=weights_dir, **kwargs)
    raise ValueError(f"unknown upscaler {name!r}; choose one of {', '.join(UPSCALERS)}")


def sr_models(weights_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the SRResNet models (``srresnet.xK``) in the searched weights folders."""
    from faceswap_pipeline.weights import read_manifest, search_dirs

    names = {n for d in search_dirs(weights_dir) for n in read_manifest(d) if n.startswith("srresnet.x") and n[10:].isdigit()}
    return sorted(names)


def model_framing(directions: list[str], weights_dir: str | os.PathLike[str] | None = None) -> tuple[tuple[float, ...], int]:
    """The crop framing ``(rescale, size)`` the generators for ``directions`` were trained with.

    Raises ``ValueError`` if they differ (one crop stage feeds them all).
    """
    from faceswap_pipeline.weights import model_framing as framing_of

    framings = {framing_of([generator_name(d)], weights_dir) for d in directions}
    if len(framings) != 1:
        raise ValueError(f"generators for {directions} were trained with different framings: {framings}")
    return framings.pop()


@manifests_read_once()
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
    blend: str = "poisson",
    mask: str = "landmarks",
    landmarks: str = "cnn",
    align: bool = False,
    fallback: str | None = "auto",
    harmonise: str = "auto",
    faces: str | int | list[int] = "all",
    strength: float = 1.0,
    head_only: bool = False,
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
        verify_threshold: drop detections (of either detector) that the cascade's 48-net scores
            below this face probability (:class:`~faceswap_pipeline.stages.verify.FaceVerifier`,
            the same second opinion as :func:`load_detector`); ``"auto"`` (default): the
            threshold recorded with the cascade weights
            (:func:`~faceswap_pipeline.stages.verify.stored_threshold`); None or 0 keeps every
            detection.
        blend: paste-back mode: ``"poisson"`` (default: OpenCV's seamless cloning, the only mode
            that adds no colour step at the mask's edge on both seam benchmarks,
            ``docs/benchmarks/blend.md``), ``"feather"`` (alpha mix) or ``"laplacian"``
            (multi-band); see :mod:`faceswap_pipeline.ops.seamless`.
        mask: ``"landmarks"`` (default: face-shaped, from 68 landmarks), ``"head"`` (the face
            with the hairline and the hair above it, from the same landmarks), ``"ellipse"`` (the
            earlier default) or ``"rect"`` (the original design's square feather).
        landmarks: who finds the landmarks for ``mask="landmarks"`` or ``"head"``: ``"cnn"`` (the shipped
            landmark CNN, batched) or ``"dlib"`` (dlib's predictor; needs face-recognition-models).
        align: turn faces whose eyes tilt by 5 degrees or more upright before the generator and back
            at paste-back (:class:`~faceswap_pipeline.stages.align.FaceAligner`; uses the
            ``landmarks`` finder even when ``mask`` is not ``"landmarks"``).
        fallback: a second detector for photos the first found no face in
            (:class:`~faceswap_pipeline.stages.detect_fallback.SecondPass`): ``"auto"`` (default:
            the cascade after HOG, which evens out HOG's miss rates across skin tones; none after
            the cascade), ``"hog"``, ``"cascade"`` or None.
        harmonise: skin-tone harmonisation at paste-back (the neck, ears and forehead around a
            face follow its new tone; :mod:`faceswap_pipeline.ops.harmonise`): ``"auto"``
            (default: race swaps), ``"on"`` or ``"off"``.
        faces: which faces of each photo to transform: ``"all"`` (default), ``"largest"``,
            ``"min-size N"`` (shorter box side >= N source px) or detection indices (``"0,2"``);
            see :func:`~faceswap_pipeline.stages.select.parse_policy`. The others stay as they are.
        strength: edit strength in [0, 1]: 1 (default) the full translation, 0 the input back
            bit-identical, in between a blend in the generator's output space.
        head_only: build only the per-image stages up to the face crops (detector, verifier,
            second pass, face choice, crop), the part that
            :func:`~faceswap_pipeline.folder.ray_engine.split_pipeline` calls the head; no
            landmark, attribute, generator or SR network is loaded. Its stages are those of the
            full pipeline built with the same arguments (what the Ray engine's CPU tasks run).

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
    if blend not in BLEND_MODES:
        raise ValueError(f"unknown blend mode {blend!r}; choose one of {', '.join(BLEND_MODES)}")
    if mask not in MASK_SHAPES:
        raise ValueError(f"unknown mask {mask!r}; choose one of {', '.join(MASK_SHAPES)}")
    if landmarks not in LANDMARKERS:
        raise ValueError(f"unknown landmarker {landmarks!r}; choose one of {', '.join(LANDMARKERS)}")
    rescale, size = model_framing(directions, weights_dir)
    if not 0.0 <= feather <= 0.5:
        raise ValueError(f"feather must be in [0, 0.5], got {feather}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    stages: list[Any] = [load_detector(detector, dev, weights_dir, verify_threshold, **(detector_kwargs or {}))]
    second = ("cascade" if detector == "hog" else None) if fallback == "auto" else fallback
    if second is not None:
        if second not in DETECTORS or second == detector:
            raise ValueError(f"fallback must be 'auto', None or a detector other than {detector!r} ({', '.join(DETECTORS)}), not {fallback!r}")
        from faceswap_pipeline.stages.detect_fallback import SecondPass

        stages.append(SecondPass(load_detector(second, dev, weights_dir, verify_threshold)))
    if faces != "all":
        from faceswap_pipeline.stages.select import FaceSelector

        stages.append(FaceSelector(faces))
    stages.append(CropLetterbox(rescale, size))
    if head_only:
        return Pipeline(stages)
    if mask in LANDMARK_MASKS or align:
        from faceswap_pipeline.stages.landmarks import LandmarkDetector

        stages.append(LandmarkDetector.from_pretrained(landmarks, dev, weights_dir, batch_size=batch_size))
    if align:
        from faceswap_pipeline.stages.align import FaceAligner

        stages.append(FaceAligner())
    if direction == AUTO_GENDER:
        from faceswap_pipeline.stages.classify import AttributeClassifier, DirectionChooser

        stages += [AttributeClassifier.from_pretrained(device=dev, weights_dir=weights_dir, batch_size=batch_size), DirectionChooser(AUTO_GENDER)]
        translator = Translator.from_pretrained(directions, weights_dir, dev, batch_size=batch_size, strength=strength)
    else:
        translator = Translator.from_pretrained(direction, weights_dir, dev, batch_size=batch_size, strength=strength)
    stages.append(translator)
    if upscaler == "srresnet":
        from faceswap_pipeline.stages.upscale import SRUpscaler

        stages.append(SRUpscaler.from_pretrained(device=dev, weights_dir=weights_dir, batch_size=batch_size))
    stages.append(FeatherBlend(feather=feather, shape=mask, mode=blend, harmonise=harmonise))
    return Pipeline(stages)
