"""`pixiu pipeline recipe.yaml`: the ChatGPT route from one file, SFT -> RM -> PPO (or DPO, GRPO) -> evaluation.

A recipe holds the shared sections of RunConfig (model, lora, data, train, gen, rm, pref, ppo, grpo) and a
`pipeline` section (PipelineConfig) whose `stages` run in order, each with the sections it changes:

    pipeline:
      output_dir: runs/quickstart
      stages:
        - {name: sft, data: {path: pixiu:demo/sft.jsonl}, train: {merge_lora: true}}
        - {name: rm, data: {path: pixiu:demo/pairs.jsonl}}
        - {name: ppo, data: {path: pixiu:demo/prompts.jsonl}}

A stage's config is the shared sections deep-merged with its own, then its inputs wired from the stages before it
(by each stage's Role in train/stages.py: the policy so far is model.name_or_path; PPO's ppo.reward_model is the
latest reward model; a value the stage sets itself wins), train.output_dir = OUTPUT/<name>, then the command
line: `--section.field=v` for every stage, `--stage.NAME.section.field=v` for one, `--pipeline.field=v` for the
pipeline section.

A data stage runs a `pixiu data` command (generate, filter, ...: cli.DATA_COMMANDS) with its `args` as flags,
`{output_dir}` in any string of the recipe standing for the pipeline's output directory:

        - {name: generate, stage: data, command: generate, args: {method: answer, out: "{output_dir}/gen.jsonl"}}
        - {name: sft, data: {path: "{output_dir}/gen.jsonl"}}

Every training stage is `STAGES[kind].run(cfg)` (train/stages.py), run in this process. A finished stage leaves
OUTPUT/<name>/done.json (its output, wall time and config) and a re-run skips it; a stage directory without the
marker was interrupted, and the stage runs again with train.resume=true from its last checkpoint (a data
command simply runs again: `data generate` resumes from its journal). A stage whose
config changed since it ran is an error, never a silent mix of old and new results. Last, eval/route.py compares
the final policy with the one the last stage started from, under the reward model (OUTPUT/summary.md), and
eval/report.py draws every stage's curves next to those numbers (OUTPUT/report.html, report.md).
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pixiu import config
from pixiu.config import ConfigError, RunConfig
from pixiu.train.stages import STAGES


@dataclass
class CompareConfig:
    """The pipeline's closing comparison (`pipeline.eval`): the final policy against the one the last stage
    started from, under the reward model. Benchmarks (`pixiu eval`) are config.EvalConfig, a recipe's `eval:`."""

    prompts: str = ""
    """Held-out prompts: replies of the starting and the final policy to them are scored ('' = no comparison)."""
    pairs: str = ""
    """Held-out pairs or rankings for the reward model's pairwise accuracy ('' = skip)."""
    max_prompts: int = 64
    """Use at most this many held-out prompts (0 = all)."""
    max_pairs: int = 128
    """Use at most this many held-out pairs or rankings (0 = all)."""
    samples: int = 1
    """Replies sampled per prompt from each policy, with the final stage's gen settings."""
    show: int = 6
    """Prompts whose two replies are printed side by side (languages alternate when the prompts mix them)."""
    batch_size: int = 16
    """Rows per forward when sampling and scoring."""
    seed: int = 0
    """Sampling seed, the same for both policies."""


@dataclass
class PipelineConfig:
    output_dir: str = "runs/pipeline"
    """Root of the run: OUTPUT/<stage name>/ per stage, OUTPUT/summary.json and summary.md."""
    stages: list[dict] = field(default_factory=list)
    """The stages in order: {name, stage (a `pixiu train` stage; default: name), RunConfig sections...}."""
    eval: CompareConfig = field(default_factory=CompareConfig)
    """The comparison after the last stage (CompareConfig)."""

    def __post_init__(self):
        if not self.stages:
            raise ConfigError(
                "pipeline.stages is empty: list the stages to run, e.g. [{name: sft}, {name: rm}]"
            )


DONE = "done.json"
DATA = "data"  # the kind of a stage that runs a `pixiu data` command rather than training
OUTPUT_DIR = "{output_dir}"  # stands for pipeline.output_dir in a stage's strings


