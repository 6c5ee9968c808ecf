"""Write pixiu's bundled bilingual demo data into src/pixiu/data/demo/: the SFT chats and the route's data.

sft.jsonl: the quickstart LoRA-tunes SmolLM2-135M-Instruct on it for a short run on a CPU, so the data is small
(~800 chats), short and learnable: one persona ("Pixiu" / 貔貅) with a consistent, concise style, plus templated
families whose answers are computed (arithmetic, unit conversion, spelling, calendar, capitals, antonyms, word
translation, parity, comparison; see demo_families.py). Half the chats are English, half simplified Chinese;
some carry a system message that the reply obeys, some have two exchanges.
pairs.jsonl, rankings.jsonl, prompts.jsonl, heldout_prompts.jsonl, heldout_pairs.jsonl: the reward-model and
PPO data of `pixiu pipeline recipes/quickstart.yaml`, written by demo_prefs.py (see its docstring).
Everything here was written for pixiu; no existing dataset is copied.

Deterministic (random.Random, standard library only): `python3 scripts/make_demo_data.py`. Each SFT line is
{"messages": [{"role": ..., "content": ...}, ...]} in OpenAI format. The script re-reads every file, checks its
structure and every arithmetic answer, and prints counts per language and family.
"""

import json
import re
from collections import Counter
from pathlib import Path

import demo_prefs
from demo_families import (
    CAPITALS,
    CJK,
    TEMPLATES,
    antonym,
    arith,
    calendar,
    capital,
    compare,
    is_zh,
    make,
    parity,
    r,
    spelling,
    table,
    translate,
    units,
)  # fmt: skip
from demo_text import GENERAL_EN, GENERAL_ZH, IDENTITY_EN, IDENTITY_ZH, TWO_TURN

DEMO = Path(__file__).resolve().parents[1] / "src" / "pixiu" / "data" / "demo"
OUT = DEMO / "sft.jsonl"

TWO_TURN_FOLLOW = {
    "en": "Now multiply that by {k}. | {c} × {k} = {ck}.",
    "zh": "那再乘以 {k} 呢？ | {c} × {k} = {ck}。",
}
CONTINENT = {
    "en": "Which continent is that country in? | {c} is in {ct}.",
    "zh": "那这个国家在哪个洲？ | {c}位于{ct}。",
}
YES_NO = """
Is the Sun a star? | Yes.
Do spiders have six legs? | No.
Are whales mammals? | Yes.
Is 9 a prime number? | No.
Is water made of hydrogen and oxygen? | Yes.
太阳是恒星吗？ | 是。
鲸鱼是哺乳动物吗？ | 是。
企鹅生活在北极吗？ | 否。
月球是行星吗？ | 否。
7 是质数吗？ | 是。
蜘蛛是昆虫吗？ | 否。
"""

# ---- assembly ------------------------------------------------------------------------------------------------
items, seen = [], set()


