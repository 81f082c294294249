"""A small explicit registry (BasicSR style): a dict plus a decorator that refuses duplicates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Registry:
    """Maps names to classes or factories. Modules register themselves when imported explicitly.

    Example:
        >>> REG = Registry("things")
        >>> @REG.register("a")
        ... class A: ...
        >>> REG.get("a") is A
        True
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[str, Any] = {}

    def register(self, key: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``key``; a duplicate key raises ``KeyError``."""

        def deco(obj: T) -> T:
            if key in self._items:
                raise KeyError(f"{self.name} registry already has {key!r}")
            self._items[key] = obj
            return obj

        return deco

    def get(self, key: str) -> Any:
        """Return the entry for ``key``; an unknown key raises ``KeyError`` listing the known ones."""
        try:
            return self._items[key]
        except KeyError:
            raise KeyError(f"unknown {self.name} {key!r}; known: {sorted(self._items)}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


ARCHS = Registry("architecture")
"""Network architectures (``nn.Module`` classes) by name, as referenced from ``weights/manifest.json``."""
