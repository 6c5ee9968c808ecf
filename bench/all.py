"""One entry point for the benchmarks: run some of them, then assemble docs/benchmarks.md.

    python bench/all.py                          # only assemble docs/benchmarks.md from what bench/results/ holds
    python bench/all.py --run sft,rm,dpo         # run bench/sft.py, rm.py, dpo.py (each with its own default
                                                 # arguments, in a fresh subprocess, one after the other), then assemble
    python bench/all.py --run generate -- --max-new-tokens 8   # arguments after -- go to every script run
    python bench/all.py --list                   # which benchmarks have a script, a result, notes

Each script writes bench/results/<name>.md (a `# title`, the machine, a `Command:` line with the exact
arguments, the tables, raw results). docs/benchmarks.md is a header (the machine and library versions where it
was assembled, the date) + bench/notes/intro.md + one section per result in ORDER: the result file with its
headings one level down and its raw JSON folded, the command that re-runs it, and bench/notes/<name>.md, the
hand-written reading of the numbers, which re-running a script does not overwrite. Results that ORDER does not
name follow alphabetically, so a new benchmark shows up before anyone registers it here.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS, NOTES, DOC = BENCH / "results", BENCH / "notes", ROOT / "docs" / "benchmarks.md"
LIBRARIES = ("torch", "transformers", "trl", "peft")


@dataclass(frozen=True)
class Bench:
    name: str  # bench/results/<name>.md, and bench/<name>.py when a script makes it
    by_hand: str = ""  # the command behind a result no script writes (it is measured by hand)


# The order of docs/benchmarks.md: the whole route first, then the trainers stage by stage, generation and
# serving, evaluation.
ORDER = [
    Bench("quickstart", by_hand="rm -rf runs/quickstart && time make demo"),
    Bench("alpaca_lora", by_hand="pixiu train sft --config recipes/alpaca-lora.yaml"),
    Bench("sft"),
    Bench("rm_full"),
    Bench("rm_1000"),
    Bench("rm"),
    Bench("dpo"),
    Bench(
        "dpo_bf16",
        by_hand="python bench/dpo.py --n 32 --batch 4 --max-len 192 --threads 1 --dtype bf16 --out dpo_bf16",
    ),
    Bench("ppo_trl"),
    Bench("ppo_memory"),
    Bench("grpo"),
    Bench(
        "grpo_arithmetic", by_hand="OMP_NUM_THREADS=1 pixiu train grpo --config recipes/arithmetic-grpo.yaml"
    ),
    Bench("generate"),
    Bench(
        "generate_2t", by_hand="python bench/generate.py --threads 2 --max-new-tokens 64 --out generate_2t"
    ),
    Bench(
        "generate_qwen",
        by_hand="python bench/generate.py --model qwen2.5-0.5b-random --threads 2 --max-new-tokens 64 "
        "--out generate_qwen",
    ),
    Bench("serve_load"),
    Bench("eval_parity"),
    Bench("eval_parity_5shot"),
    Bench("winrate"),
]


def script(name: str) -> Path:
    return BENCH / f"{name}.py"


# ---------------------------------------------------------------- running


def run(names: list[str], extra: list[str]) -> list[str]:
    """Each bench/<name>.py in a fresh subprocess, in order; -> the failures, as lines (a failure does not stop
    the next one)."""
    failures = []
    for i, name in enumerate(names, 1):
        cmd = [sys.executable, str(script(name).relative_to(ROOT)), *extra]
        result = RESULTS / f"{name}.md"
        before = result.stat().st_mtime if result.exists() else None
        print(f"\n== [{i}/{len(names)}] {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        seconds = time.perf_counter() - t0
        after = result.stat().st_mtime if result.exists() else None
        print(f"== {name}: exit {rc} after {seconds:.0f} s", flush=True)
        if rc:
            failures.append(f"{name}: exit status {rc}")
        elif after is None or after == before:
            print(f"== {name}: {result.relative_to(ROOT)} was not (re)written; the docs keep what was there")
    return failures


# ---------------------------------------------------------------- assembling


def machine() -> str:
    """CPU model, cores, RAM; Python and library versions of this interpreter (no heavy imports)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    cpu = names[0] if names else platform.processor() or platform.machine()
    ram = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text())
        ram = f", {int(kb.group(1)) / 2**20:.1f} GiB RAM" if kb else ""
    versions = [f"Python {platform.python_version()}"]
    for lib in LIBRARIES:
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} not installed")
    return f"{cpu}, {os.cpu_count()} cores{ram}; {', '.join(versions)}"


def header(today: str, where: str) -> str:
    return (
        "# Benchmarks\n\n"
        "<!-- Generated by `python bench/all.py` from bench/notes/*.md and bench/results/*.md: edit those and "
        "re-run it; edits made here are lost. -->\n\n"
        f"Assembled {today} on {where}. Each section names the machine and versions it was measured with, "
        "which can differ from this line.\n"
    )


