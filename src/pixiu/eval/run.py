"""`pixiu eval MODEL --tasks mmlu,gsm8k,...`: the eval registry, the context every task gets, results and resume.

An eval is a function `fn(ctx: EvalContext) -> {"metrics": {name: float}, "rows": [dict, ...], "skipped":
{reason: count}}` registered under a name with `@register("name")`. The modules in MODULES are imported when the
CLI runs, which fills EVALS; a module not written yet is skipped.

Resume works at two levels. A finished task is recorded in OUT/results.json with the options it ran under and is
skipped on a re-run with the same options (unless --force). An unfinished one resumes from OUT/<task>.items.jsonl,
where tasks append one line per scored item (`ctx.items(task).put(key, value)`), so a killed run loses at most the
item in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from pixiu import config
from pixiu.config import ConfigError, EvalConfig, config_path
from pixiu.eval.table import md_records

if TYPE_CHECKING:
    from pixiu.engine import Engine
    from pixiu.model.io import Loaded

EVALS: dict[str, Callable[[EvalContext], dict]] = {}
MODULES = (
    "pixiu.eval.choice",  # mmlu, cmmlu, ceval
    "pixiu.eval.scores",  # gsm8k, perplexity
    "pixiu.eval.reward",  # rm-accuracy, reward
    "pixiu.eval.judge",
    "pixiu.eval.mtbench",
    "pixiu.eval.degeneration",  # repeated n-grams, token limit, off-language, exact match of replies
    "pixiu.eval.lawbench",  # lawbench:1-1, lawbench:3-1, lawbench:3-3 (LawBench's own scoring), with --rag
)
SHARED = Path("../shared/data")  # where the public data sits beside the project (see README)
# Options that do not change a task's numbers: excluded from the fingerprint that decides resume / skip.
# The judge key is a secret: it is never written to disk either.
NOT_FINGERPRINTED = (
    "tasks",
    "out",
    "force",
    "limit",
    "judge_key",
    "judge_timeout",
    "judge_retries",
    "judge_backoff",
    "judge_parallel",
)


class EvalError(ValueError):
    """Bad eval input (an unknown task, a malformed data file, an empty task), with what to do about it."""


def register(name: str):
    """Decorator: EVALS[name] = fn."""

    def add(fn):
        EVALS[name] = fn
        return fn

    return add


def load_modules() -> None:
    """Import every eval module to fill EVALS; a module that does not exist (yet) is skipped, while an ImportError
    raised inside an existing module (a missing dependency of it) propagates."""
    for module in MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def get(name: str) -> Callable[[EvalContext], dict]:
    if name not in EVALS:
        raise EvalError(f"unknown eval task {name!r}; valid: {', '.join(sorted(EVALS))}")
    return EVALS[name]


# ---------------------------------------------------------------- per-item log


class ItemLog:
    """OUT/<task>.items.jsonl: one {"key": ..., "value": {...}} line per finished item, appended and flushed so a
    killed run keeps everything up to the item in flight. A torn last line (killed mid-write) is ignored."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.done: dict[str, dict] = {}
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        lines = text.splitlines()
        if lines and _loads(lines[0]) == {"header": header}:
            for line in lines[1:]:
                row = _loads(line)
                if isinstance(row, dict) and "key" in row:
                    self.done[str(row["key"])] = row["value"]
            if not text.endswith("\n"):  # cut the torn line, or the next item would be appended onto it
                path.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")
        else:  # absent, or written under other options: start over
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"header": header}, ensure_ascii=False) + "\n", encoding="utf-8")
        self._file = path.open("a", encoding="utf-8")

    def get(self, key) -> dict | None:
        return self.done.get(str(key))

    def put(self, key, value: dict) -> None:
        self.done[str(key)] = value
        self._file.write(json.dumps({"key": str(key), "value": value}, ensure_ascii=False) + "\n")
        self._file.flush()

    def __len__(self) -> int:
        return len(self.done)

    def close(self) -> None:
        self._file.close()


