"""Preference and prompt data for the route demo (reward model -> PPO), written by make_demo_data.py.

The preference: a reply is good when it is correct, concise, in the language of the question and polite. Each
prompt gets its good reply (the family's own answer, the style of sft.jsonl) and flawed ones of four kinds that a
reward model can see in the text, and that a sampling SFT policy also produces, so PPO has something to move:
  wrong     the same sentence with a wrong value: half the time another draw of the family (another sum,
            capital, day...), half the time the near miss a small model writes (near_miss: the question's own
            number or word echoed as the answer, "510 minutes = 510 hours", "the antonym of 'fast' is 'fast'";
            a comparison or parity flipped; a word left unreversed)
  language  the right answer in the other language (the same draw replayed in the other language)
  rambling  the right answer that does not stop: repeated with filler, or run on into unrelated answers
  garbled   the right answer with about half its words (or Chinese characters) swapped for random ones:
            the incoherent text a small model sampling at temperature 1 writes
  rude      a dismissive or evasive non-answer
Files (each row also names the family, the language and the flaw, for per-kind evaluation):
  pairs.jsonl           {prompt, chosen, rejected}: the good reply against one flawed one
  rankings.jsonl        {prompt, responses} best first (K = 4): good > rambling or language > wrong or garbled
                        > rude
  prompts.jsonl         {prompt}: PPO's prompts
  heldout_prompts.jsonl {prompt, answer}: evaluation prompts with the reference answer ("105", "Athens", "门")
                        that eval/route.py's exact match looks for; no question here appears in any other file
  heldout_pairs.jsonl   pairs on the held-out prompts (with their `answer`): the reward model's held-out accuracy,
                        alone and summed with the PPO stage's rule reward
  wrong_pairs.jsonl     {prompt, chosen, rejected}: the good reply against a wrong one, computed families only
"""

import json
import re
from collections import Counter
from string import Formatter

import demo_families as fam
from demo_families import CJK, TEMPLATES, make, table
from demo_text import (
    GENERAL_EN,
    GENERAL_ZH,
    IDENTITY_EN,
    IDENTITY_ZH,
    RAMBLE_EN,
    RAMBLE_ZH,
    RUDE_EN,
    RUDE_ZH,
    WRONG_IDENTITY_EN,
    WRONG_IDENTITY_ZH,
)  # fmt: skip

r = fam.r  # one generator for the whole demo set: replaying its state replays a draw
OTHER = {"en": "zh", "zh": "en"}
LATIN = re.compile(r"[A-Za-z]")
COMPUTED = [fam.arith, fam.units, fam.spelling, fam.calendar, fam.capital, fam.antonym, fam.translate,
            fam.parity, fam.compare]  # fmt: skip
# Share of each family among the prompts; arithmetic and capitals carry the most visible right/wrong signal.
WEIGHTS = {"arith": 3, "units": 2, "spelling": 1, "calendar": 1, "capital": 2, "antonym": 1, "translate": 1,
           "parity": 1, "compare": 1, "identity": 1, "general": 1}  # fmt: skip
PAIR_KINDS = {"wrong": 0.2, "language": 0.2, "rambling": 0.2, "garbled": 0.25, "rude": 0.15}
# Near-miss wrong answers and wrong answers in rankings, tried on 2026-12-04 (wrong share 0.35, near misses for
# half of them, a wrong answer third in half the rankings): held-out RM accuracy fell from 0.927 to 0.802 and the
# "wrong" flaw from 0.70 to 0.54 (runs/quickstart under load 11-25). Off, so the data is the measured one.
NEAR_MISS = 0.0  # share of wrong answers that are near misses (near_miss)
RANK_WRONG = False  # a wrong answer may take the third place of a ranking
SIZES = {"pairs": 640, "rankings": 240, "prompts": 480, "heldout_prompts": 96, "heldout_pairs": 192,
         "wrong_pairs": 480}  # fmt: skip
