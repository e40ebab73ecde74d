"""Small frozen dataclass configs loaded from YAML plus `--key=value` overrides, type-checked.

A YAML file has one mapping per stage (`candidates:`, `llm_rank:` ...); `section.key=value`
overrides win over the file. Unknown sections and keys (with the nearest known name), wrong types
and values out of range (each dataclass's `__post_init__`, through `require`) are errors that name
the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar
from rag.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    pass


def _coerce(name: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(name, args[0], value)
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in {"1", "true", "yes", "on"}:
                return True
            if value.lower() in {"0", "false", "no", "off"}:
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp in (int, float):
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        (inner, *_) = typing.get_args(tp) or (str,)
        return origin(_coerce(name, inner, v) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return value
    return value


def _unknown(what: str, names: set[str], known: set[str]) -> ConfigError:
    """An error for unknown names, suggesting the nearest known one (a typo is the usual cause)."""
    hints = [f"{n!r}: did you mean {m[0]!r}?" for n in sorted(names)
             if (m := difflib.get_close_matches(n, sorted(known), n=1, cutoff=0.6))]
    return ConfigError(f"unknown {what} {sorted(names)}" + (f" ({'; '.join(hints)})" if hints else "")
                       + f"; known: {sorted(known)}")


def require(cfg, *, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = (),
            fractions: tuple[str, ...] = (), choices: dict[str, tuple] | None = None) -> None:
    """Range checks for a config dataclass's __post_init__ (None is left alone: "the model's own").
    positive: > 0; non_negative: >= 0 (where 0 means "all" or "off"); fractions: 0 <= x < 1."""
    for name in positive:
        if (v := getattr(cfg, name)) is not None and v <= 0:
            raise ConfigError(f"{name} must be greater than 0, got {v!r}")
    for name in non_negative:
        if (v := getattr(cfg, name)) is not None and v < 0:
            raise ConfigError(f"{name} must be 0 or more, got {v!r}")
    for name in fractions:
        if (v := getattr(cfg, name)) is not None and not 0 <= v < 1:
            raise ConfigError(f"{name} must be at least 0 and below 1, got {v!r}")
    for name, options in (choices or {}).items():
        if getattr(cfg, name) not in options:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, options))}, not {getattr(cfg, name)!r}")


def build(cls: type[T], values: dict, where: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - fields
    if unknown:
        raise _unknown(f"key(s) in {where or cls.__name__}", unknown, fields)
    coerced = {k: _coerce(f"{where}.{k}".strip("."), hints[k], v) for k, v in values.items()}
    try:
        return cls(**coerced)
    except ConfigError as e:  # a range check names the field; the user needs the section too
        raise ConfigError(f"{where}.{e}" if where else str(e)) from None


def parse_overrides(args: list[str]) -> dict[str, dict[str, str]]:
    """`--section.key=value` / `section.key=value` strings -> {section: {key: value}}."""
    out: dict[str, dict[str, str]] = {}
    for given in args:
        a = given.removeprefix("--")
        if "=" not in a or "." not in a.split("=", 1)[0]:
            raise ConfigError(f"unknown option {given!r}: a config override looks like --section.key=value "
                              "(see --help)")
        key, value = a.split("=", 1)
        section, field = key.split(".", 1)
        out.setdefault(section, {})[field] = value
    return out


def load_sections(path: str | Path | None, sections: dict[str, type], overrides: list[str] = (),
                  allow_other_sections: bool = False) -> dict[str, Any]:
    """Load each named section of a YAML file into its dataclass, applying overrides.

    `allow_other_sections` lets a command read its part of a config shared with other commands.
    """
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise ConfigError(f"{path} is not valid YAML{line}: fix it or start from "
                          "retriever_training/configs/squad_dev.yaml") from None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for name, section in raw.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping of key: value, got {section!r}")
    unknown = set(raw) - set(sections)
    if unknown and not allow_other_sections:
        raise ConfigError(f"{path}: {_unknown('section(s)', unknown, set(sections))}")
    ov = parse_overrides(list(overrides))
    bad = set(ov) - set(sections)
    if bad and not allow_other_sections:
        raise _unknown("override section(s)", bad, set(sections))
    return {name: build(cls, {**(raw.get(name) or {}), **ov.get(name, {})}, name)
            for name, cls in sections.items()}
