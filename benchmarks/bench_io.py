"""Image I/O and folder-runner benchmark: decode/encode speed, peak memory on a huge photo, read-ahead overlap.

Timing follows kornia's rules: a warm-up run, then ``--repeats`` timed runs, median and
inter-quartile range. Images are built from ``skimage.data.astronaut()`` (tiled for the big ones),
so the benchmark runs anywhere without data. Peak memory is a child process's peak resident set
(Linux ``VmHWM``) for one ``read_image`` of a ~90-megapixel JPEG, with and without an EXIF rotation.

    python benchmarks/bench_io.py --json runs/bench_io.json

The folder-runner part processes ``--n-images`` 1024x768 JPEGs with a ``process_batch`` that
sleeps ``--process-ms`` per image (standing in for the model) and compares the runner's wall time
with the sum of its per-file read + process + write times (what a plain loop would take).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def quartiles(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"median_ms": round(q[1] * 1e3, 2), "iqr_ms": round((q[2] - q[0]) * 1e3, 2)}


def timed(fn, repeats: int) -> dict[str, float]:
    fn()  # warm-up
    xs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t0)
    return quartiles(xs)


def photo(h: int, w: int) -> np.ndarray:
    from skimage import data

    a = data.astronaut()
    reps = (-(-h // a.shape[0]), -(-w // a.shape[1]), 1)
    return np.ascontiguousarray(np.tile(a, reps)[:h, :w])


_HWM = "[int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]"


def peak_rss_mb(path: Path | None) -> float:
    """Peak resident memory (Linux VmHWM) of a fresh process that reads ``path`` (None: imports only)."""
    code = "import warnings; warnings.simplefilter('ignore'); import numpy, PIL.Image; from faceswap_pipeline.io import read_image;"
    if path is not None:
        code += f"im = read_image({str(path)!r});"
    code += f"print({_HWM})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n-images", type=int, default=24)
    p.add_argument("--process-ms", type=float, default=50.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-readers", type=int, default=2)
    p.add_argument("--skip-huge", action="store_true", help="skip the ~90 MP peak-memory test")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)

    from PIL import Image

    from faceswap_pipeline.folder import ItemResult, run_folder
    from faceswap_pipeline.io import read_image, write_image

    res: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        img12 = photo(3000, 4000)  # 12 MP, a phone photo
        ex = Image.Exif()
        ex[0x0112] = 6
        Image.fromarray(img12).save(d / "p12.jpg", quality=90)
        Image.fromarray(img12).save(d / "p12_rot.jpg", quality=90, exif=ex.tobytes())
        Image.fromarray(img12).save(d / "p12.png", compress_level=6)
        loaded = read_image(d / "p12.jpg")
        res["read_12mp_jpeg"] = timed(lambda: read_image(d / "p12.jpg"), a.repeats)
        res["read_12mp_jpeg_exif_rotated"] = timed(lambda: read_image(d / "p12_rot.jpg"), a.repeats)
        res["read_12mp_png"] = timed(lambda: read_image(d / "p12.png"), a.repeats)
        res["write_12mp_jpeg_keep_qtables"] = timed(
            lambda: write_image(d / "o.jpg", loaded.rgb, like=loaded), a.repeats
        )
        res["write_12mp_png"] = timed(lambda: write_image(d / "o.png", loaded.rgb), a.repeats)

        if not a.skip_huge:
            huge = photo(8192, 11000)  # 90.1 MP
            Image.fromarray(huge).save(d / "huge.jpg", quality=90)
            Image.fromarray(huge).save(d / "huge_rot.jpg", quality=90, exif=ex.tobytes())
            del huge
            base = peak_rss_mb(None)
            res["huge_90mp"] = {
                "rgb_mb": round(8192 * 11000 * 3 / 2**20, 1),
                "baseline_rss_mb": round(base, 1),
                "peak_rss_mb": round(peak_rss_mb(d / "huge.jpg"), 1),
                "peak_rss_mb_exif_rotated": round(peak_rss_mb(d / "huge_rot.jpg"), 1),
            }

        src = d / "in"
        src.mkdir()
        small = photo(768, 1024)
        for i in range(a.n_images):
            Image.fromarray(np.roll(small, 37 * i, axis=1)).save(src / f"{i:03d}.jpg", quality=90)

        def process(items):
            time.sleep(a.process_ms / 1e3 * len(items))
            return [ItemResult(255 - it.rgb) for it in items]

        res["folder_runner"] = {
            "images": a.n_images,
            "size": "1024x768 JPEG",
            "process_ms_per_image": a.process_ms,
            "batch_size": a.batch_size,
            "num_readers": a.num_readers,
        }
        for background in (True, False):
            wall, serial = [], []
            for r in range(a.repeats + 1):
                rep = run_folder(
                    src, d / f"out{background}{r}", process, batch_size=a.batch_size, num_readers=a.num_readers,
                    progress=False, background_writes=background,
                )  # fmt: skip
                assert rep.exit_code == 0
                if r == 0:
                    continue  # warm-up
                wall.append(rep.elapsed_s / a.n_images)
                serial.append(sum(sum(it.timings.values()) for it in rep.items) / a.n_images)
            key = "background_writes" if background else "main_thread_writes"
            res["folder_runner"][key] = {
                "wall_per_image": quartiles(wall),
                "read_process_write_sum_per_image": quartiles(serial),
            }
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