# Arithmetic answers ("7 × 10 = 70.") read the same in both languages, so its wrong-language reply spells it out.
SPELLED_ARITH = {"en": "{a} {w} {b} equals {c}.", "zh": "{a}{w}{b}等于{c}。"}
RAMBLE = {lang: {k: v for k, *v in table(t)} for lang, t in (("en", RAMBLE_EN), ("zh", RAMBLE_ZH))}
RUDE = {"en": table(RUDE_EN), "zh": table(RUDE_ZH)}
WRONG_IDENTITY = {"en": table(WRONG_IDENTITY_EN), "zh": table(WRONG_IDENTITY_ZH)}
IDENTITY = {"en": table(IDENTITY_EN), "zh": table(IDENTITY_ZH)}  # rows line up: the same answer in both
GENERAL = {"en": table(GENERAL_EN), "zh": table(GENERAL_ZH)}


# Words and characters that garbled replies are made of: everything the templates and tables use.
_TEXT = json.dumps([TEMPLATES, fam.CAPITALS, fam.WORDS, fam.SPELL, fam.DAYS, fam.MONTHS], ensure_ascii=False)
POOL = {"en": sorted(set(re.findall(r"[A-Za-z]{2,}", _TEXT))), "zh": sorted(set(CJK.findall(_TEXT)))}


# ---- one prompt with its good reply and every flawed reply its family allows --------------------------------
def computed(family, lang):
    """A computed question with replies {kind: text}; its `language` reply replays the same draw."""
    state = r.getstate()
    v = family(lang)
    q_t, a_t = r.choice(TEMPLATES[f"{family.__name__}.{lang}"])
    after = r.getstate()
    r.setstate(state)
    v_other = family(OTHER[lang])  # the same values, told in the other language
    _, a_other = r.choice(TEMPLATES[f"{family.__name__}.{OTHER[lang]}"])
    if family is fam.arith:
        a_other = SPELLED_ARITH[OTHER[lang]]
    r.setstate(after)
    good = a_t.format(**v)
    replies = {"good": good, "wrong": wrong(family, lang, q_t, a_t, v), "rambling": ramble(good, lang)}
    replies |= {"garbled": garble(good, lang), "rude": r.choice(RUDE[lang])[0]}
    if family is not fam.antonym:  # the antonym tables differ per language: no translated answer
        replies["language"] = a_other.format(**v_other)
    q, answer = q_t.format(**v), reference(q_t, a_t, v)
    if family is fam.parity and answer in PARITY[lang]:  # "even|odd": right = says even and not odd
        return q, replies, "|".join(sorted(PARITY[lang], key=lambda w: w != answer))
    return q, replies, None if shown_in(answer, q) else answer


def shown_in(answer, question):
    """The answer is a whole word or number of the question ("Which is larger, 352 or 432?"): a reply that only
    repeats the question would match it, so such an item gets no reference answer."""
    if CJK.search(answer):
        return answer in question
    return re.search(r"(?<![\w.])" + re.escape(answer) + r"(?!\w|\.\d)", question, re.IGNORECASE) is not None


def fields(template):
    return [name for _, name, _, _ in Formatter().parse(template) if name]


def reference(q_t, a_t, v):
    """The answer's key value, for exact match: the first field of the answer that the question does not show
    (the sum, the capital, the converted amount, the day); "even" / "偶数" for parity, "Yes" / "不是" for yes/no."""
    asked = set(fields(q_t))
    name = next(n for n in fields(a_t) if n not in asked and n not in ("op", "w", "times"))
    value = str(v[name])
    return re.split(r"[,，]", value)[0] if name in ("p", "yes") else value


def wrong(family, lang, q_t, a_t, v):
    """The answer sentence with the values the question does not show taken from another draw, or (half the
    time) a near miss of the same draw."""
    asked = set(fields(q_t))
    good = a_t.format(**v)
    if NEAR_MISS and r.random() < NEAR_MISS:
        bad = a_t.format(**near_miss(family.__name__, lang, v, asked))
        if bad != good:
            return bad
    for _ in range(100):
        bad = a_t.format(**{**family(lang), **{k: v[k] for k in asked}})
        if bad != good:
            return bad
    raise AssertionError(f"no wrong answer for {good}")