@dataclass
class Stage:
    name: str  # its directory under output_dir
    kind: str  # a key of train/stages.py STAGES, or DATA
    sections: dict  # the RunConfig sections this stage changes; a data stage: {command, args}
    command: Callable[[list[str]], None] | None = None  # a data stage's command, from cli.DATA_COMMANDS


@dataclass
class State:
    """What the stages so far have made: the policy, the latest reward model, and their timings."""

    policy: str  # model.name_or_path of the next stage
    start_policy: str = ""  # the policy the last policy-making stage started from (the evaluation baseline)
    # the last policy stage's config: its gen settings and model options drive the evaluation
    final_cfg: RunConfig | None = None
    reward_model: str = ""
    ran: list[str] = field(default_factory=list)  # stages that ran (not skipped) in this invocation
    stages: list[dict] = field(default_factory=list)  # per stage: name, kind, output, seconds, skipped


# ---------------------------------------------------------------- recipe -> stages


def load(
    path: str | Path, overrides: list[str] = (), commands: dict | None = None
) -> tuple[PipelineConfig, dict, list[Stage]]:
    """Recipe + overrides -> (pipeline section, shared sections with the every-stage overrides, stages).
    `commands`: cli.DATA_COMMANDS, which data stages name (handed in: cli imports this module, not back)."""
    recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(recipe, dict) or "pipeline" not in recipe:
        raise ConfigError(f"{path}: a pipeline recipe needs a `pipeline:` section with `stages:`")
    extra = config.parse_overrides(list(overrides))
    pipe_values = config.merge(recipe.pop("pipeline"), extra.pop("pipeline", {}))
    per_stage = extra.pop("stage", {})
    pipe = config.from_dict(pipe_values, PipelineConfig, "pipeline")
    stages = [_stage(s, i, commands or {}) for i, s in enumerate(pipe.stages)]
    names = [s.name for s in stages]
    if len(set(names)) < len(names):
        raise ConfigError(f"pipeline stage names must be unique (they name directories), got {names}")
    unknown = set(per_stage) - set(names)
    if unknown:
        raise ConfigError(f"--stage.NAME overrides name unknown stages {sorted(unknown)}; stages: {names}")
    # `--section.field` changes the shared sections, and the stages that set that field themselves; so
    # `--model.name_or_path` picks the starting model while later stages still read the policy so far.
    shared = config.merge(recipe, extra)
    for s in stages:
        s.sections = config.merge(
            config.merge(s.sections, _set_in(extra, s.sections)), per_stage.get(s.name, {})
        )
    config.from_dict(shared, RunConfig)  # a typo in a shared section fails here, before any training
    from pixiu.model.adapters import check  # (pixiu.model loads torch: only once a recipe is being run)

    for s in (s for s in stages if s.kind != DATA):  # so does a PEFT method a stage cannot train with
        check(
            config.from_dict(config.merge(shared, s.sections), RunConfig, f"pipeline stage {s.name}"), s.kind
        )
    return pipe, shared, stages


def _set_in(values: dict, target: dict) -> dict:
    """The part of `values` whose keys `target` also has (down to the leaves)."""
    out = {}
    for k, v in values.items():
        if k in target:
            out[k] = _set_in(v, target[k]) if isinstance(v, dict) and isinstance(target[k], dict) else v
    return out


def _stage(spec: dict, i: int, commands: dict) -> Stage:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"pipeline.stages[{i}] must be a mapping with a name, got {spec!r}")
    sections = dict(spec)
    name = str(sections.pop("name"))
    kind = str(sections.pop("stage", name))
    if kind == DATA:
        return _data_stage(name, sections, f"pipeline.stages[{i}] ({name})", commands)
    if kind not in STAGES:
        valid = sorted([*STAGES, DATA])
        raise ConfigError(f"pipeline.stages[{i}] ({name}): unknown stage {kind!r}; valid: {valid}")
    return Stage(name, kind, sections)


