"""Reward model: hand-derived losses, a learnable toy preference, reload, exact resume, rankings, `pixiu score`."""

import json
import math
import random
from pathlib import Path

import pytest
import torch
from interrupt import killed_after
from safetensors.torch import load_file

from pixiu import config, losses
from pixiu.batch import collate_shared
from pixiu.chat import Conversation
from pixiu.chat.templates import get_template
from pixiu.config import ModelConfig
from pixiu.data import load_records
from pixiu.data.records import PreferencePair
from pixiu.eval.reward import score_cli
from pixiu.model import heads, reward
from pixiu.train import rm

WORDS = ["the", "quick", "brown", "fox", "lazy", "dog", "hello", "world", "yes", "no", "maybe", "answer"]
PROMPTS = ["hi", "what is two plus two", "help me please", "is it good", "你好", "tell me about the dog"]
SYSTEM = {"role": "system", "content": "be kind"}  # short: the template's default system turn is long


def sp(x: float) -> float:
    """softplus(-x) = -log σ(x) = log(1 + e^-x)."""
    return math.log1p(math.exp(-x))


def test_rm_pairwise_hand_derived():
    """Pair 1: r = (1, 0), m = 0 -> log(1 + e^-1) = 0.31326. Pair 2: r = (1, 0), m = 1 -> log(1 + e^0) = log 2
    = 0.69315. With margins (0, 1) the sum is 1.00641; with m = 0 for both, 2 * 0.31326 = 0.62652."""
    c, r = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    assert losses.rm_pairwise(c[:1], r[:1]).item() == pytest.approx(0.31326, abs=1e-5)
    assert losses.rm_pairwise(c, r, torch.tensor([0.0, 1.0])).item() == pytest.approx(1.00641, abs=1e-5)
    assert losses.rm_pairwise(c, r).item() == pytest.approx(0.62652, abs=1e-5)
    assert losses.get_loss("rm_pairwise") is losses.rm_pairwise


def test_rm_kwise_hand_derived():
    """Group A, K=3, scores (2, 1, 0) best first: pairs (1,2) d=1, (1,3) d=2, (2,3) d=1 ->
    mean = (2 log(1+e^-1) + log(1+e^-2)) / 3 = (0.626523 + 0.126928) / 3 = 0.251150.
    Group B, K=2, scores (0, 1) (ranked wrong): log(1 + e^1) = 1.313262. Sum over groups = 1.564412.
    With margin 1, group B becomes log(1 + e^2) = 2.126928."""
    scores = torch.tensor([2.0, 1.0, 0.0, 0.0, 1.0])
    assert losses.rm_kwise(scores[:3], [3]).item() == pytest.approx(0.251150, abs=1e-6)
    assert losses.rm_kwise(scores, [3, 2]).item() == pytest.approx(1.564412, abs=1e-6)
    assert losses.rm_kwise(scores[3:], [2], margin=1.0).item() == pytest.approx(2.126928, abs=1e-6)
    assert losses.rm_kwise(scores[:3], [3]).item() == pytest.approx(
        (2 * sp(1) + sp(2)) / 3, abs=1e-7
    )  # the same number from the formula
    pairs = torch.tensor([0.3, -1.2, 2.0, 0.5])  # two pairs: k-wise with K=2 is the pairwise loss
    assert losses.rm_kwise(pairs, [2, 2]).item() == pytest.approx(
        losses.rm_pairwise(pairs[0::2], pairs[1::2]).item(), abs=1e-6
    )
    with pytest.raises(ValueError, match="sizes add up to 4"):
        losses.rm_kwise(pairs[:3], [2, 2])
    # One margin per group: (0, 1) -> group A as above, group B with margin 1: 0.251150 + 2.126928 = 2.378078.
    assert losses.rm_kwise(scores, [3, 2], torch.tensor([0.0, 1.0])).item() == pytest.approx(
        2.378078, abs=1e-6
    )