# A parity answer's reference also names the other parity as wrong ("even|odd"; degeneration.matches).
PARITY = {"en": ("even", "odd"), "zh": ("偶数", "奇数")}
FLIP = {  # parity and yes/no answers, each to its opposite
    "en": ("even, because it is divisible by 2", "odd, because it is not divisible by 2", "Yes, ", "No, "),
    "zh": ("偶数，因为它能被 2 整除", "奇数，因为它不能被 2 整除", "是的，", "不是，"),
}


def near_miss(name, lang, v, asked):
    """The wrong answers a small model writes: the question's own number or word echoed as the answer ("510
    minutes = 510 hours", "the antonym of 'fast' is 'fast'", "the capital of Greece is Greece"), the other
    number of a comparison, the other parity, a word 'reversed' unchanged. The values the question shows stay."""
    shown, v = {k: v[k] for k in asked}, dict(v)
    if name == "arith":
        v["c"] = r.choice((v["a"], v["b"]))
    elif name == "units":
        v["y"] = str(v["x"])
    elif name == "antonym":
        v["o"] = v["w"]
    elif name == "capital":
        v["k"] = v["c"]
    elif name == "calendar":
        v |= {"nd": v["d"], "pd": v["d"], "kd": v["d"], "nm": v["m"], "pm": v["m"], "m": v["pm"]}
    elif name == "translate":
        v["z"], v["e"] = v["e"], v["z"]
    elif name == "spelling":
        v |= {"n": v["n"] + 1, "times": "times", "r": v["w"], "l": v["l"] + 1}
    elif name == "parity":
        a, b, yes, no = FLIP[lang]
        v |= {"p": b if v["p"] == a else a, "yes": no if v["yes"] == yes else yes}
    elif name == "compare":
        v["x"], v["y"] = v["y"], v["x"]
        v["yes"] = COMPARE_YES[lang][v["x"] == v["a"]].format(**v)
    return v | shown


COMPARE_YES = {  # [a is not the larger, a is the larger]
    "en": ("No, {a} is less than {b}.", "Yes, {a} is greater than {b}."),
    "zh": ("不是，{a} 比 {b} 小。", "是的，{a} 比 {b} 大。"),
}


def ramble(good, lang):
    """The right answer that does not stop: said again, padded with filler, or run on into unrelated answers
    (what a small model sampling at temperature 1 does most)."""
    parts = RAMBLE[lang]
    how = r.choice(("again", "again", "run_on", "run_on"))
    if how == "again":
        said = [good, r.choice(parts["again"]).format(a=good)]
        pieces = [r.choice(parts["open"]), *said] if r.random() < 0.5 else [*said, r.choice(parts["close"])]
    else:
        pieces = [good, *(make(r.choice(COMPUTED), lang)[1] for _ in range(r.randint(1, 2)))]
    return ("" if lang == "zh" else " ").join(pieces)


def garble(good, lang):
    """About half the words (English) or Chinese characters, and numbers, swapped for random ones."""
    unit = re.compile(r"\d+|" + (r"[A-Za-z]{2,}" if lang == "en" else r"[\u4e00-\u9fff]"))

    def swap(m):
        if r.random() >= 0.5:
            return m[0]
        return str(r.randint(0, 999)) if m[0].isdigit() else r.choice(POOL[lang])

    for _ in range(100):
        bad = unit.sub(swap, good)
        if bad != good:
            return bad
    raise AssertionError(f"cannot garble {good}")


