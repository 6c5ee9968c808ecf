"""Generation methods, one module each, in one registry: `METHODS[name](cfg)` -> a Method.

A Method turns its inputs into Jobs (stable keys, so a resumed run skips finished ones), runs one Job against
the teacher in a worker thread (`run`: stateless filters there), and judges each candidate row in the main
thread (`accept`: filters that depend on what was kept before, such as Alpaca's ROUGE-L against kept items).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pixiu.teach.teacher import Teacher

METHODS: dict[str, type[Method]] = {}
MODULES = {"self-instruct": "self_instruct", "evol": "evol", "self-chat": "self_chat", "answer": "answer",
           "rank": "rank"}  # fmt: skip


def register(name: str):
    def add(cls):
        cls.name = name
        METHODS[name] = cls
        return cls

    return add


def get_method(name: str) -> type[Method]:
    if name not in MODULES:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(MODULES)}")
    importlib.import_module(f"pixiu.teach.methods.{MODULES[name]}")
    return METHODS[name]


@dataclass
class GenerateConfig:
    """What `pixiu data generate` makes; each method reads the fields it needs."""

    method: str = "self-instruct"
    """self-instruct, evol, self-chat, answer or rank."""
    out: str = "runs/teach/data.jsonl"
    """Output JSONL (kept items); OUT.journal.jsonl and OUT.failed.jsonl sit beside it."""
    inputs: str = ""
    """Seeds or items to work on: seed tasks (self-instruct), instructions (evol, answer), questions (self-chat),
    prompts with replies (rank). Empty: the shared Alpaca / BELLE seeds for self-instruct."""
    lang: str = "en"
    """en or zh: the prompt language and, for self-instruct, the filters (Chinese: character ROUGE, no ASCII rule)."""
    target: int = 0
    """Stop once this many items are kept (0: when the inputs run out). Self-instruct needs it: its jobs never end."""
    time_limit: float = 0.0
    """Stop submitting new jobs after this many seconds (0: no limit); jobs in flight still finish and are kept."""
    max_tokens: int = 1024
    """Reply cap per teacher request."""
    temperature: float = 1.0
    """Sampling temperature (Alpaca used 1.0)."""
    top_p: float = 1.0
    """Nucleus sampling."""
    repetition_penalty: float = 1.0
    """> 1 discourages repeats (CTRL); sent only when not 1 (vLLM and pixiu serve read it, OpenAI does not)."""
    seed: int = 0
    """Seeds the sampling of prompt examples and evolution operations: a resumed run makes the same jobs."""
    api: str = "chat"
    """chat (/v1/chat/completions) or completions (/v1/completions, as Alpaca prompted text-davinci-003)."""
    num_prompt: int = 3
    """Self-instruct: seed tasks shown in each prompt."""
    num_asked: int = 20
    """Self-instruct: the list length the prompt asks for (so num_asked - num_prompt new items per request)."""
    rouge: float = 0.7
    """Self-instruct: drop an instruction whose ROUGE-L with any seed or kept one is above this."""
    n: int = 1
    """Answer: replies per instruction."""
    rounds: int = 4
    """Evol: evolution rounds per instruction."""
    max_turns: int = 4
    """Self-chat: user turns at most per conversation."""
    format: str = "rankings"
    """Rank: rankings (all K replies, best first) or pairs (best vs worst)."""

    def __post_init__(self):
        checks = {
            "api must be chat or completions": self.api in ("chat", "completions"),
            "lang must be en or zh": self.lang in ("en", "zh"),
            "n, rounds and max_turns must be >= 1": min(self.n, self.rounds, self.max_turns) >= 1,
            "num_asked must exceed num_prompt + 1": self.num_asked > self.num_prompt + 1 >= 2,
            "target and time_limit must be >= 0": self.target >= 0 and self.time_limit >= 0,
        }
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"generate: {'; '.join(bad)}")


@dataclass
class Job:
    key: str  # stable across runs: resume skips keys the journal has
    asked: int  # items this job asks for; kept + dropped + failed adds up to it
    payload: dict


@dataclass
class Result:
    rows: list[dict] = field(default_factory=list)  # candidate rows in a pixiu format, before `accept`
    dropped: list[list] = field(default_factory=list)  # [reason, example text]
    failed: str = ""  # the teacher's error when it failed for good (the rest of `asked` counts as failed)
    prompt_hash: str = ""


class Method:
    name = ""
    inputs = "the items to work on"  # what --inputs holds; "" when the method has a default

    def __init__(self, cfg: GenerateConfig):
        if self.inputs and not cfg.inputs:
            raise ValueError(f"{self.name}: give {self.inputs} with --inputs FILE")
        self.cfg = cfg

    def jobs(self) -> Iterator[Job]:
        raise NotImplementedError

    def run(self, job: Job, teacher: Teacher) -> Result:
        raise NotImplementedError

    def accept(self, row: dict) -> str | None:
        """None to keep `row`, or the reason to drop it; called in order, in one thread."""
        return None

    def restore(self, rows: list[dict]) -> None:
        """Rebuild `accept`'s state from the rows a killed run had kept."""
        for row in rows:
            self.accept(row)

    def sampling(self, **over) -> dict:
        """The run's sampling settings as request fields (`over` replaces some). repetition_penalty is an
        extension (vLLM, pixiu serve), sent only when set, since OpenAI itself refuses unknown fields."""
        s = {"max_tokens": self.cfg.max_tokens, "temperature": self.cfg.temperature, "top_p": self.cfg.top_p}
        if self.cfg.repetition_penalty != 1.0:
            s["repetition_penalty"] = self.cfg.repetition_penalty
        return s | over

    def ask(self, teacher: Teacher, messages: list[dict], **over):
        """One chat request with the run's sampling settings."""
        return teacher.chat(messages, **self.sampling(**over))


def prompt_hash(prompt) -> str:
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def read_items(path: str) -> list[dict]:
    """Rows of a JSON list or JSONL file (a bare string is {"prompt": it}); a plain-text file gives one
    {"instruction": line} per non-empty line."""
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith((".json", ".jsonl")):
        stripped = text.lstrip()
        rows = (
            json.loads(stripped)
            if stripped.startswith("[")
            else [json.loads(x) for x in text.split("\n") if x.strip()]
        )
        return [{"prompt": r} if isinstance(r, str) else r for r in rows]  # a file of JSON strings: prompts
    return [{"instruction": line.strip()} for line in text.split("\n") if line.strip()]


def instruction_of(row: dict) -> str:
    """The user's request in an alpaca, prompts, messages or plain row (instruction and input joined)."""
    if "instruction" in row:
        return "\n\n".join(p for p in (row["instruction"], row.get("input") or "") if p)
    for key in ("prompt", "question", "text"):
        if isinstance(row.get(key), str):
            return row[key]
    msgs = row.get("messages") or row.get("prompt") or []
    users = [m["content"] for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else ""
