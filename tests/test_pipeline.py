"""`pixiu pipeline`: stages feed each other, finished stages are skipped, an interrupted stage resumes, the evaluation
summary is written. Tiny model, tiny data, no network."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from interrupt import killed_after
from safetensors.torch import load_file

from pixiu import cli, config, pipeline
from pixiu.config import ConfigError
from pixiu.train.stages import STAGES

QA = [("hi", "hello there"), ("what is two plus two", "two plus two is four"), ("你好", "你好，我是一个助手。"),
      ("thanks", "you are welcome"), ("is it good", "yes it is good"), ("help me please", "sure, how can I help")]  # fmt: skip
QUESTIONS = [
    "what is two plus two",
    "is it good",
    "help me please",
    "hi",
    "你好",
    "thanks",
    "what is one plus one",
]


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def recipe(tmp_path, model_dir, name="recipe.yaml", out="run", ppo=True, rm_steps=4, save_every=0):
    """sft (LoRA, merged) -> rm (LoRA over the merged SFT model) [-> ppo] -> evaluation, a few steps each."""
    sft = jsonl(tmp_path / "sft.jsonl", [{"messages": [{"role": "user", "content": q}, {"role": "assistant",
                "content": a}]} for q, a in QA * 4])  # fmt: skip
    pairs = jsonl(
        tmp_path / "pairs.jsonl", [{"prompt": q, "chosen": f"yes, {a}", "rejected": a} for q, a in QA * 3]
    )  # fmt: skip  the learnable toy preference: chosen replies start with "yes"
    prompts = jsonl(tmp_path / "prompts.jsonl", [{"prompt": q} for q in QUESTIONS * 2])
    stages = [
        {"name": "sft", "data": {"path": sft}, "train": {"max_steps": 4, "merge_lora": True, "lr": 3e-3}},
        {"name": "rm", "data": {"path": pairs}, "train": {"max_steps": rm_steps, "save_every": save_every}},
    ]
    if ppo:
        stages.append({"name": "ppo", "data": {"path": prompts}, "train": {"max_steps": 2}})
    values = {
        "model": {"name_or_path": str(model_dir), "dtype": "fp32", "template": "chatml"},
        "lora": {"r": 8, "alpha": 16},
        "data": {"max_len": 64, "eval_size": 0},
        "train": {"lr": 1e-2, "batch_size": 4, "warmup_ratio": 0},
        "gen": {"max_new_tokens": 6},
        "ppo": {"rollout_prompts": 4, "minibatch": 4, "ppo_epochs": 1},
        "pipeline": {
            "output_dir": str(tmp_path / out),
            "stages": stages,
            "eval": {
                "prompts": prompts if ppo else "",
                "pairs": pairs,
                "max_prompts": 6,
                "max_pairs": 6,
                "show": 2,
            },
        },
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values, allow_unicode=True))
    return str(path)


def stage_config(run, name):
    return config.load(run / name / "config.yaml")


def test_stages_feed_forward_then_rerun_skips_them(tmp_path, tiny_model_dir, monkeypatch, capsys):
    path = recipe(tmp_path, tiny_model_dir)
    pipeline.cli([path])
    run = tmp_path / "run"
    merged = str(run / "sft" / "merged")
    assert stage_config(run, "sft").model.name_or_path == str(tiny_model_dir)
    assert (
        stage_config(run, "rm").model.name_or_path == merged
    )  # the RM's adapter sits on the merged SFT model
    ppo_cfg = stage_config(run, "ppo")
    assert ppo_cfg.model.name_or_path == merged and ppo_cfg.ppo.reward_model == str(run / "rm" / "final")
    assert (
        json.loads((run / "rm" / "done.json").read_text())["output"] == "rm/final"
    )  # relative: runs can move

    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["sft", "rm", "ppo"]
    assert all(s["seconds"] > 0 and not s["skipped"] for s in summary["stages"])
    assert summary["reward_model"]["pairs"] == 6 and 0 <= summary["reward_model"]["accuracy"] <= 1
    pol = summary["policies"]
    assert pol["start"]["path"] == merged and pol["final"]["path"] == str(run / "ppo" / "final")
    gain = (pol["final"]["mean_reward"] - pol["start"]["mean_reward"]) / pol["start"]["std_reward"]
    assert pol["gain_in_start_std"] == pytest.approx(gain, abs=1e-3)
    assert pol["kl_final_to_start"] == pol["kl_final_to_start"]  # a number, not NaN
    picked = [r["picked"] for r in pol["side_by_side"]]  # the seeded sample, then up to 3 worst
    assert picked[:2] == ["sample"] * 2 and set(picked[2:]) <= {"worst"} and len(picked) <= 5
    assert "final_reward" in pol["side_by_side"][0] and "correct" in pol["side_by_side"][0]["final_metrics"]
    assert "exact_match" not in pol["final"]["degeneration"]  # these prompts have no reference answers
    assert "Replies side by side" in (run / "summary.md").read_text()
    change = pol["change"]["token_limit"]  # final - start, inside its own 95% bootstrap interval
    diff = pol["final"]["degeneration"]["token_limit"] - pol["start"]["degeneration"]["token_limit"]
    assert change[0] == pytest.approx(diff, abs=1e-3) and change[1] <= change[0] <= change[2]
    assert "95% paired bootstrap intervals" in (run / "summary.md").read_text()
    rows = [json.loads(line) for line in (run / "replies.jsonl").read_text().splitlines()]
    per = (
        pol["prompts"] * pol["samples_per_prompt"]
    )  # every reply of both policies, with its reward and metrics
    assert [r["policy"] for r in rows] == ["start"] * per + ["final"] * per and "replies" not in pol
    first = pol["side_by_side"][0]
    assert {
        "prompt": first["prompt"],
        "reply": first["start"],
        "reward": round(first["start_reward"], 3),
    }.items() <= (next(r for r in rows if r["prompt"] == first["prompt"]).items())

    # Re-run: nothing trains again (a stage that ran would raise), outputs stay untouched, the summary is reused.
    finals = {p: p.stat().st_mtime_ns for p in run.glob("*/final/*.safetensors")}
    for kind in ("sft", "rm", "ppo"):
        module = __import__(STAGES[kind].module, fromlist=["run"])
        monkeypatch.setattr(module, "run", lambda *a, **k: pytest.fail("a finished stage ran again"))
    capsys.readouterr()
    pipeline.cli([path])
    assert capsys.readouterr().out.count("finished earlier") == 3
    assert {p: p.stat().st_mtime_ns for p in run.glob("*/final/*.safetensors")} == finals
    assert json.loads((run / "summary.json").read_text()) == summary

    # A marker written by an older pixiu (without a field added since) still matches when the field is at its
    # default; set to another value, it is a change.
    marker = json.loads((run / "rm" / "done.json").read_text())
    del marker["config"]["guard"]["max_rise"]
    (run / "rm" / "done.json").write_text(json.dumps(marker))
    capsys.readouterr()
    pipeline.cli([path])
    assert capsys.readouterr().out.count("finished earlier") == 3
    with pytest.raises(ConfigError, match=r"different config:\n  guard.max_rise: 0.15 -> 0.3"):
        pipeline.cli([path, "--stage.rm.guard.max_rise=0.3"])

    # A finished stage whose config changed is an error naming the field, not a silent mix of runs.
    with pytest.raises(
        ConfigError, match=r"stage rm finished with a different config:\n  train.lr: 0.01 -> 0.02"
    ):
        pipeline.cli([path, "--stage.rm.train.lr=0.02"])


class Killed(Exception):
    pass


def test_interrupted_stage_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, capsys):
    straight = recipe(
        tmp_path, tiny_model_dir, "straight.yaml", "straight", ppo=False, rm_steps=6, save_every=2
    )
    pipeline.cli([straight])
    killed = recipe(tmp_path, tiny_model_dir, "killed.yaml", "killed", ppo=False, rm_steps=6, save_every=2)
    # the process dies right after the step-4 checkpoint of the RM
    with killed_after(4, where=lambda root: root.parent.name == "rm", error=Killed):
        pipeline.cli([killed])
    run = tmp_path / "killed"
    assert (run / "sft" / "done.json").exists() and not (run / "rm" / "done.json").exists()
    capsys.readouterr()
    pipeline.cli([killed])
    out = capsys.readouterr().out
    assert "interrupted earlier: resuming" in out and "resume: continuing from" in out
    assert out.count("finished earlier") == 1  # the finished SFT stage
    steps = [json.loads(line)["step"] for line in (run / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert stage_config(run, "rm").train.resume
    for file in ("score_head.safetensors", "adapter_model.safetensors"):
        a, b = (
            load_file(run / "rm" / "final" / file),
            load_file(tmp_path / "straight" / "rm" / "final" / file),
        )
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_recipe_errors_are_clear(tmp_path):
    def write(values):
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump(values))
        return str(path)

    # one registry: every `pixiu train` stage is a pipeline stage, and the CLI's usage lists them all
    assert not hasattr(pipeline, "ROLES") and not hasattr(cli, "STAGES")
    with pytest.raises(SystemExit, match=r"pixiu train \{sft,pt,rm,dpo,kto,rrhf,ppo,grpo,rloo,distill\}"):
        cli.main(["train", "nope"])
    assert {k for k, s in STAGES.items() if s.role.reads_reward_model} == {"ppo"}
    assert {k for k, s in STAGES.items() if s.role.makes == "reward_model"} == {"rm"}
    with pytest.raises(ConfigError, match="needs a `pipeline:` section"):
        pipeline.load(write({"model": {"name_or_path": "x"}}))
    with pytest.raises(ConfigError, match="unknown stage 'sfft'"):
        pipeline.load(write({"pipeline": {"stages": [{"name": "sfft"}]}}))
    with pytest.raises(ConfigError, match="must be unique"):
        pipeline.load(write({"pipeline": {"stages": [{"name": "sft"}, {"name": "sft"}]}}))
    with pytest.raises(ConfigError, match="unknown stages"):
        pipeline.load(write({"pipeline": {"stages": [{"name": "sft"}]}}), ["--stage.rm.train.lr=1"])
    with pytest.raises(ConfigError, match="unknown field"):
        pipeline.load(write({"trian": {}, "pipeline": {"stages": [{"name": "sft"}]}}))
    # --section.field sets the shared value, and a stage's own value of that field; --stage.NAME only that stage.
    recipe_path = write({"train": {"lr": 0.1}, "pipeline": {"stages": [{"name": "sft"}, {"name": "b", "stage": "sft",
                         "train": {"lr": 0.2, "max_steps": 3}}]}})  # fmt: skip
    pipe, shared, stages = pipeline.load(recipe_path, ["--train.lr=0.5", "--stage.sft.train.max_steps=7"])
    assert shared["train"]["lr"] == 0.5 and stages[1].sections["train"] == {"lr": 0.5, "max_steps": 3}
    assert stages[0].sections == {"train": {"max_steps": 7}} and stages[1].kind == "sft"
    state = pipeline.State(policy="base")
    cfg = pipeline.stage_config(stages[1], shared, state, tmp_path)
    assert (
        cfg.model.name_or_path == "base"
        and cfg.train.output_dir == str(tmp_path / "b")
        and cfg.train.lr == 0.5
    )


@pytest.mark.slow
def test_reduced_quickstart_on_smollm2(tmp_path):
    """The real recipe on the embedded SmolLM2, cut to a few steps per stage: every stage runs and feeds the next,
    and the summary holds the route's numbers (their size is the full quickstart's job, not this test's)."""
    args = ["recipes/quickstart.yaml", f"--pipeline.output_dir={tmp_path}", "--stage.sft.train.max_steps=3",
            "--stage.rm.train.max_steps=3", "--stage.ppo.train.max_steps=1", "--stage.ppo.ppo.rollout_prompts=8",
            "--stage.ppo.ppo.minibatch=8", "--pipeline.eval.max_prompts=8",
            "--pipeline.eval.max_pairs=8", "--gen.max_new_tokens=16"]  # fmt: skip
    pipeline.cli(args)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["sft", "rm", "ppo"]
    assert summary["reward_model"]["pairs"] == 8 and summary["policies"]["prompts"] == 8
    assert summary["policies"]["start"]["path"] == str(tmp_path / "sft" / "merged")
    assert [r["picked"] for r in summary["policies"]["side_by_side"]][:6] == ["sample"] * 6
    # exact match is checked on the replies to held-out prompts with a reference answer: k samples per prompt
    held = Path("src/pixiu/data/demo/heldout_prompts.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    answered = sum("answer" in json.loads(line) for line in held)
    k = summary["policies"]["samples_per_prompt"]
    assert summary["policies"]["final"]["degeneration"]["checked"] == k * answered > 0
