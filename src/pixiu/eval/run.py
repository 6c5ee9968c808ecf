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

import argparse
import contextlib
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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
    model: str | None  # the MODEL positional; None for tasks that need none (e.g. ratings from a feedback db)
    out: Path  # the run dir: results.json, results.md and the per-task item logs
    opts: dict  # every CLI option by its argparse name (max_new_tokens, reward_model...); None when not given
    limit: int | None = None  # --limit N: the first N items of each task (a fixed, deterministic subset)
    seed: int = 0
    _engines: dict = field(default_factory=dict, repr=False)
    _loaded: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    _logs: dict = field(default_factory=dict, repr=False)

    @property
    def dtype(self) -> str:
        return self.opts.get("dtype") or "auto"

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
        if model not in self._loaded:
            self._loaded[model] = io.load(ModelConfig(model, dtype=self.dtype))
            self._loaded[model].model.eval()
        return self._loaded[model]

    def items(self, task: str) -> ItemLog:
        """The task's resume log; it restarts when the model or a fingerprinted option changed."""
        if task not in self._logs:
            self._logs[task] = ItemLog(self.out / f"{task}.items.jsonl", fingerprint(self.model, self.opts))
        return self._logs[task]

    def data(self, default: str | Path, what: str = "data") -> Path:
        """--data when given, else the task's default path; a clear error when it does not exist."""
        path = Path(self.opts.get("data") or default)
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


def fingerprint(model: str | None, opts: dict) -> dict:
    return {"model": model, **{k: v for k, v in sorted(opts.items()) if k not in NOT_FINGERPRINTED}}


# ---------------------------------------------------------------- results


def run_tasks(ctx: EvalContext, tasks: list[str], force: bool = False) -> dict:
    """Run each task (skipping ones finished under the same options), write results.json / .md after each."""
    load_modules()
    for name in tasks:
        get(name)  # fail before any work on a typo
    path = ctx.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"model": ctx.model, "tasks": {}}
    results["model"] = ctx.model
    inputs = {**fingerprint(ctx.model, ctx.opts), "limit": ctx.limit, "seed": ctx.seed}
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


def table(rows: list[dict]) -> list[str]:
    """Rows of dicts -> a markdown table over the union of their keys (first-seen order); floats as 4 digits."""
    if not rows:
        return []
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return lines


def cell(v) -> str:
    """A table cell: counts as integers, other floats with 4 decimals, text on one line with '|' escaped."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) >= 1 else f"{v:.4f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def task_markdown(name: str, res: dict) -> str:
    lines = [f"### {name}", ""] + table(res["rows"])
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
    lines = [f"# pixiu eval: {results.get('model')}", ""] + table(rows) + [""]
    lines += [task_markdown(n, results["tasks"][n]) for n in names if results["tasks"][n]["rows"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pixiu eval", description="Benchmarks and scores of a model.")
    p.add_argument("model", nargs="?", help="checkpoint dir, HF dir, .gguf file or smollm2-135m")
    p.add_argument("--tasks", required=True, help="comma-separated task names")
    p.add_argument("--out", help="run dir (default runs/eval/<model name>)")
    p.add_argument("--limit", type=int, help="only the first N items of each task")
    p.add_argument("--seed", type=int, help="sampling seed (default 0)")
    p.add_argument("--force", action="store_true", help="re-run tasks already finished in OUT/results.json")
    p.add_argument("--data", help="task data file or dir (default: the task's folder under ../shared/data)")
    p.add_argument(
        "--shots", type=int, help="few-shot examples per prompt (multiple choice: from the dev split)"
    )
    p.add_argument("--mode", choices=["loglik", "generate"], help="multiple choice scoring (default loglik)")
    p.add_argument("--subjects", help="comma-separated subjects of mmlu / cmmlu / ceval (default all)")
    p.add_argument("--max-new-tokens", type=int, help="generation budget per reply")
    p.add_argument("--reward-model", help="reward model that scores replies (task reward)")
    p.add_argument("--against", help="baseline model or replies file to compare with")
    p.add_argument("--judge", help="judge endpoint URL (OpenAI-compatible)")
    p.add_argument("--judge-model", help="judge model name")
    p.add_argument("--judge-key", help="judge API key (never written to disk)")
    j = p.add_argument_group("judge settings (winrate, mtbench)")
    j.add_argument("--judge-timeout", type=float, help="seconds per judge request (default 600)")
    j.add_argument("--judge-retries", type=int, help="retries after a timeout, 429 or 5xx (default 3)")
    j.add_argument(
        "--judge-backoff", type=float, help="seconds before the first retry, doubled after (default 2)"
    )
    j.add_argument("--judge-max-tokens", type=int, help="the judge's reply budget (default: the endpoint's)")
    j.add_argument("--judge-parallel", type=int, help="judge requests in flight (default 16)")
    j.add_argument(
        "--judge-logprobs",
        action="store_true",
        help="winrate: one-letter verdicts read from the judge's top_logprobs (for judges too small to write [[A]])",
    )
    j.add_argument("--parse-retries", type=int, help="re-asks after an unparsable verdict (default 2)")
    j.add_argument("--tie-eps", type=float, help="reward judge: scores this close tie (default 1e-3)")
    j.add_argument("--ref-model", help="mtbench: reference answers of this model (default gpt-4)")
    p.add_argument("--bootstrap", type=int, help="elo: bootstrap rounds of the 95%% interval (default 100)")
    p.add_argument("--db", help="feedback store database")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], help="compute dtype (default auto)")
    return p


def context(a: argparse.Namespace) -> EvalContext:
    from pixiu.engine import model_name

    opts = vars(a).copy()
    out = Path(a.out or Path("runs/eval") / (model_name(a.model) if a.model else "no-model"))
    return EvalContext(a.model, out, opts, a.limit, a.seed or 0)


def cli(argv: list[str]) -> dict:
    a = parser().parse_args(argv)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    ctx = context(a)
    try:
        if a.limit is not None and a.limit < 1:
            raise EvalError(f"--limit must be >= 1, got {a.limit}")
        if not tasks:
            raise EvalError(f"--tasks names no task: {a.tasks!r}")
        return run_tasks(ctx, tasks, a.force)
    except EvalError as e:
        raise SystemExit(f"error: {e}") from None
    finally:
        with contextlib.suppress(Exception):
            ctx.close()