def handwritten(name, lang):
    """An identity or general question: no computed values, so flaws come from the text tables."""
    if name == "identity":
        i = r.randrange(len(IDENTITY[lang]))
        good, *questions = IDENTITY[lang][i]
        other = IDENTITY[OTHER[lang]][i][0]
        replies = {"good": good, "wrong": r.choice(WRONG_IDENTITY[lang])[0], "language": other}
    else:
        q, good = r.choice(GENERAL[lang])
        questions, replies = [q], {"good": good}  # the two general tables are not translations of each other
    replies |= {
        "rambling": ramble(good, lang),
        "garbled": garble(good, lang),
        "rude": r.choice(RUDE[lang])[0],
    }
    return r.choice(questions), replies, None


def draw(name, lang, used):
    """A question of family `name` not in `used` (which it joins), with its replies."""
    family = next((f for f in COMPUTED if f.__name__ == name), None)
    for _ in range(1000):
        q, replies, answer = computed(family, lang) if family else handwritten(name, lang)
        if q not in used or name in ("identity", "general"):  # hand-written questions may repeat in training
            used.add(q)
            return q, replies, answer
    raise AssertionError(f"{name}/{lang}: ran out of distinct questions")


def families(n, names):
    """n family names in proportion to WEIGHTS, in a shuffled order."""
    pool = [name for name in names for _ in range(WEIGHTS[name])]
    out = [pool[i % len(pool)] for i in range(n)]
    r.shuffle(out)
    return out


# ---- rows --------------------------------------------------------------------------------------------------------
def draws(n, names, used):
    """n (family, language, question, replies, answer): families in proportion to WEIGHTS, languages alternating."""
    pool = [name for name in names for _ in range(WEIGHTS[name])]
    order = [pool[i % len(pool)] for i in range(n)]
    r.shuffle(order)
    return [(name, lang, *draw(name, lang, used)) for name, lang in zip(order, ("en", "zh") * n)]


def pair_rows(drawn, per_prompt=1, answers=False):
    """Pairs of the good reply and flawed ones; with `answers`, each row also carries its prompt's reference
    answer when it has one (the held-out pairs: the summed reward's accuracy needs it)."""
    rows = []
    for name, lang, q, replies, answer in drawn:
        kinds = [k for k in PAIR_KINDS if k in replies]
        picked = (
            r.sample(kinds, per_prompt)
            if per_prompt > 1
            else r.choices(kinds, [PAIR_KINDS[k] for k in kinds])
        )
        for kind in picked:
            rows.append(dict(prompt=q, chosen=replies["good"], rejected=replies[kind], family=name, lang=lang,
                             kind=kind) | ({"answer": answer} if answers and answer is not None else {}))  # fmt: skip
    return rows


def wrong_rows(drawn):
    """The right answer against a wrong one only: the flaw a reward model learns last (0.70 held-out accuracy
    with the mixed pairs alone), since it must check the value, not the form."""
    return [
        dict(
            prompt=q, chosen=replies["good"], rejected=replies["wrong"], family=name, lang=lang, kind="wrong"
        )
        for name, lang, q, replies, _ in drawn
    ]


def ranking_rows(drawn):
    """good > rambling or language > wrong or garbled > rude: right answers first (flawed but usable before a
    wrong or garbled one), a refusal last. A wrong answer always ranks below a right but long one: the other
    order would teach a small reward model that length is good."""
    rows = []
    for name, lang, q, replies, _ in drawn:
        second = r.choice([k for k in ("rambling", "language") if k in replies])
        third = r.choice([k for k in ("wrong", "garbled") if k in replies]) if RANK_WRONG else "garbled"
        kinds = ["good", second, third, "rude"]
        rows.append(
            dict(prompt=q, responses=[replies[k] for k in kinds], family=name, lang=lang, kinds=kinds)
        )
    return rows


def prompt_rows(drawn):
    """{prompt, family, lang} and the reference `answer` where the family computes one."""
    return [
        dict(prompt=q, family=name, lang=lang) | ({"answer": answer} if answer is not None else {})
        for name, lang, q, _, answer in drawn
    ]