def section(bench: Bench, text: str, notes: str) -> str:
    """One result file as a docs section: title to ##, other headings one level down, raw JSON folded, a
    Command line when the file lacks one, the re-run command, then the hand-written notes."""
    lines = text.strip("\n").splitlines()
    title = lines[0][2:].strip() if lines and lines[0].startswith("# ") else bench.name
    body = demote(lines[1:] if lines and lines[0].startswith("# ") else lines)
    if not any(line.startswith("Command:") for line in body):
        command = bench.by_hand or f"python bench/{bench.name}.py"
        body = ["", f"Command: `{command}`", *body]
    source = f"[bench/results/{bench.name}.md](../bench/results/{bench.name}.md)"
    if script(bench.name).exists():
        rerun = (
            f"Re-run: `python bench/all.py --run {bench.name}` (bench/{bench.name}.py with its default "
            f"arguments; the Command line above has the ones behind these numbers). Source: {source}."
        )
    else:
        rerun = f"Measured by hand with the command above. Source: {source}."
    out = [f"## {title}", *fold_raw(body), "", rerun]
    if notes.strip():
        out += ["", notes.strip("\n")]
    return "\n".join(out) + "\n"


def demote(lines: list[str]) -> list[str]:
    """Every markdown heading one level down (fenced code untouched)."""
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        out.append("#" + line if not fenced and re.match(r"#+ ", line) else line)
    return out


def fold_raw(lines: list[str]) -> list[str]:
    """'Raw results:' and the fenced block after it -> a <details> block: in the docs, the tables come first."""
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "Raw results:":
            fences = [k for k in range(i + 1, len(lines)) if lines[k].startswith("```")][:2]
            j, end = fences if len(fences) == 2 else (None, None)
            if j is not None and all(not x.strip() for x in lines[i + 1 : j]):
                out += ["<details><summary>Raw results</summary>", "", *lines[j : end + 1], "", "</details>"]
                i = end + 1
                continue
        out.append(lines[i])
        i += 1
    return out


def benches(results: Path) -> list[Bench]:
    """ORDER, then every other result file, alphabetically."""
    known = {b.name for b in ORDER}
    return [*ORDER, *(Bench(p.stem) for p in sorted(results.glob("*.md")) if p.stem not in known)]


def assemble(results: Path, notes: Path, head: str) -> tuple[str, list[str]]:
    """-> (docs/benchmarks.md, the names included, in order)."""
    present = [b for b in benches(results) if (results / f"{b.name}.md").exists()]
    intro = notes / "intro.md"
    parts = [head, intro.read_text(encoding="utf-8").strip("\n") + "\n" if intro.exists() else ""]
    for b in present:
        text = (results / f"{b.name}.md").read_text(encoding="utf-8")
        note = notes / f"{b.name}.md"
        parts.append(section(b, text, note.read_text(encoding="utf-8") if note.exists() else ""))
    return "\n".join(p for p in parts if p), [b.name for b in present]


def dropped(old: str, new: str) -> list[str]:
    """Non-blank lines of the existing docs that the assembled text does not hold: hand-written sections, or
    numbers a re-run changed."""
    keep = set(new.splitlines())
    return [line for line in old.splitlines() if line.strip() and line not in keep]


def listing() -> str:
    rows = ["name            script  result  notes"]
    for b in benches(RESULTS):
        flags = [script(b.name).exists(), *((d / f"{b.name}.md").exists() for d in (RESULTS, NOTES))]
        rows.append(f"{b.name:15s} " + "  ".join(f"{'yes' if f else '-':6s}" for f in flags))
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--run", default="", help="comma-separated benchmarks to run first (their scripts' defaults)"
    )
    p.add_argument(
        "--list", action="store_true", help="show the benchmarks and what exists for each, then exit"
    )
    p.add_argument("--out", default=str(DOC), help="where the assembled markdown goes")
    p.add_argument("--force", action="store_true", help="overwrite --out even if it would drop lines")
    a = p.parse_args(argv)
    if a.list:
        print(listing())
        return 0
    names = [n.strip() for n in a.run.split(",") if n.strip()]
    runnable = sorted(b.name for b in ORDER if script(b.name).exists())
    if unknown := [n for n in names if n not in runnable]:
        p.error(f"no script for {unknown}; runnable: {', '.join(runnable)}")
    failures = run(names, extra) if names else []
    text, included = assemble(RESULTS, NOTES, header(datetime.date.today().isoformat(), machine()))
    out = Path(a.out)
    gone = dropped(out.read_text(encoding="utf-8"), text) if out.exists() and not a.force else []
    if gone:  # sessions have written measured sections straight into docs/benchmarks.md
        sys.exit(f"{out}: {len(gone)} lines would be dropped, the first {gone[0][:80]!r}: write elsewhere "
                 f"(--out) and compare, or pass --force")  # fmt: skip
    out.write_text(text, encoding="utf-8")
    print(f"\nwrote {a.out}: {', '.join(included)}")
    for line in failures:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
