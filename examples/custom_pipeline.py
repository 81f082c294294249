"""Build a pipeline from your own choice of stage objects and run it on a photo that scikit-image ships.

Here: a stricter HOG detector (with the usual verifier), only the largest face, a wider blend and
no upscaling.

    python examples/custom_pipeline.py --out custom.png [--detector cascade]

Any object with a ``name`` and ``__call__(list[ImageRecord]) -> list[ImageRecord]`` is a stage,
so you can insert your own (say, a stage that only swaps the largest face) between the others.
"""

from __future__ import annotations

import argparse

import faceswap_pipeline as fp
from faceswap_pipeline.api import model_framing
from faceswap_pipeline.stages.blend import FeatherBlend
from faceswap_pipeline.stages.crop import CropLetterbox
from faceswap_pipeline.stages.translate import Translator
from faceswap_pipeline.types import ImageRecord


class LargestFaceOnly:
    """Example custom stage: keep only the largest detected face of each image."""

    name = "largest"

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        for rec in batch:
            rec.faces = sorted(rec.faces, key=lambda f: -f.detection.width * f.detection.height)[:1]
        return batch


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="custom_pipeline.png", help="where to write the swapped photo (default: %(default)s)")
    p.add_argument("--direction", default="female2male", choices=fp.DIRECTIONS,
                   help="which generator to run (default: %(default)s; the photo shows a woman)")
    p.add_argument("--detector", default="hog", choices=("hog", "cascade"), help="face detector (default: %(default)s)")
    a = p.parse_args(argv)

    from skimage import data

    detector = fp.load_detector(a.detector, **({"threshold": 0.5} if a.detector == "hog" else {}))
    rescale, size = model_framing([a.direction])  # crop faces the way the generator was trained
    pipe = fp.Pipeline([
        detector,
        LargestFaceOnly(),
        CropLetterbox(rescale, size),
        Translator.from_pretrained(a.direction),
        FeatherBlend(feather=0.2),
    ])
    print(pipe)
    out, faces = pipe(data.astronaut())
    fp.write_image(a.out, out)
    print(f"{len(faces)} face(s) swapped -> {a.out}")


if __name__ == "__main__":
    main()
