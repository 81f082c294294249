"""``faceswap-pipeline evaluate IN_DIR OUT_DIR``: how well a finished ``run`` swapped its faces.

For every input photo and its output (matched by relative path), the faces are found again in the
**input** with the pipeline's default detector (dlib HOG + the verifier), and each face's chip (the
original design's framing, 128 px) is cut from the input and, at the very same window, from the output. On
those chip pairs this reports:

* faces found per photo, and photos where none was found ("missed"; with labels, per group);
* the independent judge (:class:`~faceswap_pipeline.train.judge.Judge`: probes on dlib face
  descriptors that no training loss sees): target rate of outputs and of inputs, identity distance
  (dlib descriptor distance input vs output, < 0.6 = same person), dlib finding the face in the
  output, sharpness and 2-px grid energy relative to the input;
* the seam: Lab Delta-E across the boundary of the region the paste changed
  (:func:`~faceswap_pipeline.ops.seam.seam_score`), against the same pixels of the input;
* everything per group where labels are known: UTKFace-style names ``age_gender_race_*.jpg``
  (gender 0 male / 1 female; race 0 white, 1 black, 2 asian, 3 indian, 4 others);
* a contact sheet (PNG) of up to 32 faces before/after, and per-face numbers in the JSON.

The direction comes from ``--direction`` or from the settings record the run left in OUT_DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from faceswap_pipeline.labels import GENDERS, RACES
from faceswap_pipeline.ops.geometry import CHIP_RESCALE

log = logging.getLogger(__name__)

def labels_from_name(name: str) -> dict[str, Any] | None:
    """``{"age", "gender", "race"}`` (names) from a UTKFace-style file name, or None."""
    from faceswap_pipeline.train.splits import parse_utk_name

    lab = parse_utk_name(name)
    return None if lab is None else {"age": lab.age, "gender": GENDERS[lab.gender], "race": RACES[lab.race]}


def direction_of_run(out_dir: str | Path) -> str | None:
    """The direction recorded in a run's settings (its translate stage), or None."""
    from faceswap_pipeline.folder import read_marker

    marker = read_marker(out_dir) or {}
    settings = marker.get("settings", marker)
    for st in settings.get("stages", []) if isinstance(settings, dict) else []:
        if st.get("stage") == "translate":
            return st.get("default_direction")
    return None


