"""`pixiu COMMAND ...`: a dict from command name to function."""

from __future__ import annotations

import argparse
import importlib
import logging
import statistics
import sys
import warnings

from pixiu import config


def train(argv: list[str]) -> None:
    """pixiu train STAGE [--config recipe.yaml] [--section.field=value ...]"""
    from pixiu.train.stages import STAGES

    usage = f"usage: pixiu train {{{','.join(STAGES)}}} [--config recipe.yaml] [--section.field=value ...] [--help]"
    if not argv or argv[0] in HELP:
        print(f"{usage}\n\nstages:")
        print("\n".join(f"  {name:6s} {STAGE_HELP.get(name, '')}" for name in STAGES))
        print("\n`pixiu train STAGE --help` lists every config field with its default and meaning.")
        return
    if argv[0] not in STAGES:
        sys.exit(usage)
    stage, rest = argv[0], argv[1:]
    if "-h" in rest or "--help" in rest:
        print(f"usage: pixiu train {stage} [--config recipe.yaml] [--section.field=value ...]\n\nfields:")
        for name, default, doc in config.describe():
            print(f"  --{name}={default}\n      {doc}")
        return
    path, rest = config.config_path(rest)
    cfg = config.load(path, rest)
    log_warnings_to(cfg.train.output_dir)
    final = STAGES[stage].run(cfg)
    print(f"saved {final}")


def score(argv: list[str]) -> None:
    """pixiu score MODEL --data FILE: a reward model's score of every reply in a file."""
    from pixiu.eval import reward

    reward.score_cli(argv)


def pipeline(argv: list[str]) -> None:
    """pixiu pipeline recipe.yaml: SFT -> RM -> PPO / DPO / GRPO -> evaluation, resumable per stage."""
    from pixiu import pipeline as pipe

    if argv and not argv[0].startswith("-"):
        try:  # the run's warnings.log; a recipe that does not load fails with its message in pipe.cli below
            log_warnings_to(pipe.load(argv[0], argv[1:], DATA_COMMANDS)[0].output_dir)
        except Exception:  # noqa: BLE001
            pass
    pipe.cli(argv, DATA_COMMANDS)  # data stages run these commands


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
    """pixiu data inspect|generate|filter ...: look at, make from a teacher, and clean training data."""
    if not argv or argv[0] in HELP or argv[0] not in DATA_COMMANDS:
        lines = "\n".join(f"  {name:12s} {help_}" for name, (_, help_) in DATA_COMMANDS.items())
        print(
            f"usage: pixiu data COMMAND ...\n\ncommands:\n{lines}\n\n`pixiu data COMMAND --help` for its options."
        )
        if argv and argv[0] not in HELP:
            sys.exit(f"unknown data command {argv[0]!r}")
        return
    target, _ = DATA_COMMANDS[argv[0]]
    if callable(target):
        return target(argv[1:])
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)(argv[1:])


def inspect(argv: list[str]) -> None:
    """pixiu data inspect FILE: format, counts, token lengths and one rendered sample with trained tokens marked."""
    p = argparse.ArgumentParser(prog="pixiu data inspect", description=inspect.__doc__)
    p.add_argument("file")
    p.add_argument("--format", default="auto")
    p.add_argument("--model", default="smollm2-135m", help="whose tokenizer and chat template to use")
    p.add_argument("--template", default="default")
    p.add_argument("--skip_bad_rows", action="store_true")
    a = p.parse_args(argv)
    from pixiu.data import DataError, detect, load_records, read_rows
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
    path = io.resolve(a.model)
    tokenizer = io.load_tokenizer(path)
    template = io.template_of(
        path, a.template, tokenizer, io.base_config(path).get("is_encoder_decoder", False)
    )
    lengths: dict[str, list[int]] = {}  # row kind -> token count of each such row
    for r in records:
        for kind, rendered in rendered_rows(r, template, tokenizer):
            lengths.setdefault(kind, []).append(len(rendered.input_ids))
    for kind, n in lengths.items():
        print(f"tokens ({a.model} tokenizer), {kind} rows ({len(n)}): {token_stats(n)}")
    if records:
        print(f"\nfirst record, template {template.name!r}; trained tokens are shown inside [[ ]]:")
        for kind, rendered in rendered_rows(records[0], template, tokenizer):
            print(f"\n-- {kind}:\n{marked(rendered, tokenizer)}")


