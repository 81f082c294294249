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
    p.add_argument("input_dir")
    p.add_argument("output_dir")
    p.add_argument("--direction", default="male2female", help="e.g. male2female, female2male, auto-gender")
    p.add_argument("--detector", default="hog", choices=("hog", "cascade"))
    p.add_argument("--device", default="auto")
    p.add_argument("--report", default=None)
    a = p.parse_args(argv)

    pipe = fp.load_pipeline(a.direction, detector=a.detector, device=a.device)
    report = pipe.run_folder(a.input_dir, a.output_dir, report=a.report)
    print(f"{report.n_ok} swapped, {report.n_skipped} already done, {report.n_failed} failed")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
