"""`pixiu report RUN_DIR`: one self-contained HTML file (report.html, plots as inline SVG, no scripts) and a
markdown twin (report.md) for a training run or a whole pipeline.

What it reads (all optional, at least one must exist):
- a stage's metrics.jsonl (train/loop.py's MetricsLog: one JSON row per logged step) -> a chart per metric,
  held-out `eval_X` drawn on the same axes as the training `X`, per-step timings (`*_s`) on one chart;
- a stage's summary.json (its kind and wall time) and done.json (written by the pipeline);
- the pipeline's summary.json (eval/route.py) -> stage times, reward-model accuracy, policy comparison and the
  start / final replies to the same held-out prompts side by side;
- any `pixiu eval` results.json under RUN_DIR -> a table of its numbers.
RUN_DIR is either one stage's output (`pixiu train sft ...`) or a pipeline's output_dir with a directory per
stage. Model replies are untrusted text: HTML-escaped, and fenced in the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from pixiu.degeneration import LABELS as DEGENERATION
from pixiu.degeneration import flags
from pixiu.eval.plots import Chart, Series, line_chart, value
from pixiu.eval.table import NUMBER, md_table

SKIP_KEYS = ("step", "epoch")  # the x axis, and a rescaled copy of it
TIMING = "seconds per step"  # the chart that gathers the per-phase timings (gen_s, train_s, ...)


class ReportError(ValueError):
    """A run directory the report cannot read; the message names the path (and line)."""


@dataclass
class StageRun:
    name: str
    kind: str
    path: Path
    seconds: float | None
    rows: list[dict]  # metrics.jsonl, in order
    charts: list[Chart] = field(default_factory=list)
    constants: dict[str, tuple[float, int]] = field(default_factory=dict)  # metric -> (its value, points)
    dropped: dict[str, int] = field(default_factory=dict)  # metric -> values not plotted (not finite numbers)


@dataclass
class Run:
    root: Path
    stages: list[StageRun]
    summary: dict  # the pipeline's summary.json ({} for a single stage)
    evals: list[tuple[Path, dict]]  # `pixiu eval` results.json files


@dataclass
class Table:
    title: str
    head: list[str]
    rows: list[list[str]]
    note: str  # a line under the table ('' = none)


STAGE_HEAD = ["stage", "kind", "seconds", "logged rows", "last step"]
HELD_HEAD = ["stage", "metric", "first", "at step", "last", "at step"]
CURVE_HEAD = ["metric", "series", "points", "first", "last", "min", "max"]


# ---------------------------------------------------------------- reading a run directory


def read_run(root: Path) -> Run:
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root}: no such run directory")
    summary = _json(root / "summary.json")
    pipeline = summary if "stages" in summary else {}
    dirs = [root] if _is_stage(root) else _stage_dirs(root, pipeline)
    listed = {s["name"]: s for s in pipeline.get("stages", [])}
    stages = [_stage(d, listed.get(d.name, {})) for d in dirs]
    evals = [(p, _json(p)) for p in sorted(root.rglob("results.json")) if "checkpoints" not in p.parts]
    if not (stages or pipeline or evals):
        raise ReportError(
            f"{root}: nothing to report: no metrics.jsonl or summary.json here or in its subdirectories, and no "
            "results.json; give a `pixiu train` output_dir, a `pixiu pipeline` output_dir or a `pixiu eval` output"
        )
    return Run(root, stages, pipeline, evals)


def _is_stage(d: Path) -> bool:
    return (d / "metrics.jsonl").exists() or "stage" in _json(d / "summary.json")


def _stage_dirs(root: Path, pipeline: dict) -> list[Path]:
    """The pipeline's order when its summary lists the stages; else by start time (config.yaml is written first)."""
    found = [d for d in root.iterdir() if d.is_dir() and _is_stage(d)]
    order = {s["name"]: i for i, s in enumerate(pipeline.get("stages", []))}

    def started(d: Path) -> float:
        first = d / "config.yaml" if (d / "config.yaml").exists() else d
        return first.stat().st_mtime

    return sorted(found, key=lambda d: (order.get(d.name, len(order)), started(d), d.name))


def _stage(d: Path, listed: dict) -> StageRun:
    own, done = _json(d / "summary.json"), _json(d / "done.json")
    kind = listed.get("kind") or own.get("stage") or done.get("stage") or ""
    seconds = listed.get("seconds", own.get("seconds", done.get("seconds")))
    stage = StageRun(d.name, kind, d, seconds, read_metrics(d / "metrics.jsonl"))
    stage.charts, stage.constants, stage.dropped = curves(stage.rows)
    return stage


