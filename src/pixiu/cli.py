"""`pixiu COMMAND ...`: a dict from command name to function."""

from __future__ import annotations

import argparse
import statistics
import sys

from pixiu import config


def train(argv: list[str]) -> None:
    """pixiu train STAGE [--config recipe.yaml] [--section.field=value ...]"""
    from pixiu.train.stages import STAGES

    usage = f"usage: pixiu train {{{','.join(STAGES)}}} [--config recipe.yaml] [--section.field=value ...] [--help]"
    if not argv or argv[0] not in STAGES:
        sys.exit(usage)
    stage, rest = argv[0], argv[1:]
    if "-h" in rest or "--help" in rest:
        print(f"usage: pixiu train {stage} [--config recipe.yaml] [--section.field=value ...]\n\nfields:")
        for name, default, doc in config.describe():
            print(f"  --{name}={default}\n      {doc}")
        return
    path, rest = config_path(rest)
    cfg = config.load(path, rest)
    final = STAGES[stage].run(cfg)
    print(f"saved {final}")


def config_path(args: list[str]) -> tuple[str | None, list[str]]:
    """Split `--config FILE` / `--config=FILE` off the override list."""
    path, rest = None, []
    it = iter(args)
    for a in it:
        if a == "--config":
            path = next(it, None)
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
        else:
            rest.append(a)
    return path, rest


def score(argv: list[str]) -> None:
    """pixiu score MODEL --data FILE: a reward model's score of every reply in a file."""
    from pixiu.eval import reward

    reward.score_cli(argv)


def pipeline(argv: list[str]) -> None:
    """pixiu pipeline recipe.yaml: SFT -> RM -> PPO / DPO / GRPO -> evaluation, resumable per stage."""
    from pixiu import pipeline as pipe

    pipe.cli(argv)


def generate(argv: list[str]) -> None:
    """pixiu generate MODEL "prompt": a quick sanity reply."""
    p = argparse.ArgumentParser(prog="pixiu generate", description=generate.__doc__)
    p.add_argument("model", help="checkpoint dir, HF dir or hub name, .gguf file, or smollm2-135m")
    p.add_argument("prompt", nargs="+")
    p.add_argument("--system", default="")
    p.add_argument("--template", default="default")
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top_p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument(
        "--device", default="auto", help="auto (the first CUDA GPU, else cpu), cuda, cuda:N, mps, cpu"
    )
    a = p.parse_args(argv)
    from pixiu.chat.messages import Conversation, Message
    from pixiu.engine import Sampling
    from pixiu.engine import generate as gen
    from pixiu.model import io

    loaded = io.load(config.ModelConfig(a.model, dtype=a.dtype, template=a.template, device=a.device))
    system = [Message("system", a.system)] if a.system else []
    convs = [Conversation([*system, Message("user", q)]) for q in a.prompt]
    replies = gen(loaded, convs, Sampling(a.max_new_tokens, a.temperature, a.top_p, seed=a.seed))
    for q, r in zip(a.prompt, replies):
        print(f">>> {q}\n{r}\n")


