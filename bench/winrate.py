"""Win rate of one pixiu checkpoint against another, judged end to end by a third model behind `pixiu serve`.

It starts `pixiu serve JUDGE` on a free loopback port, runs `pixiu eval A --tasks winrate --against B --judge URL`
(each pair judged in both orders), stops the server, and, with --reward-model, runs the same pairs again judged by
that reward model. Every process runs under `nice -n 19` with one torch thread. It writes
bench/results/winrate.md (the commands, the numbers, a few pairs) and appends to bench/results/winrate.jsonl.

Run from the repository root, after `pixiu pipeline recipes/quickstart.yaml` (`make demo`):
    python bench/winrate.py                                   # PPO vs SFT of the quickstart, judge smollm2-135m
    python bench/winrate.py --llm-modes letters,text          # also FastChat's written verdicts (~20 min more)
    python bench/winrate.py --limit 4 --out /tmp/wr-smoke     # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PIXIU = str(Path(sys.executable).parent / "pixiu")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model: str, port: int, db: Path, max_tokens: int) -> subprocess.Popen:
    """`pixiu serve MODEL`, waited for until /health answers (loading takes a while on a busy CPU). The eval sends
    no max_tokens, so --max-tokens here is the judge's verdict budget."""
    cmd = [
        "nice",
        "-n",
        "19",
        PIXIU,
        "serve",
        model,
        "--port",
        str(port),
        "--db",
        str(db),
        "--max-tokens",
        str(max_tokens),
    ]
    proc = subprocess.Popen(cmd, env=ENV)
    for _ in range(1200):
        if proc.poll() is not None:
            sys.exit(f"the judge server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    sys.exit("the judge server did not come up in 10 minutes")


def run_eval(args: list[str]) -> tuple[dict, float, list[float]]:
    """One `pixiu eval` run -> (its winrate task result, wall seconds, load average at start and end)."""
    t0, load = time.perf_counter(), os.getloadavg()[0]
    subprocess.run(["nice", "-n", "19", PIXIU, "eval", *args], env=ENV, check=True)
    out = Path(args[args.index("--out") + 1])
    result = json.loads((out / "results.json").read_text())["tasks"]["winrate"]
    return result, time.perf_counter() - t0, [round(load, 1), round(os.getloadavg()[0], 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--a", default="runs/quickstart/ppo/final", help="model A (the one whose win rate is shown)"
    )
    ap.add_argument("--b", default="runs/quickstart/sft/merged", help="model B, or a reference replies JSONL")
    ap.add_argument("--judge", default="smollm2-135m", help="the judge model `pixiu serve` loads")
    ap.add_argument(
        "--judge-max-tokens", type=int, default=192, help="verdict budget (pixiu serve --max-tokens)"
    )
    ap.add_argument(
        "--llm-modes",
        default="letters",
        help="LLM judge modes, comma-separated: letters (--judge-logprobs: a one-letter verdict from top_logprobs), "
        "text (FastChat's written [[A]] verdict; SmolLM2-135M almost never writes one, and it takes ~20 min)",
    )
    ap.add_argument("--reward-model", default="runs/quickstart/rm/final", help="second judge ('' to skip)")
    ap.add_argument("--limit", type=int, default=16, help="held-out demo prompts judged")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="reply budget of A and B (the demo's)")
    ap.add_argument("--out", default="/tmp/pixiu-winrate", help="eval run dirs and the judge's feedback db")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [a.a, "--tasks", "winrate", "--against", a.b, "--limit", str(a.limit),
              "--max-new-tokens", str(a.max_new_tokens), "--force"]  # fmt: skip
    runs = []
    port = free_port()
    server = serve(a.judge, port, out / "judge-feedback.db", a.judge_max_tokens)
    try:
        for mode in a.llm_modes.split(","):
            llm = [*common, "--judge", f"http://127.0.0.1:{port}/v1", "--judge-model", a.judge]
            llm += ["--judge-logprobs"] if mode == "letters" else []
            llm += ["--out", str(out / f"llm-{mode}")]
            runs.append((f"LLM judge {a.judge} ({mode})", llm, *run_eval(llm)))
    finally:
        server.terminate()
        server.wait(30)
    if a.reward_model:
        rm = [*common, "--reward-model", a.reward_model, "--out", str(out / "rm")]
        runs.append(("reward model " + a.reward_model, rm, *run_eval(rm)))
    write(a, runs)


def write(a, runs: list) -> None:
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "winrate.jsonl").open("a") as f:
        for judge, args, result, seconds, load in runs:
            row = {"judge": judge, "command": "pixiu eval " + " ".join(args), "a": a.a, "b": a.b, "limit": a.limit,
                   "max_new_tokens": a.max_new_tokens,
                   "metrics": result["metrics"], "skipped": result["skipped"], "seconds": round(seconds, 1),
                   "load": load, "time": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    keys = ["pairs", "wins", "ties", "losses", "win_rate", "consistency", "first_position_rate"]
    lines = [
        "# Win rate: one pixiu checkpoint against another, judged end to end",
        "",
        f"A = `{a.a}`, B = `{a.b}`; the first {a.limit} held-out demo prompts (pixiu:demo/heldout_prompts.jsonl), "
        f"greedy replies of at most {a.max_new_tokens} new tokens; one torch thread, nice 19, a shared 2-core CPU.",
        "",
        "Command: `python bench/winrate.py " + " ".join(sys.argv[1:]) + "`, which ran:",
        "",
        f"- `pixiu serve {a.judge} --max-tokens {a.judge_max_tokens}` (the judge, on a free loopback port)",
    ]
    lines += [f"- `pixiu eval {' '.join(args)}`" for _, args, *_ in runs]
    lines += ["", "| judge | " + " | ".join(keys) + " | skipped | seconds | load avg |",
              "|---|" + "---:|" * (len(keys) + 3)]  # fmt: skip
    for judge, _, result, seconds, load in runs:
        m = result["metrics"]
        cells = [f"{m[k]:.3f}" if k in m and isinstance(m[k], float) and k not in keys[:4] else
                 str(int(m[k])) if k in m else "-" for k in keys]  # fmt: skip
        skipped = ", ".join(f"{k} {v}" for k, v in result["skipped"].items()) or "0"
        lines.append(
            f"| {judge} | " + " | ".join(cells) + f" | {skipped} | {seconds:.0f} | {load[0]}-{load[1]} |"
        )
    llm = [(judge, result["rows"]) for judge, _, result, *_ in runs if judge.startswith("LLM")]
    lines.append("")
    for judge, rows in llm:
        parsed = sum(r.get(g) is not None for r in rows for g in ("g1", "g2"))
        lines.append(f"{judge}: {parsed} of {2 * len(rows)} verdicts, after {sum(r.get('tries', 0) for r in rows)} "
                     "asks (text: each order at temperature 0, then up to 2 sampled retries; letters: one each).  ")  # fmt: skip
    judge, rows = llm[0]
    lines += ["", f"First pairs ({judge}; g1: verdict with A shown first, g2: with B shown first; the judge's reply "
              "to g1, cut; letters: the probability of each letter among the first token's top 20):", "",
              "| prompt | A | B | g1 | g2 | outcome | judge said (g1) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    cell = lambda s, n=90: str(s).replace("|", "\\|").replace("\n", " ")[:n]  # noqa: E731
    for r in rows[:6]:
        lines.append(f"| {cell(r.get('prompt'))} | {cell(r.get('a'))} | {cell(r.get('b'))} | {r.get('g1')} | "
                     f"{r.get('g2')} | {r.get('outcome') or r.get('skip')} | {cell(r.get('judge_1'), 120)} |")  # fmt: skip
    (RESULTS / "winrate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