def _json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl -> rows; a bad line is an error naming it, never skipped."""
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}:{i}: not valid JSON ({e})") from e
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            raise ReportError(f"{path}:{i}: expected a JSON object with a numeric `step`, got {line[:80]!r}")
        rows.append(row)
    return rows


# ---------------------------------------------------------------- metrics -> charts


def curves(rows: list[dict]) -> tuple[list[Chart], dict[str, tuple[float, int]], dict[str, int]]:
    """One chart per metric (eval_X joins X, timings share one); metrics with a single value go to constants."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in SKIP_KEYS))
    members: dict[str, list[tuple[str, Series]]] = {}  # chart title -> (metric, its series)
    dropped: dict[str, int] = {}
    for k in keys:
        title, name = chart_of(k, keys)
        s = Series(name, [], [])
        for r in (r for r in rows if k in r):
            v = r[k]
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                s.xs.append(r["step"])
                s.ys.append(v)
            else:
                dropped[k] = dropped.get(k, 0) + 1
        if s.xs:
            members.setdefault(title, []).append((k, s))
    steps = [r["step"] for r in rows]
    charts, constants = [], {}
    for title, group in members.items():
        if len({y for _, s in group for y in s.ys}) == 1:  # a flat line says less than one table entry
            constants |= {k: (s.ys[0], len(s.ys)) for k, s in group}
            continue
        group.sort(key=lambda m: m[1].name == "held-out")  # training first: the same colour in every chart
        y_label = "seconds" if title == TIMING else title
        charts.append(Chart(title, [s for _, s in group], y_label=y_label, x_range=(min(steps), max(steps))))
    return charts, constants, dropped


def chart_of(key: str, keys: list[str]) -> tuple[str, str]:
    """(chart title, series name) of a metric: the held-out eval_X joins the training X."""
    if key.startswith("eval_") and key[5:] in keys:
        return key[5:], "held-out"
    if "eval_" + key in keys:
        return key, "train"
    if key.endswith("_s") and key != "tokens_per_s":
        return TIMING, key
    return key, key


# ---------------------------------------------------------------- tables shared by both formats


def stage_rows(run: Run) -> list[list[str]]:
    listed = {s["name"]: s for s in run.summary.get("stages", [])}
    out = []
    for s in run.stages:
        steps = [r["step"] for r in s.rows]
        note = " (earlier run)" if listed.get(s.name, {}).get("skipped") else ""
        secs = f"{s.seconds:.0f}{note}" if s.seconds is not None else ""
        out.append([s.name, s.kind, secs, str(len(s.rows)), value(steps[-1]) if steps else ""])
    if run.summary:
        out.append(["evaluation", "", f"{run.summary.get('eval_seconds', 0):.0f}", "", ""])
        out.append(["total", "", f"{run.summary.get('total_seconds', 0):.0f}", "", ""])
    return out


def held_out_rows(run: Run) -> list[list[str]]:
    """First and last value of every held-out metric logged during training (eval_* keys)."""
    out = []
    for s in run.stages:
        keys = dict.fromkeys(k for r in s.rows for k in r if k.startswith("eval_"))
        for k in keys:
            pts = [(r["step"], r[k]) for r in s.rows if isinstance(r.get(k), (int, float))]
            if pts:
                (a, va), (b, vb) = pts[0], pts[-1]
                out.append([s.name, k, value(va), value(a), value(vb), value(b)])
    return out


def curve_rows(stage: StageRun) -> list[list[str]]:
    out = []
    for c in stage.charts:
        for s in c.series:
            ys = s.ys
            out.append(
                [c.title, s.name, str(len(ys)), value(ys[0]), value(ys[-1]), value(min(ys)), value(max(ys))]
            )
    return out


def policy_label(run: Run, path: str) -> str:
    """The stage whose output a policy path is (runs/x/sft/merged -> sft), else the path itself."""
    for s in run.summary.get("stages", []):
        if s.get("output") == path:
            return s["name"]
    return path


def tables(run: Run) -> list[Table]:
    """Every table of the report, in order: stages, the pipeline's evaluation (reward model, policies),
    held-out metrics logged while training, each `pixiu eval` results.json."""
    out = [Table("Stages", STAGE_HEAD, stage_rows(run), "")] if run.stages or run.summary else []
    rm = run.summary.get("reward_model")
    if rm:
        rows = [["all", str(rm["pairs"]), f"{rm['accuracy']:.3f}", f"{rm['margin']:.3f}"]]
        rows += [[f"rejected reply: {k}", "", f"{v:.3f}", ""] for k, v in rm.get("by_kind", {}).items()]
        title = f"Reward model {rm['path']}: held-out pairwise accuracy"
        out.append(Table(title, ["pairs", "count", "accuracy", "margin"], rows, ""))
    pol = run.summary.get("policies")
    if pol:
        out.append(policy_table(run, pol))
    held = held_out_rows(run)
    if held:
        out.append(Table("Held-out metrics during training", HELD_HEAD, held, ""))
    for path, data in run.evals:
        out += results_tables(str(path.relative_to(run.root)), data)
    return out


