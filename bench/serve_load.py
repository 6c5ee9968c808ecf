"""`pixiu serve` under load: N concurrent streaming chat requests against the real server process, and the same
N requests one at a time as the baseline, so the report shows what continuous batching buys.

The server is a real subprocess (`python -m pixiu.cli serve MODEL`) on a free loopback port, with its own
torch threads (--threads) and a throwaway feedback store. The client is httpx's async client speaking SSE, on
the same machine (it competes with the server for the CPU; its work per event is small). Every stream is
checked: well-formed `data:` events, each a chat.completion.chunk of one id and the served model, the role
first, exactly one finish_reason (stop or length), a usage chunk, and [DONE] last with nothing after it; the
reply text is non-empty unless the model stopped at once (finish_reason stop on its first token).

Reported per phase (sequential first, then concurrent, then hostile): requests completed and valid, time to first token
(request sent -> first chunk carrying text) and total latency p50 / p90 / p99, aggregate completion tokens/s
(usage tokens over the phase's wall time), and the server's peak RSS (VmHWM from /proc/PID/status, read after
each phase, before the server stops). Greedy decoding, so both phases do the same work and the concurrent
replies can be compared with the sequential ones text for text.

The hostile phase (issue 14) runs the concurrent streams again and, while they run, sends two requests that
once stalled the whole server: 10,001 messages (375 KB) and 16 stop strings of 100 KB. It reports how each was
answered (status, error code, seconds) and the /health latency polled meanwhile: every stream must still
complete and be valid, the two must be refused at once, /health must answer in under a second.

Run from the repository root; it writes bench/results/serve_load.md and serve_load.jsonl:
    python bench/serve_load.py                                   # 64 requests, 32 tokens, 1 thread
    python bench/serve_load.py --requests 4 --max-tokens 8 --results /tmp/sl   # smoke
    python bench/serve_load.py --phases hostile                  # only the streams beside hostile requests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import httpx
from generate import cpu_name, questions  # bench/generate.py: the same Alpaca instructions
from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results"
FINISH = ("stop", "length")


@dataclass
class Result:
    """One streamed request as the client saw it."""

    index: int
    ok: bool = False
    problems: list[str] = field(default_factory=list)  # what made the stream invalid, empty when ok
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    ttft_s: float = float("nan")  # request sent -> first chunk with text
    total_s: float = float("nan")  # request sent -> [DONE]
    sent: float = 0.0  # perf_counter at sending
    done: float = 0.0  # perf_counter at [DONE] (or failure)


# ---------------------------------------------------------------- the server process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`pixiu serve MODEL` in a subprocess; `hwm_mib()` reads its peak RSS so far."""

    def __init__(self, args, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "pixiu.cli", "serve", args.model, "--port", str(self.port)]
        cmd += [
            "--db",
            str(workdir / "feedback.db"),
            "--max-batch",
            str(args.max_batch),
            "--dtype",
            args.dtype,
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
        self.log = workdir / "serve.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.command = " ".join(cmd[1:])

    def wait(self, limit: float) -> float:
        """Seconds until /health answers; exits with the server's log if it dies or never answers."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < limit:
            if self.proc.poll() is not None:
                sys.exit(f"pixiu serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).is_success:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"pixiu serve did not answer within {limit:.0f} s:\n{self.log.read_text()[-3000:]}")

    def status_mib(self, key: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024  # kB
        raise RuntimeError(f"no {key} in /proc/{self.proc.pid}/status")

    def cpu_s(self) -> float:
        """User + system CPU seconds the server has used so far, all its threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- one streamed request, checked


def check_event(data: dict, state: dict, model: str) -> list[str]:
    """Problems with one chunk; `state` carries the stream's id, text, finish reasons and usage across chunks."""
    problems = []
    if data.get("object") != "chat.completion.chunk":
        problems.append(f"object {data.get('object')!r}")
    state.setdefault("id", data.get("id"))
    if data.get("id") != state["id"] or not str(data.get("id", "")).startswith("chatcmpl-"):
        problems.append(f"id {data.get('id')!r} differs from {state['id']!r}")
    if data.get("model") != model:
        problems.append(f"model {data.get('model')!r}")
    if data.get("usage"):
        state["usage"] = data["usage"]
    for choice in data.get("choices", []):
        if choice.get("index") != 0:
            problems.append(f"choice index {choice.get('index')}")
        delta = choice.get("delta", {})
        if state["events"] == 0 and delta.get("role") != "assistant":
            problems.append("the first chunk does not carry the assistant role")
        state["text"] += delta.get("content") or ""
        if choice.get("finish_reason"):
            state["finishes"].append(choice["finish_reason"])
    state["events"] += 1
    return problems


async def stream_one(http: httpx.AsyncClient, url: str, model: str, question: str, args, i: int) -> Result:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = Result(i, sent=time.perf_counter())
    state = {"text": "", "finishes": [], "events": 0, "usage": None, "done": False}
    try:
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as res:
            if res.status_code != 200:
                r.problems.append(f"HTTP {res.status_code}: {(await res.aread())[:200]!r}")
            else:
                await read_events(res, state, model, r)
    except httpx.HTTPError as e:
        r.problems.append(f"{type(e).__name__}: {e}")
    r.done = time.perf_counter()
    r.total_s = r.done - r.sent
    finish_problems(state, r, args.max_tokens)
    return r


async def read_events(res: httpx.Response, state: dict, model: str, r: Result) -> None:
    async for line in res.aiter_lines():
        if not line:
            continue  # the blank line that ends each event
        if state["done"]:
            r.problems.append(f"an event after [DONE]: {line[:80]!r}")
        elif not line.startswith("data: "):
            r.problems.append(f"not an SSE data line: {line[:80]!r}")
        elif line == "data: [DONE]":
            state["done"] = True
        else:
            try:
                data = json.loads(line[6:])
            except json.JSONDecodeError:
                r.problems.append(f"bad JSON: {line[:80]!r}")
                continue
            if "error" in data:
                r.problems.append(f"error event: {data['error'].get('message')}")
                continue
            before = len(state["text"])
            r.problems += check_event(data, state, model)
            if len(state["text"]) > before and r.ttft_s != r.ttft_s:  # first text (ttft still NaN)
                r.ttft_s = time.perf_counter() - r.sent


def finish_problems(state: dict, r: Result, max_tokens: int) -> None:
    """The whole-stream checks: [DONE], one finish_reason, usage, and text unless the model stopped at once."""
    r.text, finishes, usage = state["text"], state["finishes"], state["usage"]
    if not state["done"]:
        r.problems.append("no [DONE]")
    if len(finishes) != 1 or finishes[0] not in FINISH:
        r.problems.append(f"finish reasons {finishes} (want exactly one of {FINISH})")
    r.finish_reason = finishes[0] if finishes else None
    if not usage:
        r.problems.append("no usage chunk")
    else:
        r.completion_tokens, r.prompt_tokens = usage["completion_tokens"], usage["prompt_tokens"]
        if not 1 <= r.completion_tokens <= max_tokens:
            r.problems.append(f"completion_tokens {r.completion_tokens}")
    stopped_at_once = r.finish_reason == "stop" and r.completion_tokens == 1
    if not r.text.strip() and not stopped_at_once:
        r.problems.append(
            f"empty text with finish_reason {r.finish_reason} after {r.completion_tokens} tokens"
        )
    r.ok = not r.problems


# ---------------------------------------------------------------- phases


async def phase(
    url: str, model: str, prompts: list[str], args, concurrent: bool
) -> tuple[list[Result], float]:
    """All prompts at once (concurrent) or one after another; -> results in prompt order, wall seconds."""
    limits = httpx.Limits(max_connections=len(prompts) + 4, max_keepalive_connections=len(prompts) + 4)
    bar = tqdm(total=len(prompts), desc="concurrent" if concurrent else "sequential", unit="req")
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout), limits=limits) as http:

        async def one(i: int, q: str) -> Result:
            result = await stream_one(http, url, model, q, args, i)
            bar.update()
            return result

        t0 = time.perf_counter()
        if concurrent:
            results = list(await asyncio.gather(*(one(i, q) for i, q in enumerate(prompts))))
        else:
            results = [await one(i, q) for i, q in enumerate(prompts)]
        wall = time.perf_counter() - t0
    bar.close()
    return results, wall


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (linear interpolation between order statistics, as numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(name: str, results: list[Result], wall: float, hwm_mib: float, cpu_s: float) -> dict:
    good = [r for r in results if r.ok]
    ttft = [r.ttft_s for r in good if r.ttft_s == r.ttft_s]
    total = [r.total_s for r in good]
    tokens = sum(r.completion_tokens for r in good)
    out = {
        "phase": name,
        "requests": len(results),
        "completed_valid": len(good),
        "finish_reasons": {f: sum(r.finish_reason == f for r in good) for f in FINISH},
        "completion_tokens": tokens,
        "prompt_tokens": sum(r.prompt_tokens for r in good),
        "wall_s": wall,
        "tok_s": tokens / wall,
        "req_s": len(good) / wall,
        "server_cpu_s": cpu_s,
        "tok_per_cpu_s": tokens / cpu_s if cpu_s else float("nan"),
        "server_peak_rss_mib": hwm_mib,
        "problems": {r.index: r.problems for r in results if r.problems},
    }
    for label, values in (("ttft", ttft), ("total", total)):
        for q in (50, 90, 99):
            out[f"{label}_p{q}_s"] = pct(values, q) if values else float("nan")
    out["per_request"] = [
        {k: v for k, v in asdict(r).items() if k not in ("sent", "done", "problems")} for r in results
    ]
    return out


HOSTILE = {  # name -> the request body (issue 14): what each used to cost the server
    "10,001 messages": lambda model: {
        "model": model,
        "messages": [
            {"role": ("user", "assistant")[i % 2], "content": f"message {i}"} for i in range(10_001)
        ],
        "max_tokens": 3,
    },
    "16 stop strings of 100 KB": lambda model: {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 20,
        "stop": ["x" * 100_000] * 16,
    },
}


JSON = {"Content-Type": "application/json"}


async def hostile(url: str, model: str, prompts: list[str], args) -> tuple[list[Result], float, dict]:
    """The concurrent streams, and beside them the HOSTILE requests with /health polled until they are
    answered (then on, more slowly, until the streams end)."""
    # encoded beforehand: the client's own JSON work must not show up as /health latency
    bodies = {name: json.dumps(make(model)).encode() for name, make in HOSTILE.items()}
    streams = asyncio.create_task(phase(url, model, prompts, args, concurrent=True))
    await asyncio.sleep(1.0)  # the streams are in: prefilling and decoding
    health: dict[str, list[float]] = {"during": [], "after": []}
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout)) as http:

        async def send(name: str, body: bytes) -> dict:
            t0 = time.perf_counter()
            res = await http.post(f"{url}/v1/chat/completions", content=body, headers=JSON)
            code = res.json().get("error", {}).get("code") if res.status_code >= 400 else None
            return {"request": name, "status": res.status_code, "code": code, "s": time.perf_counter() - t0}

        sent = asyncio.gather(*(send(name, body) for name, body in bodies.items()))
        while not (sent.done() and streams.done()):
            t0 = time.perf_counter()
            await http.get(f"{url}/health")
            health["during" if not sent.done() else "after"].append(time.perf_counter() - t0)
            await asyncio.sleep(0.05 if not sent.done() else 0.5)
        answers = await sent
    results, wall = await streams
    return results, wall, {"answers": answers, "health_s": health}


