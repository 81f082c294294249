"""Typed training configs <-> command-line flags, for every trainer.

A trainer's config is a dataclass; :func:`add_config_args` adds one ``--dashed-name`` flag per
field (``default=None``, so an unset flag keeps the value of the config it is applied to: the
dataclass default, a ``--config`` JSON file or a checkpoint's config), and
:func:`config_from_args` applies the parsed flags. Field types understood: ``int``, ``float``,
``str``, ``bool`` (``1/0, true/false, yes/no, on/off``), their ``X | None`` forms, and tuples of
numbers (comma-separated on the command line). Other fields (dicts, nested configs) get no flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` -> True, ``0/false/no/off`` -> False (case-insensitive); else ``ArgumentTypeError``."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _tuple_of(item: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        return tuple(item(s) for s in text.split(",") if s.strip())

    return parse


_SCALARS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "bool": parse_bool}


def flag_type(annotation: Any) -> Callable[[str], Any] | None:
    """The argparse ``type`` for a field annotation (a string under ``from __future__ import annotations``), or None."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace(" ", "")
    if text.endswith("|None"):
        text = text[:-5]
    elif text.startswith("None|"):
        text = text[5:]
    elif text.startswith("Optional[") and text.endswith("]"):
        text = text[9:-1]
    if text in _SCALARS:
        return _SCALARS[text]
    if text.startswith("tuple[") and text.endswith("]"):
        item = text[6:-1].split(",")[0]
        if item in ("int", "float"):
            return _tuple_of(_SCALARS[item])
    return None


def helped(default: Any, text: str) -> Any:
    """A dataclass field with ``default`` and the flag help ``text`` (its ``metadata["help"]``)."""
    return dataclasses.field(default=default, metadata={"help": text})


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = (), switches: Iterable[str] = ()) -> None:
    """Add one ``--dashed-name`` flag per field of the dataclass ``cls`` (default None = keep the config's value).

    Args:
        parser: the parser to add to.
        cls: the config dataclass.
        skip: fields that get no flag (the trainer adds its own).
        switches: ``bool`` fields given as switches (``--export`` sets True, ``--no-export``
            False) instead of taking a value (``--flip 0``).

    Help text: the field's ``metadata["help"]`` when given, then ``(default X)``.
    """
    skip, switches = set(skip), set(switches)
    hints = typing.get_type_hints(cls) if not any(isinstance(f.type, str) for f in dataclasses.fields(cls)) else {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ = flag_type(hints.get(f.name, f.type))
        if typ is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = f.metadata.get("help", "")
        text = (f"{text} (default {default!r})" if text else f"(default {default!r})").replace("%", "%%")
        if f.name in switches:
            parser.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), type=typ, default=None, help=text)


def config_from_args(args: argparse.Namespace, cls: type[T], base: T | None = None) -> T:
    """A ``cls`` config from parsed flags; unset flags keep ``base``'s (or the dataclass defaults') values.

    Calls the config's ``validate()`` when it has one.
    """
    cfg = dataclasses.replace(base) if base is not None else cls()  # type: ignore[type-var]
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        v = getattr(args, f.name, None)
        if v is not None:
            setattr(cfg, f.name, v)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def config_to_argv(cfg: Any, switches: Iterable[str] = ()) -> list[str]:
    """The flags that give ``cfg`` from its dataclass defaults (to record a training command).

    Fields equal to their default are left out; ``switches`` as ``--name`` / ``--no-name``, other
    booleans as ``--name 1/0``, tuples comma-separated.
    """
    switches = set(switches)
    argv: list[str] = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if v == default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name in switches:
            argv.append(flag if v else "--no-" + f.name.replace("_", "-"))
        elif isinstance(v, bool):
            argv += [flag, "1" if v else "0"]
        elif isinstance(v, (tuple, list)):
            argv += [flag, ",".join(str(x) for x in v)]
        else:
            argv += [flag, str(v)]
    return argv


def config_from_json(cls: type[T], path: str | Path, strict: bool = True) -> T:
    """A ``cls`` config from a JSON file of its fields (``strict=False``: unknown keys are ignored)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not strict:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        data = {k: v for k, v in data.items() if k in known}
    return cls(**data)


__all__ = ["add_config_args", "config_from_args", "config_from_json", "config_to_argv", "flag_type", "helped", "parse_bool"]
