"""Degeneration metrics over generated replies: what a person sees go wrong that a reward model may not.

Below train/ and eval/ (both use it, neither imports the other), like losses.py.

Pure functions over reply texts (no model, no tokenizer), used by the pipeline's evaluation (eval/route.py), the
`degeneration` task of `pixiu eval`, and PPO/GRPO's guards (train/guards.py):
- repeated n-gram rate: the share of a reply's n-grams that already occurred earlier in it. Units are words and
  numbers for Latin text and single characters for Chinese (which has no spaces), and every punctuation mark is a
  unit, so "雪雨雨雨雨雨…" and "。。。。。。" count as repeats just like "the the the".
- token-limit rate: replies that hit max_new_tokens without a stop token (cut mid-sentence, or rambling on).
- off-language rate: the reply's script (Chinese vs Latin, by character classes) differs from the prompt's.
- empty replies.
- exact-match correctness, where an item has a reference answer ("105", "Athens", "门", "8.5"): the reference
  appears in the reply as a whole unit (a number not inside a longer number, a word not inside a longer word);
  a choice question's reference also names the wrong choices, which the reply must not ("even|odd").
"""

from __future__ import annotations

import random
import re
import statistics
from dataclasses import asdict, dataclass

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")
# A unit: a Chinese character, a run of letters / digits (with an inner decimal point), or any other visible mark.
_UNIT = re.compile(
    r"[\u3400-\u9fff\uf900-\ufaff]|[A-Za-z0-9]+(?:\.[0-9]+)?|[^\sA-Za-z0-9\u3400-\u9fff\uf900-\ufaff]"
)
NGRAM = 3  # trigrams: a normal short reply has none repeated; a loop of one to three units does at once


@dataclass(frozen=True)
class ReplyStats:
    """One reply's degeneration numbers."""

    repeated: float  # share of its n-grams seen earlier in the reply, in [0, 1)
    cut: bool  # hit the token limit without a stop token
    off_language: bool  # written in the other script than the prompt
    empty: bool  # nothing but whitespace
    correct: float | None  # 1 / 0 against the reference answer; None when the item has none

    def badness(self) -> float:
        """One number to rank replies by how degenerate they look (the summary's "worst three")."""
        return self.repeated + self.cut + self.off_language + self.empty + (self.correct == 0) * 0.5


def units(text: str) -> list[str]:
    """Words, numbers, Chinese characters and punctuation marks, lower-cased, in order."""
    return [u.lower() for u in _UNIT.findall(text)]