# ---------------------------------------------------------------- report


ROWS = [
    ("requests completed and valid", "completed_valid", "{:d}"),
    ("completion tokens", "completion_tokens", "{:d}"),
    ("wall s", "wall_s", "{:.1f}"),
    ("aggregate completion tokens/s", "tok_s", "{:.2f}"),
    ("requests/s", "req_s", "{:.3f}"),
    ("server CPU s (user + sys, all threads)", "server_cpu_s", "{:.1f}"),
    ("completion tokens per server CPU-second", "tok_per_cpu_s", "{:.2f}"),
    *[(f"time to first token p{q} s", f"ttft_p{q}_s", "{:.2f}") for q in (50, 90, 99)],
    *[(f"total latency p{q} s", f"total_p{q}_s", "{:.2f}") for q in (50, 90, 99)],
    ("server peak RSS MiB (VmHWM after the phase)", "server_peak_rss_mib", "{:.0f}"),
]
TITLES = {"sequential": "one at a time", "concurrent": "concurrent", "hostile": "concurrent + hostile"}


def report(args, runs: dict, extra: dict) -> str:
    """The phases side by side; with both sequential and concurrent, their ratio and the batching summary."""
    both = "sequential" in runs and "concurrent" in runs
    lines = [
        f"# pixiu serve under load: {args.requests} concurrent streams vs one at a time (CPU)",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; "
        f"torch {metadata.version('torch')}, transformers {metadata.version('transformers')}, "
        f"uvicorn {metadata.version('uvicorn')}; server on {args.threads} torch thread(s); load average "
        f"{extra['load_start']:.1f} at start, {extra['load_end']:.1f} at end (a shared machine).",
        "",
        f"`pixiu serve {args.model}` (a subprocess, {args.dtype}, --max-batch {args.max_batch}), "
        f"{args.requests} chat requests (Alpaca instructions), greedy, max_tokens {args.max_tokens}, streamed "
        f"(SSE, include_usage), httpx async client on the same machine. Server ready in "
        f"{extra['startup_s']:.1f} s; RSS after loading {extra['rss_loaded_mib']:.0f} MiB.",
        "",
        f"Command: `{' '.join(['python bench/serve_load.py', *args.argv])}`",
        "",
        "| | " + " | ".join(TITLES[n] for n in runs) + (" | concurrent / one at a time |" if both else " |"),
        "|---|" + "---:|" * (len(runs) + both),
    ]
    for label, key, fmt in ROWS:
        cells = [fmt.format(r[key]) for r in runs.values()]
        if both:
            a, b = runs["sequential"][key], runs["concurrent"][key]
            cells.append(f"{b / a:.2f}x" if isinstance(a, float) and a else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    stops = [f"{r['finish_reasons']['stop']} / {r['finish_reasons']['length']}" for r in runs.values()]
    lines.append("| finish reasons stop / length | " + " | ".join(stops) + (" | |" if both else " |"))
    if both:
        seq, con = runs["sequential"], runs["concurrent"]
        same = sum(a["text"] == b["text"] for a, b in zip(seq["per_request"], con["per_request"]))
        lines += [
            "",
            f"Continuous batching: {con['tok_s'] / seq['tok_s']:.2f}x the aggregate tokens/s of serving one "
            f"request at a time, {con['tok_per_cpu_s'] / seq['tok_per_cpu_s']:.2f}x the tokens per server "
            "CPU-second (on a shared machine wall-clock rates move with the other load; CPU-seconds much less). "
            f"Concurrent replies equal to the sequential ones, text for text: {same}/{args.requests}. Every "
            "request arrives at once, and the scheduler prefills each waiting prompt before the next decode "
            "step: the first tokens wait for the prefills ahead of them, hence the concurrent time to first "
            "token.",
        ]
    if "hostile" in runs:
        lines += hostile_report(runs["hostile"])
    bad = {f"{name} {k}": v for name, r in runs.items() for k, v in r["problems"].items()}
    if bad:
        lines += ["", "Invalid streams:", ""] + [f"- request {k}: {'; '.join(v)}" for k, v in bad.items()]
    lines += ["", "Raw results (per-request rows in serve_load.jsonl):", "", "```json"]
    for r in runs.values():
        lines.append(json.dumps({k: v for k, v in r.items() if k != "per_request"}))
    lines.append("```")
    return "\n".join(lines) + "\n"


def hostile_report(run: dict) -> list[str]:
    during, after = run["health_s"]["during"], run["health_s"]["after"]
    lines = [
        "",
        f"Hostile requests sent 1 s into the concurrent streams ({run['completed_valid']}/{run['requests']} "
        "streams completed and valid):",
        "",
        "| request | status | error code | answered in s |",
        "|---|---:|---|---:|",
    ]
    lines += [f"| {a['request']} | {a['status']} | {a['code']} | {a['s']:.3f} |" for a in run["answers"]]
    lines += [
        "",
        f"/health while they were answered: {len(during)} polls, max {max(during, default=float('nan')):.3f} s; "
        f"afterwards, while the streams ran on: {len(after)} polls, median "
        f"{statistics.median(after) if after else float('nan'):.3f} s, max {max(after, default=float('nan')):.3f} s.",
    ]
    return lines


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-batch", type=int, default=64, help="the server's --max-batch")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    p.add_argument("--dtype", default="fp32", choices=["auto", "bf16", "fp32"])
    p.add_argument("--phases", default="sequential,concurrent,hostile", help="which phases, in this order")
    p.add_argument("--timeout", type=float, default=900.0, help="per-request client timeout, seconds")
    p.add_argument("--startup-timeout", type=float, default=600.0)
    p.add_argument("--results", default=str(RESULTS), help="where serve_load.md and serve_load.jsonl go")
    args = p.parse_args(argv)
    args.argv = argv
    names = [n for n in TITLES if n in args.phases.split(",")]
    prompts = questions(args.requests)
    extra = {"load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        server = Server(args, Path(tmp))
        try:
            extra["startup_s"] = server.wait(args.startup_timeout)
            extra["rss_loaded_mib"] = server.status_mib("VmRSS")
            model = httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"]
            asyncio.run(phase(server.url, model, prompts[:1], args, concurrent=False))  # warm-up
            runs = {name: run_phase(server, name, model, prompts, args) for name in names}
        finally:
            server.stop()
    extra["load_end"] = os.getloadavg()[0]
    text = report(args, runs, extra)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_load.md").write_text(text)
    meta = {"phase": "setup", **extra, **{k: v for k, v in vars(args).items() if k != "argv"}}
    (out / "serve_load.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (meta, *runs.values())))
    print(text)
    ok = all(r["completed_valid"] == args.requests for r in runs.values())
    if "hostile" in runs:
        h = runs["hostile"]
        ok &= (
            all(a["status"] in (400, 413) for a in h["answers"])
            and max(h["health_s"]["during"], default=0) < 1
        )
    return 0 if ok else 1


def run_phase(server: Server, name: str, model: str, prompts: list[str], args) -> dict:
    cpu0 = server.cpu_s()
    if name == "hostile":
        results, wall, more = asyncio.run(hostile(server.url, model, prompts, args))
    else:
        (results, wall), more = asyncio.run(phase(server.url, model, prompts, args, name == "concurrent")), {}
    out = summary(name, results, wall, server.status_mib("VmHWM"), server.cpu_s() - cpu0)
    return {**out, **more}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