def test_pair_margins_reach_the_loss(tmp_path, tiny_model_dir):
    """A `margin` column of 1 on every pair trains exactly like rm.margin=1 without the column; with
    rm.pair_margins=false the column is ignored (the same run as no margin at all). Training losses only: the
    held-out pairs carry no column."""
    plain = write_pairs(tmp_path / "plain.jsonl", 32, seed=1)
    rows = [json.loads(line) | {"margin": 1} for line in plain.read_text().splitlines()]
    marked = tmp_path / "marked.jsonl"
    marked.write_text("".join(json.dumps(r) + "\n" for r in rows))
    short = ("--train.max_steps=2", "--train.eval_every=2")

    def losses_of(run, data, *extra):
        rm.run(make_cfg(tmp_path, tiny_model_dir, *short, *extra, run=run, data=data))
        return [r["loss"] for r in metrics(tmp_path / run) if "loss" in r]

    column, none = losses_of("column", marked), losses_of("none", plain)
    assert column == losses_of("global", plain, "--rm.margin=1") and column != none
    assert losses_of("off", marked, "--rm.pair_margins=false") == none


# ---------------------------------------------------------------- a learnable toy preference


def toy_reply(rng: random.Random, good: bool) -> str:
    """Random words; a good reply also says 'thanks' somewhere (the preference the model must find)."""
    words = rng.sample(WORDS, rng.randint(3, 6))
    if good:
        words.insert(rng.randint(0, len(words)), "thanks")
    return " ".join(words)


def prompt(rng: random.Random) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": rng.choice(PROMPTS)}]