def repeated_ngram_rate(text: str, n: int = NGRAM) -> float:
    """(n-grams - distinct n-grams) / n-grams over the reply's units; 0 for a reply shorter than n units.

    "a b a b a b" has the trigrams aba, bab, aba, bab: 2 of 4 repeat -> 0.5."""
    u = units(text)
    grams = [tuple(u[i : i + n]) for i in range(len(u) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def script(text: str) -> str | None:
    """'zh' when Chinese characters outweigh Latin letters (about five letters to a character), 'en' when there
    are letters, None for digits and symbols alone ("7 × 10 = 70.")."""
    cjk, latin = len(CJK.findall(text)), len(LATIN.findall(text))
    return "zh" if cjk and cjk * 5 >= latin else "en" if latin else None


def off_language(prompt: str, reply: str) -> bool:
    """The reply's script is known and differs from the prompt's (a number-only reply is never off)."""
    asked, said = script(prompt), script(reply)
    return asked is not None and said is not None and asked != said


def matches(reference: str, reply: str) -> bool:
    """The reference answer appears in the reply as a whole unit, case-insensitively: '105' not inside '1050'
    or '10.5', 'slow' not inside 'slowly'; Chinese references match as substrings ("门" in "'door' 是门").

    A choice question's reference names its wrong choices after '|' ("even|odd" for "Is 380 odd or even?"):
    the reply is right when it names the answer and none of them, so "380 is odd or even." is wrong."""
    answer, *wrong = reference.split("|")
    return _names(answer, reply) and not any(_names(w, reply) for w in wrong)


def _names(reference: str, reply: str) -> bool:
    ref = reference.strip()
    if not ref:
        return False
    if CJK.search(ref):
        return ref in reply
    pattern = r"(?<![\w.])" + re.escape(ref) + r"(?!\w|\.\d)"
    return re.search(pattern, reply, flags=re.IGNORECASE) is not None


def reply_stats(prompt: str, reply: str, finished: bool, reference: str | None = None) -> ReplyStats:
    """The numbers of one reply; `finished` = a stop token ended it (False: it hit max_new_tokens)."""
    return ReplyStats(
        repeated=repeated_ngram_rate(reply),
        cut=not finished,
        off_language=off_language(prompt, reply),
        empty=not reply.strip(),
        correct=None if reference is None else float(matches(reference, reply)),
    )


def summarize(stats: list[ReplyStats]) -> dict:
    """Rates over replies: repeated_ngram (mean share), token_limit, off_language, empty (shares of replies),
    exact_match (share right among replies with a reference; absent when none has one) and its count."""
    if not stats:
        return {}
    out = {
        "repeated_ngram": round(statistics.mean(s.repeated for s in stats), 4),
        "token_limit": round(statistics.mean(s.cut for s in stats), 4),
        "off_language": round(statistics.mean(s.off_language for s in stats), 4),
        "empty": round(statistics.mean(s.empty for s in stats), 4),
    }
    checked = [s.correct for s in stats if s.correct is not None]
    if checked:
        out |= {"exact_match": round(statistics.mean(checked), 4), "checked": len(checked)}
    return out


FIELDS = {
    "repeated_ngram": "repeated",
    "token_limit": "cut",
    "off_language": "off_language",
    "exact_match": "correct",
}


def paired_difference(start: list[ReplyStats], final: list[ReplyStats], k: int, rounds: int = 2000) -> dict:
    """{metric: [final - start, low, high]}: each rate's change between two policies that answered the same
    prompts with k replies each (reply i answers prompt i // k), and its 95% paired bootstrap interval over the
    prompts (a prompt's replies from both policies are drawn together). An interval that holds 0 is within the
    noise of this many prompts. Seeded: the same stats give the same interval."""
    n = len(start) // k
    rng = random.Random(0)
    draws = [[rng.randrange(n) for _ in range(n)] for _ in range(rounds)]
    out = {}
    for key, name in FIELDS.items():
        parts = [_per_prompt(stats, k, name) for stats in (start, final)]
        whole = _change(parts, range(n))
        if whole is None:
            continue
        changes = sorted(c for idx in draws if (c := _change(parts, idx)) is not None)
        low, high = changes[int(0.025 * len(changes))], changes[int(0.975 * len(changes)) - 1]
        out[key] = [round(whole, 4), round(low, 4), round(high, 4)]
    return out


def _per_prompt(stats: list[ReplyStats], k: int, name: str) -> list[tuple[float, int]]:
    """(sum, count) of one field over each prompt's k replies; None (no reference) left out."""
    values = [getattr(s, name) for s in stats]
    return [
        (sum(float(v) for v in part if v is not None), sum(v is not None for v in part))
        for part in (values[i : i + k] for i in range(0, len(values), k))
    ]


def _change(parts: list, idx) -> float | None:
    """Mean of the final policy's field minus the start policy's, over the prompts idx (with repeats)."""
    means = []
    for per in parts:
        count = sum(per[i][1] for i in idx)
        if not count:
            return None
        means.append(sum(per[i][0] for i in idx) / count)
    return means[1] - means[0]


def as_dict(s: ReplyStats) -> dict:
    """JSON-ready, rounded: the per-reply numbers shown next to each reply."""
    d = asdict(s)
    d["repeated"] = round(d["repeated"], 3)
    return d


LABELS = {  # metric key -> how summary.md and the report name it
    "repeated_ngram": "repeated 3-grams",
    "token_limit": "hit token limit",
    "off_language": "off-language",
    "empty": "empty",
    "exact_match": "exact match",
}


def flags(m: dict | None) -> list[str]:
    """One reply's numbers (as_dict) in words, for the replies shown to a person: ['repeated 3-grams 0.50',
    'hit token limit', 'off-language', 'wrong']; [] for a clean reply without a reference."""
    if not m:
        return []
    out = [f"repeated 3-grams {m['repeated']:.2f}"] if m.get("repeated") else []
    out += [word for key, word in (("cut", "hit token limit"), ("off_language", "off-language"), ("empty", "empty"))
            if m.get(key)]  # fmt: skip
    return out + {1.0: ["right"], 0.0: ["wrong"]}.get(m.get("correct"), [])
