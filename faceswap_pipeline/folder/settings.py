"""What a folder run's results were made with: the settings record and its comparison.

A run's ``settings`` (for ``run``: ``{"command": "run", **Pipeline.settings()}``) are recorded in
the output folder (:data:`~faceswap_pipeline.io.OUTPUT_MARKER`) and in the report; a re-run with
other settings into results it would skip raises :class:`SettingsMismatchError`.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from faceswap_pipeline.folder.report import read_json, to_jsonable, utc_now
from faceswap_pipeline.io import OUTPUT_MARKER, PathLike, atomic_write_bytes

RENAMED_OPTIONS = {("HogDetector", "min_size"): "min_face", ("SRUpscaler", "min_face"): "sr_above"}
"""Stage options recorded under another name by earlier versions: ``(stage class, old) -> new``.
A record that uses the old name means the same settings (its results resume)."""


class SettingsMismatchError(ValueError):
    """A re-run asked for other settings than the results already in its output folder or report."""


def _current_names(obj: Any) -> Any:
    """A settings tree with the options of :data:`RENAMED_OPTIONS` under their current names."""
    if isinstance(obj, list):
        return [_current_names(x) for x in obj]
    if not isinstance(obj, dict):
        return obj
    cls = obj.get("class")
    out = {}
    for k, v in obj.items():
        out[RENAMED_OPTIONS.get((cls, k), k) if isinstance(cls, str) else k] = _current_names(v)
    return out


def same_settings(old: Any, new: Any) -> bool:
    """Whether two settings records describe the same results (old option names allowed)."""
    return _current_names(to_jsonable(old)) == _current_names(to_jsonable(new))


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a settings tree; list items are named by their ``"stage"`` entry if they have one."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "stage" and prefix:
                continue
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        seen: collections.Counter[str] = collections.Counter()
        for i, x in enumerate(obj):
            name = str(x.get("stage", i))
            seen[name] += 1
            key = name if seen[name] == 1 else f"{name}#{seen[name]}"
            out.update(_flatten(x, key if not prefix or prefix == "stages" else f"{prefix}.{key}"))
    else:
        out[prefix] = obj
    return out


def settings_diff(old: Any, new: Any, limit: int = 4) -> str:
    """A short human-readable list of what differs between two settings trees."""
    a, b = _flatten(_current_names(old)), _flatten(_current_names(new))
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<none>") != b.get(k, "<none>")]
    keys.sort(key=lambda k: ".models." in f".{k}.")  # options first, weight digests last
    parts = [f"{k}: {a.get(k, '<none>')!r} -> {b.get(k, '<none>')!r}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return "; ".join(parts) or "none"


def read_marker(out_dir: PathLike) -> dict[str, Any] | None:
    """The settings record an earlier run left in ``out_dir`` (:data:`~faceswap_pipeline.io.OUTPUT_MARKER`), or None."""
    data = read_json(Path(out_dir) / OUTPUT_MARKER, "settings record")
    return data if isinstance(data, dict) else None


def write_marker(out_dir: Path, settings: dict[str, Any] | None, redo_before_ns: int | None) -> None:
    """Record ``settings`` in ``out_dir`` (atomically); ``redo_before_ns``: outputs not newer are stale."""
    from faceswap_pipeline import __version__

    doc = {"format": 1, "written_by": f"faceswap_pipeline {__version__}", "updated": utc_now(),
           "settings": to_jsonable(settings), "redo_before_ns": redo_before_ns}
    atomic_write_bytes(out_dir / OUTPUT_MARKER, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