def _loads(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


# ---------------------------------------------------------------- context


@dataclass
class EvalContext:
    cfg: EvalConfig  # every option of the run, typed and documented (config.EvalConfig)
    out: Path  # the run dir: results.json, results.md and the per-task item logs
    _engines: dict = field(default_factory=dict, repr=False)
    _loaded: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    _logs: dict = field(default_factory=dict, repr=False)

    @property
    def model(self) -> str | None:
        """MODEL; None for tasks that need none (e.g. ratings from a feedback db)."""
        return self.cfg.model or None

    @property
    def limit(self) -> int | None:
        """--limit N: the first N items of each task (a fixed, deterministic subset); None = all."""
        return self.cfg.limit or None

    @property
    def seed(self) -> int:
        return self.cfg.seed

    @property
    def dtype(self) -> str:
        return self.cfg.dtype

    def engine(self, model: str | None = None) -> Engine:
        """A generation engine over `model` (default MODEL), loaded once per run."""
        from pixiu.engine import load_engine

        model = self.need(model)
        if model not in self._engines:
            self._engines[model] = load_engine(model, dtype=self.dtype)
        return self._engines[model]

    def loaded(self, model: str | None = None) -> Loaded:
        """Model, tokenizer and template of `model` (default MODEL) for log-likelihoods, loaded once per run."""
        from pixiu.config import ModelConfig
        from pixiu.model import io

        model = self.need(model)
        config = io.base_config(model)
        if config.get("is_encoder_decoder"):  # T5: its decoder alone is no language model
            raise EvalError(
                f"{model} is an encoder-decoder ({config.get('model_type')}): log-likelihood scoring needs a causal LM; use a "
                "generation task (degeneration, gsm8k, judge, reward) or --mode generate for multiple choice"
            )
        if model not in self._loaded:
            self._loaded[model] = io.load(ModelConfig(model, dtype=self.dtype))
            self._loaded[model].model.eval()
        return self._loaded[model]

    def items(self, task: str) -> ItemLog:
        """The task's resume log; it restarts when the model or a fingerprinted option changed."""
        if task not in self._logs:
            self._logs[task] = ItemLog(self.out / f"{task}.items.jsonl", fingerprint(self.cfg))
        return self._logs[task]

    def data(self, default: str | Path, what: str = "data") -> Path:
        """--data when given, else the task's default path; a clear error when it does not exist."""
        path = Path(self.cfg.data or default)
        if not path.exists():
            raise EvalError(f"{what} not found: {path} (give it with --data PATH)")
        return path

    def take(self, items: list) -> list:
        """The first --limit items: a fixed subset, so runs with the same limit score the same items."""
        return items[: self.limit] if self.limit is not None else items

    def cached(self, key, build: Callable[[], object]):
        """build() once per run under `key`: other heavy objects a task shares across calls (a reward model)."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def need(self, model: str | None = None) -> str:
        """`model`, else MODEL; a clear error when the task needs one and none was given."""
        model = model or self.model
        if not model:
            raise EvalError("this task needs a MODEL: pixiu eval MODEL --tasks ...")
        return model

    def close(self) -> None:
        for log in self._logs.values():
            log.close()
        for engine in self._engines.values():
            engine.close()


def fingerprint(cfg: EvalConfig) -> dict:
    """The options that change a task's numbers (the model included): a finished task re-runs when they change."""
    return {k: v for k, v in sorted(dataclasses.asdict(cfg).items()) if k not in NOT_FINGERPRINTED}


# ---------------------------------------------------------------- results


def run_tasks(ctx: EvalContext, tasks: list[str], force: bool = False) -> dict:
    """Run each task (skipping ones finished under the same options), write results.json / .md after each."""
    load_modules()
    for name in tasks:
        get(name)  # fail before any work on a typo
    path = ctx.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"model": ctx.model, "tasks": {}}
    results["model"] = ctx.model
    inputs = {**fingerprint(ctx.cfg), "limit": ctx.limit, "seed": ctx.seed}
    for name in tasks:
        old = results["tasks"].get(name)
        if old and old.get("inputs") == inputs and not force:
            print(f"{name}: finished earlier in {path} (--force to re-run)")
            continue
        if force:
            (ctx.out / f"{name}.items.jsonl").unlink(missing_ok=True)
        print(f"\n== {name}")
        t0 = time.perf_counter()
        out = get(name)(ctx)
        results["tasks"][name] = {
            "metrics": out.get("metrics", {}),
            "rows": out.get("rows", []),
            "skipped": out.get("skipped", {}),
            "seconds": round(time.perf_counter() - t0, 1),
            "inputs": inputs,
        }
        ctx.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
        print(task_markdown(name, results["tasks"][name]))
    text = markdown(results, tasks)
    (ctx.out / "results.md").write_text(text, encoding="utf-8")
    print(text)
    return results