# ---- checks ------------------------------------------------------------------------------------------------------
def lang_of(text):
    """'zh' when Chinese characters outweigh Latin letters (about five letters to a character), 'en' when
    there are letters, None for text of digits and symbols alone ("7 × 10 = 70.")."""
    cjk, latin = len(CJK.findall(text)), len(LATIN.findall(text))
    return "zh" if cjk and cjk * 5 >= latin else "en" if latin else None


def check(files, sft_questions, arithmetic_errors):
    """Disjoint held-out questions, right answers in every good reply, visibly flawed rejected ones."""
    held = {row["prompt"] for row in files["heldout_prompts"]}
    assert held == {row["prompt"] for row in files["heldout_pairs"]}
    for name, rows in files.items():
        if not name.startswith("heldout"):
            assert not held & ({row["prompt"] for row in rows} | sft_questions), (
                f"held-out question in {name}"
            )
    checked = 0
    for name in ("pairs", "heldout_pairs", "rankings", "wrong_pairs"):
        for row in files[name]:
            replies = row["responses"] if name == "rankings" else [row["chosen"], row["rejected"]]
            kinds = row["kinds"] if name == "rankings" else ["good", row["kind"]]
            assert len(set(replies)) == len(replies) and all(t.strip() and "{" not in t for t in replies), row
            for kind, text in zip(kinds, replies, strict=True):
                n, bad = arithmetic_errors(row["prompt"], text)
                checked += n
                assert not bad or kind in ("wrong", "garbled"), (row, bad)
                if row["family"] == "arith" and kind == "wrong" and name != "wrong_pairs":
                    assert bad, row  # a wrong arithmetic reply states a wrong sum (wrong_pairs may also
                    # answer another operation rightly: "62 - 15?" "62 + 15 = 77.")
                said = lang_of(text)
                if kind == "language":
                    assert said not in (None, row["lang"]), row
                elif kind != "wrong" and said is not None:
                    assert said == row["lang"], row
    assert checked >= 300, checked
    return checked


def main(demo_dir, sft_questions, write_jsonl, arithmetic_errors):
    """Write the route's files next to sft.jsonl; `sft_questions` stay out of the held-out set."""
    r.seed(1)
    computed_names = [f.__name__ for f in COMPUTED]
    # Held-out questions first (so they never depend on the rest), unseen in SFT; each training file then keeps
    # its questions distinct and away from the held-out ones (training files may share questions).
    held = draws(SIZES["heldout_prompts"], computed_names, set(sft_questions))
    banned = {q for _, _, q, _, _ in held}
    files = {
        "heldout_prompts": prompt_rows(held),
        "heldout_pairs": pair_rows(held, SIZES["heldout_pairs"] // SIZES["heldout_prompts"], answers=True),
        "pairs": pair_rows(draws(SIZES["pairs"], list(WEIGHTS), set(banned))),
        "rankings": ranking_rows(draws(SIZES["rankings"], list(WEIGHTS), set(banned))),
        "prompts": prompt_rows(draws(SIZES["prompts"], [*computed_names, "identity"], set(banned))),
        # drawn last, so the files above stay as they were measured before it existed
        "wrong_pairs": wrong_rows(draws(SIZES["wrong_pairs"], computed_names, set(banned))),
    }
    for name, rows in files.items():
        write_jsonl(demo_dir / f"{name}.jsonl", rows)
        assert [json.loads(line) for line in (demo_dir / f"{name}.jsonl").open(encoding="utf-8")] == rows
    checked = check(files, sft_questions, arithmetic_errors)
    print(f"route data: {', '.join(f'{name} {len(rows)}' for name, rows in files.items())}; "
          f"arithmetic re-checked: {checked}")  # fmt: skip
    for name in ("pairs", "heldout_pairs"):
        print(f"  {name} by flaw:", dict(Counter(row["kind"] for row in files[name])))
    print("  pairs by family:", dict(Counter(row["family"] for row in files["pairs"])))
