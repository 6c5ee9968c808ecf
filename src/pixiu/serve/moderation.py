"""The moderation hook: an optional filter the server runs on user input and model output.

`load_moderation(spec)` picks a moderator by its spec, as OpenChatKit put a moderation model in front of its bot:
- a rules file (`.yaml` / `.yml` / `.json` / `.txt`): keywords and regexes grouped by category;
- `rm:PATH[:THRESHOLD]`: a pixiu reward model trained on harmful/harmless pairs (`pixiu train rm`), used as a
  classifier: a text scoring below THRESHOLD (default 0) is flagged.
The server decides what a flag does (refuse the request, or replace the reply with `Moderation.message`).
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

REFUSAL = "Sorry, I can't help with that."


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    reason: str = ""  # why, for logs and the error message: "violence: matched 'bomb'", "rm score -1.2 < 0"
    category: str = ""  # the rules category that matched ("" for the reward model or when not flagged)


class Moderation(Protocol):
    message: str  # what the server says instead when it refuses

    def check(self, text: str, context: list[dict] | None = None) -> Verdict:
        """Judge `text`; `context` (OpenAI messages before it) makes `text` a reply to them."""
        ...


# ---------------------------------------------------------------- rules


def _normal(text: str) -> str:
    """NFKC + casefold, so full-width letters and case games (ＢＯＭＢ, BoMb) match the plain keyword."""
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True)
class Rule:
    category: str
    entry: str  # as written in the file: a keyword, or "re:" + a regular expression
    pattern: re.Pattern

    @classmethod
    def parse(cls, category: str, entry: str) -> Rule:
        """`re:REGEX` is a case-insensitive regex; anything else is a keyword or phrase matched as whole words."""
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"moderation rule in {category!r} must be non-empty text, got {entry!r}")
        if entry.startswith("re:"):
            try:
                return cls(category, entry, re.compile(entry[3:], re.IGNORECASE))
            except re.error as e:
                raise ValueError(f"moderation rule {entry!r} in {category!r}: bad regex: {e}") from None
        words = r"\s+".join(re.escape(w) for w in _normal(entry).split())
        return cls(category, entry, re.compile(rf"(?<!\w){words}(?!\w)"))


@dataclass
class RulesModeration:
    """Flags a text when any rule matches; the first match (in file order) is the reason."""

    rules: list[Rule]
    message: str = REFUSAL

    def check(self, text: str, context: list[dict] | None = None) -> Verdict:
        plain = _normal(text)
        for rule in self.rules:
            # a regex may be written for the raw text (case, accents) or the normalized one: try both
            targets = (plain, text) if rule.entry.startswith("re:") else (plain,)
            if any(rule.pattern.search(t) for t in targets):
                return Verdict(True, f"{rule.category}: matched '{rule.entry}'", rule.category)
        return Verdict(False)


def read_rules(path: Path) -> RulesModeration:
    """YAML / JSON: {categories: {name: [entries]}, message: "..."} or just {name: [entries]}.
    Text: one entry a line, `[name]` starts a category (default "blocked"), `#` starts a comment line."""
    if path.suffix in (".yaml", ".yml", ".json"):
        raw = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            doc = json.loads(raw)
        else:
            import yaml

            doc = yaml.safe_load(raw)
        return _from_doc(doc or {}, path)
    rules, category = [], "blocked"
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            category = line[1:-1].strip()
        else:
            rules.append(Rule.parse(category, line))
    return _nonempty(RulesModeration(rules), path)


def _from_doc(doc, path: Path) -> RulesModeration:
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping of category -> list of keywords / re:patterns")
    message = doc.get("message", REFUSAL)
    categories = doc.get("categories", {k: v for k, v in doc.items() if k != "message"})
    rules = []
    for name, entries in categories.items():
        if not isinstance(entries, list):
            raise ValueError(f"{path}: category {name!r} must be a list of keywords / re:patterns")
        rules += [Rule.parse(str(name), e) for e in entries]
    return _nonempty(RulesModeration(rules, str(message)), path)


def _nonempty(mod: RulesModeration, path: Path) -> RulesModeration:
    if not mod.rules:
        raise ValueError(f"{path}: no moderation rules in the file")
    return mod


# ---------------------------------------------------------------- reward model


@dataclass
class RewardModeration:
    """A reward model as a harmful/harmless classifier: r(context + reply) < threshold -> flagged.

    Trained on pairs whose chosen reply is the harmless one, the RM scores harmful text low. The score is read as
    the reply to `context` (the conversation so far); without one, as the reply to an empty user turn."""

    path: str
    threshold: float = 0.0
    message: str = REFUSAL
    dtype: str = "auto"
    _loaded: tuple | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def load(self) -> RewardModeration:
        from pixiu.config import ModelConfig
        from pixiu.model import heads

        self._loaded = heads.load_scalar(ModelConfig(self.path, dtype=self.dtype))
        return self

    def score(self, text: str, context: list[dict] | None = None) -> float:
        from pixiu.chat.messages import Conversation
        from pixiu.model.reward import score_replies

        if self._loaded is None:
            self.load()
        loaded, model = self._loaded
        # with no context, the reply to an empty user turn: every chat template renders that (not all can
        # render a conversation that opens with the assistant)
        conv = Conversation.from_openai(list(context or [{"role": "user", "content": ""}])).add(
            "assistant", text
        )
        with self._lock:  # one forward at a time: the server calls in from many request threads
            return score_replies(model, loaded.tokenizer, loaded.template, [conv])[0]

    def check(self, text: str, context: list[dict] | None = None) -> Verdict:
        r = self.score(text, context)
        if r < self.threshold:
            return Verdict(True, f"reward model score {r:.3f} < threshold {self.threshold:g}")
        return Verdict(False, f"reward model score {r:.3f}")


def parse_rm_spec(spec: str) -> tuple[str, float]:
    """rm:PATH[:THRESHOLD] -> (PATH, THRESHOLD); a last ':part' that is not a number stays in the path."""
    body = spec.removeprefix("rm:")
    path, sep, last = body.rpartition(":")
    if sep:
        try:
            return path, float(last)
        except ValueError:
            pass
    return body, 0.0


def load_moderation(spec: str | None) -> Moderation | None:
    """None or "" -> no moderation; rm:PATH[:THRESHOLD] -> RewardModeration (loaded now, so a bad path fails at
    start-up, not on the first request); a rules file -> RulesModeration."""
    if not spec:
        return None
    if spec.startswith("rm:"):
        path, threshold = parse_rm_spec(spec)
        return RewardModeration(path, threshold).load()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"moderation: no rules file {spec!r} (give a .yaml/.json/.txt file or rm:PATH[:threshold])"
        )
    return read_rules(path)
