"""The folder walk: which files of an input folder are images to process (:func:`iter_images`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from faceswap_pipeline.io.image import PathLike

logger = logging.getLogger("faceswap_pipeline.io")  # the name users see on its messages

#: Suffixes (lower case, with the dot) that :func:`iter_images` picks up by default.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".tif",
    ".tiff",
    ".bmp",
)
"""GIF is readable (first frame) but not walked by default: rewriting an animated GIF as one
palette frame would silently lose its animation. Pass ``extensions`` to include ``.gif``."""


def normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    """Lower-case suffixes with a leading dot: ``["JPG", ".png"]`` -> ``{".jpg", ".png"}``."""
    out = set()
    for ext in extensions:
        ext = str(ext).strip().lower()
        if not ext or ext == ".":
            raise ValueError(f"empty extension in {list(extensions)!r}")
        out.add(ext if ext.startswith(".") else "." + ext)
    return frozenset(out)


def has_image_suffix(path: PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> bool:
    """Anchored, case-insensitive suffix test: ``a.JPG`` matches ``.jpg``; ``a.jpg.txt``,
    ``jpg`` and ``.jpg`` (a hidden file with no suffix) do not."""
    return Path(path).suffix.lower() in normalise_extensions(extensions)


OUTPUT_MARKER = ".faceswap-pipeline.json"
"""File that a folder run writes into its output folder: the settings its outputs were made with
(see :mod:`faceswap_pipeline.folder`). :func:`iter_images` never enters a sub-folder that has one,
so the outputs of an earlier run inside an input folder are never read back as inputs."""


def iter_images(
    root: PathLike,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    *,
    exclude: PathLike | Iterable[PathLike] | None = None,
) -> list[Path]:
    """List the image files under ``root``, sorted.

    A file is listed when its last suffix, lower-cased, is one of ``extensions`` (anchored:
    ``.jpg`` matches ``a.JPG`` but not ``a.jpg.txt`` or a file named ``jpg``). Hidden files and
    folders (name starting with ``.``) are skipped, symlinked folders are not followed (no
    cycles), and the ``exclude`` folder(s) are never entered (for an output folder inside the
    input folder). Nor is any sub-folder holding an :data:`OUTPUT_MARKER`: it holds the outputs
    of an earlier run (a warning names it).

    Args:
        root: a folder, or a single file (returned as ``[root]`` whatever its suffix).
        extensions: suffixes to accept, with or without the dot, any case.
        recursive: descend into sub-folders.
        exclude: folder or folders not to enter.

    Returns:
        Paths ``root / relative``, sorted by their path relative to ``root``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {str(root)!r} does not exist")
    exts = normalise_extensions(extensions)
    if exclude is None:
        excluded: set[Path] = set()
    elif isinstance(exclude, (str, os.PathLike)):
        excluded = {Path(exclude).resolve()}
    else:
        excluded = {Path(e).resolve() for e in exclude}
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        logger.warning("cannot list folder %s: %s (its images are not included)", exc.filename, exc.strerror or exc)

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or not recursive:
                continue
            if excluded and (here / d).resolve() in excluded:
                continue
            if (here / d / OUTPUT_MARKER).is_file():
                logger.warning("not reading %s: it holds the outputs of an earlier run (it has %s)", here / d, OUTPUT_MARKER)
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if name.startswith("."):
                continue
            p = here / name
            if p.suffix.lower() in exts and p.is_file():
                found.append(p)
    found.sort(key=lambda p: p.relative_to(root).parts)
    return found
