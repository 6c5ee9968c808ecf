"""`pixiu report RUN_DIR`: a hand-written pipeline run directory (two stages' metrics.jsonl, the route's
summary.json with a <script> reply, a `pixiu eval` results.json) -> report.html with one SVG chart per metric
(points where hand-derived) and the reply escaped, report.md with golden lines; one stage alone; clear errors.
The slow test opens the HTML in headless Chromium and checks that every chart has a size on screen."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pixiu.eval import plots, report

XSS = "<script>alert('x')</script> & <img src=x onerror=alert(1)>"
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path("/work/notes/shots")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    # SFT: eval at steps 0 and 4 (the loop's layout), lr warms up then decays
    sft = [{"step": 0, "eval_loss": 2.0}]
    for step, loss, lr in ((1, 2.0, 0.001), (2, 1.5, 0.002), (3, 1.25, 0.0015), (4, 1.0, 0.0005)):
        sft.append({"step": step, "epoch": step / 4, "loss": loss, "lr": lr, "grad_norm": 1.0 / step,
                    "tokens_per_s": 100.0 + step})  # fmt: skip
    sft[-1]["eval_loss"] = 1.5
    _jsonl(root / "sft" / "metrics.jsonl", sft)
    (root / "sft" / "summary.json").write_text(json.dumps({"stage": "sft", "seconds": 12.3}))
    ppo = [
        {"step": s, "reward": r, "kl": k, "kl_coef": 0.1, "lr": 0.001, "gen_s": g, "train_s": t}
        for s, r, k, g, t in (
            (1, -1.0, 0.0, 2.0, 5.0),
            (2, 0.5, 0.25, 2.5, 4.0),
            (3, 1.0, float("nan"), 3.0, 4.5),
        )
    ]
    _jsonl(root / "ppo" / "metrics.jsonl", ppo)
    (root / "ppo" / "summary.json").write_text(json.dumps({"stage": "ppo", "seconds": 40.0}))
    summary = {
        "output_dir": str(root),
        "stages": [
            {"name": "sft", "kind": "sft", "output": f"{root}/sft/merged", "seconds": 12.3, "skipped": False},
            {"name": "ppo", "kind": "ppo", "output": f"{root}/ppo/final", "seconds": 40.0, "skipped": True},
        ],
        "reward_model": {"path": "rm/final", "groups": 4, "pairs": 8, "accuracy": 0.875, "margin": 1.25,
                         "by_kind": {"wrong": 1.0, "rude": 0.75}},
        "policies": {
            "prompts": 2, "samples_per_prompt": 1,
            "sampling": {"max_new_tokens": 32, "temperature": 1.0},
            "start": {"path": f"{root}/sft/merged", "mean_length": 10.5, "mean_reward": 0.5, "std_reward": 1.0},
            "final": {"path": f"{root}/ppo/final", "mean_length": 8.0, "mean_reward": 1.25, "std_reward": 0.5},
            "gain_in_start_std": 0.75, "cohens_d": 0.9487, "kl_final_to_start": 0.125,
            "side_by_side": [
                {"prompt": "Say hi", "start": XSS, "start_reward": -0.5, "final": "Hi!", "final_reward": 1.5},
                {"prompt": "你好", "start": "```code```", "final": "你好！"},
            ],
        },
        "eval_seconds": 5.0,
        "total_seconds": 57.3,
    }  # fmt: skip
    (root / "summary.json").write_text(json.dumps(summary))
    results = {"model": "ppo/final", "tasks": {"gsm8k": {  # eval/run.py's layout
        "metrics": {"accuracy": 0.25, "n": 4}, "skipped": {"too_long": 1}, "seconds": 3.2, "inputs": {"seed": 0},
        "rows": [{"id": 1, "correct": True, "reply": XSS}, {"id": 2, "correct": False, "reply": "4 | 5"}]}}}  # fmt: skip
    (root / "eval").mkdir()
    (root / "eval" / "results.json").write_text(json.dumps(results))
    return root


def charts(html: str) -> dict[str, list[tuple[str, int, int]]]:
    """chart title -> [(series, data-n, coordinate pairs in points)] for every <svg class="chart">."""
    out = {}
    for svg in re.findall(r'<svg class="chart".*?</svg>', html, re.S):
        title = re.search(r'data-title="([^"]*)"', svg).group(1)
        out[title] = [
            (name, int(n), len(points.split()))
            for name, n, points in re.findall(r'data-series="([^"]*)" data-n="(\d+)" points="([^"]*)"', svg)
        ]
    return out


def test_pipeline_report_html(run_dir):
    html_path, md_path = report.write(run_dir)
    assert (html_path, md_path) == (run_dir / "report.html", run_dir / "report.md")
    html = html_path.read_text()
    assert charts(html) == {
        # sft: held-out eval_loss on the loss axes; epoch is the x axis rescaled, not a chart
        "loss": [("train", 4, 4), ("held-out", 2, 2)],
        "lr": [("lr", 4, 4)],
        "grad_norm": [("grad_norm", 4, 4)],
        "tokens_per_s": [("tokens_per_s", 4, 4)],
        # ppo: the NaN KL is not plotted (and is reported); constant kl_coef and lr are listed, not drawn
        "reward": [("reward", 3, 3)],
        "kl": [("kl", 2, 2)],
        "seconds per step": [("gen_s", 3, 3), ("train_s", 3, 3)],
    }
    # Hand-derived pixels: x ticks 0..4 map to 68..444, y ticks 1.0..2.0 to 216..48 (plots.Box, its top 34
    # moved down 14 for the legend); every sft chart spans steps 0..4, the ppo ones 1..3 (NaN or not).
    assert (
        'data-series="train" data-n="4" points="162.00,48.00 256.00,132.00 350.00,174.00 444.00,216.00"'
        in html
    )
    assert 'data-series="held-out" data-n="2" points="68.00,48.00 444.00,132.00"' in html
    assert 'data-series="kl" data-n="2" points="68.00,216.00 256.00,34.00"' in html
    assert ">1.0</text>" in html and ">2.0</text>" in html and ">0.0005</text>" in html  # tick labels
    assert "<script" not in html and "<img" not in html  # the reply (twice: side by side, eval rows) is text
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;"
    assert html.count(escaped) == 2
    assert "Values not plotted (not finite numbers): kl 1." in html
    assert "Constant over the run: kl_coef = 0.1 (3 points), lr = 0.001 (3 points)." in html


def test_pipeline_report_markdown(run_dir):
    report.write(run_dir)
    md = (run_dir / "report.md").read_text().splitlines()
    golden = [
        "| stage | kind | seconds | logged rows | last step |",
        "| sft | sft | 12 | 5 | 4 |",
        "| ppo | ppo | 40 (earlier run) | 3 | 3 |",
        "| evaluation |  | 5 |  |  |",
        "| total |  | 57 |  |  |",
        "## Reward model rm/final: held-out pairwise accuracy",
        "| all | 8 | 0.875 | 1.250 |",
        "| rejected reply: wrong |  | 1.000 |  |",
        "| start | sft | 0.500 | 1.000 | 10.5 |",
        "| final | ppo | 1.250 | 0.500 | 8.0 |",
        "gain +0.75 reward std of the start policy (Cohen's d +0.95); mean KL(final || start) 0.125 nats per reply",
        "| sft | eval_loss | 2 | 0 | 1.5 | 4 |",
        "## pixiu eval: eval/results.json (model ppo/final)",
        "| gsm8k | accuracy | 0.25 |",
        "gsm8k: 3 s, skipped too_long 1",
        "| id | correct | reply |",
        "| 1 | true | &lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt; |",
        "| 2 | false | 4 \\| 5 |",
        "| loss | train | 4 | 2 | 1 | 1 | 2 |",
        "| loss | held-out | 2 | 2 | 1.5 | 1.5 | 2 |",
        "| seconds per step | gen_s | 3 | 2 | 3 | 2 | 3 |",
        "start (sft, reward -0.500):",
        "start (sft):",
        "````text",  # a reply with ``` gets a longer fence
    ]
    for line in golden:
        assert line in md, line
    fenced = md.index(XSS)
    assert md[fenced - 1] == "```text" and md[fenced + 1] == "```"


def test_single_stage_dir(run_dir):
    html_path, md_path = report.write(run_dir / "sft")
    assert list(charts(html_path.read_text())) == ["loss", "lr", "grad_norm", "tokens_per_s"]
    md = md_path.read_text()
    assert "| sft | sft | 12 | 5 | 4 |" in md.splitlines()
    assert "Replies side by side" not in md and "evaluation" not in md


def test_errors_name_the_path(tmp_path, capsys):
    with pytest.raises(report.ReportError, match="no such run directory"):
        report.write(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(report.ReportError, match="nothing to report"):
        report.write(tmp_path / "empty")
    _jsonl(tmp_path / "bad" / "metrics.jsonl", [{"step": 1, "loss": 1.0}])
    with (tmp_path / "bad" / "metrics.jsonl").open("a") as f:
        f.write('{"loss": 2.0}\n')
    with pytest.raises(report.ReportError, match=r"bad/metrics.jsonl:2: .*numeric `step`"):
        report.write(tmp_path / "bad")
    with pytest.raises(SystemExit, match="error: .*no such run directory"):
        report.cli([str(tmp_path / "missing")])


def test_cli_prints_paths(run_dir, capsys):
    report.cli([str(run_dir / "ppo")])
    assert capsys.readouterr().out.split() == [
        str(run_dir / "ppo" / "report.html"),
        str(run_dir / "ppo" / "report.md"),
    ]


def test_pipeline_cli_ends_with_the_report(tmp_path, monkeypatch, capsys, run_dir):
    from pixiu import pipeline

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"pipeline:\n  output_dir: {run_dir}\n  stages: [{{name: sft}}]\n")
    monkeypatch.setattr(
        pipeline, "run", lambda pipe, shared, stages: {"stages": []}
    )  # the stages ran earlier
    pipeline.cli([str(recipe)])
    assert f"report: {run_dir / 'report.html'}" in capsys.readouterr().out
    assert (run_dir / "report.md").exists()


def test_ticks_and_labels():
    assert plots.ticks(1.0, 2.0) == [1.0, 1.2, 1.4, 1.6, 1.8, 2.0]
    assert plots.ticks(0.0, 0.3) == [0.0, 0.1, 0.2, 0.3]  # no 0.30000000000000004
    assert plots.ticks(1, 3, 6, integer=True) == [1, 2, 3]
    assert plots.ticks(5.0, 5.0) == [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]  # one value: padded by 10%
    t = plots.ticks(0.0, 0.00025)
    assert [plots.label(v, t) for v in t] == ["0", "5.00e-05", "1.00e-04", "1.50e-04", "2.00e-04", "2.50e-04"]
    assert [plots.value(v) for v in (12345.6, 2.0, 0.00012345, -1.5e-7)] == [
        "12346",
        "2",
        "0.0001234",
        "-1.5e-07",
    ]
    t = plots.ticks(0, 12500)
    assert [plots.label(v, t) for v in t] == ["0", "2,500", "5,000", "7,500", "10,000", "12,500"]


@pytest.mark.slow
def test_report_renders_in_chromium(run_dir, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    html_path, _ = report.write(run_dir)
    errors = []
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "dialog", lambda d: errors.append(f"dialog: {d.message}")
        )  # an alert() would mean a reply ran
        page.goto(html_path.as_uri())
        boxes = [svg.bounding_box() for svg in page.locator("svg.chart").all()]
        assert len(boxes) == 7
        assert all(b and b["width"] > 300 and b["height"] > 150 for b in boxes), boxes
        lines = page.locator("svg.chart polyline").all()
        assert len(lines) == 9 and all(line.bounding_box() is not None for line in lines)
        assert XSS in page.locator("table.sides").inner_text()  # shown as text
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert not errors, errors
    assert shot.stat().st_size > 10_000
    if SHOTS.parent.exists():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(shot, SHOTS / "report.png")


# ---------------------------------------------------------------- bench/all.py: docs/benchmarks.md assembly


def test_bench_docs_assembly(tmp_path, monkeypatch):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("bench_all", Path(__file__).parents[1] / "bench" / "all.py")
    harness = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_all", harness)  # dataclasses look their module up while defining
    spec.loader.exec_module(harness)
    results, notes = tmp_path / "results", tmp_path / "notes"
    results.mkdir()
    notes.mkdir()
    (results / "sft.md").write_text(
        "# pixiu SFT vs TRL\n\nCommand: `python bench/sft.py --n 8`\n\n| a | b |\n|---|---:|\n| x | 1.5 |\n\n"
        '## Notes\n\nRaw results:\n\n```json\n# not a heading\n{"tokens": 3}\n```\n'
    )
    (results / "zz_new.md").write_text("no title, no command: 42\n")  # unregistered: picked up, last
    (results / "quickstart.md").write_text("# Route\n\nCommand: `make demo`\n\n9 s\n")
    (notes / "intro.md").write_text("Read the machine line first.\n")
    (notes / "sft.md").write_text("LoRA meets the goal.\n")
    text, names = harness.assemble(results, notes, harness.header("2026-12-02", "Some CPU, 2 cores"))
    assert names == ["quickstart", "sft", "zz_new"]  # ORDER first, then the rest alphabetically
    assert text.splitlines()[:5] == [
        "# Benchmarks",
        "",
        "<!-- Generated by `python bench/all.py` from bench/notes/*.md and bench/results/*.md: edit those and "
        "re-run it; edits made here are lost. -->",
        "",
        "Assembled 2026-12-02 on Some CPU, 2 cores. Each section names the machine and versions it was measured "
        "with, which can differ from this line.",
    ]
    sft = text[text.index("## pixiu SFT vs TRL") : text.index("## zz_new")]
    assert sft.splitlines() == [
        "## pixiu SFT vs TRL", "", "Command: `python bench/sft.py --n 8`", "", "| a | b |", "|---|---:|",
        "| x | 1.5 |", "", "### Notes", "", "<details><summary>Raw results</summary>", "", "```json",
        "# not a heading", '{"tokens": 3}', "```", "", "</details>", "",
        "Re-run: `python bench/all.py --run sft` (bench/sft.py with its default arguments; the Command line above "
        "has the ones behind these numbers). Source: [bench/results/sft.md](../bench/results/sft.md).",
        "", "LoRA meets the goal.", "",
    ]  # fmt: skip
    assert "Read the machine line first." in text and text.index("Read the machine") < text.index("## Route")
    new = text[text.index("## zz_new") :].splitlines()
    assert new[:4] == ["## zz_new", "", "Command: `python bench/zz_new.py`", "no title, no command: 42"]
    assert "Measured by hand with the command above." in text[text.index("## Route") : text.index("## pixiu")]
    hand = text + "\n## Measured by hand\n\nA table a session wrote here.\n"
    assert harness.dropped(hand, text) == ["## Measured by hand", "A table a session wrote here."]
    assert harness.dropped(text, text) == []


def test_one_markdown_table_writer_escapes_and_aligns():
    """results.md, summary.md and report.md share eval/table.py: model text cannot break a row or render as
    HTML; number columns (nan, '12 (earlier run)' included) are right-aligned, the label column never is."""
    from pixiu.eval.table import md_records, md_table

    assert md_table(["stage", "seconds", "reply"], [["7", "12 (earlier run)", "<b>hi</b> | a\nb"], ["x", "nan", ""]]) == [
        "| stage | seconds | reply |",
        "|---|---:|---|",
        "| 7 | 12 (earlier run) | &lt;b&gt;hi&lt;/b&gt; \\| a b |",
        "| x | nan |  |",
    ]  # fmt: skip
    assert md_records([{"task": "gsm8k", "value": 0.25}, {"task": "mmlu", "n": 3.0}]) == [
        "| task | value | n |",
        "|---|---:|---:|",
        "| gsm8k | 0.2500 |  |",
        "| mmlu |  | 3 |",
    ]
    assert md_records([]) == []
