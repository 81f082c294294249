"""A folder run's paths, checked before any work starts (and before any model is loaded)."""

from __future__ import annotations

import os
from pathlib import Path

from faceswap_pipeline.io import PathLike, has_image_suffix


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (both resolved by the caller)."""
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(folder: Path, what: str) -> None:
    """Raise unless ``folder`` exists as a writable folder or can be created."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise NotADirectoryError(f"cannot create the {what} {str(folder)!r}: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        if base == folder:
            raise PermissionError(f"the {what} {str(folder)!r} is not writable")
        raise PermissionError(f"cannot create the {what} {str(folder)!r}: no write permission in {str(base)!r}")


def check_paths(
    in_dir: PathLike,
    out_dir: PathLike | None = None,
    *,
    write_outputs: bool = True,
    report_path: PathLike | None = None,
) -> None:
    """Check a folder run's paths before any work starts (the CLI calls it before loading models).

    Raises, with a message that names the path and what to do:
        FileNotFoundError: ``in_dir`` does not exist.
        NotADirectoryError: ``out_dir`` is an existing file, or a parent of an output is a file.
        IsADirectoryError: ``report_path`` is a folder.
        PermissionError: the input cannot be read, or an output cannot be created.
        ValueError: ``out_dir`` is the input folder or contains it; no ``out_dir`` although
            outputs are written; ``report_path`` would overwrite an input image.
    """
    in_path = Path(in_dir)
    if not in_path.exists():
        raise FileNotFoundError(f"input {str(in_path)!r} does not exist")
    single_file = in_path.is_file()
    if not single_file and not in_path.is_dir():
        raise ValueError(f"input {str(in_path)!r} is neither a folder nor a file")
    if not os.access(in_path, os.R_OK | (0 if single_file else os.X_OK)):
        raise PermissionError(f"input {str(in_path)!r} is not readable")
    root_res = (in_path.parent if single_file else in_path).resolve()
    if write_outputs and out_dir is None:
        raise ValueError("out_dir is required when write_outputs is True")
    if out_dir is not None:
        out_path = Path(out_dir)
        out_res = out_path.resolve()
        if out_res == root_res and (not single_file or write_outputs):
            raise ValueError(
                f"output folder {str(out_path)!r} is the input folder: outputs would overwrite "
                "inputs; choose another folder"
            )
        if is_within(root_res, out_res) and out_res != root_res:
            raise ValueError(
                f"input folder {str(in_path if not single_file else in_path.parent)!r} is inside the output folder "
                f"{str(out_path)!r}: outputs could overwrite inputs; choose another folder"
            )
        if write_outputs:
            if out_path.exists() and not out_path.is_dir():
                raise NotADirectoryError(
                    f"output folder {str(out_path)!r} is an existing file: give a folder (it is created if needed)"
                )
            _check_creatable(out_path, "output folder")
    if report_path is not None:
        rep = Path(report_path)
        if rep.is_dir():
            raise IsADirectoryError(f"report {str(rep)!r} is a folder: give a file name, e.g. {str(rep / 'report.json')!r}")
        if rep.exists() and has_image_suffix(rep) and is_within(rep.resolve(), root_res):
            raise ValueError(f"report {str(rep)!r} is an input image: give another file name")
        _check_creatable(rep.parent, "folder of the report")
