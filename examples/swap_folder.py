"""Swap every face in a folder of selfies (the Python twin of `faceswap-pipeline run`).

    python examples/swap_folder.py photos/ swapped/ --direction male2female

Outputs mirror the input tree; existing outputs are skipped (re-run to resume); a JSON report
lists every file. Exit code 1 if any file failed.
"""

from __future__ import annotations

import argparse
import sys

import faceswap_pipeline as fp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input_dir", help="folder of photos (walked recursively)")
    p.add_argument("output_dir", help="folder for the swapped photos (the input tree mirrored)")
    p.add_argument("--direction", default="male2female", choices=(*fp.DIRECTIONS, "auto-gender"),
                   help="which swap (default: %(default)s; auto-gender: each face to the other gender)")
    p.add_argument("--detector", default="hog", choices=("hog", "cascade"), help="face detector (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--report", default=None, help="write a JSON report of every input here")
    a = p.parse_args(argv)

    from faceswap_pipeline.folder import check_paths

    try:
        check_paths(a.input_dir, a.output_dir, report_path=a.report)  # before loading models
        pipe = fp.load_pipeline(a.direction, detector=a.detector, device=a.device)
        report = pipe.run_folder(a.input_dir, a.output_dir, report=a.report)
    except (fp.WeightsError, OSError, ValueError) as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    print(f"{report.n_ok} swapped, {report.n_skipped} already done, {report.n_failed} failed")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
