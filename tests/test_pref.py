"""Preference methods: hand-derived losses (DPO, cDPO, IPO, SimPO, ORPO, KTO, RRHF), the KTO data format, and the
dpo / kto / rrhf stages on the tiny model (rewards separate, checkpoints reload, resume is exact, the cached
reference log-probs are the base model's)."""

import json
import math
from dataclasses import replace

import pytest
import torch
from interrupt import killed_after
from safetensors.torch import load_file

from pixiu import config, losses
from pixiu.chat import Conversation
from pixiu.config import ModelConfig, PrefConfig
from pixiu.data import DataError, load_data, load_records
from pixiu.data.records import PreferencePair
from pixiu.model import TargetLM, io
from pixiu.train import pref

T = torch.tensor


def close(x, expected):
    return torch.allclose(x.float(), torch.as_tensor(expected, dtype=torch.float32), atol=1e-5)


# ---------------------------------------------------------------- losses, worked by hand


def test_dpo_and_conservative_dpo():
    """β = 0.5. Pair 1: chosen log-ratio -3 - (-5) = 2, rejected -6 - (-4) = -2, so βΔ = 0.5 * 4 = 2 and
    DPO = log(1 + e^-2) = 0.126928. Pair 2 is pair 1 swapped: βΔ = -2, loss log(1 + e^2) = 2.126928.
    cDPO with ε = 0.25 on pair 1: 0.75 log(1 + e^-2) + 0.25 log(1 + e^2) = 0.126928 + 0.25 * 2 = 0.626928
    (log(1 + e^2) = 2 + log(1 + e^-2)). Rewards β * log-ratio: (1, -1) and (-1, 1)."""
    out = losses.dpo(T([-3.0, -6.0]), T([-6.0, -3.0]), T([-5.0, -4.0]), T([-4.0, -5.0]), beta=0.5)
    assert close(out.loss, [0.126928, 2.126928])
    assert close(out.chosen_rewards, [1.0, -1.0]) and close(out.rejected_rewards, [-1.0, 1.0])
    cdpo = losses.dpo(T([-3.0]), T([-6.0]), T([-5.0]), T([-4.0]), beta=0.5, label_smoothing=0.25)
    assert close(cdpo.loss, [0.626928])


def test_ipo_uses_mean_token_log_ratios():
    """β = 0.25, so the target gap 1/(2β) = 2. Chosen log-ratio 6 over 3 tokens = 2 per token, rejected -2 over
    2 tokens = -1: h = 3, loss (3 - 2)^2 = 1. Rewards stay β * summed log-ratio: 1.5 and -0.5."""
    out = losses.ipo(T([-4.0]), T([-7.0]), T([-10.0]), T([-5.0]), T([3.0]), T([2.0]), beta=0.25)
    assert close(out.loss, [1.0])
    assert close(out.chosen_rewards, [1.5]) and close(out.rejected_rewards, [-0.5])


def test_simpo_length_normalised_with_margin():
    """β = 2, γ = 1. Chosen -4 over 4 tokens: reward 2 * -1 = -2; rejected -9 over 3 tokens: 2 * -3 = -6.
    Loss -log σ(-2 + 6 - 1) = log(1 + e^-3) = 0.048587."""
    out = losses.simpo(T([-4.0]), T([-9.0]), T([4.0]), T([3.0]), beta=2.0, gamma=1.0)
    assert close(out.loss, [0.048587])
    assert close(out.chosen_rewards, [-2.0]) and close(out.rejected_rewards, [-6.0])


def test_orpo_sft_plus_odds_ratio():
    """Chosen: 2 tokens summing to 2 ln(1/2), so P = 1/2, odds 1, log-odds 0, NLL ln 2 = 0.693147.
    Rejected: 3 tokens summing to 3 ln(1/5), so P = 1/5, odds 1/4, log-odds -ln 4.
    L_OR = -log σ(ln 4) = -log(4/5) = ln 1.25 = 0.223144. λ = 0.5: 0.693147 + 0.111572 = 0.804719.
    Rewards λ * mean log-prob: 0.5 ln(1/2) = -0.346574 and 0.5 ln(1/5) = -0.804719."""
    out = losses.orpo(T([2 * math.log(0.5)]), T([3 * math.log(0.2)]), T([2.0]), T([3.0]), lam=0.5)
    assert close(out.loss, [0.804719])
    assert close(out.chosen_rewards, [-0.346574]) and close(out.rejected_rewards, [-0.804719])


