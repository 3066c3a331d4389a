"""Config format versions. A migration rewrites a raw dict from version N to N + 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CURRENT_VERSION = 1

Migration = Callable[[dict[str, Any]], dict[str, Any]]
# version N -> the function that turns a version-N dict into a version-(N+1) dict
MIGRATIONS: dict[int, Migration] = {}


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    version = raw.get("version", CURRENT_VERSION)
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    if version > CURRENT_VERSION:
        raise ValueError(
            f"config version {version} is newer than this neat supports ({CURRENT_VERSION}); "
            "upgrade neat"
        )
    while version < CURRENT_VERSION:
        raw = MIGRATIONS[version](dict(raw))
        version += 1
        raw["version"] = version
    return raw