def add(family, lang, *turns, system=None):
    """Record one chat (turns alternate user/assistant); returns False if the same chat is already in."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]
    key = json.dumps(msgs, ensure_ascii=False)
    if key in seen:
        return False
    seen.add(key)
    items.append((family, lang, msgs))
    return True


def sft_chats():
    """Fill `items` with the SFT chats, shuffled (the order of the draws from `r` fixes the file)."""
    for lang, text in (("en", IDENTITY_EN), ("zh", IDENTITY_ZH)):
        for answer, *questions in table(text):
            for q in questions:
                add("identity", lang, q, answer)
    for lang, text in (("en", GENERAL_EN), ("zh", GENERAL_ZH)):
        for row in table(text):
            add("general", lang, *row)
    for row in table(TWO_TURN):
        add("two_turn", "zh" if is_zh(row[0]) else "en", *row)

    sizes = {arith: 50, units: 30, spelling: 30, calendar: 25, capital: 25}  # chats per language
    sizes |= {antonym: 25, translate: 25, parity: 20, compare: 20}
    for family, n in sizes.items():
        for lang in ("en", "zh"):
            got = 0
            for _ in range(100 * n):  # draw until n distinct chats
                got += add(family.__name__, lang, *make(family, lang)[:2])
                if got == n:
                    break
            assert got == n, f"{family.__name__}/{lang}: only {got} distinct chats"

    # Two-turn chats whose follow-up refers to the first answer.
    for lang in ("en", "zh") * 5:
        q, a, v = make(arith, lang)
        k = r.randint(2, 5)
        follow = TWO_TURN_FOLLOW[lang].format(k=k, c=v["c"], ck=v["c"] * k)
        add("two_turn", lang, q, a, *follow.split(" | "))
    for lang, (ce, cz, ke, kz, cont_en, cont_zh) in zip(
        ("en", "zh") * 5, r.sample(CAPITALS, 10), strict=True
    ):
        c, k, ct = (ce, ke, cont_en) if lang == "en" else (cz, kz, cont_zh)
        first = [t.format(c=c, k=k) for t in TEMPLATES[f"capital.{lang}"][0]]
        add("two_turn", lang, *first, *CONTINENT[lang].format(c=c, ct=ct).split(" | "))

    # System messages that the reply obeys.
    ask = {"en": "What is the capital of {}?", "zh": "{}的首都是哪里？"}
    for _ in range(6):
        ce, cz, ke, kz, _, _ = r.choice(CAPITALS)
        brief = "Answer in one word." if " " not in ke else "Answer as briefly as possible."
        add("system", "en", ask["en"].format(ce), f"{ke}.", system=brief)
        add("system", "zh", ask["zh"].format(cz), f"{kz}。", system="只用一个词回答。")
        for lang, rule in (("en", "Answer with just the number."), ("zh", "只回答数字。")):
            q, _, v = make(arith, lang)
            add("system", lang, q, str(v["c"]), system=rule)
    for _ in range(5):
        ce, cz, ke, kz, _, _ = r.choice(CAPITALS)
        add("system", "en", ask["en"].format(ce), f"{cz}的首都是{kz}。", system="Reply in Chinese.")
        ce, cz, ke, kz, _, _ = r.choice(CAPITALS)
        in_english = f"The capital of {ce} is {ke}."
        add("system", "zh", ask["zh"].format(cz), in_english, system="请用英文回答。")
    for q, a in table(YES_NO):
        zh = is_zh(q)
        add(
            "system", "zh" if zh else "en", q, a, system="请只回答“是”或“否”。" if zh else "Answer yes or no."
        )
    r.shuffle(items)


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---- self-check: re-read the file, validate every chat, re-verify every arithmetic answer ------------------
OPS = {"+": int.__add__, "-": int.__sub__, "×": int.__mul__, "plus": int.__add__, "minus": int.__sub__,
       "times": int.__mul__, "加": int.__add__, "减": int.__sub__, "乘以": int.__mul__}  # fmt: skip


def arithmetic_errors(question, reply):
    """(checked, wrong): arithmetic statements in `reply` (and a bare-number answer to `question`) re-computed."""
    checked, wrong = 0, []
    for a, op, b, c in re.findall(r"(\d+) ([+×-]) (\d+) = (\d+)", reply):
        checked += 1
        if OPS[op](int(a), int(b)) != int(c):
            wrong.append(f"{a} {op} {b} = {c}")
    m = re.search(r"(\d+) (\+|-|×|plus|minus|times|加|减|乘以) (\d+)", question)
    if m and reply.isdigit():  # "Answer with just the number."
        checked += 1
        if OPS[m[2]](int(m[1]), int(m[3])) != int(reply):
            wrong.append(f"{question} -> {reply}")
    return checked, wrong


def check_sft():
    checked = 0
    lines = OUT.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(items) == len(seen)
    for line, (_, _, written) in zip(lines, items, strict=True):
        msgs = json.loads(line)["messages"]
        assert msgs == written, line
        turns = msgs[1:] if msgs[0]["role"] == "system" else msgs
        assert turns and [m["role"] for m in turns] == ["user", "assistant"] * (len(turns) // 2), line
        for user, reply in zip(turns[::2], turns[1::2], strict=True):
            text = reply["content"]
            assert text.strip() and user["content"].strip() and "{" not in text + user["content"], line
            assert len(text.split()) <= 60 and len(CJK.findall(text)) <= 100, f"reply too long: {text}"
            n, wrong = arithmetic_errors(user["content"], text)
            assert not wrong, (line, wrong)
            checked += n
    assert checked >= 120, checked
    return checked


def main():
    sft_chats()
    write_jsonl(OUT, ({"messages": msgs} for _, _, msgs in items))
    checked = check_sft()
    by_family = Counter((family, lang) for family, lang, _ in items)
    print(f"wrote {len(items)} chats to {OUT}; arithmetic answers re-checked: {checked}")
    print("by language:", dict(Counter(lang for _, lang, _ in items)))
    for family in sorted({f for f, _ in by_family}, key=lambda f: -by_family[f, "en"] - by_family[f, "zh"]):
        print(f"  {family:10s} en {by_family[family, 'en']:4d}  zh {by_family[family, 'zh']:4d}")
    questions = {m["content"] for _, _, msgs in items for m in msgs if m["role"] == "user"}
    demo_prefs.main(DEMO, questions, write_jsonl, arithmetic_errors)


if __name__ == "__main__":
    main()