def test_kto_reference_point_and_weights():
    """Mismatched pairs: policy (-1, -2) vs reference (-2, -2): z = mean(1, 0) = 0.5. β = 1.
    Desirable reply with r = 0.5 + ln 3: 1 - σ(ln 3) = 1 - 3/4 = 0.25 (weight 1).
    Undesirable reply with r = 0.5 - ln 4: 1 - σ(z - r) = 1 - σ(ln 4) = 1/5, weight 2 -> 0.4.
    A negative KL estimate is clamped to 0: the desirable reply with r = ln 3 then loses 0.25 too."""
    z = losses.kto_kl(T([-1.0, -2.0]), T([-2.0, -2.0]))
    assert z.item() == pytest.approx(0.5)
    logps, ref = T([0.5 + math.log(3), 0.5 - math.log(4)]), T([0.0, 0.0])
    out = losses.kto(logps, ref, T([True, False]), z, beta=1.0, desirable_weight=1.0, undesirable_weight=2.0)
    assert close(out.loss, [0.25, 0.4]) and close(out.rewards, logps)
    negative = losses.kto_kl(T([-3.0]), T([-1.0]))
    assert close(losses.kto(T([math.log(3)]), T([0.0]), T([True]), negative, beta=1.0).loss, [0.25])


def test_rrhf_ranking_hinge_plus_sft():
    """Replies best first, summed log-probs (-2, -6, -1.5) over (2, 3, 3) tokens: p = (-1, -2, -0.5).
    Pairs i < j: (0,1) max(0, -2 + 1) = 0; (0,2) max(0, -0.5 + 1) = 0.5; (1,2) max(0, -0.5 + 2) = 1.5; sum 2.
    SFT term on the best: -p_0 = 1, weight 0.5. Loss 2.5."""
    out = losses.rrhf(T([-2.0, -6.0, -1.5]), T([2.0, 3.0, 3.0]), sft_weight=0.5)
    assert out.loss.item() == pytest.approx(2.5)
    assert close(out.scores, [-1.0, -2.0, -0.5])


def test_preference_losses_are_registered():
    for name in ("dpo", "ipo", "simpo", "orpo", "kto", "rrhf"):
        assert losses.get_loss(name) is getattr(losses, name)


def test_pair_losses_come_from_the_one_registry_by_its_names(capsys):
    """pref.loss names a registry entry; each gets the inputs its signature names. One pair, chosen first:
    log-probs (-3, -6), reference (-5, -4), counts (3, 2), beta 0.5 -> the same numbers as calling each loss
    directly. 'sigmoid' (the old key) still reads as dpo, with a note."""
    lp, ref, n = T([[-3.0, -6.0]]), T([[-5.0, -4.0]]), T([[3.0, 2.0]])
    cfg = PrefConfig(loss="sigmoid", beta=0.5, label_smoothing=0.1)
    assert cfg.loss == "dpo" and "pref.loss=sigmoid is deprecated" in capsys.readouterr().err
    want = {
        "dpo": losses.dpo(lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], 0.5, 0.1),
        "ipo": losses.ipo(lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], n[:, 0], n[:, 1], 0.5),
        "simpo": losses.simpo(lp[:, 0], lp[:, 1], n[:, 0], n[:, 1], 0.5, cfg.simpo_gamma),
        "orpo": losses.orpo(lp[:, 0], lp[:, 1], n[:, 0], n[:, 1], cfg.orpo_lambda),
    }
    for name, expected in want.items():
        got = pref.pair_loss(name, lp, n, ref if pref.referenced(name) else None, cfg)
        assert all(torch.equal(a, b) for a, b in zip(got, expected)), name
    assert [name for name in want if pref.referenced(name)] == ["dpo", "ipo"]
    with pytest.raises(config.ConfigError, match="not one of"):
        PrefConfig(loss="sigmod")


# ---------------------------------------------------------------- KTO data


def test_kto_rows_and_pairs_become_labelled_examples(tmp_path):
    row = {
        "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
        "label": False,
    }
    path = tmp_path / "kto.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(row | {"label": "yes"}) + "\n")
    data = pref.kto_data(config.DataConfig(path=str(path)))
    assert [s.format for s in data.datasets] == ["kto"]  # auto-detection alone reads them as plain chats
    records, skipped = load_records(data.datasets[0], skip_bad_rows=True)
    assert [(r.reply, r.desirable, r.prompt.messages[-1].content) for r in records] == [("A", False, "Q")]
    assert skipped == [f"{path}:2: kto row: label must be true or false, got 'yes'"]
    pair = PreferencePair(records[0].prompt, "good", "bad", "x:1")
    assert [(e.reply, e.desirable) for e in pref.labelled(pair)] == [("good", True), ("bad", False)]
    with pytest.raises(DataError, match="needs Labelled or PreferencePair"):
        load_data(config.DataConfig(path=str(write_sft(tmp_path)), eval_size=0), want=pref.WANT["kto"])


