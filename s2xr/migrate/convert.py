"""Coming over from the predecessor: its ``config.yaml`` → an s2xr config.

:func:`migrate_config` maps every key of the predecessor's configuration (the tool s2xr
replaces, ``alfre97x/s2-chipper-ship-pass-scheduler-AIS`` at 82012ee) to the s2xr key that
does the same, or lists it as dropped with the reason (:data:`~s2xr.migrate.rules.RULES`);
:meth:`Migration.to_yaml` writes the s2xr config with both as comments. The result always
validates (:func:`s2xr.config.build_config`). ``s2xr migrate-config`` is the command; the
whole mapping (commands, flags, files, index columns) is in docs/migrating.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from s2xr.config import Config, build_config
from s2xr.errors import ConfigError
from s2xr.migrate.rules import RULES, Context


@dataclass(frozen=True)
class Entry:
    """One key of the old config: the s2xr keys it sets (``section.key`` → value; empty
    when dropped) and what changed on the way, or why it was dropped."""

    old: str
    value: Any
    new: dict[str, Any]
    note: str

    @property
    def dropped(self) -> bool:
        return not self.new


@dataclass
class Migration:
    """The s2xr config (``data``: ``{section: {key: value}}``) and one :class:`Entry` per
    key of the old config, in the old file's order."""

    data: dict[str, dict[str, Any]]
    entries: list[Entry]
    source: str = "config.yaml"
    header: list[str] = field(default_factory=list)

    @property
    def mapped(self) -> list[Entry]:
        return [e for e in self.entries if not e.dropped]

    @property
    def dropped(self) -> list[Entry]:
        return [e for e in self.entries if e.dropped]

    def report(self) -> list[str]:
        """One line per old key: ``old → new`` or ``old dropped: reason``."""
        out = []
        for e in self.entries:
            if e.dropped:
                out.append(f"{e.old}: dropped — {e.note}")
            else:
                out.append(f"{e.old} → {', '.join(e.new)}" + (f" ({e.note})" if e.note else ""))
        return out

    def to_yaml(self) -> str:
        """The s2xr config as YAML: each key under a comment naming the old key(s) it comes
        from; the dropped keys and their reasons listed at the end."""
        origin: dict[str, list[Entry]] = {}
        for e in self.mapped:
            for key in e.new:
                origin.setdefault(key, []).append(e)
        lines = [f"# {h}" for h in self.header]
        for section, values in self.data.items():
            lines.append(f"{section}:")
            for key, value in values.items():
                for e in origin.get(f"{section}.{key}", []):
                    lines.append(f"  # from {e.old}: {_dump(e.value)}"
                                 + (f" — {e.note}" if e.note else ""))
                lines.append(f"  {key}: {_dump(value)}")
        if self.dropped:
            lines += ["", f"# Dropped: {len(self.dropped)} key(s) of {self.source} s2xr has "
                      "no place for (the reason, and what to do instead):"]
            lines += [f"#   {e.old}: {_dump(e.value)} — {e.note}" for e in self.dropped]
        text = "\n".join(lines) + "\n"
        if (yaml.safe_load(text) or {}) != self.data:  # comments must not change the data
            raise AssertionError("migrated YAML does not read back as the migrated config")
        return text


def _dump(value: Any) -> str:
    """``value`` as one line of YAML (JSON is YAML)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _valid(new: dict[str, Any]) -> str | None:
    """None when the s2xr keys take these values, else the validation message."""
    data: dict[str, dict[str, Any]] = {}
    for key, value in new.items():
        section, _, name = key.partition(".")
        data.setdefault(section, {})[name] = value
    try:
        build_config(data, source="the migrated value", environ={}, dotenv_path=None)
    except ConfigError as exc:
        return " ".join(str(exc).split("\n")[1:]).strip() or str(exc)
    return None


def migrate_config(old: Mapping[str, Any] | str | Path, *,
                   base_dir: Path | None = None) -> Migration:
    """The s2xr config for the predecessor's ``old`` config (a mapping, or a YAML file whose
    folder resolves its relative paths; ``base_dir`` overrides that folder).

    Every key of ``old`` (nested keys as ``section.key``) becomes one :class:`Entry`: mapped
    to the s2xr key(s) that do the same, or dropped with the reason (a value s2xr refuses is
    dropped with the validation message). Raises :class:`ConfigError` when ``old`` is not a
    YAML mapping."""
    source = "<dict>"
    if not isinstance(old, Mapping):
        path = Path(old)
        source = path.name
        if not path.is_file():
            raise ConfigError(f"old config {path} does not exist")
        try:
            old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"old config {path} is not valid YAML: {exc}") from None
        base_dir = path.parent if base_dir is None else base_dir
    if not isinstance(old, Mapping):
        raise ConfigError(f"old config {source}: top level must be a mapping of sections")
    flat = _flatten(old)
    ctx = Context(flat, base_dir or Path())
    done: dict[str, Entry] = {}
    for key in [*(k for k in RULES if k in flat), *(k for k in flat if k not in RULES)]:
        rule = RULES.get(key)
        if rule is None:
            done[key] = Entry(key, flat[key], {}, "not a key of the predecessor's config "
                              "s2xr knows; see docs/configuration.md for s2xr's keys")
            continue
        new, note = rule(flat[key], ctx)
        problem = _valid(new) if new else None
        if problem:
            new, note = {}, f"not valid in s2xr: {problem}"
        done[key] = Entry(key, flat[key], new, note)
    entries = [done[k] for k in flat]
    merged: dict[str, Any] = {}
    for e in done.values():  # rule order: a later rule wins
        merged.update(e.new)
    data: dict[str, dict[str, Any]] = {}  # sections and keys in s2xr's order
    for section, info in Config.model_fields.items():
        fields = getattr(info.annotation, "model_fields", {})
        for name in fields:
            if f"{section}.{name}" in merged:
                data.setdefault(section, {})[name] = merged[f"{section}.{name}"]
    build_config(data, source=f"the config migrated from {source}", environ={},
                 dotenv_path=None)
    header = [f"s2xr config migrated from the predecessor's {source} by `s2xr migrate-config`",
              f"{len(entries) - sum(e.dropped for e in entries)} of {len(entries)} old keys "
              "mapped (each key below names its old key); the rest are listed at the end",
              "with the reason. Check it: s2xr doctor --offline --config THIS_FILE"]
    return Migration(data, entries, source, header)
