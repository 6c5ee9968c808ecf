"""`pixiu serve`: a `ServeConfig` from a YAML file and flags, the engines loaded, uvicorn started.

Every field of ServeConfig is a flag, spelt `--max-batch 4`, `--max_batch=4` or `--serve.max_batch=4`;
`--config serve.yaml` reads the fields from a YAML mapping first, and flags override it. `--help` lists them all
with their docs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from pathlib import Path

import yaml

from pixiu import config
from pixiu.config import ConfigError, ServeConfig
from pixiu.serve.auth import check_bind

DESCRIPTION = "pixiu serve MODEL [MODEL ...]: the OpenAI-compatible API and the web UI."


def cli(argv: list[str]) -> None:
    """pixiu serve MODEL [MODEL ...]: the OpenAI-compatible API and the web UI."""
    cfg = parse(argv)
    key = cfg.api_key or os.environ.get(cfg.api_key_env) or None
    check_bind(cfg.host, key, cfg.insecure)  # before loading anything: refuse fast
    from pixiu.feedback.store import open_store
    from pixiu.serve.api import create_app

    moderation = None
    if cfg.moderation:
        from pixiu.serve.moderation import load_moderation

        moderation = load_moderation(cfg.moderation)
    engines = load_engines(cfg.models, backend=cfg.backend, dtype=cfg.dtype, template=cfg.template,
                           max_batch=cfg.max_batch, quantize=cfg.quantize)  # fmt: skip
    store = open_store(cfg.db)
    app = create_app(engines, api_key=key, store=store, moderation=moderation, config=cfg)
    import uvicorn

    where = f"http://{cfg.host}:{cfg.port}"
    print(f"serving {sorted(engines)} at {where}/v1; web UI at {where}/ui; feedback in {store.where}")
    try:
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", timeout_graceful_shutdown=5)
    finally:
        for engine in engines.values():
            engine.close()
        store.close()


def parse(argv: list[str]) -> ServeConfig:
    """Flags over the --config YAML over the defaults; exits with the reason on a bad value."""
    given = vars(parser().parse_args(argv))
    path = given.pop("config", None)
    values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}
    if not isinstance(values or {}, dict):
        sys.exit(f"error: {path} must hold a mapping of ServeConfig fields")
    values = {**(values or {}), **given}
    if not values.get("models"):
        sys.exit("error: name at least one MODEL (or `models` in --config)")
    try:
        return config.from_dict(values, ServeConfig)
    except ConfigError as e:
        sys.exit(f"error: {e}")


def parser() -> argparse.ArgumentParser:
    """One flag per ServeConfig field, help from its docstring; unset flags stay out of the namespace."""
    ap = argparse.ArgumentParser(
        prog="pixiu serve", description=DESCRIPTION, argument_default=argparse.SUPPRESS
    )
    docs = {name: doc.replace("%", "%%") for name, _, doc in config.describe(ServeConfig)}
    hints = typing.get_type_hints(ServeConfig)
    ap.add_argument("models", nargs="*", metavar="MODEL", help=docs.pop("models"))
    ap.add_argument("--config", help="a YAML mapping of these fields; flags given here override it")
    for f in dataclasses.fields(ServeConfig):
        if f.name == "models":
            continue
        names = dict.fromkeys([f"--{f.name.replace('_', '-')}", f"--{f.name}", f"--serve.{f.name}"])
        tp = hints[f.name]
        kind = {"type": flag, "nargs": "?", "const": True} if tp is bool else {"type": tp}
        ap.add_argument(*names, dest=f.name, help=f"{docs[f.name]} (default: {f.default})", **kind)
    return ap


def flag(text: str) -> bool:
    """--insecure, --insecure=true, --serve.insecure=false."""
    value = yaml.safe_load(text)
    if not isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def parse_model(spec: str) -> tuple[str | None, str]:
    """'NAME=PATH' -> (NAME, PATH); a bare path or 'smollm2-135m' -> (None, it): the engine names itself."""
    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name:
        return name, path
    return None, spec


def load_engines(specs: list[str], **engine_opts) -> dict:
    """Served name -> Engine; engine_opts go to `load_engine` (backend, dtype, template, max_batch, quantize).
    Each engine carries `version` (NAME@HASH of its files, see pixiu.feedback.store.model_version), so every stored vote
    records which weights answered, not just the name."""
    from pixiu.engine import load_engine
    from pixiu.feedback.store import model_version

    engines: dict = {}
    for spec in specs:
        name, path = parse_model(spec)
        engine = load_engine(path, name=name, **engine_opts)
        engine.version = model_version(path)
        if engine.name in engines:
            sys.exit(f"two models are served as {engine.name!r}; name them apart with NAME=PATH")
        engines[engine.name] = engine
    return engines