def _data_stage(name: str, sections: dict, where: str, commands: dict) -> Stage:
    """{command: a `pixiu data` command, args: {flag: value}}, the command resolved as cli.data resolves it."""
    extra = set(sections) - {"command", "args"}
    if extra or not isinstance(sections.get("args", {}), dict):
        raise ConfigError(f"{where}: a data stage takes `command` and an `args` mapping, not {sorted(extra)}")
    command = sections.get("command")
    if command not in commands:
        raise ConfigError(f"{where}: unknown data command {command!r}; valid: {sorted(commands)}")
    target = commands[command][0]
    if not callable(target):
        module, fn = target.split(":")
        target = getattr(importlib.import_module(module), fn)
    return Stage(name, DATA, {"command": command, "args": dict(sections.get("args") or {})}, target)


def _expand(value, out: Path):
    """`{output_dir}` in every string of `value` -> the pipeline's output directory."""
    if isinstance(value, dict):
        return {k: _expand(v, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, out) for v in value]
    return value.replace(OUTPUT_DIR, str(out)) if isinstance(value, str) else value


def stage_config(stage: Stage, shared: dict, state: State, out: Path) -> RunConfig:
    """Shared sections + the stage's own, inputs wired from earlier stages, output under OUTPUT/<name>."""
    own = stage.sections
    wired: dict = {"train": {"output_dir": str(out / stage.name)}}
    if "name_or_path" not in own.get("model", {}):
        wired["model"] = {"name_or_path": state.policy}
    if (
        STAGES[stage.kind].role.reads_reward_model
        and state.reward_model
        and "reward_model" not in own.get("ppo", {})
    ):
        wired["ppo"] = {"reward_model": state.reward_model}
    values = _expand(config.merge(config.merge(shared, own), wired), out)
    return config.from_dict(values, RunConfig, f"pipeline stage {stage.name}")


# ---------------------------------------------------------------- running


def run(pipe: PipelineConfig, shared: dict, stages: list[Stage]) -> dict:
    """Run (or skip) every stage, then the evaluation; returns the summary."""
    out = Path(pipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = State(policy=config.from_dict(shared, RunConfig).model.name_or_path)
    for i, stage in enumerate(stages, 1):
        cfg = stage_config(stage, shared, state, out) if stage.kind != DATA else None
        where = cfg.train.output_dir if cfg else out / stage.name
        print(f"\n== pipeline stage {i}/{len(stages)}: {stage.name} ({stage.kind}) -> {where}")
        output, seconds, skipped = run_stage(stage, cfg, out) if cfg else run_data(stage, out)
        if not skipped:
            state.ran.append(stage.name)
        state.stages.append(
            dict(name=stage.name, kind=stage.kind, output=output, seconds=seconds, skipped=skipped)
        )
        if stage.kind == DATA:
            continue
        if STAGES[stage.kind].role.makes == "policy":
            state.start_policy, state.policy, state.final_cfg = cfg.model.name_or_path, output, cfg
        else:
            state.reward_model = output
    from pixiu.eval import route

    return route.evaluate(pipe.eval, state, out)


def run_stage(stage: Stage, cfg: RunConfig, out: Path) -> tuple[str, float, bool]:
    """(output path, wall seconds, skipped). Skips a finished stage, resumes an interrupted one."""
    run_dir = Path(cfg.train.output_dir)
    done = _read_done(run_dir)
    resolved = _comparable(cfg, out)
    if done is not None and (out / done["output"]).exists():
        # A field added to pixiu since the stage ran reads as its default (as config.yaml does on resume), so an
        # upgrade alone does not invalidate a finished run; a changed value still does.
        before = config.merge(_comparable(RunConfig(), out), done["config"])
        _same_config(stage, before, resolved, "finished", run_dir)
        print(f"finished earlier in {done['seconds']:.0f} s: skipped ({out / done['output']})")
        return str(out / done["output"]), done["seconds"], True
    if (run_dir / "config.yaml").exists():
        started = _comparable(config.load(run_dir / "config.yaml"), out)
        _same_config(stage, started, resolved, "started", run_dir)
        print("interrupted earlier: resuming from its last checkpoint")
        cfg.train.resume = True
    t0 = time.perf_counter()
    final = STAGES[stage.kind].run(cfg)
    seconds = round(time.perf_counter() - t0, 1)
    gc.collect()  # each stage loads its own models; drop them before the next one loads
    # A policy saved merged as well is the next stage's base: adapters then stack on a full model.
    output = run_dir / "merged" if (run_dir / "merged" / "config.json").exists() else final
    marker = {
        "stage": stage.kind,
        "output": str(output.relative_to(out)),
        "seconds": seconds,
        "config": resolved,
    }
    tmp = run_dir / (DONE + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2, ensure_ascii=False))
    tmp.rename(run_dir / DONE)
    print(f"stage {stage.name} done in {seconds:.0f} s -> {output}")
    return str(output), seconds, False


