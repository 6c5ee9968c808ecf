"""Tasks: a Task is examples + evaluate(conversation, reply) + reward(conversation, reply), as in nanochat.

GRPO and PPO take their rewards from a task, evaluation its scores, all through the same object. A reward can
also be any Python function `module:function(conversation, reply) -> float`.

`conversation` is an example's prompt followed by its reference assistant reply (nanochat's shape: the task
reads the reference from the last turn). A conversation that ends with the user turn (PPO on prompt records)
works too when the task can find the reference itself: arithmetic recomputes it from the question, gsm8k looks
the question up in its data, the format task needs none.
"""

from __future__ import annotations

import importlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pixiu.chat.messages import Conversation, Message
from pixiu.config import ConfigError

RewardFn = Callable[[Conversation, str], float]
TASKS: dict[str, type] = {}


class TaskError(ConfigError):
    """A task that cannot be built or cannot score a conversation, with what to do about it."""


def register(name: str):
    def wrap(cls):
        TASKS[name] = cls
        return cls

    return wrap


def get_task(name: str, **kwargs):
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; valid: {sorted(TASKS)}")
    return TASKS[name](**kwargs)


def reward_fn(spec: str) -> RewardFn:
    """A task name -> its reward; 'module:function' -> that function."""
    if ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise TaskError(f"reward function {spec!r} cannot be imported: {e}") from None
    return get_task(spec).reward


# ---------------------------------------------------------------- numbers in replies

# A number: thousands groups (1,234,567) or plain digits, optional decimals, optional sign and '$'. The
# look-behind keeps '10-5' from reading as 10 and -5, and 'x2' or '1.2.3' tails from reading as numbers.
_NUMBER = re.compile(r"(?<![\w.])([-−]?)\$?(\d{1,3}(?:,\d{3})+(?![\d,])(?:\.\d+)?|\d+(?:\.\d+)?)")
# Markers after which the final answer follows, strongest first: GSM8K's '####', LaTeX's \boxed, prose.
_MARKERS = (r"####", r"\\boxed\{", r"answer\s*(?:is|:|=)")


def canonical(number: str) -> str:
    """'1,234.50' -> '1234.5', '-0' -> '0', '7.0' -> '7': one spelling per value, for exact match."""
    try:
        value = Decimal(number.replace(",", "").replace("−", "-").replace("$", "").strip())
    except InvalidOperation:
        return number.strip()
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def numbers(text: str) -> list[str]:
    """Every number in `text`, canonical, in order."""
    return [canonical(sign + digits) for sign, digits in _NUMBER.findall(text)]


def extract_number(text: str) -> str | None:
    """The final answer of a reply: the first number after the last '####' (else '\\boxed{', else 'answer is');
    with no marker, the last number in the text; None when there is no number at all."""
    for marker in _MARKERS:
        hits = list(re.finditer(marker, text, flags=re.IGNORECASE))
        if hits:
            found = numbers(text[hits[-1].end() :])
            if found:
                return found[0]
    found = numbers(text)
    return found[-1] if found else None


# ---------------------------------------------------------------- the task interface


@dataclass
class Example:
    prompt: Conversation  # ends with the user turn the policy answers
    answer: str  # the reference final answer (canonical number for math); '' when only form counts
    solution: str = ""  # a full reference reply (a worked solution), usable as an SFT target

    @property
    def conversation(self) -> Conversation:
        """What evaluate() and reward() take: the prompt plus the reference reply, or the bare prompt when there
        is no reference (prompt records from data; the task then finds the answer itself)."""
        reference = self.solution or self.answer
        return self.prompt.add("assistant", reference) if reference else self.prompt


class Task:
    """Examples of a split, a 0/1 `evaluate` and a (possibly shaped) `reward` of a reply."""

    splits = ("train", "test")

    def examples(self, split: str) -> list[Example]:
        raise NotImplementedError

    def reference(self, conversation: Conversation) -> str:
        """The canonical answer: parsed from the reference reply when the conversation carries one."""
        last = conversation.messages[-1]
        if last.role == "assistant":
            return extract_number(last.content) or ""
        return self.lookup(conversation)

    def lookup(self, conversation: Conversation) -> str:
        raise TaskError(
            f"{type(self).__name__} needs the reference reply as the conversation's last turn; got a "
            "conversation that ends with a user turn"
        )

    def evaluate(self, conversation: Conversation, reply: str) -> float:
        """1.0 when the reply's final number equals the reference answer, else 0.0."""
        return float(extract_number(reply) == self.reference(conversation))

    def reward(self, conversation: Conversation, reply: str) -> float:
        return self.evaluate(conversation, reply)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise TaskError(f"{type(self).__name__} has splits {list(self.splits)}, not {split!r}")


