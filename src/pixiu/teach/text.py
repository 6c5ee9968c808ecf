"""Text measures the generators and the filter share: ROUGE-L, refusals, language, MinHash.

ROUGE-L reproduces `rouge_score` (the package Alpaca used, not a dependency here): lower-case, every run of
characters outside [a-z0-9] becomes a space, split on spaces, F1 of the longest common subsequence. That
tokenizer deletes Chinese entirely, so BELLE-style Chinese mode compares characters instead.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def words_en(text: str) -> list[str]:
    """rouge_score's default tokenizer (no stemmer): what Alpaca's ROUGE-L > 0.7 filter compared."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def chars_zh(text: str) -> list[str]:
    """Characters without spaces or punctuation: the unit of Chinese ROUGE (BELLE's zh self-instruct)."""
    return [c for c in text.lower() if not c.isspace() and not unicodedata.category(c).startswith("P")]


def lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0  # row[j - 1] of the previous line
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists; 0 when either is empty (as rouge_score)."""
    if not a or not b:
        return 0.0
    common = lcs(a, b)
    if not common:
        return 0.0
    p, r = common / len(b), common / len(a)
    return 2 * p * r / (p + r)


# Refusals, English and Chinese: the openings of "I can't help with that" replies (WizardLM drops short replies
# with "sorry"; these catch the rest). Matched on the start of a reply or as a whole phrase anywhere.
REFUSALS = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|as an ai\b|as a language model|i cannot (?:help|assist|provide|"
    r"fulfil|comply)|i can'?t (?:help|assist|provide|fulfil|comply)|i'?m (?:not able|unable) to|i am (?:not able|"
    r"unable) to)|抱歉|对不起|作为一个?(?:人工智能|AI|语言模型)|我无法|我不能(?:提供|回答|帮助)",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    return bool(REFUSALS.search(text))


def cjk_ratio(text: str) -> float:
    """Share of CJK ideographs among the letters: > 0.3 reads as Chinese, ~0 as English."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in letters) / len(letters)


def language(text: str) -> str:
    """'zh', 'en' or 'other' (a cheap script test: good enough to drop replies in the wrong language)."""
    if cjk_ratio(text) > 0.3:
        return "zh"
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) > 0.9:
        return "en"
    return "other"


STOP_WORDS = frozenset(
    "a an the and or but if then of to in on at by for with from as is are was were be been it this that these "
    "those i you he she we they me him her us them my your his our their what which who whom how why when where "
    "do does did not no yes so than too very can will just".split()
)


def only_punctuation_and_stop_words(text: str) -> bool:
    """WizardLM's third elimination rule: a reply with nothing but punctuation and stop words."""
    return all(w in STOP_WORDS for w in words_en(text)) and not any("\u4e00" <= c <= "\u9fff" for c in text)


def normalize(text: str) -> str:
    """For exact duplicates: case, width (NFKC) and whitespace differences do not make two items differ."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def exact_hash(text: str) -> str:
    return hashlib.sha1(normalize(text).encode()).hexdigest()


def shingles(text: str, n: int = 5) -> set[str]:
    """Character n-grams of the normalized text: works for Chinese, which has no spaces to split words on."""
    t = normalize(text)
    return {t[i : i + n] for i in range(max(1, len(t) - n + 1))} if t else set()


_MERSENNE = (1 << 61) - 1


class MinHash:
    """MinHash signatures (num_perm hashes h_i(x) = (a_i x + b_i) mod p) with LSH banding for candidates.

    Two texts whose shingle sets have Jaccard similarity J share each signature slot with probability J; with
    `bands` bands of `rows` slots a pair becomes a candidate with probability 1 - (1 - J^rows)^bands, and the
    candidate's estimated J is then checked against the threshold.
    """

    def __init__(self, num_perm: int = 128, bands: int = 32, n: int = 5, seed: int = 1):
        if num_perm % bands:
            raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
        import random

        rng = random.Random(seed)
        self.params = [(rng.randrange(1, _MERSENNE), rng.randrange(0, _MERSENNE)) for _ in range(num_perm)]
        self.bands, self.rows, self.n = bands, num_perm // bands, n
        self.buckets: list[dict[tuple, list[int]]] = [{} for _ in range(bands)]
        self.signatures: list[list[int]] = []

    def signature(self, text: str) -> list[int]:
        xs = [
            int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")
            for s in shingles(text, self.n)
        ]
        if not xs:
            return [_MERSENNE] * len(self.params)
        return [min((a * x + b) % _MERSENNE for x in xs) for a, b in self.params]

    def add(self, text: str, threshold: float) -> tuple[int, float] | None:
        """Index `text`; return (index, estimated Jaccard) of an earlier text at least `threshold` similar (and
        leave this one out of the index), or None when it is new."""
        sig = self.signature(text)
        seen: set[int] = set()
        for band, bucket in enumerate(self.buckets):
            for j in bucket.get(tuple(sig[band * self.rows : (band + 1) * self.rows]), []):
                if j not in seen:
                    seen.add(j)
                    sim = sum(x == y for x, y in zip(sig, self.signatures[j])) / len(sig)
                    if sim >= threshold:
                        return j, sim
        index = len(self.signatures)
        self.signatures.append(sig)
        for band, bucket in enumerate(self.buckets):
            bucket.setdefault(tuple(sig[band * self.rows : (band + 1) * self.rows]), []).append(index)
        return None
