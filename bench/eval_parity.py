"""pixiu eval against lm-evaluation-harness on the same local MMLU / CMMLU data: accuracy side by side.

Same on both sides: SmolLM2-135M-Instruct as the HF directory pixiu converts the embedded GGUF into
(`pixiu.model.io.resolve("smollm2-135m")`, passed to lm-eval's `hf` model), fp32, zero-shot (or --shots K: the
first K dev examples, lm-eval's `first_n` sampler), the prompt of
lm-eval's own `mmlu` / `cmmlu` tasks (description line, question, lettered choices, "Answer:" / "答案："),
log-likelihood of " A".." D", accuracy = argmax, torch threads. lm-eval reads the data through a task YAML
written here (--include_path); the CSVs are first copied to JSONL with Python's csv module, the parser pixiu uses,
because lm-eval's `csv` loader goes through pandas, whose type inference would turn a choice "0.50" into 0.5 and
"None" into NaN, so the two sides would no longer read the same text.

Reported per subject and overall: accuracy on each side and the difference (acceptance: within 1 point), plus
per-question agreement of the predicted letter and the largest log-likelihood difference, matched by question
index (lm-eval's doc_id, pixiu's items log). Optionally pixiu's GSM8K exact match on the first N test problems.

Run from the repository root (lm-eval in its own venv, see --lm-eval), made once with:
    python3 -m venv /work/lmeval-venv && /work/lmeval-venv/bin/pip install torch==2.13.0 \
        && /work/lmeval-venv/bin/pip install "lm-eval[hf]==0.4.13" accelerate transformers==5.24.0
    python bench/eval_parity.py                                     # the subjects below, 1 thread
    python bench/eval_parity.py --limit 10 --mmlu marketing --cmmlu agronomy --gsm8k 0   # smoke test
    python bench/eval_parity.py --limit 40 --shots 5 --threads 2 --gsm8k 0 --out eval_parity_5shot \
        --work runs/bench/eval_parity_5shot                                                    # 5-shot
Writes bench/results/eval_parity.md and eval_parity.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
MODEL = "smollm2-135m"
MMLU = "abstract_algebra,business_ethics,jurisprudence,medical_genetics,us_foreign_policy"
CMMLU = "chinese_driving_rule,chinese_foreign_policy,college_mathematics,high_school_geography,philosophy"
LETTERS = ["A", "B", "C", "D"]


def lm_eval_task(bench: str, subject: str, files: dict[str, Path]) -> dict:
    """The task config lm-eval's own mmlu / cmmlu tasks use, pointed at local JSONL files."""
    from pixiu.eval.choice import LAYOUTS

    layout = LAYOUTS[bench]
    if bench == "mmlu":
        text = "{{question.strip()}}\nA. {{choice0}}\nB. {{choice1}}\nC. {{choice2}}\nD. {{choice3}}\nAnswer:"
        target = "{{answer}}"
    else:
        text = "{{Question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\n答案："
        target = "{{['A', 'B', 'C', 'D'].index(Answer)}}"
    return {
        "task": f"pixiu_{bench}_{subject}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}},
        "test_split": "test",
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "description": layout.description.format(subject=layout.subject_name(subject)),
        "doc_to_text": text,
        "doc_to_choice": LETTERS,
        "doc_to_target": target,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }


def write_tasks(work: Path, bench: str, subjects: list[str]) -> list[str]:
    """CSV -> JSONL (all strings, as csv reads them) and one task YAML (JSON is YAML) per subject."""
    from pixiu.eval.choice import LAYOUTS

    layout = LAYOUTS[bench]
    root = SHARED / ("cmmlu/data" if bench == "cmmlu" else "mmlu")
    names = []
    for subject in subjects:
        files = {}
        for split in ("test", "dev"):
            src = root / layout.pattern.format(split=split, subject=subject)
            with src.open(encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
            dst = work / "data" / bench / f"{subject}_{split}.jsonl"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            files[split] = dst
        task = lm_eval_task(bench, subject, files)
        (work / "tasks" / f"{task['task']}.yaml").parent.mkdir(parents=True, exist_ok=True)
        (work / "tasks" / f"{task['task']}.yaml").write_text(json.dumps(task, ensure_ascii=False, indent=1))
        names.append(task["task"])
    return names


def run_pixiu(a, work: Path, bench: str, subjects: list[str]) -> dict:
    out = work / f"pixiu-{bench}"
    cmd = [
        sys.executable,
        "-m",
        "pixiu.cli",
        "eval",
        MODEL,
        "--tasks",
        bench,
        "--subjects",
        ",".join(subjects),
    ]
    cmd += ["--dtype", "fp32", "--out", str(out), "--force", "--shots", str(a.shots)]
    cmd += ["--limit", str(a.limit)] if a.limit else []
    seconds = timed(cmd, a.threads, out, a.reuse)
    res = json.loads((out / "results.json").read_text())["tasks"][bench]
    items = [json.loads(line) for line in (out / f"{bench}.items.jsonl").read_text().splitlines()[1:]]
    acc = {r["subject"]: (r["accuracy"], r["n"]) for r in res["rows"]}
    return {
        "acc": acc,
        "items": {i["key"]: i["value"] for i in items},
        "seconds": seconds,
        "skipped": res["skipped"],
    }


def run_lm_eval(a, work: Path, bench: str, subjects: list[str], model_dir: str) -> dict:
    tasks = write_tasks(work, bench, subjects)
    out = work / f"lmeval-{bench}"
    cmd = [a.lm_eval, "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32"]
    cmd += ["--tasks", ",".join(tasks), "--include_path", str(work / "tasks"), "--num_fewshot", str(a.shots)]
    cmd += ["--batch_size", str(a.batch), "--device", "cpu", "--output_path", str(out), "--log_samples"]
    cmd += ["--limit", str(a.limit)] if a.limit else []
    seconds = timed(cmd, a.threads, out, a.reuse)
    result = json.loads(max(out.rglob("results_*.json"), key=os.path.getmtime).read_text())
    acc, items = {}, {}
    for subject, task in zip(subjects, tasks):
        n = result["n-samples"][task]["effective"]
        acc[subject] = (result["results"][task]["acc,none"], n)
        samples = max(out.rglob(f"samples_{task}_*.jsonl"), key=os.path.getmtime)
        for line in samples.read_text().splitlines():
            s = json.loads(line)
            logps = [float(r[0]) for r in s["filtered_resps"]]
            items[f"{subject}:{s['doc_id']}"] = {"logps": logps, "pred": logps.index(max(logps))}
    return {"acc": acc, "items": items, "seconds": seconds, "version": result.get("lm_eval_version", "")}


def timed(cmd: list[str], threads: int, out: Path, reuse: bool = False) -> dict:
    """Run one side in a fresh process; its wall seconds are kept in OUT/wall.json so --reuse can skip it."""
    record = out / "wall.json"
    if reuse and record.is_file():
        print(f"reusing {out}")
        return json.loads(record.read_text())["seconds"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env |= {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    print("$", " ".join(cmd), flush=True)
    t0, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["nice", "-n", "19", *cmd], check=True, env=env, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + sys) say more than wall time on a machine shared with other jobs
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    seconds = {"wall": round(time.perf_counter() - t0, 1), "cpu": round(cpu, 1)}
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"seconds": seconds, "cmd": cmd}))
    return seconds


def compare(bench: str, p: dict, lm: dict) -> dict:
    rows = []
    for subject, (acc_p, n_p) in p["acc"].items():
        acc_l, n_l = lm["acc"][subject]
        rows.append({"subject": subject, "n": n_p, "n_lm_eval": n_l, "pixiu": acc_p, "lm_eval": acc_l})
    keys = sorted(set(p["items"]) & set(lm["items"]))
    agree = sum(p["items"][k]["pred"] == lm["items"][k]["pred"] for k in keys)
    gap = max(abs(x - y) for k in keys for x, y in zip(p["items"][k]["logps"], lm["items"][k]["logps"]))
    total = sum(r["n"] for r in rows)
    micro = {s: sum(r[s] * r["n"] for r in rows) / total for s in ("pixiu", "lm_eval")}
    macro = {s: sum(r[s] for r in rows) / len(rows) for s in ("pixiu", "lm_eval")}
    return {
        "bench": bench,
        "rows": rows,
        "micro": micro,
        "macro": macro,
        "questions": total,
        "matched": len(keys),
        "same_prediction": agree,
        "max_abs_loglik_diff": gap,
        "seconds": {"pixiu": p["seconds"], "lm_eval": lm["seconds"]},
        "pixiu_skipped": p["skipped"],
    }


def run_gsm8k(a, work: Path) -> dict:
    out = work / "pixiu-gsm8k"
    cmd = [sys.executable, "-m", "pixiu.cli", "eval", MODEL, "--tasks", "gsm8k", "--limit", str(a.gsm8k)]
    timed([*cmd, "--out", str(out)], a.threads, out, a.reuse)
    res = json.loads((out / "results.json").read_text())["tasks"]["gsm8k"]
    from pixiu.model import io

    # the task's own seconds: a finished run in OUT is reused (resume), so the process time may be ~0
    return {
        "bench": "gsm8k",
        "limit": a.gsm8k,
        "seconds": res["seconds"],
        "dtype": str(io.compute_dtype("auto")).removeprefix("torch."),  # what 'auto' measures and picks here
        **res["metrics"],
        "row": res["rows"][0],
    }


