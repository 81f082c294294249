"""The project's one train/validation split of a labelled face folder (UTKFace naming).

Deterministic and independent of file order or machine: a file is in validation when the first
byte of sha1(file name) falls below ``val_fraction * 256``. Every trainer and evaluation uses
this, so no model is ever evaluated on faces another model of the project trained on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

VAL_FRACTION = 0.1
_UTK = re.compile(r"^(\d+)_(\d)_(\d)_")


@dataclass(frozen=True)
class UTKLabel:
    """Labels parsed from a UTKFace file name ``{age}_{gender}_{race}_{datetime}.jpg.chip.jpg``.

    gender: 0 male, 1 female. race: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
    """

    age: int
    gender: int
    race: int


def parse_utk_name(name: str) -> UTKLabel | None:
    """Labels of a UTKFace file name, or None when the name does not follow the scheme."""
    m = _UTK.match(Path(name).name)
    if not m:
        return None
    age, gender, race = (int(g) for g in m.groups())
    if gender > 1 or race > 4:
        return None
    return UTKLabel(age, gender, race)


def is_validation(name: str, val_fraction: float = VAL_FRACTION) -> bool:
    """True when ``name`` (a file name; folders are ignored) belongs to the validation split."""
    digest = hashlib.sha1(Path(name).name.encode("utf-8")).digest()
    return digest[0] < round(val_fraction * 256)