def write_sft(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    return path


# ---------------------------------------------------------------- stages on the tiny model

QA = [("hi", "hello there"), ("what is two plus two", "two plus two is four"), ("thanks", "you are welcome")]
BAD, SYSTEM = "no. maybe. no.", [{"role": "system", "content": "S"}]  # a short system turn keeps rows short


def write_data(tmp_path, stage, n=8):
    def prompt(q):
        return [*SYSTEM, {"role": "user", "content": q}]

    pairs = (QA * n)[: 3 * n]
    if stage == "kto":
        rows = [
            {"messages": [*prompt(q), {"role": "assistant", "content": reply}], "label": good}
            for q, a in pairs
            for reply, good in ((a, True), (BAD, False))
        ]
    elif stage == "rrhf":
        rows = [{"prompt": prompt(q), "responses": [a, "maybe so", BAD]} for q, a in pairs]
    else:
        rows = [{"prompt": prompt(q), "chosen": a, "rejected": BAD} for q, a in pairs]
    path = tmp_path / f"{stage}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_cfg(tmp_path, model_dir, stage="dpo", *extra, run="run"):
    return config.load(
        None,
        [
            f"--model.name_or_path={model_dir}",
            "--model.dtype=fp32",
            f"--data.path={write_data(tmp_path, stage)}",
            "--data.eval_size=6",
            "--data.max_len=64",
            f"--train.output_dir={tmp_path / run}",
            "--train.lr=3e-3",
            "--train.batch_size=4",
            "--train.max_steps=4",
            "--train.warmup_ratio=0",
            *extra,
        ],
    )


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def eval_rows(run):
    rows = [r for r in metrics(run) if "eval_loss" in r]
    return rows[0], rows[-1]


def groups_of(cfg, loaded, split="train"):
    data = load_data(cfg.data, want=pref.WANT["dpo"])
    convs, extra = pref.conversations("dpo", getattr(data, split), cfg.data.seed)
    return pref.render_groups(convs, extra, loaded.template, cfg.data, distinct=True)[0]


def test_dpo_lora_learns_reloads_and_caches_the_base_as_reference(tmp_path, tiny_model_dir):
    from accelerate import Accelerator

    cfg = make_cfg(tmp_path, tiny_model_dir, "dpo", "--lora.r=8", "--train.max_steps=6")
    final = pref.run(cfg, "dpo")
    first, last = eval_rows(tmp_path / "run")
    assert first["eval_margin"] == 0 and first["eval_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert last["eval_margin"] > 0.2 and last["eval_reward_accuracy"] == 1.0
    assert last["eval_chosen_reward"] > last["eval_rejected_reward"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["loss"] == "dpo" and summary["data"]["train"]["groups"] == 18

    # The reloaded adapter reproduces the logged held-out metrics, and with the adapter off it is exactly the
    # model the cached reference log-probs came from.
    loaded = io.load(ModelConfig(str(final), dtype="fp32"))
    model, acc = TargetLM(loaded.model), Accelerator(cpu=True)
    cached = load_file(tmp_path / "run" / "reference_logps.safetensors")
    train_groups = pref.Groups(groups_of(cfg, loaded), loaded.tokenizer.pad_token_id, 4, shared_prefix=True)
    with loaded.model.disable_adapter():
        fresh = pref.all_logps(model, train_groups, acc, torch.float32)[0]
    assert torch.allclose(fresh, cached["train"], atol=1e-5)
    trained = pref.all_logps(model, train_groups, acc, torch.float32)[0]
    assert not torch.allclose(trained, cached["train"], atol=1e-3)  # the adapter did move the policy
    ev = pref.Groups(groups_of(cfg, loaded, "eval"), loaded.tokenizer.pad_token_id, 4)
    ev.extra["ref_logps"] = pref.nest(cached["eval"], ev.groups)
    method = pref.METHODS["dpo"](cfg.pref, lambda t: t)
    again = pref.evaluate(model, ev, method, acc, torch.float32)
    assert again == pytest.approx({k: v for k, v in last.items() if k.startswith("eval_")}, abs=1e-4)

    # DPO on top of a trained adapter (an SFT adapter in a pipeline) keeps training it: the reference is that
    # adapter switched on, the model the run starts from, not the bare base.
    more = make_cfg(tmp_path, tiny_model_dir, "dpo", "--lora.r=8", "--train.max_steps=1", run="more")
    pref.run(replace(more, model=ModelConfig(str(final), dtype="fp32")), "dpo")
    assert torch.allclose(
        load_file(tmp_path / "more" / "reference_logps.safetensors")["train"], trained, atol=1e-5
    )


@pytest.mark.parametrize(
    "loss, extra",
    [("ipo", []), ("simpo", ["--pref.beta=2"]), ("orpo", [])],  # dpo (cDPO): the resume test
)
def test_dpo_losses_full_fine_tuning(tmp_path, tiny_model_dir, loss, extra):
    cfg = make_cfg(tmp_path, tiny_model_dir, "dpo", f"--pref.loss={loss}", *extra)
    final = pref.run(cfg, "dpo")
    first, last = eval_rows(tmp_path / "run")
    assert last["eval_margin"] > first["eval_margin"] + 0.01 and last["eval_loss"] < first["eval_loss"]
    assert (tmp_path / "run" / "reference_logps.safetensors").exists() == (loss == "ipo")
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(final / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_kto_stage_separates_good_from_bad(tmp_path, tiny_model_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, "kto", "--train.max_steps=6")
    pref.run(cfg, "kto")
    first, last = eval_rows(tmp_path / "run")
    assert first["eval_loss"] == pytest.approx(0.5, abs=1e-5)  # r = z = 0: 1 - σ(0) for every example
    assert last["eval_margin"] > 0.2 and last["eval_reward_accuracy"] > 0.9
    assert last["eval_chosen_reward"] > 0 > last["eval_rejected_reward"]
    ref = load_file(tmp_path / "run" / "reference_logps.safetensors")["train"]
    assert len(ref) == 2 * 42  # 48 labelled rows, 6 held out; each with its mismatched reply


def test_rrhf_stage_orders_rankings(tmp_path, tiny_model_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, "rrhf", "--train.max_steps=6")
    pref.run(cfg, "rrhf")
    first, last = eval_rows(tmp_path / "run")
    assert last["eval_loss"] < first["eval_loss"] and last["eval_margin"] > first["eval_margin"]
    assert not (tmp_path / "run" / "reference_logps.safetensors").exists()  # RRHF has no reference


def test_cdpo_full_fine_tuning_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    """Full fine-tuning, cut after the step-2 checkpoint, resumed: the reference pass runs before the loop
    restores the checkpoint, so it still sees the initial weights; weights and losses equal the uninterrupted run."""
    smooth = "--pref.label_smoothing=0.1"
    full = pref.run(make_cfg(tmp_path, tiny_model_dir, "dpo", smooth, run="a"), "dpo")
    first, last = eval_rows(tmp_path / "a")
    assert last["eval_margin"] > first["eval_margin"] + 0.01 and last["eval_loss"] < first["eval_loss"]
    before = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(before[k], load_file(full / "model.safetensors")[k]) for k in before)
    cut = make_cfg(tmp_path, tiny_model_dir, "dpo", smooth, "--train.save_every=2", run="b")
    with killed_after(2):
        pref.run(cut, "dpo")
    resumed = pref.run(config.load(tmp_path / "b" / "config.yaml", ["--train.resume"]), "dpo")
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [r["loss"] for r in metrics(tmp_path / "a") if "loss" in r]
    lb = [r["loss"] for r in metrics(tmp_path / "b") if "loss" in r]
    assert la == lb and len(la) == 4
    ra = load_file(tmp_path / "a" / "reference_logps.safetensors")
    rb = load_file(tmp_path / "b" / "reference_logps.safetensors")
    assert all(torch.equal(ra[k], rb[k]) for k in ("train", "eval"))


def test_pairs_identical_after_truncation_are_dropped_and_counted(tiny_model_dir):
    """Replies that differ only past max_len would prefer nothing; a prompt that fills max_len trains nothing."""
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"))
    short = Conversation.from_openai([*SYSTEM, {"role": "user", "content": "hi"}])
    long = Conversation.from_openai([*SYSTEM, {"role": "user", "content": "hi " * 40}])
    records = [
        PreferencePair(short, "yes it is good", "yes it is bad"),  # same first tokens: identical once cut
        PreferencePair(short, "hello there", BAD),  # differs at once: kept, truncated
        PreferencePair(long, "hello there", BAD),  # the prompt alone fills max_len
    ]
    max_len = len(loaded.template.prompt_ids(short)) + 2
    convs, extra = pref.conversations("dpo", records, 0)
    data = config.DataConfig(max_len=max_len)
    kept, _, report = pref.render_groups(convs, extra, loaded.template, data, distinct=True)
    assert {k: report[k] for k in ("groups", "identical", "no_targets", "truncated")} == {
        "groups": 1, "identical": 1, "no_targets": 1, "truncated": 1}  # fmt: skip
    assert kept[0][0].input_ids != kept[0][1].input_ids