def task_markdown(name: str, res: dict) -> str:
    lines = [f"### {name}", ""] + md_records(res["rows"])
    if res["skipped"]:
        lines += ["", "skipped: " + ", ".join(f"{why}: {n}" for why, n in res["skipped"].items())]
    return "\n".join(lines) + "\n"


def markdown(results: dict, tasks: list[str] | None = None) -> str:
    """The summary table (task, metric, value, seconds) then each task's own table."""
    names = [t for t in results["tasks"] if tasks is None or t in tasks]
    rows = [
        {"task": n, "metric": k, "value": float(v), "seconds": round(results["tasks"][n]["seconds"])}
        for n in names
        for k, v in results["tasks"][n]["metrics"].items()
    ]
    lines = [f"# pixiu eval: {results.get('model')}", ""] + md_records(rows) + [""]
    lines += [task_markdown(n, results["tasks"][n]) for n in names if results["tasks"][n]["rows"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI


USAGE = "usage: pixiu eval [MODEL] [--config recipe.yaml] [--eval.FIELD=VALUE ...] [--help]"


def help_text() -> str:
    return (
        f"{USAGE}\n\nBenchmarks and scores of a model. Options are the fields of a recipe's `eval:` section;\n"
        "`--FIELD VALUE`, `--FIELD=VALUE` and `--FIELD-WITH-DASHES VALUE` are the same as `--eval.FIELD=VALUE`.\n\n"
        f"fields:\n{config.help_text(EvalConfig, 'eval.')}"
    )


def parse(argv: list[str]) -> EvalConfig:
    """[MODEL] [--config recipe.yaml] [--eval.field=value | --field value ...] -> EvalConfig: the recipe's
    `eval:` section, then the command line over it. Unknown fields are rejected with the valid names."""
    path, rest = config_path(argv)
    values = {}
    if path:
        recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(recipe, dict) or not isinstance(recipe.get("eval"), dict):
            raise ConfigError(
                f"{path}: `pixiu eval --config` reads the recipe's `eval:` section; it has none"
            )
        values = recipe["eval"]
    return config.from_dict(config.merge(values, _overrides(rest)), EvalConfig, "eval")


def _overrides(args: list[str]) -> dict:
    """The command line's fields: the positional MODEL; a bool field alone is true; a value follows `=` or comes
    as the next argument. Text fields keep the text as given; the others are read as YAML (2, 1e-3, false)."""
    hints = typing.get_type_hints(EvalConfig)
    out, i = {}, 0
    while i < len(args):
        arg, i = args[i], i + 1
        if not arg.startswith("--"):
            if "model" in out:
                raise ConfigError(f"unexpected argument {arg!r}; {USAGE}")
            out["model"] = arg
            continue
        key, eq, raw = arg[2:].partition("=")
        key = key.removeprefix("eval.").replace("-", "_")
        if key not in hints:
            raise ConfigError(f"unknown field(s) [{key!r}] in eval; valid: {sorted(hints)}")
        if not eq and hints.get(key) is bool:
            raw = "true"
        elif not eq:
            if i == len(args) or args[i].startswith("--"):
                raise ConfigError(f"--{key} needs a value: --eval.{key}=VALUE")
            raw, i = args[i], i + 1
        out[key] = raw if hints.get(key) is str else yaml.safe_load(raw)
    return out


def context(cfg: EvalConfig) -> EvalContext:
    from pixiu.engine import model_name

    out = Path(cfg.out or Path("runs/eval") / (model_name(cfg.model) if cfg.model else "no-model"))
    return EvalContext(cfg, out)


def cli(argv: list[str]) -> dict:
    if "-h" in argv or "--help" in argv:
        try:
            print(help_text(), flush=True)
        except BrokenPipeError:  # `pixiu eval --help | head`: the reader has seen enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return {}
    try:
        cfg = parse(argv)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    ctx = context(cfg)
    try:
        if not cfg.task_names():
            raise EvalError(f"--tasks names no task: {cfg.tasks!r}")
        return run_tasks(ctx, cfg.task_names(), cfg.force)
    except EvalError as e:
        raise SystemExit(f"error: {e}") from None
    finally:
        with contextlib.suppress(Exception):
            ctx.close()