def data(argv: list[str]) -> None:
    """pixiu data inspect FILE: format, counts, token lengths and one rendered sample with trained tokens marked."""
    p = argparse.ArgumentParser(prog="pixiu data inspect", description=data.__doc__)
    p.add_argument("action", choices=["inspect"])
    p.add_argument("file")
    p.add_argument("--format", default="auto")
    p.add_argument("--model", default="smollm2-135m", help="whose tokenizer and chat template to use")
    p.add_argument("--template", default="default")
    p.add_argument("--skip_bad_rows", action="store_true")
    a = p.parse_args(argv)
    from pixiu.chat.messages import Conversation
    from pixiu.chat.templates import get_template
    from pixiu.data import DataError, detect, load_records, read_rows
    from pixiu.data.records import Text
    from pixiu.data.sources import rows_or_errors
    from pixiu.model import io

    rows = rows_or_errors(a.file) if a.skip_bad_rows else read_rows(a.file)
    first = next((r for r in rows if not isinstance(r[1], DataError)), None)  # format from the first good row
    if first is None:
        sys.exit(f"{a.file}: no rows")
    print(
        f"file: {a.file}\nformat: {a.format if a.format != 'auto' else detect(first[1])} "
        f"({'given' if a.format != 'auto' else 'detected'})"
    )
    records, skipped = load_records(config.DatasetSpec(a.file, format=a.format), a.skip_bad_rows)
    kinds = {}
    for r in records:
        kinds[type(r).__name__] = kinds.get(type(r).__name__, 0) + 1
    print(f"records: {kinds}; skipped rows: {len(skipped)}")
    for line in skipped[:20]:
        print(f"  skipped {line}")
    tokenizer = io.load_tokenizer(io.resolve(a.model))
    template = get_template(a.template, tokenizer)
    convs = [r for r in records if isinstance(r, Conversation)]
    texts = [r for r in records if isinstance(r, Text)]
    lengths = [len(template.render(c).input_ids) for c in convs] or [
        len(tokenizer(t.text, add_special_tokens=False)["input_ids"]) for t in texts
    ]
    if lengths:
        # inclusive: the 5% cut points lie between the smallest and largest length, so p95 never tops the max
        q = statistics.quantiles(lengths, n=20, method="inclusive") if len(lengths) > 1 else lengths * 19
        print(
            f"tokens ({a.model} tokenizer): mean {statistics.mean(lengths):.0f}, median {q[9]:.0f}, "
            f"p95 {q[18]:.0f}, max {max(lengths)}"
        )
    if convs:
        print(f"\nfirst sample, template {template.name!r}; trained tokens are shown inside [[ ]]:\n")
        print(marked(template.render(convs[0]), tokenizer))


def marked(rendered, tokenizer) -> str:
    """Decode a render, wrapping each run of trained tokens in [[ ]]."""
    out, run, state = [], [], 0
    for tid, m in [*zip(rendered.input_ids, rendered.loss_mask), (None, -1)]:
        if m != state and run:
            text = tokenizer.decode(run)
            out.append(f"[[{text}]]" if state == 1 else text)
            run = []
        state = m
        if tid is not None:
            run.append(tid)
    return "".join(out)


def chat(argv: list[str]) -> None:
    """pixiu chat MODEL: multi-turn chat in the terminal, streaming."""
    from pixiu.serve import terminal

    terminal.cli(argv)


def serve(argv: list[str]) -> None:
    """pixiu serve MODEL [MODEL ...]: OpenAI-compatible API, web UI (chat, arena, ranking) and feedback store."""
    from pixiu.serve import launch

    launch.cli(argv)


def feedback(argv: list[str]) -> None:
    """pixiu feedback export|stats: collected votes and rankings as RM / DPO / SFT data, counts, agreement, Elo."""
    from pixiu.serve import feedback as fb

    fb.cli(argv)


def evaluate(argv: list[str]) -> None:
    """pixiu eval MODEL --tasks mmlu,gsm8k,...: benchmarks, perplexity, reward accuracy, win rates, judges."""
    from pixiu.eval import run

    run.cli(argv)


def report(argv: list[str]) -> None:
    """pixiu report RUN_DIR: one self-contained HTML file with plots and a markdown summary of a run."""
    from pixiu.eval import report as rep

    rep.cli(argv)


def templates(argv: list[str]) -> None:
    """pixiu templates: the named chat templates."""
    from pixiu.chat.templates import list_templates

    print("\n".join(list_templates()))


def export(argv: list[str]) -> None:
    """pixiu export MODEL --out FILE [--format gguf|safetensors] [--quant q8_0] [--ollama]: merged weights out."""
    from pixiu.model import export as ex

    ex.cli(argv)


COMMANDS = {
    "train": train,
    "pipeline": pipeline,
    "score": score,
    "generate": generate,
    "chat": chat,
    "serve": serve,
    "feedback": feedback,
    "eval": evaluate,
    "report": report,
    "data": data,
    "templates": templates,
    "export": export,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:10s} {fn.__doc__.splitlines()[0]}" for name, fn in COMMANDS.items())
        sys.exit(f"usage: pixiu COMMAND ...\n\ncommands:\n{lines}")
    from pixiu.chat.templates import TemplateError
    from pixiu.config import ConfigError
    from pixiu.data import DataError
    from pixiu.model import ModelError

    try:
        COMMANDS[argv[0]](argv[1:])
    except (ConfigError, DataError, ModelError, TemplateError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
