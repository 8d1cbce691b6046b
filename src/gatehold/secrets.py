"""Secrets are references (``env:NAME``, ``file:PATH``), resolved at start, held server-side only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gatehold.errors import ConfigError


def resolve_secret(name: str, ref: str, *, base_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    kind, _, where = ref.partition(":")
    if kind == "env":
        value = env.get(where)
        if not value:
            # Fail closed: an upstream that needs a secret we do not have is not started without it.
            raise ConfigError([f"secrets.{name}: environment variable {where} is not set"])
        return value
    if kind == "file":
        path = Path(where).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"secrets.{name}: cannot read {where} ({exc.strerror})"]) from None
        if not value:
            raise ConfigError([f"secrets.{name}: file {where} is empty"])
        return value
    raise ConfigError([f"secrets.{name}: unknown reference kind {kind!r} (expected env: or file:)"])


def resolve_all(refs: Mapping[str, str], *, base_dir: Path, needed: set[str]) -> dict[str, str]:
    """Resolve the secrets the configuration uses; every problem is reported at once."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in sorted(needed):
        try:
            values[name] = resolve_secret(name, refs[name], base_dir=base_dir)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return values