def changed_alpha(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 in [0, 1]: where a paste changed the photo (closed, softened), for the seam figure."""
    import cv2

    diff = (np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2) > 2).astype(np.uint8)
    diff = cv2.morphologyEx(diff, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return cv2.GaussianBlur(diff.astype(np.float32), (5, 5), 0)


def _chip(image: np.ndarray, box: tuple[float, float, float, float], rescale: tuple[float, ...]) -> np.ndarray:
    from faceswap_pipeline.ops.geometry import crop_letterbox, rescale_box

    sq, _ = crop_letterbox(image, rescale_box(box, rescale), 128)
    return (sq.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def evaluate_folder(
    in_dir: str | Path,
    out_dir: str | Path,
    direction: str | None = None,
    sheet: str | Path | None = None,
    weights_dir: str | None = None,
    limit: int = 0,
) -> dict[str, Any]:
    """Measure a finished run (see the module docstring).

    Args:
        in_dir, out_dir: the run's input and output folders (outputs matched by relative path).
        direction: e.g. ``"white2asian"``; default: the run's recorded direction.
        sheet: write a contact sheet PNG here.
        weights_dir: weights folder with the judge and the detector (default: the shipped ones).
        limit: evaluate at most this many photos (0 = all).

    Returns:
        A JSON-able dict: ``overall`` figures, ``groups`` (per label value), ``faces`` (per face),
        ``photos`` / ``missed`` counts.

    Raises:
        ValueError: no direction given or recorded, or nothing to evaluate.
    """
    from faceswap_pipeline.api import load_detector
    from faceswap_pipeline.io import iter_images, read_image
    from faceswap_pipeline.ops.seam import mean_scores, seam_score
    from faceswap_pipeline.train.evaluate import contact_sheet
    from faceswap_pipeline.train.judge import Judge

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    direction = direction or direction_of_run(out_dir)
    if not direction or direction == "auto-gender":
        raise ValueError("give --direction (the run's settings record names none, or auto-gender, which has no single target)")
    rescale = tuple(CHIP_RESCALE)
    detector = load_detector("hog", "cpu", weights_dir)
    files = iter_images(in_dir, exclude=out_dir)
    if limit:
        files = files[:limit]
    ins, outs, faces, seams = [], [], [], []
    photos = missed = 0
    miss_by: dict[str, int] = defaultdict(int)
    photos_by: dict[str, int] = defaultdict(int)
    for path in files:
        rel = path.relative_to(in_dir) if path != in_dir else Path(path.name)
        out_path = out_dir / rel if in_dir.is_dir() else out_dir / path.name
        if not out_path.is_file():
            log.warning("no output for %s", rel)
            continue
        try:
            before, after = read_image(path).rgb, read_image(out_path).rgb
        except Exception as exc:  # noqa: BLE001 - a broken file is reported and skipped
            log.warning("skipping %s: %s", rel, exc)
            continue
        if before.shape != after.shape:
            log.warning("skipping %s: output %s differs in size from input %s", rel, after.shape, before.shape)
            continue
        photos += 1
        labels = labels_from_name(path.name)
        for g in _groups(labels):
            photos_by[g] += 1
        dets = detector.detect(before)
        if not dets:
            missed += 1
            for g in _groups(labels):
                miss_by[g] += 1
            continue
        alpha = changed_alpha(before, after)
        for i, d in enumerate(dets):
            ins.append(_chip(before, d.box, rescale))
            outs.append(_chip(after, d.box, rescale))
            x0, y0, x1, y1 = (int(round(v)) for v in d.box)
            w = max(x1 - x0, y1 - y0)
            sl = (slice(max(y0 - w, 0), y1 + w), slice(max(x0 - w, 0), x1 + w))
            s = seam_score(before[sl], after[sl], alpha[sl])
            seams.append(s)
            faces.append({"input": str(rel), "face": i, "box": [round(float(v), 1) for v in d.box], "labels": labels,
                          "seam_delta_e": None if s is None else round(s.delta_e, 3)})
    if not faces:
        raise ValueError(f"no faces to evaluate in {in_dir} (photos read: {photos})")
    judge = Judge(rescale=rescale, weights_dir=weights_dir)
    X, Y = np.stack(ins), np.stack(outs)
    overall = judge.score(X, Y, direction)
    overall["seam"] = mean_scores([s for s in seams if s is not None])
    from faceswap_pipeline.train.judge import describe

    d_in, _, boxes = describe(X, rescale)
    d_out, _, _ = describe(Y, rescale, boxes=boxes)
    hit = judge.hits(d_out, direction)
    ident = np.linalg.norm(d_in - d_out, axis=1)
    for f, h, dist in zip(faces, hit, ident):
        f["judge_target"] = bool(h)
        f["identity"] = round(float(dist), 4)
    groups: dict[str, Any] = {}
    for g in sorted(photos_by):
        sel = np.array([g in _groups(f["labels"]) for f in faces])
        entry: dict[str, Any] = {"faces": int(sel.sum()), "photos": photos_by[g], "missed": miss_by[g]}
        if not sel.any():
            groups[g] = entry
            continue
        entry.update({"judge_target_rate": round(float(hit[sel].mean()), 4), "identity_median": round(float(np.median(ident[sel])), 4)})
        if g.startswith("race=") and _is_gender(direction) or g.startswith("gender=") and not _is_gender(direction):
            entry["kept"] = judge.kept(d_in[sel], d_out[sel], g.split("=", 1)[0])  # the attribute the swap must not change
        groups[g] = entry
    res: dict[str, Any] = {"direction": direction, "input_dir": str(in_dir), "output_dir": str(out_dir), "photos": photos,
                           "missed": missed, "faces": len(faces), "overall": overall, "groups": groups, "per_face": faces}
    if sheet:
        pick = np.linspace(0, len(X) - 1, min(32, len(X))).round().astype(int)
        contact_sheet(X[pick], Y[pick], sheet)
        res["contact_sheet"] = str(sheet)
    return res


def _is_gender(direction: str) -> bool:
    return direction.split("2", 1)[0] in GENDERS


def _groups(labels: dict[str, Any] | None) -> list[str]:
    if not labels:
        return []
    return [f"gender={labels['gender']}", f"race={labels['race']}"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceswap-pipeline evaluate IN_DIR OUT_DIR", description=__doc__.split("\n\n")[0])
    p.add_argument("input_dir", type=Path)
    p.add_argument("output_dir", type=Path)
    p.add_argument("--direction", default=None, help="the run's direction (default: from its settings record)")
    p.add_argument("--sheet", default=None, help="contact sheet PNG of up to 32 faces before/after")
    p.add_argument("--json", default=None, help="write the result here too")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--limit", type=int, default=0, help="at most this many photos (0 = all)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``evaluate IN_DIR OUT_DIR``: print the summary as JSON (``--json``: the full result, per face)."""
    args = build_parser().parse_args(argv)
    try:
        res = evaluate_folder(args.input_dir, args.output_dir, args.direction, args.sheet, args.weights_dir, args.limit)
    except (ValueError, FileNotFoundError) as exc:
        print(f"faceswap-pipeline evaluate: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        from faceswap_pipeline.io import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(res, indent=1) + "\n").encode())
    print(json.dumps({k: v for k, v in res.items() if k != "per_face"}))
    return 0
