"""The label vocabularies of the face data (UTKFace codes), in one place.

``GENDERS[i]`` / ``RACES[i]`` is the name of UTKFace code ``i``; :data:`AGE_BANDS` are the
half-open year intervals the independent judge and the reports group ages by.
"""

from __future__ import annotations

GENDERS: tuple[str, ...] = ("male", "female")
"""UTKFace gender codes 0, 1."""

RACES: tuple[str, ...] = ("white", "black", "asian", "indian", "other")
"""UTKFace race codes 0..4."""

AUTO_GENDER = "auto-gender"
"""The direction that lets the attribute network choose male2female or female2male per face."""

AGE_BANDS: tuple[tuple[int, int], ...] = ((0, 18), (18, 30), (30, 45), (45, 60), (60, 200))
"""Age bands ``[lo, hi)`` in years."""


def age_band_names() -> tuple[str, ...]:
    """``("0-17", "18-29", "30-44", "45-59", "60+")``."""
    return tuple(f"{lo}-{hi - 1}" if hi < 200 else f"{lo}+" for lo, hi in AGE_BANDS)


def age_band(age: int | float) -> int:
    """Index into :data:`AGE_BANDS` of an age in years (ages below 0 count as 0, above 199 as the last band)."""
    for i, (_, hi) in enumerate(AGE_BANDS):
        if age < hi:
            return i
    return len(AGE_BANDS) - 1


__all__ = ["GENDERS", "RACES", "AUTO_GENDER", "AGE_BANDS", "age_band", "age_band_names"]
