"""How well a swap works: the project's own measures, and the ``evaluate`` command.

* :func:`target_rate` - fraction of outputs the attribute network (``attributes.v1``, 45-window
  voting) assigns to the target gender (or race).
* :func:`identity_distance` - Euclidean distance between dlib's 128-D face descriptors
  (``dlib_face_recognition_resnet_model_v1`` + ``shape_predictor_5_face_landmarks`` from the
  ``face_recognition_models`` package) of each input and its output; dlib's rule of thumb is
  that < 0.6 means "same person".
* :func:`contact_sheet` - a PNG of faces before (odd rows) and after (even rows).
* :func:`translate_faces`, :func:`pair_probs`, :func:`generator_target_rate` - the trainers' fast
  single-pass versions (uint8 faces straight from a pack, bf16 optional), used for validation
  during training and for the export metrics.

``main(argv)``: run a generator over source-domain faces of a validation pack and report all three.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceswap_pipeline.labels import GENDERS, RACES
from faceswap_pipeline.ops.geometry import CHIP_RESCALE

log = logging.getLogger(__name__)

SAME_PERSON = 0.6
"""dlib's threshold: descriptor distances below it are usually the same person."""


def _as_bchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` or float ``(N, 3, H, W)`` in [0, 1] -> float32 ``(N, 3, H, W)`` in [0, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) float, got {tuple(images.shape)}")
    return images.float()


def _as_nhwc_u8(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """The inverse of :func:`_as_bchw`: ``(N, H, W, 3)`` uint8."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    t = torch.as_tensor(images).detach().float().cpu()
    return t.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def target_rate(
    attr_model: torch.nn.Module,
    outputs: np.ndarray | torch.Tensor,
    target_gender: int | str,
    voting: bool = True,
    batch_size: int = 16,
) -> float:
    """Fraction of ``outputs`` that the attribute network classifies as ``target_gender``.

    Args:
        attr_model: the attribute network (e.g. ``load_model("attributes.v1")``).
        outputs: swapped faces, ``(N, H, W, 3)`` uint8 or ``(N, 3, H, W)`` float32 in [0, 1]
            (letterboxed like the pipeline's crops).
        target_gender: 0/"male" or 1/"female"; a race name ("white", "asian", ...) measures the
            race head instead.
        voting: 45-window test-time voting (as the pipeline classifies faces).
        batch_size: faces per forward pass.

    Returns:
        A float in [0, 1] (NaN when there are no outputs).
    """
    from faceswap_pipeline.stages.classify import predict

    x = _as_bchw(outputs)
    if len(x) == 0:
        return float("nan")
    with torch.inference_mode():
        p = predict(attr_model.eval(), x, voting=voting, batch_size=batch_size)
    if isinstance(target_gender, str) and target_gender in RACES:
        return float((p["race"].argmax(1) == RACES.index(target_gender)).float().mean())
    g = GENDERS.index(target_gender) if isinstance(target_gender, str) else int(target_gender)
    return float((p["gender"].argmax(1) == g).float().mean())


def _model_file(name: str) -> str:
    """Path of a ``face_recognition_models`` data file without needing ``pkg_resources``."""
    try:
        import face_recognition_models as frm

        getter = {
            "dlib_face_recognition_resnet_model_v1.dat": frm.face_recognition_model_location,
            "shape_predictor_5_face_landmarks.dat": frm.pose_predictor_five_point_model_location,
        }[name]
        return getter()
    except ImportError:  # its __init__ imports pkg_resources (setuptools), absent from lean envs
        import importlib.util

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("the face_recognition_models package is not installed") from None
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from face_recognition_models") from None
        return str(path)


@lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any, Any]:
    import dlib

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat")),
    )


def framing_box(size: int, rescale: Sequence[float]) -> tuple[float, float, float, float]:
    """Where a (square) detector box lies inside a ``size`` letterboxed crop made with ``rescale``.

    The inverse of the pipeline's framing for a square box: the crop window is
    ``(l + r) / 2`` box-widths wide and ``(t + b) / 2`` box-heights tall, scaled so its longer
    side is ``size`` and centred.
    """
    fl, ft, fr, fb = (float(f) for f in rescale)
    ww, wh = (fl + fr) / 2, (ft + fb) / 2
    side = size / max(ww, wh)
    ox, oy = (size - ww * side) / 2, (size - wh * side) / 2
    x0, y0 = ox + (fl - 1) / 2 * side, oy + (ft - 1) / 2 * side
    return (x0, y0, x0 + side, y0 + side)


def face_boxes(
    images: np.ndarray | torch.Tensor, rescale: Sequence[float] = CHIP_RESCALE
) -> tuple[list[tuple[float, float, float, float]], np.ndarray]:
    """dlib HOG (upsample 1) on each face crop: the largest box, or :func:`framing_box` when HOG finds none.

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB or ``(N, 3, H, W)`` float32 in [0, 1].
        rescale: the crops' framing, for the fallback box.

    Returns:
        ``(boxes, found)``: ``(x0, y0, x1, y1)`` per image, and ``(N,)`` bool, True where HOG found a face.
    """
    det = _dlib_models()[0]
    u8 = _as_nhwc_u8(images)
    boxes, found = [], np.zeros(len(u8), dtype=bool)
    for i, im in enumerate(u8):
        rects = det(im, 1)
        if len(rects):
            r = max(rects, key=lambda r: r.area())
            boxes.append((float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)))
            found[i] = True
        else:
            boxes.append(framing_box(im.shape[1], rescale))
    return boxes, found


def face_descriptors(
    images: np.ndarray | torch.Tensor,
    boxes: Sequence[Sequence[float]] | None = None,
    rescale: Sequence[float] = CHIP_RESCALE,
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """dlib 128-D face descriptors of face crops.

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB or ``(N, 3, H, W)`` float32 in [0, 1].
        boxes: face box per image (``(x0, y0, x1, y1)``); default: :func:`face_boxes`.
        rescale: the crops' framing, for the fallback box.

    Returns:
        ``(descriptors (N, 128) float32, boxes used)``.
    """
    import dlib

    _, sp, rec = _dlib_models()
    u8 = _as_nhwc_u8(images)
    used = [tuple(float(v) for v in b) for b in boxes] if boxes is not None else face_boxes(u8, rescale)[0]
    out = np.zeros((len(u8), 128), np.float32)
    for i, (im, b) in enumerate(zip(u8, used)):
        rect = dlib.rectangle(int(round(b[0])), int(round(b[1])), int(round(b[2])) - 1, int(round(b[3])) - 1)
        out[i] = np.asarray(rec.compute_face_descriptor(im, sp(im, rect)), dtype=np.float32)
    return out, used


def identity_distance(
    inputs_uint8: np.ndarray | torch.Tensor,
    outputs_uint8: np.ndarray | torch.Tensor,
    rescale: Sequence[float] = CHIP_RESCALE,
) -> np.ndarray:
    """Distance between dlib face descriptors of each input face and its swapped output.

    Landmarks (5 points) are found inside one box per pair: HOG's box on the *input* crop
    (upsample 1), or the crop's framing box when HOG misses, so both faces are measured in the
    same place. Outputs of a good swap stay below :data:`SAME_PERSON` (0.6).

    Args:
        inputs_uint8: ``(N, H, W, 3)`` uint8 RGB (float ``(N, 3, H, W)`` in [0, 1] also accepted).
        outputs_uint8: the same shape as the inputs.
        rescale: the crops' framing (only for the fallback box).

    Returns:
        ``(N,)`` float32 distances (0 for identical images).
    """
    a = _as_nhwc_u8(inputs_uint8)
    b = _as_nhwc_u8(outputs_uint8)
    if a.shape != b.shape:
        raise ValueError(f"inputs {a.shape} and outputs {b.shape} differ")
    da, boxes = face_descriptors(a, None, rescale)
    db, _ = face_descriptors(b, boxes, rescale)
    return np.linalg.norm(da - db, axis=1).astype(np.float32)


def contact_sheet(
    inputs: np.ndarray | torch.Tensor,
    outputs: np.ndarray | torch.Tensor,
    path: str | os.PathLike[str] | None,
    cols: int = 8,
    gap: int = 2,
    palette: bool = False,
) -> np.ndarray:
    """Grid of faces before/after: each block of two rows is ``cols`` inputs over their outputs.

    Args:
        inputs, outputs: ``(N, H, W, 3)`` uint8 (or ``(N, 3, H, W)`` float in [0, 1]).
        path: PNG to write (parent folders are created); None: only return the array.
        cols: faces per row.
        gap: white pixels between tiles.
        palette: write the PNG with a 256-colour palette (median cut, Floyd-Steinberg), to keep
            sheets that are committed small; the returned array is the full-colour sheet.

    Returns:
        The sheet, ``(rows * 2 * (H + gap) + gap, cols * (W + gap) + gap, 3)`` uint8.
    """
    a, b = _as_nhwc_u8(inputs), _as_nhwc_u8(outputs)
    if a.shape != b.shape:
        raise ValueError(f"inputs {a.shape} and outputs {b.shape} differ")
    n, h, w = a.shape[:3]
    rows = max(1, -(-n // cols))
    sheet = np.full((rows * 2 * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        x = gap + c * (w + gap)
        y = gap + 2 * r * (h + gap)
        sheet[y : y + h, x : x + w] = a[i]
        sheet[y + h + gap : y + 2 * h + gap, x : x + w] = b[i]
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if palette:
            from PIL import Image

            img = Image.fromarray(sheet).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
            img.save(path, format="PNG", optimize=True)
        else:
            import imageio.v3 as iio

            iio.imwrite(str(path), sheet, extension=".png")
    return sheet


def grid_png(rows: Sequence[Sequence[torch.Tensor]], path: Path) -> None:
    """Write rows of (N, 3, H, W) [-1, 1] tensors as one PNG (rows x (N*len(row)) tiles)."""
    import imageio.v3 as iio

    lines = []
    for row in rows:
        tiles = [t.detach().float().cpu() for t in row]
        n = len(tiles[0])
        lines.append(torch.cat([torch.cat([t[i] for t in tiles], 2) for i in range(n)], 2))
    img = torch.cat(lines, 1).add(1).mul(127.5).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, img)


@torch.no_grad()
def translate_faces(gen: torch.nn.Module, images_u8: torch.Tensor, batch: int = 64, amp: bool = False) -> torch.Tensor:
    """Run a generator on uint8 faces, as the CycleGAN trainer feeds them (``x / 127.5 - 1``).

    Shape: (N, 3, H, W) uint8 -> (N, 3, H, W) float32 in [0, 1] (on the generator's device).
    """
    dev = next(gen.parameters()).device
    outs = []
    for i in range(0, len(images_u8), batch):
        x = images_u8[i : i + batch].to(dev).float().div(127.5).sub(1.0)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            y = gen(x)
        outs.append(y.float().add(1.0).mul(0.5).clamp(0, 1))
    return torch.cat(outs)


@torch.no_grad()
def pair_probs(attr: torch.nn.Module, images01: torch.Tensor, head: str = "gender", classes: tuple[int, int] = (0, 1),
               batch: int = 256) -> torch.Tensor:
    """P(``classes[1]``) against ``classes[0]`` by one head of the attribute network (P(female) by default), one pass.

    Shape: (N, 3, H, W) float in [0, 1] -> (N,) float32.
    """
    dev = next(attr.parameters()).device
    cls = list(classes)
    out = [attr(images01[i : i + batch].to(dev).float())[head].float()[:, cls].softmax(1)[:, 1] for i in range(0, len(images01), batch)]
    return torch.cat(out) if out else torch.zeros(0)


def generator_target_rate(gen: torch.nn.Module, attr: torch.nn.Module, images_u8: torch.Tensor, to_f: bool, amp: bool = False,
                          head: str = "gender", classes: tuple[int, int] = (0, 1)) -> float:
    """Fraction of translated uint8 faces one attribute head puts in the target domain (``to_f``: ``classes[1]``)."""
    p = pair_probs(attr, translate_faces(gen, images_u8, amp=amp), head, classes)
    hit = p > 0.5 if to_f else p <= 0.5
    return float(hit.float().mean())


def apply_generator(generator: torch.nn.Module, faces: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Run a CycleGAN generator on ``(N, 3, S, S)`` float32 in [0, 1] faces, in batches -> same range.

    Uses the pipeline's own :func:`~faceswap_pipeline.stages.translate.translate` (the [-1, 1]
    conversion lives there only).
    """
    from faceswap_pipeline.stages.translate import translate

    outs = []
    with torch.inference_mode():
        for i in range(0, len(faces), batch_size):
            outs.append(translate(generator, faces[i : i + batch_size]))
    return torch.cat(outs) if outs else faces.new_zeros(faces.shape)


def split_direction(direction: str) -> tuple[str, str]:
    """``"male2female"`` -> ``("male", "female")`` (domains are gender or race names)."""
    src, sep, dst = direction.partition("2")
    if not sep or src not in GENDERS + RACES or dst not in GENDERS + RACES:
        raise ValueError(f"direction {direction!r} is not '<domain>2<domain>' with domains {GENDERS + RACES}")
    return src, dst


def select_domain(pack: Any, domain: str, min_age: int | None, max_age: int | None, max_pad: float | None) -> np.ndarray:
    """Indices of a pack's faces in ``domain`` (age bounds apply to gender domains only)."""
    if domain in GENDERS:
        return pack.select(gender=domain, min_age=min_age, max_age=max_age, max_pad=max_pad)
    return pack.select(race=domain, max_pad=max_pad)


def evaluate_generator(
    generator: torch.nn.Module,
    attr_model: torch.nn.Module,
    inputs_u8: np.ndarray,
    direction: str,
    sheet_path: str | os.PathLike[str] | None = None,
    sheet_n: int = 32,
    rescale: Sequence[float] = CHIP_RESCALE,
    seed: int = 0,
    batch_size: int = 16,
    voting: bool = True,
    judge: Any | None = None,
    real_target_u8: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every measure of one generator on ``inputs_u8`` ``(N, S, S, 3)`` uint8 source-domain faces.

    The attribute network's target rate and dlib identity always; with ``judge`` (a
    :class:`~faceswap_pipeline.train.judge.Judge`), the independent judge's target rate and the
    quality figures too (realism needs ``real_target_u8``: real target-domain faces, >= 2N).
    """
    _, dst = split_direction(direction)
    x = _as_bchw(inputs_u8)
    y = apply_generator(generator, x, batch_size)
    rate_out = target_rate(attr_model, y, dst, voting=voting, batch_size=batch_size)
    rate_in = target_rate(attr_model, x, dst, voting=voting, batch_size=batch_size)
    dist = identity_distance(inputs_u8, y, rescale)
    res: dict[str, Any] = {
        "direction": direction,
        "n": int(len(x)),
        "voting": voting,
        "target_rate": round(rate_out, 4),
        "target_rate_of_inputs": round(rate_in, 4),
        "identity_distance_mean": round(float(dist.mean()), 4) if len(dist) else None,
        "identity_distance_median": round(float(np.median(dist)), 4) if len(dist) else None,
        "frac_same_person": round(float((dist < SAME_PERSON).mean()), 4) if len(dist) else None,
    }
    if judge is not None and len(x):
        from faceswap_pipeline.train.judge import describe

        ref = describe(real_target_u8, rescale)[0] if real_target_u8 is not None and len(real_target_u8) else None
        scored = judge.score(np.ascontiguousarray(inputs_u8), _as_nhwc_u8(y), direction, ref)
        res.update({k: v for k, v in scored.items() if k not in ("direction", "n")})
    if sheet_path is not None and len(x):
        pick = np.random.default_rng(seed).choice(len(x), size=min(sheet_n, len(x)), replace=False)
        contact_sheet(inputs_u8[pick], y[torch.from_numpy(pick)], sheet_path)
        res["contact_sheet"] = str(sheet_path)
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceswap-pipeline evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--generator", required=True, help="manifest name of the generator, e.g. cyclegan.male2female")
    p.add_argument("--pack", required=True, help="validation pack (prepare's <prefix>_val.npz)")
    p.add_argument("--direction", default=None, help="source2target (default: from the generator name)")
    p.add_argument("--weights-dir", default=None, help="weights folder of the generator")
    p.add_argument("--attr-weights-dir", default=None, help="weights folder of attributes.v1 (default: same as --weights-dir)")
    p.add_argument("--attr-name", default="attributes.v1")
    p.add_argument("--n", type=int, default=200, help="random source-domain faces to evaluate (0 = all)")
    p.add_argument("--min-age", type=int, default=18, help="age bounds for gender domains")
    p.add_argument("--max-age", type=int, default=70)
    p.add_argument("--max-pad", type=float, default=0.02, help="skip faces whose crop window is more than this outside the chip")
    p.add_argument("--sheet", default=None, help="contact sheet PNG of 32 random faces before/after")
    p.add_argument("--json", default=None, help="write the result here too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-voting", action="store_true", help="classify outputs with one pass instead of 45-window voting (45x faster)")
    p.add_argument("--no-judge", action="store_true", help="skip the independent dlib-descriptor judge and the quality figures")
    return p


def main(argv: list[str] | None = None) -> int:
    """``evaluate``: target rate, identity distance and contact sheet of a generator on a val pack;
    ``evaluate IN_DIR OUT_DIR``: the same figures (and the seam) for a finished ``run``
    (:mod:`faceswap_pipeline.train.evaluate_folder`)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and not args_in[0].startswith("-"):
        from faceswap_pipeline.train import evaluate_folder

        return evaluate_folder.main(args_in)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from faceswap_pipeline.train.packs import FacePack
    from faceswap_pipeline.weights import load_model, model_entry

    direction = args.direction or args.generator.split(".", 1)[-1]
    src, _ = split_direction(direction)
    gen = load_model(args.generator, weights_dir=args.weights_dir)
    framing = model_entry(args.generator, args.weights_dir).get("framing") or {}
    attr = load_model(args.attr_name, weights_dir=args.attr_weights_dir or args.weights_dir)
    pack = FacePack(args.pack)
    if framing and list(framing.get("rescale", [])) != list(pack.meta.get("framing", {}).get("rescale", [])):
        log.warning("generator framing %s differs from the pack's %s", framing.get("rescale"), pack.meta.get("framing"))
    idx = select_domain(pack, src, args.min_age, args.max_age, args.max_pad)
    rng = np.random.default_rng(args.seed)
    if args.n and len(idx) > args.n:
        idx = np.sort(rng.choice(idx, size=args.n, replace=False))
    judge, real = None, None
    if not args.no_judge:
        from faceswap_pipeline.train.judge import JUDGE_NAME, Judge
        from faceswap_pipeline.weights import has_model

        if has_model(JUDGE_NAME, args.weights_dir):
            judge = Judge(rescale=pack.meta.get("framing", {}).get("rescale", CHIP_RESCALE), weights_dir=args.weights_dir)
            _, dst = split_direction(direction)
            tidx = select_domain(pack, dst, args.min_age, args.max_age, args.max_pad)
            if len(tidx) > 2 * len(idx):
                tidx = np.sort(rng.choice(tidx, size=2 * len(idx), replace=False))
            real = pack.images(tidx)
        else:
            log.warning("%s not found: reporting without the independent judge", JUDGE_NAME)
    res = evaluate_generator(gen, attr, pack.images(idx), direction, args.sheet,
                             rescale=pack.meta.get("framing", {}).get("rescale", CHIP_RESCALE),
                             seed=args.seed, batch_size=args.batch_size, voting=not args.no_voting, judge=judge, real_target_u8=real)
    res.update({"generator": args.generator, "pack": str(args.pack), "command": "faceswap-pipeline evaluate " + " ".join(sys.argv[1:] if argv is None else argv)})
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