def run_data(stage: Stage, out: Path) -> tuple[str, float, bool]:
    """(its `out` file, wall seconds, skipped). A data stage that finished with these args is skipped; one that
    started and did not finish runs again (generate resumes from its journal; filter reads its input again)."""
    run_dir = out / stage.name
    args = _expand(stage.sections["args"], out)
    output = str(args.get("out", ""))
    resolved = {"command": stage.sections["command"], "args": _relative(args, str(out).rstrip("/") + "/")}
    done = _read_done(run_dir)
    if done is not None and (not output or Path(output).exists()):
        _same_config(stage, done["config"], resolved, "finished", run_dir)
        print(f"finished earlier in {done['seconds']:.0f} s: skipped ({output})")
        return output, done["seconds"], True
    started = run_dir / "args.json"
    if started.exists():
        _same_config(stage, json.loads(started.read_text()), resolved, "started", run_dir)
        print("interrupted earlier: running it again")
    run_dir.mkdir(parents=True, exist_ok=True)
    started.write_text(json.dumps(resolved, indent=2, ensure_ascii=False))
    t0 = time.perf_counter()
    stage.command([f"--{k}={_flag(v)}" for k, v in args.items()])
    seconds = round(time.perf_counter() - t0, 1)
    marker = {"stage": DATA, "output": output, "seconds": seconds, "config": resolved}
    tmp = run_dir / (DONE + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2, ensure_ascii=False))
    tmp.rename(run_dir / DONE)
    print(f"stage {stage.name} done in {seconds:.0f} s -> {output}")
    return output, seconds, False


def _flag(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _read_done(run_dir: Path) -> dict | None:
    path = run_dir / DONE
    return json.loads(path.read_text()) if path.exists() else None


def _comparable(cfg: RunConfig, out: Path) -> dict:
    """The config as compared between runs. train.resume is how a run starts, not what it computes; paths
    inside the output directory are kept relative to it, so a moved run directory still matches."""
    values = json.loads(json.dumps(config.to_dict(cfg)))  # tuples and the like as JSON reads them back
    values["train"]["resume"] = False
    return _relative(values, str(out).rstrip("/") + "/")


def _relative(value, root: str):
    if isinstance(value, dict):
        return {k: _relative(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, root) for v in value]
    return (
        "{output_dir}/" + value[len(root) :] if isinstance(value, str) and value.startswith(root) else value
    )


def _same_config(stage: Stage, before: dict, now: dict, what: str, run_dir: Path) -> None:
    changed = _diff(before, now)
    if changed:
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, a, b in changed[:10])
        raise ConfigError(
            f"stage {stage.name} {what} with a different config:\n{lines}\n"
            f"delete {run_dir} to run it again with the new config, or restore the old one"
        )


def _diff(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [(prefix.rstrip("."), a, b)]


# ---------------------------------------------------------------- command line


def cli(argv: list[str], commands: dict | None = None) -> None:
    """pixiu pipeline recipe.yaml [--section.field=v] [--stage.NAME.section.field=v] [--pipeline.field=v]"""
    if not argv or argv[0] in ("-h", "--help"):
        print(cli.__doc__.strip() + "\n\npipeline fields:")
        for name, default, doc in config.describe(PipelineConfig, "pipeline."):
            print(f"  --{name}={default}\n      {doc}")
        print("\nstage fields: see `pixiu train sft --help`")
        print(
            f"data stages: {{name, stage: data, command, args}}; commands: {', '.join(sorted(commands or {}))}"
        )
        if not argv:
            sys.exit(2)
        return
    pipe, shared, stages = load(argv[0], argv[1:], commands)
    summary = run(pipe, shared, stages)
    print(f"\nsummary: {Path(pipe.output_dir) / 'summary.md'}" if summary else "")
    from pixiu.eval import report

    print(f"report: {report.write(pipe.output_dir)[0]}")