class FunctionReward(Task):
    """A 'module:function' reward as a task: no examples of its own (prompts come from data), and its
    `evaluate` is the reward itself."""

    def __init__(self, fn: RewardFn, name: str = ""):
        self.fn, self.name = fn, name

    def examples(self, split: str) -> list[Example]:
        raise TaskError(f"reward function {self.name!r} has no examples: give prompts with data.path")

    def evaluate(self, conversation: Conversation, reply: str) -> float:
        return float(self.fn(conversation, reply))

    def reward(self, conversation: Conversation, reply: str) -> float:
        return float(self.fn(conversation, reply))


def resolve(spec: str, **kwargs) -> Task:
    """A task name (with its options) -> the task; 'module:function' -> that reward wrapped as a task."""
    return FunctionReward(reward_fn(spec), spec) if ":" in spec else get_task(spec, **kwargs)


def _user(text: str) -> Conversation:
    return Conversation([Message("user", text)])


# ---------------------------------------------------------------- GSM8K


@register("gsm8k")
class GSM8K(Task):
    """Grade-school math word problems (Cobbe et al. 2021); the reference answer follows '####'.

    `path` is a folder with train.jsonl and test.jsonl of {question, answer} rows (openai/gsm8k as published)."""

    instruction = "\nSolve it step by step, then give the final answer on the last line as '#### <number>'."

    def __init__(self, path: str = "../shared/data/gsm8k", instruction: str | None = None):
        self.path = Path(path)
        self.instruction = self.instruction if instruction is None else instruction
        self._cache: dict[str, list[Example]] = {}
        self._index: dict[str, str] | None = None

    def examples(self, split: str) -> list[Example]:
        self._check_split(split)
        if split not in self._cache:
            file = self.path / f"{split}.jsonl" if self.path.is_dir() else self.path
            if not file.is_file():
                raise TaskError(
                    f"gsm8k: {file} not found; pass the folder holding train.jsonl / test.jsonl with "
                    "--grpo.task_args.path=DIR (the openai/gsm8k files as published)"
                )
            rows = [
                json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
            self._cache[split] = [
                Example(
                    _user(r["question"] + self.instruction), extract_number(r["answer"]) or "", r["answer"]
                )
                for r in rows
            ]
        return self._cache[split]

    def lookup(self, conversation: Conversation) -> str:
        if self._index is None:  # built once, only for callers that pass bare prompts
            self._index = {
                ex.prompt.messages[-1].content: ex.answer
                for split in self.splits
                for ex in self.examples(split)
            }
        question = conversation.messages[-1].content
        if question not in self._index and question + self.instruction not in self._index:
            raise TaskError(f"gsm8k: question not found in {self.path}: {question[:80]!r}")
        return self._index.get(question) or self._index[question + self.instruction]


# ---------------------------------------------------------------- synthetic arithmetic


@register("arithmetic")
class Arithmetic(Task):
    """'What is 23 + 19?' over every pair of operands in [low, high]: small enough to enumerate, so the test
    split is a seeded sample of all problems and the train split is everything else (they never overlap).
    Subtraction keeps the larger operand first so answers stay non-negative, which a 135M model learns fastest.
    """

    question = re.compile(r"What is (\d+) ([-+]) (\d+)\?")
    instruction = " Reply with only the number."

    def __init__(
        self,
        low: int | str = 10,
        high: int | str = 99,
        ops: str = "+-",
        test_size: int | str = 500,
        seed: int | str = 0,
        instruction: str | None = None,
    ):
        self.low, self.high, self.ops = int(low), int(high), ops
        self.test_size, self.seed = int(test_size), int(seed)
        self.instruction = self.instruction if instruction is None else instruction
        if not set(ops) <= {"+", "-"} or not ops:
            raise TaskError(f"arithmetic: ops must use '+' and '-', got {ops!r}")

    def problems(self) -> list[tuple[int, str, int]]:
        """All problems in a seeded order; the first test_size are the test split."""
        span = range(self.low, self.high + 1)
        all_ = [(a, op, b) for op in self.ops for a in span for b in span if op == "+" or a >= b]
        random.Random(self.seed).shuffle(all_)
        if self.test_size >= len(all_):
            raise TaskError(
                f"arithmetic: test_size {self.test_size} leaves no training problems of {len(all_)}"
            )
        return all_

    def examples(self, split: str) -> list[Example]:
        self._check_split(split)
        all_ = self.problems()
        part = all_[: self.test_size] if split == "test" else all_[self.test_size :]
        return [self.example(a, op, b) for a, op, b in part]

    def example(self, a: int, op: str, b: int) -> Example:
        answer = str(a + b if op == "+" else a - b)
        return Example(_user(f"What is {a} {op} {b}?{self.instruction}"), answer, answer)

    def lookup(self, conversation: Conversation) -> str:
        m = self.question.search(conversation.messages[-1].content)
        if not m:
            raise TaskError(f"arithmetic: not an arithmetic question: {conversation.messages[-1].content!r}")
        a, op, b = int(m[1]), m[2], int(m[3])
        return str(a + b if op == "+" else a - b)


# ---------------------------------------------------------------- reference answers in the data


@register("reference")
class Reference(Task):
    """Prompts that carry their own reference answer (a prompts file's `answer` field: "105", "Athens", "门"):
    1.0 when the reply contains it as a whole unit and none of the wrong choices a choice question's reference
    names after '|' ("even|odd"; degeneration.matches, the evaluation's exact match), else 0.0; 0.0 for a
    prompt with no reference, which carries no signal either way. Sum it with a reward model's
    score (ppo.reward_model + ppo.reward_fn: reference) so that a wrong answer costs what the model cannot see.
    """

    def examples(self, split: str) -> list[Example]:
        raise TaskError("reference: the prompts come from data (data.path rows with an `answer` field)")

    def reference(self, conversation: Conversation) -> str:
        last = conversation.messages[-1]
        return last.content if last.role == "assistant" else ""

    def evaluate(self, conversation: Conversation, reply: str) -> float:
        from pixiu.degeneration import matches

        return float(matches(self.reference(conversation), reply))


# ---------------------------------------------------------------- answer format


@register("format")
class AnswerFormat(Task):
    """Rewards form, not correctness: the reply must end with its answer inside <answer>...</answer>.

    Partial credit (a quarter each) guides a policy that never writes the full format at first: an opening
    tag, a closing tag after it, a lone number between them, and nothing after the closing tag. The prompts are
    another task's (arithmetic by default) with the format asked for.
    """

    instruction = " Put the final answer inside <answer></answer> tags."
    tagged = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

    def __init__(self, base: str = "arithmetic", instruction: str | None = None, **base_args):
        self.base = get_task(base, instruction="", **base_args)
        self.instruction = self.instruction if instruction is None else instruction

    def examples(self, split: str) -> list[Example]:
        return [Example(self._ask(ex.prompt), ex.answer, ex.solution) for ex in self.base.examples(split)]

    def _ask(self, prompt: Conversation) -> Conversation:
        last = prompt.messages[-1]
        return Conversation([*prompt.messages[:-1], Message("user", last.content + self.instruction)])

    def reference(self, conversation: Conversation) -> str:
        return ""  # form only

    def parts(self, reply: str) -> list[bool]:
        """[has <answer>, closes it after, a lone number inside, nothing after the closing tag]."""
        opened = "<answer>" in reply
        closed = opened and "</answer>" in reply[reply.index("<answer>") :]
        m = self.tagged.search(reply)
        inside = bool(m) and _NUMBER.fullmatch(m[1].strip()) is not None
        tail = bool(m) and reply[m.end() :].strip() == ""
        return [opened, closed, inside, tail]

    def evaluate(self, conversation: Conversation, reply: str) -> float:
        return float(all(self.parts(reply)))

    def reward(self, conversation: Conversation, reply: str) -> float:
        return sum(self.parts(reply)) / 4