def write_pairs(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = [
        {"prompt": prompt(rng), "chosen": toy_reply(rng, True), "rejected": toy_reply(rng, False)}
        for _ in range(n)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def write_rankings(path: Path, n: int, seed: int) -> Path:
    """K=3: two 'thanks' beat one, one beats none."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        base = [toy_reply(rng, False) for _ in range(3)]
        rows.append(
            {
                "prompt": rng.choice(PROMPTS),
                "responses": [base[0] + " thanks thanks", base[1] + " thanks", base[2]],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


NO_EVAL = ('--data.eval_path=""', "--data.eval_size=0")


def make_cfg(tmp_path, model_dir, *extra, run="run", data=None):
    train = data or write_pairs(tmp_path / "train.jsonl", 96, seed=1)
    held = tmp_path / "eval.jsonl"
    if not held.exists():
        write_pairs(held, 32, seed=2)
    return config.load(
        None,
        [
            f"--model.name_or_path={model_dir}",
            "--model.dtype=fp32",
            f"--data.path={train}",
            f"--data.eval_path={held}",
            "--data.max_len=128",
            f"--train.output_dir={tmp_path / run}",
            "--train.lr=5e-3",
            "--train.batch_size=8",
            "--train.max_steps=12",
            "--train.warmup_ratio=0",
            "--train.eval_every=6",
            *extra,
        ],
    )


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("rm-lora")
    cfg = make_cfg(tmp, tiny_model_dir, "--lora.r=8")
    return cfg, rm.run(cfg), tmp


def test_lora_rm_learns_preference_and_reloads_with_identical_scores(lora_run, tiny_model_dir):
    cfg, final, tmp = lora_run
    rows = metrics(tmp / "run")
    first, last = rows[0], rows[-1]
    assert first["step"] == 0 and last["step"] == 12
    assert first["eval_accuracy"] <= 0.7 and last["eval_accuracy"] >= 0.9  # held-out pairs, 32 of them
    assert last["eval_margin"] > first["eval_margin"] + 0.5 and last["eval_loss"] < first["eval_loss"]
    assert (final / "adapter_model.safetensors").exists() and (final / "score_head.safetensors").exists()
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["data"]["train"]["groups"] == 96 and summary["last"]["step"] == 12
    # reload by path, as PPO and evaluation will, and score the held-out pairs again
    loaded, model = heads.load_scalar(ModelConfig(str(final), dtype="fp32"))
    assert not any(p.requires_grad for p in model.parameters())
    head0 = heads.load_scalar(ModelConfig(str(tiny_model_dir), dtype="fp32"))[1].head
    assert not torch.equal(model.head.weight, head0.weight) or not torch.equal(model.head.bias, head0.bias)
    records, _ = load_records(config.DatasetSpec(cfg.data.eval_path))
    convs = [r.prompt.add("assistant", t) for r in records for t in reward.replies(r)]
    scores = reward.score_replies(model, loaded.tokenizer, loaded.template, convs, batch_size=5)
    stats = reward.ranking_stats(scores, [2] * len(records))
    assert stats["correct"] / stats["pairs"] == pytest.approx(last["eval_accuracy"], abs=1e-5)
    assert stats["margin"] / stats["pairs"] == pytest.approx(last["eval_margin"], abs=1e-4)
    # batching, padding and sharing the prompt row do not change a score
    alone = reward.score_replies(model, loaded.tokenizer, loaded.template, convs[:3], batch_size=1)
    assert alone == pytest.approx(scores[:3], abs=1e-5)
    one_by_one = [reward.score_replies(model, loaded.tokenizer, loaded.template, [c])[0] for c in convs[:6]]
    assert one_by_one == pytest.approx(scores[:6], abs=1e-5)


def test_score_replies_runs_a_shared_prompt_once(lora_run, monkeypatch):
    """The replies of a pair go in one row with their prompt once; a lone reply keeps a plain row."""
    cfg, final, _ = lora_run
    loaded, model = heads.load_scalar(ModelConfig(str(final), dtype="fp32"))
    records, _ = load_records(config.DatasetSpec(cfg.data.eval_path))
    convs = [r.prompt.add("assistant", t) for r in records[:4] for t in reward.replies(r)]
    seen = []
    monkeypatch.setattr(
        reward, "collate_shared", lambda groups, pad: seen.append(groups) or collate_shared(groups, pad)
    )
    reward.score_replies(model, loaded.tokenizer, loaded.template, convs, batch_size=8)
    assert [len(g) for g in seen[0]] == [2, 2, 2, 2]
    seen.clear()
    reward.score_replies(model, loaded.tokenizer, loaded.template, convs[::2], batch_size=8)
    assert seen == []


def test_score_cli_writes_scores_and_accuracy(lora_run, capsys):
    cfg, final, tmp = lora_run
    out = tmp / "scores.jsonl"
    score_cli([str(final), "--data", cfg.data.eval_path, "--out", str(out), "--batch_size", "4"])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 32 and all(len(x["scores"]) == 2 for x in lines)
    assert lines[0]["source"].endswith("eval.jsonl:1")
    accuracy = sum(x["scores"][0] > x["scores"][1] for x in lines) / 32
    assert accuracy == pytest.approx(metrics(tmp / "run")[-1]["eval_accuracy"])
    printed = capsys.readouterr().out
    assert f"pairwise accuracy {accuracy:.4f} over 32 pairs" in printed
    # conversations ending in a reply are scored one per row
    conv = tmp / "convs.jsonl"
    conv.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "thanks"}]}
        )
        + "\n"
    )
    score_cli([str(final), "--data", str(conv), "--out", str(tmp / "one.jsonl")])
    (row,) = [json.loads(line) for line in (tmp / "one.jsonl").read_text().splitlines()]
    assert len(row["scores"]) == 1 and math.isfinite(row["scores"][0])


def test_full_rm_changes_body_weights(tmp_path, tiny_model_dir):
    final = rm.run(make_cfg(tmp_path, tiny_model_dir, "--train.max_steps=3", *NO_EVAL))
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(final / "model.safetensors")
    changed = [n for n in before if n in after and not torch.equal(before[n], after[n])]
    assert any("layers.0.self_attn" in n for n in changed)
    loaded, model = heads.load_scalar(ModelConfig(str(final), dtype="fp32"))
    assert torch.equal(model.head.weight, load_file(final / "score_head.safetensors")["weight"].float())


def test_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    """Interrupt right after the step-3 checkpoint, resume: adapter, head and loss curve equal the uninterrupted
    run's. The head is a trainable parameter of the model the loop checkpoints, so it comes back too."""
    flags = ("--lora.r=4", "--lora.dropout=0.1", "--train.max_steps=6", *NO_EVAL)
    full = rm.run(make_cfg(tmp_path, tiny_model_dir, *flags, run="a"))
    cut = make_cfg(tmp_path, tiny_model_dir, *flags, "--train.save_every=3", run="b")
    with killed_after(3):
        rm.run(cut)
    saved = load_file(tmp_path / "b" / "checkpoints" / "step-3" / "trainable.safetensors")
    assert {"head.weight", "head.bias"} <= set(saved)
    resumed = rm.run(config.load(tmp_path / "b" / "config.yaml", ["--train.resume"]))
    for name in ("adapter_model.safetensors", "score_head.safetensors"):
        a, b = load_file(full / name), load_file(resumed / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [r["loss"] for r in metrics(tmp_path / "a") if "loss" in r]
    lb = [r["loss"] for r in metrics(tmp_path / "b") if "loss" in r]
    assert la == lb and len(la) == 6


def test_rankings_train_all_replies_in_one_forward(tmp_path, tiny_model_dir, monkeypatch):
    data = write_rankings(tmp_path / "rank.jsonl", 40, seed=3)
    cfg = make_cfg(
        tmp_path, tiny_model_dir, "--lora.r=8", "--train.batch_size=4", "--train.max_steps=6",
        *NO_EVAL, data=data,
    )  # fmt: skip
    rows_per_forward = []
    real = heads.ScalarLM.forward

    def counting(self, batch):
        rows_per_forward.append((len(batch.input_ids), len(batch.shared.ends)))
        return real(self, batch)

    monkeypatch.setattr(heads.ScalarLM, "forward", counting)
    rm.run(cfg)
    assert rows_per_forward == [(4, 12)] * 6  # one forward per step: 4 rankings (a row each) x K=3 replies
    losses_ = [r["loss"] for r in metrics(tmp_path / "run")]
    assert losses_[-1] < losses_[0]


def test_prepare_counts_truncated_skipped_and_tied_groups(tokenizer):
    template = get_template("default", tokenizer)
    prompt = Conversation.from_openai([{"role": "user", "content": "hi"}])
    long_a, long_b = "hello " * 40 + "yes", "hello " * 40 + "no"  # differ only after the cut
    limit = len(template.render(prompt.add("assistant", "yes no")).input_ids)
    records = [
        PreferencePair(prompt, "yes", "no"),
        PreferencePair(prompt, long_a, "no"),
        PreferencePair(prompt, long_a, long_b),
    ]
    groups, margins, report = rm.prepare(records, template, limit, "truncate")
    assert (report.groups, report.truncated, report.tied, report.skipped) == (2, 2, 1, 0)
    assert all(len(s.input_ids) <= limit for g in groups for s in g) and margins == [0.0, 0.0]
    groups, _, report = rm.prepare(records, template, limit, "skip")
    assert (report.groups, report.truncated, report.tied, report.skipped) == (1, 0, 0, 2)
    assert len(groups[0]) == 2  # a pair is kept or dropped whole


@pytest.mark.slow
def test_smollm2_lora_rm_on_hh_rlhf(tmp_path):
    """A few LoRA steps on real preference data: the loss moves, the checkpoint reloads with the same scores."""
    hh = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_rlhf"
    files = sorted(hh.glob("*.json")) if hh.exists() else []
    if not files:
        pytest.skip("shared hh_rlhf data absent")
    pairs = json.loads(files[0].read_text())
    (tmp_path / "train.json").write_text(json.dumps(pairs[:48]))
    (tmp_path / "eval.json").write_text(json.dumps(pairs[-16:]))
    cfg = config.load(
        None,
        [
            "--model.name_or_path=smollm2-135m", "--model.dtype=fp32", "--lora.r=16", "--lora.dropout=0",
            f"--data.path={tmp_path / 'train.json'}", f"--data.eval_path={tmp_path / 'eval.json'}",
            "--data.max_len=128", "--data.overflow=skip", f"--train.output_dir={tmp_path / 'run'}",
            "--train.lr=1e-4", "--train.batch_size=4", "--train.max_steps=6", "--train.warmup_ratio=0",
        ],
    )  # fmt: skip
    final = rm.run(cfg)
    rows = metrics(tmp_path / "run")
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 6 and rows[-1]["eval_loss"] != rows[0]["eval_loss"]
    loaded, model = heads.load_scalar(ModelConfig(str(final), dtype="fp32"))
    records = [r for r in load_records(config.DatasetSpec(cfg.data.eval_path))[0]]
    groups, _, _ = rm.prepare(records, loaded.template, 128, "skip")
    kept = [
        r
        for r in records
        if all(len(s.input_ids) <= 128 for s in rm.render_group(loaded.template, r.prompt, reward.replies(r)))
    ]
    assert len(kept) == len(groups)
    convs = [r.prompt.add("assistant", t) for r in kept for t in reward.replies(r)]
    stats = reward.ranking_stats(
        reward.score_replies(model, loaded.tokenizer, loaded.template, convs), [2] * len(kept)
    )
    assert stats["margin"] / stats["pairs"] == pytest.approx(rows[-1]["eval_margin"], abs=1e-3)