def token_stats(lengths: list[int]) -> str:
    # inclusive: the 5% cut points lie between the smallest and largest length, so p95 never tops the max
    q = statistics.quantiles(lengths, n=20, method="inclusive") if len(lengths) > 1 else lengths * 19
    return f"mean {statistics.mean(lengths):.0f}, median {q[9]:.0f}, p95 {q[18]:.0f}, max {max(lengths)}"


def rendered_rows(record, template, tokenizer) -> list:
    """(kind, Rendered) for each row a record becomes in training: a chat; the chosen and the rejected reply
    after the prompt; each ranked reply; a labelled reply; a prompt up to the generation prompt (nothing is
    trained there: the policy writes the reply); raw text, trained on every token."""
    from pixiu.chat.messages import Conversation
    from pixiu.chat.templates import Rendered
    from pixiu.data.records import Labelled, PreferencePair, Prompt, Ranking, Text

    if isinstance(record, Conversation):
        return [("chat", template.render(record))]
    if isinstance(record, PreferencePair):
        return [(k, template.render(record.prompt.add("assistant", t))) for k, t in
                (("chosen", record.chosen), ("rejected", record.rejected))]  # fmt: skip
    if isinstance(record, Ranking):
        return [("response", template.render(record.prompt.add("assistant", t))) for t in record.responses]
    if isinstance(record, Labelled):
        kind = "desirable" if record.desirable else "undesirable"
        return [(kind, template.render(record.prompt.add("assistant", record.reply)))]
    if isinstance(record, Prompt):
        return [("prompt", template.render(record.prompt, add_generation_prompt=True))]
    if isinstance(record, Text):
        ids = tokenizer(record.text, add_special_tokens=False)["input_ids"]
        return [("text", Rendered(list(ids), [1] * len(ids)))]
    return []


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
    """pixiu templates [NAME ...]: the named chat templates, each with its model family and an example render."""
    from pixiu.chat.templates import describe_templates

    if argv and argv[0] in HELP:
        print(templates.__doc__)
        return
    for name, family, example in describe_templates():
        if argv and name not in argv:
            continue
        print(f"{name:10s} {family}")
        if example:
            print("\n".join(f"    {line}" for line in example.split("\n")).rstrip())


def export(argv: list[str]) -> None:
    """pixiu export MODEL --out FILE [--format gguf|safetensors] [--quant q8_0] [--ollama]: merged weights out."""
    from pixiu.model import export as ex

    ex.cli(argv)


def index(argv: list[str]) -> None:
    """pixiu index build DOCS --out IDX | search IDX "query": retrieval over your documents (BM25 + embeddings)."""
    from pixiu.rag import index as idx

    idx.cli(argv)


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
    "index": index,
}


# `pixiu data NAME`: a function here or "module:function" (imported when it runs) taking argv, and its help line
DATA_COMMANDS: dict[str, tuple] = {
    "inspect": (inspect, "format, counts, token lengths and one rendered sample with trained tokens marked"),
    "generate": (
        "pixiu.teach.cli:generate",
        "training data from a teacher: self-instruct, evol, self-chat, answer, rank",
    ),
    "filter": (
        "pixiu.teach.cli:filter",
        "judge rating, exact / near duplicates, length, language, refusals; report",
    ),
    "sample": ("pixiu.teach.cli:sample", "a seeded slice of a row file (disjoint seed / held-out sets)"),
    "extend-vocab": (
        "pixiu.data.vocab:main",
        "new tokens for a corpus (BPE) or SentencePiece pieces; resize",
    ),
    "stackexchange": (
        "pixiu.data.stackexchange:main",
        "Q&A with votes (Posts.xml, Zhihu-style JSONL) -> SFT, RM pairs, PPO prompts",
    ),
    "law-qa": ("pixiu.data.law:main", "statutes -> pretraining text, article Q&A, held-out articles"),
}

