"""Command line interface: a thin layer over the Python API.

``faceswap-pipeline run | detect | upscale | demo | serve | weights | prepare | train | evaluate``
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
    "evaluate": ("faceswap_pipeline.train.evaluate", "measure a swap: a finished run (IN_DIR OUT_DIR) or a generator on a validation pack"),
}
TRAIN_FAMILIES = ("attributes", "cyclegan", "srresnet", "cascade", "facecheck")


# ----------------------------------------------------------------------------------------------
# argument types: bad values are refused when the command line is parsed, with the reason


def _int_at_least(low: int, what: str = "an integer"):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    return parse


def _float_in(low: float, high: float, high_open: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low <= v < high if high_open else low <= v <= high):
            raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}{')' if high_open else ']'}, got {text}")
        return v

    return parse


def _accepted_by(check, text: str) -> str:
    """``text`` itself once ``check(text)`` accepts it; its ValueError becomes argparse's message."""
    try:
        check(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _face_policy(text: str) -> str:
    from faceswap_pipeline.stages.select import parse_policy

    return _accepted_by(parse_policy, text)


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _device(text: str) -> str:
    from faceswap_pipeline.api import resolve_device

    return _accepted_by(resolve_device, text)


_positive = _int_at_least(1)


def _logging_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", dest="sub_verbose", action="count", default=0,
                   help="more log output: -v progress messages (INFO), -vv debug (and tracebacks of errors)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only: no progress bar, no warnings")


