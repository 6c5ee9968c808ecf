"""A quickstart-shaped PPO step alone, then beside ONE competing CPU-bound process: the slowdown (issue 14.11).

Before pixiu chose its threads (src/pixiu/threads.py), a quickstart PPO step went from ~25 s to 415-500 s with
other CPU-bound processes on the 2 cores: OpenMP workers spinning at barriers while the thread they waited for had
no core. Goal: one competitor slows a step by at most 2.5x.

The step is the quickstart's PPO stage (recipes/quickstart.yaml: SmolLM2-135M, LoRA r=16 on all-linear, 32
rollout prompts updated in minibatches of 16, 2 PPO epochs, micro-batch 8, up to 32 new tokens, max_len 192, the
demo prompts), run through the real CLI (`python -m pixiu.cli train ppo`), so the thread choice under test is the
one every command makes. The reward model is a LoRA RM never trained (bench/ppo_trl.py builds it: seeded head):
the work per step is what matters here, not what it optimises. Step time = gen_s + score_s + exp_s + train_s of
metrics.jsonl, steps 2.. (step 1 is warm-up). The competitor starts 3 s before the shared run and is killed
after it: `matmul` is a numpy float64 matmul loop with OpenBLAS on every core, `busy` a one-core Python loop.

    python bench/contention.py                       # 3 steps, competitor: matmul on all cores
    python bench/contention.py --rollout 8 --minibatch 8 --steps 2 --load busy   # a quicker look
    python bench/contention.py --env OMP_WAIT_POLICY=ACTIVE   # spinning workers, for comparison

Writes bench/results/contention.md and contention.jsonl; reports the load average around each run, since other
jobs on the machine add to the one competitor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
GOAL = 2.5
COMPETITORS = {
    "matmul": "import numpy as np\na = np.random.rand(1024, 1024)\nwhile True:\n    a = (a @ a) / 1024.0\n",
    "busy": "x = 0\nwhile True:\n    x += 1\n",
}


def ppo_step(a, work: Path, name: str, env: dict) -> dict:
    """One `pixiu train ppo` process; -> seconds per timed step, its split, wall and load average."""
    out = work / name.split()[0]  # "alone" / "beside": a path without spaces for the override list
    overrides = (
        f"model.name_or_path=smollm2-135m model.dtype={a.dtype} model.template=chatml lora.r=16 lora.alpha=32 "
        f"lora.dropout=0 data.path=pixiu:demo/prompts.jsonl data.eval_size=0 data.max_len=192 "
        f"gen.max_new_tokens=32 gen.temperature=1.0 train.output_dir={out} train.max_steps={a.steps} "
        "train.batch_size=8 train.lr=1e-3 train.warmup_ratio=0 train.schedule=constant train.save_every=0 "
        f"train.seed=0 ppo.reward_model={work}/rm ppo.rollout_prompts={a.rollout} ppo.minibatch={a.minibatch} "
        "ppo.ppo_epochs=2 ppo.kl_coef=0.1 ppo.critic_from_rm=true ppo.whiten_rewards=false"
    )
    threads = ["--threads", str(a.threads)] if a.threads else []
    cmd = [
        sys.executable,
        "-m",
        "pixiu.cli",
        *threads,
        "train",
        "ppo",
        *("--" + o for o in overrides.split()),
    ]
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{name}: pixiu train ppo failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[1:] or rows
    parts = {k: sum(r[k] for r in timed) / len(timed) for k in ("gen_s", "score_s", "exp_s", "train_s")}
    step = sum(parts.values())
    print(f"  {name}: {step:.1f} s/step (load {load0:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    return {"run": name, "step_s": step, **parts, "wall_s": wall, "steps": len(rows), "timed": len(timed),
            "load_start": load0, "load_end": os.getloadavg()[0]}  # fmt: skip


def build_rm(work: Path) -> None:
    cmd = [sys.executable, str(BENCH / "ppo_trl.py"), "--one", "rm", "--work", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"could not build the reward model:\n{proc.stderr[-3000:]}")


def report(a, alone: dict, shared: dict, threads: str, command: str) -> str:
    slow = shared["step_s"] / alone["step_s"]
    verdict = "met" if slow <= GOAL else "MISSED"
    rows = [
        "| run | s/step | gen s | score s | exp s | train s | wall s | load avg start -> end |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in (alone, shared):
        rows.append(
            f"| {r['run']} | {r['step_s']:.1f} | {r['gen_s']:.1f} | {r['score_s']:.1f} | {r['exp_s']:.1f} | "
            f"{r['train_s']:.1f} | {r['wall_s']:.0f} | {r['load_start']:.1f} -> {r['load_end']:.1f} |"
        )
    return "\n".join([
        "# PPO step alone vs beside one CPU-bound process (thread oversubscription)", "",
        f"Machine: {_cpu()}, {os.cpu_count()} cores; pixiu picked {threads} torch thread(s).", "",
        f"Command: `{command}`", "",
        f"Quickstart PPO shape: {a.rollout} rollout prompts, minibatch {a.minibatch}, 2 PPO epochs, micro-batch 8, "
        f"<= 32 new tokens, dtype {a.dtype}; {a.steps} steps, the first not timed. Competitor: `{a.load}` "
        f"({'numpy matmul on every core' if a.load == 'matmul' else 'one-core Python loop'}). "
        f"Extra environment: {a.env or 'none'}.", "",
        *rows, "",
        f"**Slowdown: {slow:.2f}x** (goal <= {GOAL}x: {verdict}). The load average counts every runnable process "
        "on the machine, other jobs included: with one competitor and nothing else it would read about 2 above "
        "the alone run's.", "",
        "Raw results:", "```json", json.dumps(alone), json.dumps(shared), "```", "",
    ])  # fmt: skip


def _cpu() -> str:
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return names[0] if names else "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rollout", type=int, default=32, help="prompts per PPO step (quickstart: 32)")
    ap.add_argument("--minibatch", type=int, default=16, help="rollouts per update (quickstart: 16)")
    ap.add_argument("--steps", type=int, default=3, help="PPO steps per run; the first is not timed")
    ap.add_argument("--dtype", default="fp32", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--load", default="matmul", choices=sorted(COMPETITORS))
    ap.add_argument("--threads", type=int, default=0, help="pixiu --threads (0: let pixiu choose)")
    ap.add_argument("--env", default="", help="KEY=VALUE[,KEY=VALUE]: extra environment for both runs")
    a = ap.parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in a.env.split(",") if kv)}
    if not a.threads:  # let pixiu choose, whatever the calling shell set
        env.pop("PIXIU_THREADS", None)
    with tempfile.TemporaryDirectory(prefix="pixiu-bench-contention-") as tmp:
        work = Path(tmp)
        build_rm(work)
        alone = ppo_step(a, work, "alone", env)
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITORS[a.load]])
        try:
            time.sleep(3)
            shared = ppo_step(a, work, f"beside one `{a.load}` process", env)
        finally:
            competitor.kill()
            competitor.wait()
    probe = [sys.executable, "-c", "from pixiu import threads; print(threads.configure())"]
    chosen = str(a.threads or subprocess.run(probe, capture_output=True, text=True, env=env).stdout.strip())
    text = report(a, alone, shared, chosen, " ".join(["python", "bench/contention.py", *sys.argv[1:]]))
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "contention.md").write_text(text)
    (RESULTS / "contention.jsonl").write_text(json.dumps(alone) + "\n" + json.dumps(shared) + "\n")


if __name__ == "__main__":
    main()
