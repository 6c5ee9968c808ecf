"""Recipes and overrides to typed configs and back: YAML, `--section.field=value`, the field docs for --help."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from pathlib import Path

import yaml

from pixiu.config.core import RENAMED, ConfigError, _deprecated
from pixiu.config.methods import RunConfig

# ---------------------------------------------------------------- building from dicts


def _build(cls: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = _renamed(cls, values, where)
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"unknown field(s) {sorted(unknown)} in {where or 'config'}; valid: {sorted(names)}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}".strip(".")) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _renamed(cls: type, values: dict, where: str) -> dict:
    """Old field names -> new ones (RENAMED), with a note; where both are given, the new one wins."""
    out = dict(values)
    for old, new in RENAMED.get(cls.__name__, {}).items():
        if old in out:
            _deprecated(f"{where}.{old}".strip("."), f"{where}.{new}".strip("."))
            value = out.pop(old)
            out.setdefault(new, value)
    return out


def _coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _build(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML reads 5e-5 (no dot) as text
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {tp.__name__}, got {value!r}")
    return value


def parse_overrides(args: list[str]) -> dict:
    """['--train.lr=1e-4', '--data.packing'] -> {'train': {'lr': 1e-4}, 'data': {'packing': True}}."""
    out: dict = {}
    for arg in args:
        if not arg.startswith("--") or "." not in arg.split("=")[0]:
            raise ConfigError(f"override {arg!r} must look like --section.field=value")
        key, _, raw = arg[2:].partition("=")
        value = yaml.safe_load(raw) if raw else True
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    """Deep-merge `extra` into a copy of `base`."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(path: str | Path | None = None, overrides: list[str] = (), cls: type = RunConfig):
    """Recipe YAML (optional) + overrides -> validated config object."""
    values = {}
    if path:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return _build(cls, merge(values, parse_overrides(list(overrides))), "")


def from_dict(values: dict, cls: type = RunConfig, where: str = ""):
    """A mapping already read (a pipeline stage's merged sections) -> validated config object."""
    return _build(cls, values, where)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save(cfg, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")


def describe(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, docstring) for every field of any config dataclass, read from the field docstrings
    in the source; a field that is itself a dataclass is a section and its fields follow as `section.field`.
    A field without a default shows '(required)'."""
    docs = _field_docs(cls)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], f"{prefix}{f.name}.")
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((prefix + f.name, default, docs.get(f.name, "")))
    return rows


def help_text(cls: type = RunConfig, prefix: str = "") -> str:
    """Every field of `cls` as `--name=default` and its docstring: the fields part of a command's --help."""
    return "\n".join(
        f"  --{name}={default}\n" + "\n".join(f"      {line}" for line in doc.splitlines())
        for name, default, doc in describe(cls, prefix)
    )


def _field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal under it, from the class and its dataclass bases (a subclass wins)."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
            ):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)  # continuation lines unindented
    return docs


def config_path(args: list[str]) -> tuple[str | None, list[str]]:
    """Split `--config FILE` / `--config=FILE` off a command line: (FILE or None, the other arguments)."""
    path, rest = None, []
    it = iter(args)
    for a in it:
        if a == "--config":
            path = next(it, None)
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
        else:
            rest.append(a)
    return path, rest
