"""SmolLM2's tokenizer extended for Chinese (issue 18.1): tokens per character, held-out bits per character after
the same short continued pretraining with and without the extension, and generation speed in characters/s.

Data: ../shared/data/alpaca_zh (9,251 rows). The new tokens are learned on rows 0..--train-rows-1; rows from
--train-rows on are held out: tokens per character over all of them, bits per character over the first
--eval-rows (each text after one <|im_end|>, so every token of the text is predicted; nats summed over the
text's tokens / its characters / ln 2: comparable across tokenizers, unlike per-token loss).
Continued pretraining (`pixiu train pt`): both arms the same rows (the first --pt-rows training rows), steps,
batch rows, max_len, LoRA rank and lr, with lora.modules_to_save=embed_tokens,lm_head so that the embeddings
(the new rows among them) train in full. The extended arm packs ~2.6x more characters into its rows.
Generation: greedy replies (chat template, HF generate with min_new_tokens = max_new_tokens = --gen-tokens, so
early stops do not count as speed) to --gen-prompts held-out instructions: reply characters / wall seconds,
before (the base) and after (the extended model after PT, merged).

    python bench/vocab.py                       # ~30 min on 2 cores
    python bench/vocab.py --steps 2 --eval-rows 4 --gen-prompts 1 --out /tmp/bv   # smoke
    python bench/vocab.py --only-gen            # the generation part again, on the models of an earlier run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZH = ROOT.parent / "shared" / "data" / "alpaca_zh" / "alpaca_data_zh_0-9407_translated.json"


def cjk(text: str) -> int:
    return sum("\u4e00" <= c <= "\u9fff" for c in text)


def tokens_per_char(tok, texts: list[str]) -> dict:
    n = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return {
        "tokens": n,
        "per_char": round(n / sum(map(len, texts)), 4),
        "per_cjk": round(n / sum(map(cjk, texts)), 4),
    }


def bits_per_char(path: str, texts: list[str], max_len: int = 1024) -> dict:
    """Summed next-token NLL of each text (after one <|im_end|>) over its characters, in bits."""
    import torch

    from pixiu.config import ModelConfig
    from pixiu.model import io

    loaded = io.load(ModelConfig(path, dtype="fp32", device="cpu"))
    tok, nats, tokens = loaded.tokenizer, 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = [tok.eos_token_id, *tok(text, add_special_tokens=False)["input_ids"]][:max_len]
            x = torch.tensor([ids])
            logps = torch.log_softmax(loaded.model(x).logits[0, :-1].float(), -1)
            nats -= logps.gather(-1, x[0, 1:, None]).sum().item()
            tokens += len(ids) - 1
    chars = sum(len(t) for t in texts)
    return {
        "bpc": round(nats / chars / math.log(2), 4),
        "nll_per_token": round(nats / tokens, 4),
        "chars": chars,
    }


def gen_speed(path: str, prompts: list[str], max_new: int) -> dict:
    """Greedy decoding of exactly `max_new` tokens per prompt (HF generate with min_new_tokens, so a model that
    stops early is not faster): tokens/s, and reply characters/s."""
    import torch

    from pixiu.chat.messages import Conversation, Message
    from pixiu.config import ModelConfig
    from pixiu.model import io

    loaded = io.load(ModelConfig(path, dtype="fp32", device="cpu"))
    model = loaded.model.merge_and_unload() if hasattr(loaded.model, "peft_config") else loaded.model
    ids = [loaded.template.prompt_ids(Conversation([Message("user", p)])) for p in prompts]
    kw = {"do_sample": False, "pad_token_id": loaded.tokenizer.pad_token_id}
    with torch.no_grad():
        model.generate(torch.tensor([ids[0]]), max_new_tokens=2, **kw)  # warm-up
        t0, replies = time.perf_counter(), []
        for x in ids:
            out = model.generate(torch.tensor([x]), min_new_tokens=max_new, max_new_tokens=max_new, **kw)
            replies.append(loaded.tokenizer.decode(out[0, len(x) :], skip_special_tokens=True))
    wall = time.perf_counter() - t0
    chars = sum(map(len, replies))
    return {"chars_per_s": round(chars / wall, 2), "tokens_per_s": round(max_new * len(ids) / wall, 2),
            "chars": chars, "tokens": max_new * len(ids), "seconds": round(wall, 2), "first_reply": replies[0][:60]}  # fmt: skip


def pt(model: str, out: Path, train: Path, a) -> tuple[Path, float]:
    """`pixiu train pt` in a subprocess -> (out/final, seconds)."""
    cmd = [sys.executable, "-m", "pixiu.cli", "train", "pt", f"--model.name_or_path={model}", "--model.dtype=fp32",
           f"--data.path={train}", "--data.eval_size=0", f"--data.max_len={a.max_len}",
           f"--train.output_dir={out}", f"--train.max_steps={a.steps}", f"--train.batch_size={a.batch}",
           f"--train.lr={a.lr}", "--train.warmup_ratio=0.1", "--lora.r=16", "--lora.alpha=32",
           "--lora.modules_to_save=embed_tokens,lm_head", "--train.save_every=0"]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out / "final", time.perf_counter() - t0


def texts_of(rows: list[dict]) -> list[str]:
    return ["\n".join(v for v in r.values() if isinstance(v, str) and v.strip()) for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--add", type=int, default=8000)
    p.add_argument("--train-rows", type=int, default=8000)
    p.add_argument("--pt-rows", type=int, default=2000)
    p.add_argument("--eval-rows", type=int, default=100)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gen-prompts", type=int, default=4)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-vocab"))
    p.add_argument(
        "--only-gen", action="store_true", help="rerun the generation part on an earlier run's models"
    )
    a = p.parse_args()
    os.environ["PIXIU_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch

    torch.set_num_threads(a.threads)
    from pixiu.data import vocab as cli
    from pixiu.model import io

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = json.loads(ZH.read_text())
    train, held = texts_of(rows[: a.train_rows]), texts_of(rows[a.train_rows :])
    base, ext = io.resolve(a.model), out / "ext"
    if a.only_gen:
        res = json.loads((out / "results.json").read_text())
        return finish(res, out, base, [r["instruction"] for r in rows[a.train_rows :][: a.gen_prompts]], a)
    t0 = time.perf_counter()
    cli.main(
        [
            a.model,
            "--corpus",
            str(ZH),
            "--max_records",
            str(a.train_rows),
            "--add",
            str(a.add),
            "--out",
            str(ext),
        ]
    )
    res = {"args": vars(a), "extend_seconds": round(time.perf_counter() - t0, 1)}
    from transformers import AutoTokenizer

    res["tokens_per_char"] = {k: tokens_per_char(AutoTokenizer.from_pretrained(d), held) for k, d in
                              (("base", base), ("extended", ext))}  # fmt: skip
    print(json.dumps(res, ensure_ascii=False), flush=True)
    data = out / "pt_train.jsonl"
    data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in train[: a.pt_rows]))
    evals = held[: a.eval_rows]
    for arm, model in (("base", base), ("extended", str(ext))):
        res[f"bpc_{arm}_before"] = bits_per_char(model, evals)
        final, secs = pt(model, out / f"pt-{arm}", data, a)
        res[f"pt_{arm}_seconds"] = round(secs, 1)
        res[f"bpc_{arm}_after"] = bits_per_char(str(final), evals)
        print(json.dumps(res, ensure_ascii=False), flush=True)
    finish(res, out, base, [r["instruction"] for r in rows[a.train_rows :][: a.gen_prompts]], a)


def finish(res: dict, out: Path, base: str, prompts: list[str], a) -> None:
    """Generation speed of the base and of the extended model after PT; results.json."""
    res["gen_base"] = gen_speed(base, prompts, a.gen_tokens)
    res["gen_extended_after_pt"] = gen_speed(str(out / "pt-extended" / "final"), prompts, a.gen_tokens)
    res["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    (out / "results.json").write_text(json.dumps(res, indent=2, ensure_ascii=False))
    print(json.dumps(res, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
