"""A self-instruct teacher for this machine: text that teaches a small model Alpaca's task-list format.

SmolLM2-135M, the only model here, does not follow Alpaca's numbered list (docs/benchmarks.md: 2 items kept of
928 asked). Alpaca's own 52K items are what text-davinci-003 wrote for exactly that prompt, so continued
pretraining on "prompt + the list it answered" teaches the format, as Alpaca distilled davinci into LLaMA:

    python scripts/si_teacher_corpus.py --out runs/si-teacher/corpus.jsonl
    pixiu train pt --data.path=runs/si-teacher/corpus.jsonl ...   (see the command in docs/benchmarks.md)

Each line is one {"text"}: the exact request `pixiu data generate --method self-instruct` sends (header and 3
seed tasks, `encode_prompt`), continued with 16 items and the "###\\n20. Instruction:" the stop strings cut.
English items come from alpaca_data.json, Chinese ones from alpaca_zh with BELLE's Chinese header and seeds.
Items are drawn from the first --pool rows only, so a generated item can be checked against the rows the
teacher saw (`--pool` rows, written to --out's folder as pool_en.json / pool_zh.json).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from pixiu.teach.methods.self_instruct import HEADER_EN, HEADER_ZH, encode_prompt, load_seeds

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = {  # lang: (items, seeds, header, longest output in words (en) or characters (zh))
    "en": ("alpaca/alpaca_data.json", "alpaca/seed_tasks.jsonl", HEADER_EN, 30),
    "zh": ("alpaca_zh/alpaca_data_zh_0-9407_translated.json", "belle/zh_seed_tasks.json", HEADER_ZH, 40),
}


def short(row: dict, lang: str, limit: int) -> bool:
    """Short items keep each document near 1,000-1,500 tokens (the list is 19 items)."""
    size = len(row["output"]) if lang == "zh" else len(row["output"].split())
    return 0 < size <= limit and len(row["input"]) <= 2 * limit


def documents(lang: str, n: int, pool: int, seed: int) -> tuple[list[str], list[dict]]:
    items_path, seeds_path, header, limit = SOURCES[lang]
    rows = [
        r for r in json.loads((DATA / items_path).read_text(encoding="utf-8"))[:pool] if short(r, lang, limit)
    ]
    seeds, rng = load_seeds(str(DATA / seeds_path)), random.Random(seed)
    texts = [encode_prompt(rng.sample(seeds, 3) + rng.sample(rows, 16), header) for _ in range(n)]
    return texts, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/si-teacher/corpus.jsonl")
    p.add_argument("--docs", type=int, default=48, help="documents per language")
    p.add_argument("--pool", type=int, default=4000, help="the first N rows of each item file are drawn from")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for lang in SOURCES:
        texts, rows = documents(lang, a.docs, a.pool, a.seed)
        (out.parent / f"pool_{lang}.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        lines += [json.dumps({"text": t}, ensure_ascii=False) for t in texts]
        print(f"{lang}: {len(texts)} documents from {len(rows)} short items of the first {a.pool} rows")
    random.Random(a.seed).shuffle(lines)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