def markdown(a, machine: str, cmp: list[dict], gsm: dict | None, version: str) -> str:
    pt = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [
        "# pixiu eval vs lm-evaluation-harness: MMLU and CMMLU accuracy (CPU)",
        "",
        f"Machine: {machine}; lm-eval {version}; {a.threads} torch thread(s) on both sides.",
        "",
        f"{MODEL} (the HF directory pixiu converts the embedded GGUF into, given to lm-eval's `hf` model), fp32, "
        f"{a.shots or 'zero'}-shot{' (the first dev examples, on both sides)' if a.shots else ''}, "
        "lm-eval's mmlu / cmmlu prompt, log-likelihood of ' A'..' D' (acc); the same local CSVs "
        "(../shared/data) on both sides"
        + (f", first {a.limit} questions per subject" if a.limit else "")
        + ".",
        "",
        "Command: `"
        + " ".join(["python bench/eval_parity.py", *sys.argv[1:]])
        + "`"
        + (" (sides already run in the work dir by an earlier invocation were reused)" if a.reuse else ""),
        "",
    ]
    for c in cmp:
        lines += [
            f"## {c['bench'].upper()}",
            "",
            "| subject | questions | pixiu | lm-eval | pixiu - lm-eval |",
        ]
        lines.append("|---|---:|---:|---:|---:|")
        for r in c["rows"]:
            d = 100 * (r["pixiu"] - r["lm_eval"])
            lines.append(f"| {r['subject']} | {r['n']} | {pt(r['pixiu'])} | {pt(r['lm_eval'])} | {d:+.1f} |")
        for name in ("micro", "macro"):
            m = c[name]
            d = 100 * (m["pixiu"] - m["lm_eval"])
            label = "all questions (micro)" if name == "micro" else "mean of subjects (macro)"
            lines.append(
                f"| **{label}** | {c['questions']} | {pt(m['pixiu'])} | {pt(m['lm_eval'])} | {d:+.1f} |"
            )
        lines += [
            "",
            f"Same predicted letter on {c['same_prediction']} of {c['matched']} questions; largest |log-likelihood "
            f"difference| of any choice {c['max_abs_loglik_diff']:.2e} nats. Whole process, load included: "
            f"pixiu {seconds(c['seconds']['pixiu'])}, lm-eval {seconds(c['seconds']['lm_eval'])} (a machine "
            "shared with other jobs: CPU time is the steadier number).",
            "",
        ]
    if gsm:
        r = gsm["row"]
        lines += [
            "## GSM8K (pixiu only)",
            "",
            f"`pixiu eval {MODEL} --tasks gsm8k --limit {gsm['limit']}`: the first {gsm['limit']} test problems, "
            "greedy, one user turn with the task's instruction (end with '#### <number>'), chat template, at most "
            f"256 new tokens, dtype auto ({gsm['dtype']} on this machine): exact match **{100 * gsm['exact_match']:.1f}%** ({r['correct']} of {r['problems']}; "
            f"{r['no_number']} replies without a number; mean reply {gsm['mean_reply_tokens']:.0f} tokens; task "
            f"time {gsm['seconds']:.0f} s on the shared machine).",
            "",
        ]
    raw = [{k: v for k, v in c.items()} for c in cmp] + ([gsm] if gsm else [])
    lines += ["Raw results:", "", "```json", *(json.dumps(r, ensure_ascii=False) for r in raw), "```", ""]
    return "\n".join(lines)


def seconds(s) -> str:
    """{'wall', 'cpu'} -> text; a bare number is wall time from a run before CPU time was recorded."""
    if isinstance(s, dict):
        return f"{s['wall']:.0f} s wall, {s['cpu']:.0f} s CPU"
    return f"{s:.0f} s wall"


def machine_line() -> str:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores; torch {torch.__version__}, transformers {transformers.__version__}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mmlu", default=MMLU, help="MMLU subjects ('' to skip)")
    p.add_argument("--cmmlu", default=CMMLU, help="CMMLU subjects ('' to skip)")
    p.add_argument("--limit", type=int, default=0, help="first N questions per subject (0 = all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shots", type=int, default=0, help="few-shot examples per prompt, both sides")
    p.add_argument("--out", default="eval_parity", help="result files bench/results/OUT.md and OUT.jsonl")
    p.add_argument("--batch", type=int, default=8, help="lm-eval batch size")
    p.add_argument(
        "--gsm8k", type=int, default=200, help="pixiu GSM8K on the first N test problems (0 = skip)"
    )
    p.add_argument("--lm-eval", default="/work/lmeval-venv/bin/lm_eval", help="the lm_eval executable")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench" / "eval_parity"))
    p.add_argument("--reuse", action="store_true", help="keep sides already run in --work (their wall.json)")
    a = p.parse_args()
    from pixiu.model import io

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = io.resolve(MODEL)
    cmp, version = [], ""
    for bench in ("mmlu", "cmmlu"):
        subjects = [s for s in getattr(a, bench).split(",") if s]
        if subjects:
            lm = run_lm_eval(a, work, bench, subjects, model_dir)
            version = lm["version"]
            cmp.append(compare(bench, run_pixiu(a, work, bench, subjects), lm))
    gsm = run_gsm8k(a, work) if a.gsm8k else None
    text = markdown(a, machine_line(), cmp, gsm, version)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.out}.md").write_text(text, encoding="utf-8")
    with (RESULTS / f"{a.out}.jsonl").open("w", encoding="utf-8") as f:
        for r in [*cmp, *([gsm] if gsm else [])]:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