HELP = ("-h", "--help", "help")
STAGE_HELP = {  # `pixiu train` lists the stages with these lines
    "sft": "supervised fine-tuning on chats (instruction data, LoRA or full)",
    "pt": "continued pre-training on plain text",
    "rm": "reward model from preference pairs or rankings",
    "dpo": "direct preference optimisation (also ipo, simpo, orpo via pref.loss)",
    "kto": "KTO from thumbs-up / thumbs-down replies",
    "rrhf": "RRHF from ranked replies",
    "ppo": "PPO against a reward model and/or a reward function (InstructGPT's third stage)",
    "grpo": "GRPO against a task's checkable reward (group baseline, no critic)",
    "rloo": "RLOO: GRPO with the leave-one-out baseline",
    "distill": "token-level distillation from a teacher model (forward/reverse KL, GKD's JSD, on-policy)",
}


def usage() -> str:
    lines = "\n".join(f"  {name:10s} {fn.__doc__.splitlines()[0]}" for name, fn in COMMANDS.items())
    return (
        f"usage: pixiu [--threads N] COMMAND ...\n\ncommands:\n{lines}\n\n`pixiu COMMAND --help` for one command's "
        "options.\n--threads N (or PIXIU_THREADS=N): CPU threads for torch; default: the CPUs this process may use "
        "(affinity and cgroup quota)."
    )


# Third-party deprecation notices say nothing a user can act on ("is_gradient_checkpointing is deprecated"):
# kept out of the terminal, kept in RUN_DIR/warnings.log where a run has a directory.
NOISY = ("transformers", "peft", "accelerate", "torch", "trl", "huggingface_hub", "datasets")
NOISY_PATH = tuple(f"/{m}/" for m in NOISY)


def _not_noisy(record: logging.LogRecord) -> bool:
    text = record.getMessage()
    head = text.split(": ", 2)  # "PATH:LINE: Category: message" (warnings.formatwarning)
    noisy_kind = len(head) > 1 and head[1].split(":")[0] in ("FutureWarning", "DeprecationWarning")
    return not (noisy_kind and any(p in head[0] for p in NOISY_PATH))


def quiet_warnings() -> None:
    """Warnings go through logging ('py.warnings'): the terminal handler drops third-party Future- and
    DeprecationWarnings, log_warnings_to() adds a file that keeps everything."""
    log = logging.getLogger("py.warnings")
    if getattr(log, "_pixiu", False):
        return
    for module in NOISY:  # Python hides DeprecationWarnings outside __main__: let them reach the log file
        warnings.filterwarnings("default", category=DeprecationWarning, module=module)
    logging.captureWarnings(True)
    screen = logging.StreamHandler(sys.stderr)
    screen.addFilter(_not_noisy)
    log.addHandler(screen)
    log.propagate, log._pixiu = False, True


def log_warnings_to(run_dir: str) -> None:
    """Every captured warning, third-party ones included, also goes to RUN_DIR/warnings.log."""
    from pathlib import Path

    path = Path(run_dir) / "warnings.log"
    log = logging.getLogger("py.warnings")
    if any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in log.handlers):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    argv, threads = thread_flag(argv)
    quiet_warnings()
    if not argv or argv[0] in HELP:  # help is asked for: stdout, exit 0 (`pixiu --help | less` shows it)
        if len(argv) > 1 and argv[1] in COMMANDS:  # pixiu help train
            return COMMANDS[argv[1]](["--help"])
        print(usage())
        return
    if argv[0] not in COMMANDS:
        sys.exit(f"pixiu: unknown command {argv[0]!r}\n\n{usage()}")
    from pixiu import threads as cpu_threads

    cpu_threads.configure(threads)  # before anything imports torch: OpenMP reads its settings when it loads
    from pixiu.chat.templates import TemplateError
    from pixiu.config import ConfigError
    from pixiu.data import DataError
    from pixiu.model import ModelError

    try:
        COMMANDS[argv[0]](argv[1:])
    except (ConfigError, DataError, ModelError, TemplateError) as e:
        sys.exit(f"error: {e}")


def thread_flag(argv: list[str]) -> tuple[list[str], int | None]:
    """Split a leading `--threads N` / `--threads=N` (before the command) off argv."""
    if not argv or not argv[0].startswith("--threads"):
        return argv, None
    if "=" in argv[0]:
        value, rest = argv[0].split("=", 1)[1], argv[1:]
    else:
        value, rest = (argv[1] if len(argv) > 1 else ""), argv[2:]
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"pixiu: --threads needs a positive whole number, got {value!r}")
    return rest, int(value)


if __name__ == "__main__":
    main()
