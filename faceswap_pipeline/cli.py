"""Command line interface: a thin layer over the Python API.

``faceswap-pipeline run | detect | upscale | demo | weights | prepare | train | evaluate``
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from faceswap_pipeline import __version__

log = logging.getLogger("faceswap_pipeline")

# Subcommands that hand their remaining arguments to a training module's own ``main(argv)``.
_PASSTHROUGH = {
    "prepare": ("faceswap_pipeline.train.prepare", "build 128x128 training packs from a labelled face folder"),
    "evaluate": ("faceswap_pipeline.train.evaluate", "measure a generator's swap rate and identity distance"),
}
TRAIN_FAMILIES = ("attributes", "cyclegan", "srresnet", "cascade")


def _common(p: argparse.ArgumentParser, batch: bool = True) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda (default: %(default)s)")
    p.add_argument("--weights-dir", default=None, help="folder with manifest.json (default: shipped weights or $FACESWAP_WEIGHTS)")
    if batch:
        p.add_argument("--batch-size", type=int, default=8, help="images per batch; their faces share network passes (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose output exists (default: skip them, so a re-run resumes)")
    p.add_argument("--report", default=None, help="write a JSON report of every input here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _detector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", choices=("hog", "cascade"), default="hog", help="face detector (default: %(default)s)")
    p.add_argument("--upsample", type=int, default=None, help="HOG: times the image is doubled before scanning (default 1)")
    p.add_argument("--min-face", type=int, default=None, help="ignore faces smaller than this many pixels")
    p.add_argument("--threshold", type=float, default=None,
                   help="HOG: SVM score threshold (default 0, dlib's; 0.2 drops ~5%% of real faces), cascade: final-net probability")
    p.add_argument("--verify-threshold", type=float, default=None,
                   help="HOG: drop detections the cascade's 48-net scores below this face probability "
                        "(default: the threshold recorded with the cascade weights, 0.001 for the shipped ones; 0 keeps all)")


def _verify_threshold(a: argparse.Namespace) -> float | None:
    """The face-verification threshold a command uses: None = the one recorded with the cascade
    weights, 0 = off (always off for the cascade detector)."""
    if a.detector != "hog":
        if a.verify_threshold:
            raise SystemExit("--verify-threshold applies to --detector hog only (the cascade's last stage is the same net)")
        return 0.0
    return a.verify_threshold


def _detector_kwargs(a: argparse.Namespace) -> dict:
    kw = {}
    if a.upsample is not None:
        if a.detector != "hog":
            raise SystemExit("--upsample applies to --detector hog only")
        kw["upsample"] = a.upsample
    if a.min_face is not None:
        kw["min_size" if a.detector == "hog" else "min_face"] = a.min_face
    if a.threshold is not None:
        if a.detector == "hog":
            kw["threshold"] = a.threshold
        else:
            raise SystemExit("--threshold for the cascade: set thresholds in the Python API (CascadeDetector(thresholds=...))")
    return kw


def build_parser() -> argparse.ArgumentParser:
    from faceswap_pipeline.api import AUTO_GENDER, UPSCALERS
    from faceswap_pipeline.stages.translate import DIRECTIONS

    parser = argparse.ArgumentParser(prog="faceswap-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="swap every face in a folder of photos")
    p.add_argument("input_dir", type=Path)
    p.add_argument("output_dir", type=Path)
    p.add_argument("--direction", required=True, choices=(*DIRECTIONS, AUTO_GENDER))
    _detector_args(p)
    p.add_argument("--upscaler", choices=UPSCALERS, default="srresnet",
                   help="how the 128 px face is enlarged for paste-back: SRResNet x4 for faces pasted above 128 px, or bicubic (default: %(default)s)")
    p.add_argument("--feather", type=float, default=0.12, help="blend fall-off, fraction of face size (default: %(default)s)")
    _common(p)

    p = sub.add_parser("detect", help="detect faces in a folder of photos; boxes as JSON")
    p.add_argument("input_dir", type=Path)
    p.add_argument("output", type=Path, help="JSON file of boxes per image (also the resume state)")
    _detector_args(p)
    _common(p)

    p = sub.add_parser("upscale", help="super-resolve every image in a folder (tiled, any size)")
    p.add_argument("input_dir", type=Path)
    p.add_argument("output_dir", type=Path)
    p.add_argument("--scale", type=int, default=4, help="upscaling factor (default: %(default)s)")
    p.add_argument("--upscaler", choices=UPSCALERS, default="srresnet", help="(default: %(default)s)")
    p.add_argument("--tile", type=int, default=256, help="SR tile side in input pixels (default: %(default)s)")
    _common(p)

    p = sub.add_parser("demo", help="run the swap on a photo that scikit-image ships; write before/after")
    p.add_argument("--output-dir", type=Path, default=Path("demo_output"), help="(default: %(default)s)")
    p.add_argument("--direction", default="female2male", choices=(*DIRECTIONS, AUTO_GENDER), help="(default: %(default)s; the photo shows a woman)")
    p.add_argument("--upscaler", choices=UPSCALERS, default="srresnet")
    p.add_argument("--device", default="auto")
    p.add_argument("--weights-dir", default=None)

    p = sub.add_parser("weights", help="list or verify the shipped weights")
    p.add_argument("action", choices=("list", "verify"))
    p.add_argument("--weights-dir", default=None)

    for name, (_, help_) in _PASSTHROUGH.items():
        sub.add_parser(name, help=help_ + " (see `%(prog)s " + name + " --help`)", add_help=False)
    sub.add_parser("train", help=f"train a model: {', '.join(TRAIN_FAMILIES)} (see `train FAMILY --help`)", add_help=False)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity + 1, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _finish(report, what: str) -> int:
    print(json.dumps({"command": what, "ok": report.n_ok, "skipped": report.n_skipped, "failed": report.n_failed}))
    return report.exit_code


def cmd_run(a: argparse.Namespace) -> int:
    from faceswap_pipeline.api import load_pipeline

    verify = _verify_threshold(a)
    pipe = load_pipeline(
        a.direction, detector=a.detector, upscaler=a.upscaler, device=a.device, weights_dir=a.weights_dir,
        batch_size=max(16, a.batch_size), feather=a.feather, detector_kwargs=_detector_kwargs(a),
        verify_threshold="auto" if verify is None else verify,
    )
    log.info("%r", pipe)
    report = pipe.run_folder(a.input_dir, a.output_dir, batch_size=a.batch_size, overwrite=a.overwrite, report=a.report, progress=not a.no_progress)
    return _finish(report, "run")


def cmd_detect(a: argparse.Namespace) -> int:
    from faceswap_pipeline.api import load_detector, resolve_device
    from faceswap_pipeline.folder import ItemResult, run_folder
    from faceswap_pipeline.types import ImageRecord

    det = load_detector(a.detector, a.device, a.weights_dir, **_detector_kwargs(a))
    threshold = _verify_threshold(a)
    verifier = None
    if threshold != 0.0:  # None: the threshold recorded with the cascade weights
        from faceswap_pipeline.stages.verify import FaceVerifier

        verifier = FaceVerifier.from_pretrained(threshold, resolve_device(a.device), a.weights_dir)

    def face_dict(face):
        d = face.detection.to_dict()
        if "face_prob" in face.attributes:
            d["face_prob"] = round(face.attributes["face_prob"], 4)
        return d

    def process(items):
        recs = det([ImageRecord(image=it.rgb) for it in items])  # the stage protocol, as in the pipeline
        if verifier is not None:
            recs = verifier(recs)
        return [ItemResult(image=None, info={"faces": [face_dict(f) for f in r.faces], "n_faces": len(r.faces)}) for r in recs]

    report = run_folder(a.input_dir, None, process, batch_size=a.batch_size, overwrite=a.overwrite,
                        report_path=a.output, write_outputs=False, progress=not a.no_progress)
    if a.report and Path(a.report) != a.output:
        report.save(a.report)
    return _finish(report, "detect")


def cmd_upscale(a: argparse.Namespace) -> int:
    from faceswap_pipeline.api import load_upscaler
    from faceswap_pipeline.folder import ItemResult, run_folder

    kw = {"tile": a.tile} if a.upscaler == "srresnet" else {}
    up = load_upscaler(a.upscaler, scale=a.scale, device=a.device, weights_dir=a.weights_dir, **kw)

    def process(items):
        return [ItemResult(image=up(it.rgb), info={"scale": a.scale}) for it in items]

    report = run_folder(a.input_dir, a.output_dir, process, batch_size=1, overwrite=a.overwrite,
                        report_path=a.report, progress=not a.no_progress)
    return _finish(report, "upscale")


def cmd_demo(a: argparse.Namespace) -> int:
    import numpy as np
    from skimage import data

    from faceswap_pipeline.api import load_pipeline
    from faceswap_pipeline.io import write_image

    pipe = load_pipeline(a.direction, upscaler=a.upscaler, device=a.device, weights_dir=a.weights_dir)
    photo = data.astronaut()
    out, faces = pipe(photo)
    a.output_dir.mkdir(parents=True, exist_ok=True)
    write_image(a.output_dir / "astronaut_swapped.png", out)
    write_image(a.output_dir / "astronaut_before_after.png", np.concatenate([photo, out], axis=1))
    print(json.dumps({"faces": [f.to_dict() for f in faces], "output": str(a.output_dir / "astronaut_swapped.png"),
                      "before_after": str(a.output_dir / "astronaut_before_after.png")}, indent=1))
    return 0


def cmd_weights(a: argparse.Namespace) -> int:
    from faceswap_pipeline.weights import WeightsError, read_manifest, verify, weights_dir

    models = read_manifest(a.weights_dir)
    bad = 0
    for name, entry in models.items():
        if a.action == "verify":
            try:
                verify(name, a.weights_dir)
                status = "ok"
            except WeightsError as e:
                status, bad = f"FAILED: {e}", bad + 1
        else:
            status = entry.get("file", "")
        print(f"{name:28s} {entry.get('arch', ''):18s} {entry.get('storage', ''):5s} {status}")
    print(f"{len(models)} models in {weights_dir(a.weights_dir)}" + (f", {bad} failed verification" if bad else ""))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``faceswap-pipeline``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbosity = 0
    while argv and argv[0] in ("-v", "-vv", "--verbose"):
        verbosity += 2 if argv.pop(0) == "-vv" else 1
    if argv and argv[0] in _PASSTHROUGH:
        _setup_logging(verbosity)
        return int(importlib.import_module(_PASSTHROUGH[argv[0]][0]).main(argv[1:]) or 0)
    if argv and argv[0] == "train":
        if len(argv) < 2 or argv[1] not in TRAIN_FAMILIES:
            print(f"usage: faceswap-pipeline train {{{','.join(TRAIN_FAMILIES)}}} [options]", file=sys.stderr)
            return 2
        _setup_logging(verbosity)
        return int(importlib.import_module(f"faceswap_pipeline.train.{argv[1]}").main(argv[2:]) or 0)
    a = build_parser().parse_args(argv)
    _setup_logging(verbosity + a.verbose)
    from faceswap_pipeline.weights import WeightsError

    handler = {"run": cmd_run, "detect": cmd_detect, "upscale": cmd_upscale, "demo": cmd_demo, "weights": cmd_weights}[a.command]
    try:
        return handler(a)
    except (WeightsError, ValueError, RuntimeError, FileNotFoundError, NotADirectoryError) as e:
        print(f"faceswap-pipeline {a.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