def policy_table(run: Run, pol: dict) -> Table:
    """Reward and degeneration (pixiu/degeneration.py) of both policies' replies, side by side."""
    keys = [k for k in DEGENERATION if any(k in pol[n].get("degeneration", {}) for n in ("start", "final"))]
    rows = []
    for name in ("start", "final"):
        p = pol[name]
        reward = [f"{p[k]:.3f}" if k in p else "" for k in ("mean_reward", "std_reward")]
        deg = [f"{p['degeneration'][k]:.3f}" if k in p.get("degeneration", {}) else "" for k in keys]
        rows.append([name, policy_label(run, p["path"]), *reward, f"{p['mean_length']:.1f}", *deg])
    sp = pol["sampling"]
    note = f"mean KL(final || start) {pol['kl_final_to_start']:.3f} nats per reply"
    if "gain_in_start_std" in pol:
        note = (
            f"gain {pol['gain_in_start_std']:+.2f} reward std of the start policy "
            f"(Cohen's d {pol['cohens_d']:+.2f}); " + note
        )
    title = (
        f"Policies on {pol['prompts']} held-out prompts ({pol['samples_per_prompt']} reply each, "
        f"temperature {sp['temperature']}, at most {sp['max_new_tokens']} new tokens)"
    )
    head = [
        "policy",
        "stage",
        "mean reward",
        "reward std",
        "mean reply tokens",
        *(DEGENERATION[k] for k in keys),
    ]
    return Table(title, head, rows, note)


MAX_ROWS = 40  # per-row tables of `pixiu eval` tasks beyond this point to results.json


def results_tables(path: str, data: dict) -> list[Table]:
    """A `pixiu eval` results.json ({"model", "tasks": {name: {metrics, rows, skipped, seconds}}}) as tables;
    any other JSON object flattened to dotted keys."""
    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        return [Table(f"pixiu eval: {path}", ["metric", "value"], _flat("", data), "")]
    rows, notes = [], []
    for name, t in tasks.items():
        rows += [
            [name, k, value(v) if isinstance(v, (int, float)) else str(v)]
            for k, v in t.get("metrics", {}).items()
        ]
        skipped = ", ".join(f"{k} {n}" for k, n in t.get("skipped", {}).items())
        notes.append(f"{name}: {t.get('seconds', 0):.0f} s" + (f", skipped {skipped}" if skipped else ""))
    out = [
        Table(
            f"pixiu eval: {path} (model {data.get('model')})",
            ["task", "metric", "value"],
            rows,
            "; ".join(notes),
        )
    ]
    for name, t in tasks.items():
        items = [r for r in t.get("rows", []) if isinstance(r, dict)]
        if items:
            head = list(dict.fromkeys(k for r in items for k in r))
            body = [[_cell(r.get(k, "")) for k in head] for r in items[:MAX_ROWS]]
            more = f"{len(items) - MAX_ROWS} more rows in {path}" if len(items) > MAX_ROWS else ""
            out.append(Table(f"pixiu eval: {name}, per row", head, body, more))
    return out


def _flat(prefix: str, v) -> list[list[str]]:
    if isinstance(v, dict):
        return [row for k, x in v.items() for row in _flat(f"{prefix}.{k}" if prefix else str(k), x)]
    return [[prefix, _cell(v)]]


def _cell(v) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return value(v)
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _sides(run: Run) -> list[dict]:
    return (run.summary.get("policies") or {}).get("side_by_side", [])


# ---------------------------------------------------------------- markdown


