"""Stage: which faces of a photo get transformed (the per-face policy).

Faces a policy leaves out keep ``selected = False``: no later stage changes them, so their pixels
stay exactly as in the input, and the report says why (action ``"skip:policy"``).
"""

from __future__ import annotations

from faceswap_pipeline.types import FaceRecord, ImageRecord

POLICIES: tuple[str, ...] = ("all", "largest", "min-size N", "I,J,...")
"""The policy forms :func:`parse_policy` accepts."""


def parse_policy(policy: str | int | list[int] | tuple[int, ...]) -> tuple[str, object]:
    """Normalise a face policy: ``"all"``, ``"largest"``, ``"min-size N"`` (or ``"min-size:N"``:
    faces whose box is at least ``N`` source pixels on its shorter side) or explicit detection
    indices (``"0,2"``, an int or a list of ints; detection order = highest score first).

    Returns ``(kind, arg)`` with kind ``"all"`` / ``"largest"`` / ``"min-size"`` (arg: float px) /
    ``"indices"`` (arg: frozenset of int). Raises ``ValueError`` on anything else.
    """
    if isinstance(policy, int) and not isinstance(policy, bool):
        policy = [policy]
    if isinstance(policy, (list, tuple)):
        if not policy or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in policy):
            raise ValueError(f"face indices must be non-negative integers, got {policy!r}")
        return "indices", frozenset(policy)
    text = str(policy).strip().lower()
    if text in ("all", "largest"):
        return text, None
    if text.startswith("min-size"):
        num = text[len("min-size") :].lstrip(" :=")
        try:
            n = float(num)
        except ValueError:
            raise ValueError(f"min-size needs a size in pixels, e.g. 'min-size 80', got {policy!r}") from None
        if n < 0:
            raise ValueError(f"min-size must be >= 0, got {n}")
        return "min-size", n
    try:
        idx = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ValueError(f"unknown face policy {policy!r}; use one of: {', '.join(POLICIES)}") from None
    return parse_policy(idx)


def select_faces(faces: list[FaceRecord], policy: str | int | list[int] | tuple[int, ...]) -> list[bool]:
    """Which of one photo's ``faces`` (in detection order) ``policy`` (see :func:`parse_policy`) keeps."""
    kind, arg = parse_policy(policy)
    sides = [min(f.detection.width, f.detection.height) for f in faces]
    if kind == "all":
        return [True] * len(faces)
    if kind == "largest":
        best = max(range(len(faces)), key=lambda i: (sides[i], -i), default=-1)
        return [i == best for i in range(len(faces))]
    if kind == "min-size":
        return [s >= arg for s in sides]
    return [i in arg for i in range(len(faces))]


class FaceSelector:
    """Stage: marks the faces ``policy`` leaves out (``face.selected = False``, action ``"skip:policy"``).

    Args:
        policy: ``"all"`` (default), ``"largest"``, ``"min-size N"`` or detection indices; see
            :func:`parse_policy` (validated here, so a bad policy fails before any photo is read).
    """

    name = "select"
    batched = False

    def __init__(self, policy: str | int | list[int] | tuple[int, ...] = "all") -> None:
        kind, arg = parse_policy(policy)
        self.policy = policy if isinstance(policy, str) else ",".join(str(i) for i in sorted(arg))  # type: ignore[arg-type]

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        for rec in batch:
            for face, keep in zip(rec.faces, select_faces(rec.faces, self.policy)):
                face.selected = keep
                if not keep:
                    face.actions.append("skip:policy")
        return batch

    def __repr__(self) -> str:
        return f"FaceSelector({self.policy!r})"