def _device_args(p: argparse.ArgumentParser) -> None:
    from faceswap_pipeline.api import DEVICE_HELP

    p.add_argument("--device", type=_device, default="auto", help=f"{DEVICE_HELP} (default: %(default)s)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="CPU threads for the networks (default: torch's, one per core); 1 is often fastest on a busy machine")
    p.add_argument("--weights-dir", default=None,
                   help="folder with manifest.json; it must exist (default: $FACESWAP_WEIGHTS, else the shipped weights)")


def _common(p: argparse.ArgumentParser, batch: bool = True) -> None:
    _device_args(p)
    if batch:
        p.add_argument("--batch-size", type=_positive, default=None,
                       help="images processed together; their faces share network passes "
                            "(default: 8 on a GPU, 1 on a CPU, where batching gains little)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo inputs that are already done, with the settings given now (default: skip them, so a re-run resumes)")
    p.add_argument("--report", default=None, help="write a JSON report of every input here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _logging_args(p)


def _detector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", choices=("hog", "cascade"), default="hog", help="face detector (default: %(default)s)")
    p.add_argument("--upsample", type=_float_upsample, default=None,
                   help="HOG: times the image is doubled before scanning, 0-3 (default 1: faces down to ~40 px)")
    p.add_argument("--min-face", type=_int_at_least(0), default=None,
                   help="ignore faces smaller than this many pixels (cascade: at least 12; default: HOG 0, cascade 24)")
    p.add_argument("--threshold", type=_finite_float, default=None,
                   help="HOG: SVM score threshold (default 0, dlib's; 0.2 drops ~5%% of real faces); "
                        "cascade: the 48-net's face probability in [0, 1) (default: recorded with the weights)")
    p.add_argument("--verify-threshold", type=_float_in(0.0, 1.0, high_open=True), default=None,
                   help="second opinion on every detection (both detectors): drop those the cascade's 48-net scores below "
                        "this face probability (default: the threshold recorded with the cascade weights, 0.001 for the "
                        "shipped ones; 0 keeps all)")


def _port(text: str) -> int:
    v = _int_at_least(0, "a port number")(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {v}")
    return v


def _float_upsample(text: str) -> int:
    v = _int_at_least(0)(text)
    if v > 3:
        raise argparse.ArgumentTypeError(f"must be 0-3 (each doubles the image side), got {v}")
    return v


def _detector_kwargs(a: argparse.Namespace) -> dict:
    """Detector options from the command line (combinations argparse cannot check raise ValueError)."""
    kw: dict = {}
    if a.upsample is not None:
        if a.detector != "hog":
            raise ValueError("--upsample applies to --detector hog only")
        kw["upsample"] = a.upsample
    if a.min_face is not None:
        if a.detector == "cascade" and a.min_face < 12:
            raise ValueError(f"--min-face for the cascade must be >= 12 (its smallest window), got {a.min_face}")
        kw["min_face"] = a.min_face
    if a.threshold is not None:
        if a.detector == "hog":
            kw["threshold"] = a.threshold
        elif not 0.0 <= a.threshold < 1.0:
            raise ValueError(f"--threshold for the cascade is a probability in [0, 1), got {a.threshold}")
        else:
            kw["final_threshold"] = a.threshold
    return kw


def _blend_args(p: argparse.ArgumentParser) -> None:
    from faceswap_pipeline.api import BLEND_MODES, LANDMARKERS, MASK_SHAPES

    p.add_argument("--blend", choices=BLEND_MODES, default="poisson",
                   help="paste-back: alpha feather, laplacian (multi-band) or poisson (seamless cloning) (default: %(default)s)")
    p.add_argument("--mask", choices=MASK_SHAPES, default="landmarks",
                   help="blend mask: face-shaped from 68 landmarks, head (the face with hairline and hair), ellipse, or rect (the original design's square feather) (default: %(default)s)")
    p.add_argument("--landmarks", choices=LANDMARKERS, default="cnn",
                   help="landmarks for --mask landmarks/head: the shipped CNN (batched) or dlib's predictor "
                        "(needs face-recognition-models) (default: %(default)s)")
    p.add_argument("--align", action="store_true",
                   help="turn faces whose eyes tilt by 5 degrees or more upright for the generator, and back at paste-back")
    p.add_argument("--harmonise", choices=("auto", "on", "off"), default="auto",
                   help="move the skin around each face (neck, ears, forehead) toward the new face's tone; "
                        "auto: for race swaps (default: %(default)s)")


def _verify_threshold(a: argparse.Namespace) -> float | str:
    """``--verify-threshold`` for the API: ``"auto"`` unless given (0 turns verification off)."""
    return "auto" if a.verify_threshold is None else a.verify_threshold


def build_parser() -> argparse.ArgumentParser:
    from faceswap_pipeline.api import AUTO_GENDER, UPSCALERS
    from faceswap_pipeline.stages.translate import DIRECTIONS

    parser = argparse.ArgumentParser(prog="faceswap-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug); also after the command")
    parser.add_argument("-q", "--quiet", dest="top_quiet", action="store_true", help="errors only; also after the command")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="swap every face in a folder of photos")
    p.add_argument("input_dir", type=Path, help="folder of photos (walked recursively), or one photo")
    p.add_argument("output_dir", type=Path, help="folder for the outputs: the input tree mirrored, each file in its own format")
    p.add_argument("--direction", required=True, choices=(*DIRECTIONS, AUTO_GENDER),
                   help="which swap; auto-gender lets the attribute network choose per face")
    _detector_args(p)
    p.add_argument("--upscaler", choices=UPSCALERS, default="srresnet",
                   help="how the 128 px face is enlarged for paste-back: SRResNet x4 for faces pasted above 128 px, or bicubic (default: %(default)s)")
    p.add_argument("--feather", type=_float_in(0.0, 0.5), default=0.12,
                   help="blend fall-off, fraction of face size, 0-0.5 (default: %(default)s)")
    p.add_argument("--fallback", choices=("auto", "none", "hog", "cascade"), default="auto",
                   help="second detector for photos the first found no face in; auto: the cascade after HOG, "
                        "which evens out HOG's misses across skin tones (default: %(default)s)")
    p.add_argument("--faces", type=_face_policy, default="all", metavar="POLICY",
                   help="which faces to transform: all, largest, 'min-size N' (shorter box side >= N px) or indices such as 0,2 "
                        "(detection order); the others stay as they are (default: %(default)s)")
    p.add_argument("--strength", type=_float_in(0.0, 1.0), default=1.0,
                   help="edit strength 0-1: 1 the full swap, 0 the input unchanged, in between a blend (default: %(default)s)")
    p.add_argument("--workers", type=_positive, default=None,
                   help="processes decoding and encoding the photos while this one runs the networks on batches of them; "
                        "1: all in this process, as before (default: all cores)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine (--workers); ray: Ray Data, on a local Ray instance or a cluster (--address), "
                        "needs the ray extra (default: %(default)s)")
    p.add_argument("--address", default=None,
                   help="--engine ray: the cluster, 'auto' (the one `ray start` made this machine part of) or ray://HOST:10001 "
                        "(default: a local Ray instance, or $RAY_ADDRESS)")
    p.add_argument("--actors", type=_positive, default=None,
                   help="--engine ray: network actors, one pipeline each (default: one per GPU; without GPUs two thirds "
                        "of the cluster's CPUs)")
    _blend_args(p)
    _common(p)

    p = sub.add_parser("detect", help="detect faces in a folder of photos; boxes as JSON")
    p.add_argument("input_dir", type=Path, help="folder of photos (walked recursively), or one photo")
    p.add_argument("output", type=Path, help="JSON file of boxes per image (also the resume state)")
    _detector_args(p)
    _common(p)

    p = sub.add_parser("upscale", help="super-resolve every image in a folder (tiled, any size)")
    p.add_argument("input_dir", type=Path, help="folder of images (walked recursively), or one image")
    p.add_argument("output_dir", type=Path, help="folder for the upscaled images (the input tree mirrored)")
    p.add_argument("--scale", type=_int_at_least(2), default=4,
                   help="upscaling factor: srresnet has x4 (the factors of the models in the weights folder); resize: any >= 2 (default: %(default)s)")
    p.add_argument("--upscaler", choices=UPSCALERS, default="srresnet", help="trained SRResNet or bicubic (default: %(default)s)")
    p.add_argument("--tile", type=_int_at_least(16), default=256,
                   help="SR tile side in input pixels, >= 16 (bounds memory; default: %(default)s)")
    _common(p, batch=False)

    p = sub.add_parser("demo", help="run the swap on a photo that scikit-image ships; write before/after")
    p.add_argument("--output-dir", type=Path, default=Path("demo_output"), help="(default: %(default)s)")
    p.add_argument("--direction", default="female2male", choices=(*DIRECTIONS, AUTO_GENDER), help="(default: %(default)s; the photo shows a woman)")
    p.add_argument("--upscaler", choices=UPSCALERS, default="srresnet", help="face upscaler for the paste-back (default: %(default)s)")
    _blend_args(p)
    _device_args(p)
    _logging_args(p)

    p = sub.add_parser("serve", help="a local web page (and JSON API): drop photos in, download the results")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this computer only)")
    p.add_argument("--port", type=_port, default=8000, help="(default: %(default)s)")
    p.add_argument("--max-upload-mb", type=_float_in(0.001, 4096), default=50, help="largest photo file accepted (default: %(default)s)")
    p.add_argument("--max-megapixels", type=_float_in(0.001, 178), default=40, help="largest photo accepted (default: %(default)s)")
    _device_args(p)
    _logging_args(p)

    p = sub.add_parser("weights", help="list or verify the shipped weights")
    p.add_argument("action", choices=("list", "verify"), help="list the models, or check every file's sha256")
    p.add_argument("--weights-dir", default=None, help="folder with manifest.json (default: $FACESWAP_WEIGHTS, else the shipped weights)")
    _logging_args(p)

    for name, (_, help_) in _PASSTHROUGH.items():
        sub.add_parser(name, help=help_ + " (see `%(prog)s " + name + " --help`)", add_help=False)
    sub.add_parser("train", help=f"train a model: {', '.join(TRAIN_FAMILIES)} (see `train FAMILY --help`)", add_help=False)
    return parser


def _setup_logging(verbosity: int, quiet: bool = False) -> None:
    """Default: warnings and errors only; ``-v`` adds INFO, ``-vv`` DEBUG; ``-q`` errors only."""
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faceswap_pipeline").setLevel(level)


def _finish(report, what: str) -> int:
    print(json.dumps({"command": what, "ok": report.n_ok, "skipped": report.n_skipped, "failed": report.n_failed}))
    return report.exit_code


def _progress(a: argparse.Namespace) -> bool:
    return not (a.no_progress or a.quiet)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _batch_size(a: argparse.Namespace) -> int:
    from faceswap_pipeline.api import default_batch_size

    return a.batch_size if a.batch_size is not None else default_batch_size(a.device)


def cmd_run(a: argparse.Namespace) -> int:
    from faceswap_pipeline.api import load_pipeline
    from faceswap_pipeline.folder import FolderRun, check_paths

    check_paths(a.input_dir, a.output_dir, report_path=a.report)  # before any model is loaded
    det_kw = _detector_kwargs(a)
    if a.engine != "ray" and (a.address is not None or a.actors is not None):
        raise ValueError("--address and --actors apply to --engine ray")
    _set_threads(a.threads)
    pipe_kw = dict(
        detector=a.detector, upscaler=a.upscaler, weights_dir=a.weights_dir, feather=a.feather, detector_kwargs=det_kw,
        verify_threshold=_verify_threshold(a), blend=a.blend, mask=a.mask, landmarks=a.landmarks, harmonise=a.harmonise,
        align=a.align, fallback=None if a.fallback == "none" else a.fallback, faces=a.faces, strength=a.strength,
    )
    if a.engine == "ray":
        return _run_ray(a, pipe_kw)
    batch = _batch_size(a)
    pipe = load_pipeline(a.direction, device=a.device, batch_size=max(16, batch), **pipe_kw)
    log.debug("%r", pipe)
    from faceswap_pipeline.folder.workers import default_workers

    run = FolderRun.for_pipeline(pipe, a.input_dir, a.output_dir, batch_size=batch, overwrite=a.overwrite,
                                 report_path=a.report, progress=_progress(a),
                                 workers=a.workers if a.workers is not None else default_workers())
    return _finish(run.run(), "run")


def _run_ray(a: argparse.Namespace, pipe_kw: dict) -> int:
    """``run --engine ray``: the same job on Ray Data (:mod:`faceswap_pipeline.folder.ray_engine`)."""
    from faceswap_pipeline.folder.ray_engine import PipelineSpec, run_folder_ray

    if a.workers is not None:
        raise ValueError("--workers applies to --engine local; with --engine ray use --actors")
    device = a.device.split(":")[0]  # cuda:N -> cuda: Ray gives each actor its GPU
    spec = PipelineSpec(a.direction, {**pipe_kw, "batch_size": max(16, a.batch_size or 1)})
    report = run_folder_ray(spec, a.input_dir, a.output_dir, address=a.address, device=device, actors=a.actors,
                            batch_size=a.batch_size, threads=a.threads, overwrite=a.overwrite, report_path=a.report,
                            progress=_progress(a))
    return _finish(report, "run")


def cmd_detect(a: argparse.Namespace) -> int:
    """Detection through the same pipeline and runner as ``run`` (a failing image fails alone); only
    the faces' boxes, scores and face probabilities are reported, nothing is written."""
    from faceswap_pipeline.api import load_detector
    from faceswap_pipeline.folder import FolderRun, check_paths, detection_summary
    from faceswap_pipeline.pipeline import Pipeline

    check_paths(a.input_dir, None, write_outputs=False, report_path=a.output)
    if a.report:
        check_paths(a.input_dir, None, write_outputs=False, report_path=a.report)
    det_kw = _detector_kwargs(a)
    _set_threads(a.threads)
    det = load_detector(a.detector, a.device, a.weights_dir, _verify_threshold(a), **det_kw)
    run = FolderRun.for_pipeline(Pipeline([det]), a.input_dir, None, batch_size=_batch_size(a),
                                 settings={"command": "detect", **det.settings()}, describe_face=detection_summary,
                                 overwrite=a.overwrite, report_path=a.output, write_outputs=False, progress=_progress(a))
    report = run.run()
    if a.report and Path(a.report) != a.output:
        report.save(a.report)
    return _finish(report, "detect")


def cmd_upscale(a: argparse.Namespace) -> int:
    from faceswap_pipeline.api import load_upscaler
    from faceswap_pipeline.folder import FolderRun, UpscaleBatch, check_paths

    check_paths(a.input_dir, a.output_dir, report_path=a.report)
    _set_threads(a.threads)
    kw = {"tile": a.tile} if a.upscaler == "srresnet" else {}
    up = load_upscaler(a.upscaler, scale=a.scale, device=a.device, weights_dir=a.weights_dir, **kw)
    run = FolderRun(a.input_dir, a.output_dir, UpscaleBatch(up, a.scale), batch_size=1, overwrite=a.overwrite,
                    report_path=a.report, progress=_progress(a), settings={"command": "upscale", **up.settings()})
    return _finish(run.run(), "upscale")


def cmd_demo(a: argparse.Namespace) -> int:
    import numpy as np
    from skimage import data

    from faceswap_pipeline.api import load_pipeline
    from faceswap_pipeline.io import write_image

    _set_threads(a.threads)
    pipe = load_pipeline(a.direction, upscaler=a.upscaler, device=a.device, weights_dir=a.weights_dir,
                         blend=a.blend, mask=a.mask, landmarks=a.landmarks, harmonise=a.harmonise, align=a.align)
    photo = data.astronaut()
    out, faces = pipe(photo)
    a.output_dir.mkdir(parents=True, exist_ok=True)
    write_image(a.output_dir / "astronaut_swapped.png", out)
    write_image(a.output_dir / "astronaut_before_after.png", np.concatenate([photo, out], axis=1))
    print(json.dumps({"faces": [f.to_dict() for f in faces], "output": str(a.output_dir / "astronaut_swapped.png"),
                      "before_after": str(a.output_dir / "astronaut_before_after.png")}, indent=1))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    try:
        from faceswap_pipeline.web.app import serve
        from faceswap_pipeline.web.service import WebConfig
    except ImportError as e:
        raise RuntimeError(f"the web page needs the web extra (pip install 'faceswap_pipeline[web]'): {e}") from None
    _set_threads(a.threads)
    config = WebConfig(device=a.device, weights_dir=a.weights_dir, max_upload_bytes=int(a.max_upload_mb * (1 << 20)),
                       max_pixels=int(a.max_megapixels * 1e6))
    serve(a.host, a.port, config, log_level="warning" if a.quiet else "info")
    return 0


def cmd_weights(a: argparse.Namespace) -> int:
    from faceswap_pipeline.weights import WeightsError, primary_dir, read_manifest, verify

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
    print(f"{len(models)} models in {primary_dir(a.weights_dir)}" + (f", {bad} failed verification" if bad else ""))
    return 1 if bad else 0


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: printed as one line (with -vv also the traceback), exit 2."""
    from faceswap_pipeline.weights import WeightsError

    return (WeightsError, ValueError, RuntimeError, OSError)


def _run_guarded(command: str, verbosity: int, fn, *args) -> int:
    try:
        return int(fn(*args) or 0)
    except _user_errors() as e:
        if verbosity >= 2:
            log.exception("%s failed", command)
        print(f"faceswap-pipeline {command}: error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``faceswap-pipeline``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbosity, quiet = 0, False
    while argv and argv[0] in ("-v", "-vv", "--verbose", "-q", "--quiet"):
        flag = argv.pop(0)
        if flag in ("-q", "--quiet"):
            quiet = True
        else:
            verbosity += 2 if flag == "-vv" else 1
    if argv and argv[0] in _PASSTHROUGH:
        _setup_logging(verbosity, quiet)
        module = importlib.import_module(_PASSTHROUGH[argv[0]][0])
        return _run_guarded(argv[0], verbosity, module.main, argv[1:])
    if argv and argv[0] == "train":
        if len(argv) < 2 or argv[1] not in TRAIN_FAMILIES:
            print(f"usage: faceswap-pipeline train {{{','.join(TRAIN_FAMILIES)}}} [options]", file=sys.stderr)
            return 2
        _setup_logging(verbosity, quiet)
        module = importlib.import_module(f"faceswap_pipeline.train.{argv[1]}")
        return _run_guarded(f"train {argv[1]}", verbosity, module.main, argv[2:])
    a = build_parser().parse_args(argv)
    verbosity += a.verbose + getattr(a, "sub_verbose", 0)
    quiet = quiet or getattr(a, "quiet", False)
    _setup_logging(verbosity, quiet)
    handler = {"run": cmd_run, "detect": cmd_detect, "upscale": cmd_upscale, "demo": cmd_demo, "serve": cmd_serve, "weights": cmd_weights}[a.command]
    return _run_guarded(a.command, verbosity, handler, a)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