def markdown(run: Run) -> str:
    lines = [f"# pixiu report: {run.root}", ""]
    for t in tables(run):
        lines += [f"## {t.title}", "", *md_table(t.head, t.rows), ""] + ([t.note, ""] if t.note else [])
    for s in run.stages:
        lines += [f"## Training curves: {_stage_title(s)}", ""]
        rows = curve_rows(s)
        lines += [*md_table(CURVE_HEAD, rows), ""] if rows else ["No metrics logged.", ""]
        lines += _md_notes(s)
    sides = _sides(run)
    if sides:
        labels = {n: policy_label(run, run.summary["policies"][n]["path"]) for n in ("start", "final")}
        lines += ["## Replies side by side", ""]
        for i, row in enumerate(sides, 1):
            lines += [f"### Prompt {i}", "", *_fence(row["prompt"]), ""]
            for name in ("start", "final"):
                r = f", reward {row[name + '_reward']:+.3f}" if f"{name}_reward" in row else ""
                r += "".join(f", {f}" for f in flags(row.get(f"{name}_metrics")))
                lines += [f"{name} ({labels[name]}{r}):", "", *_fence(row[name]), ""]
    return "\n".join(lines).rstrip() + "\n"


def _stage_title(s: StageRun) -> str:
    return f"{s.name} ({s.kind})" if s.kind and s.kind != s.name else s.name


def _md_notes(s: StageRun) -> list[str]:
    out = []
    if s.constants:
        consts = ", ".join(f"{k} = {value(v)} ({n} points)" for k, (v, n) in s.constants.items())
        out += [f"Constant over the run: {consts}.", ""]
    if s.dropped:
        out += [f"Values not plotted (not finite numbers): {_counts(s.dropped)}.", ""]
    return out


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in d.items())


def _fence(text: str) -> list[str]:
    """Untrusted text as a fenced block: nothing in it renders as markdown or HTML."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return [bar + "text", text, bar]


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif;margin:24px auto;max-width:1180px;padding:0 16px;color:#222;line-height:1.4}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
svg.chart{width:100%;height:auto;max-width:560px;background:#fff;border:1px solid #eee}
.reply{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:13px;max-width:460px}
.note{color:#555}
"""


def html(run: Run) -> str:
    body = [f"<h1>pixiu report: {escape(str(run.root))}</h1>"]
    for t in tables(run):
        body += [f"<h2>{escape(t.title)}</h2>", _html_table(t.head, t.rows)]
        body += [f'<p class="note">{escape(t.note)}</p>'] if t.note else []
    for s in run.stages:
        body += [f"<h2>Training curves: {escape(_stage_title(s))}</h2>"]
        body += ['<div class="charts">', *(line_chart(c) for c in s.charts), "</div>"] if s.charts else []
        body += [f'<p class="note">{escape(line)}</p>' for line in _md_notes(s) if line]
        if not s.rows:
            body.append('<p class="note">No metrics logged.</p>')
    body += _html_sides(run)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        # no scripts, no fetches: an escaping slip in a reply still could not run or call out
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>pixiu report: {escape(str(run.root))}</title>\n<style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _html_sides(run: Run) -> list[str]:
    sides = _sides(run)
    if not sides:
        return []
    labels = {n: policy_label(run, run.summary["policies"][n]["path"]) for n in ("start", "final")}
    head = "".join(f"<th>{n} ({escape(labels[n])})</th>" for n in ("start", "final"))
    out = ["<h2>Replies side by side</h2>", f'<table class="sides"><tr><th>prompt</th>{head}</tr>']
    for row in sides:
        cells = [f'<td><div class="reply">{escape(row["prompt"])}</div></td>']
        for name in ("start", "final"):
            note = f"reward {row[name + '_reward']:+.3f}" if f"{name}_reward" in row else ""
            note = ", ".join([note] * bool(note) + flags(row.get(f"{name}_metrics")))
            r = f'<div class="note">{escape(note)}</div>' if note else ""
            cells.append(f'<td><div class="reply">{escape(row[name])}</div>{r}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    return [*out, "</table>"]


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    def td(x: str) -> str:
        num = NUMBER.fullmatch(str(x))
        return f'<td class="num">{escape(str(x))}</td>' if num else f"<td>{escape(str(x))}</td>"

    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (
        "<table><tr>"
        + th
        + "</tr>"
        + "".join("<tr>" + "".join(map(td, r)) + "</tr>" for r in rows)
        + "</table>"
    )


# ---------------------------------------------------------------- entry points


def write(run_dir: str | Path) -> tuple[Path, Path]:
    """RUN_DIR/report.html and RUN_DIR/report.md; -> their paths."""
    run = read_run(Path(run_dir))
    out_html, out_md = run.root / "report.html", run.root / "report.md"
    out_html.write_text(html(run), encoding="utf-8")
    out_md.write_text(markdown(run), encoding="utf-8")
    return out_html, out_md


def cli(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="pixiu report", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a `pixiu train` or `pixiu pipeline` output directory")
    a = p.parse_args(argv)
    try:
        paths = write(a.run_dir)
    except ReportError as e:
        sys.exit(f"error: {e}")
    print("\n".join(map(str, paths)))
