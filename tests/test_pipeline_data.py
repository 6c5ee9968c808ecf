"""`pixiu pipeline` data stages: `pixiu data generate` and `pixiu data filter` (cli.DATA_COMMANDS) with their args
from the recipe, then SFT on what they kept. Against the fake teacher of the teach tests: a finished data stage is
skipped, an interrupted one runs again and generate resumes from its journal (no item written twice)."""

import json
import threading

import pytest
import yaml
from fake_teacher import FakeTeacher

from pixiu import cli, config, pipeline
from pixiu.config import ConfigError
from pixiu.teach import run as teach_run

QUESTIONS = [
    "Name three colours of the rainbow.",
    "Why is the sky blue during the day?",
    "Give one reason to drink water.",
    "How many legs does a spider have?",
    "Summarise the plot of a fairy tale.",
    "REFUSE Explain how to pick a lock.",  # the teacher refuses: generate drops it
    "Why is the sky blue during the day?",  # asked twice, answered the same: filter drops the copy
]


@pytest.fixture
def fake():
    server = FakeTeacher()
    yield server
    server.close()


def recipe(tmp_path, model_dir, url) -> str:
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(QUESTIONS))
    values = {
        "model": {"name_or_path": str(model_dir), "dtype": "fp32"},
        "data": {"max_len": 512, "eval_size": 0},
        "train": {"lr": 1e-3, "batch_size": 2, "warmup_ratio": 0},
        "pipeline": {
            "output_dir": str(tmp_path / "run"),
            "stages": [
                {"name": "generate", "stage": "data", "command": "generate",
                 "args": {"method": "answer", "inputs": str(questions), "out": "{output_dir}/generate/data.jsonl",
                          "url": url, "model": "fake", "concurrency": 2, "retries": 0}},
                {"name": "filter", "stage": "data", "command": "filter",
                 "args": {"inputs": "{output_dir}/generate/data.jsonl", "out": "{output_dir}/filter/kept.jsonl"}},
                {"name": "sft", "data": {"path": "{output_dir}/filter/kept.jsonl"}, "train": {"max_steps": 2}},
            ],
        },
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class Killed(Exception):
    pass


def test_generate_filter_sft_resume_and_skip(tmp_path, tiny_model_dir, fake, monkeypatch, capsys):
    path, run = recipe(tmp_path, tiny_model_dir, fake.url), tmp_path / "run"
    real, recorded = teach_run._record, []

    def dies_after_three(*a):  # the run is interrupted after three items were written
        if len(recorded) == 3:
            raise Killed
        recorded.append(real(*a))

    monkeypatch.setattr(teach_run, "_record", dies_after_three)
    with pytest.raises(Killed):
        cli.main(["pipeline", path])
    assert len(rows(run / "generate" / "data.jsonl")) == 3 and not (run / "generate" / "done.json").exists()
    # The killed run left its answers in flight to finish on their own: wait for them, so that their requests
    # are counted as the killed run's and not the resumed one's.
    for thread in threading.enumerate():
        if thread.name.startswith("teach"):
            thread.join(timeout=30)
    asked_before = fake.requests
    monkeypatch.setattr(teach_run, "_record", real)
    capsys.readouterr()
    cli.main(["pipeline", path])
    assert "interrupted earlier: running it again" in capsys.readouterr().out

    generated = rows(run / "generate" / "data.jsonl")
    # the resumed run asked only what the killed one had not written (an answer in flight then is asked again)
    assert fake.requests - asked_before == len(QUESTIONS) - 3
    assert len({r["meta"]["job"] for r in generated}) == len(generated) == 6
    kept = rows(run / "filter" / "kept.jsonl")
    assert sorted(r["instruction"] for r in kept) == sorted(set(QUESTIONS) - {QUESTIONS[5]})
    sft = config.load(run / "sft" / "config.yaml")
    assert sft.data.path == str(run / "filter" / "kept.jsonl") and (run / "sft" / "final").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert [(s["name"], s["kind"]) for s in summary["stages"]] == [
        ("generate", "data"),
        ("filter", "data"),
        ("sft", "sft"),
    ]

    # Re-run: every stage finished, none runs again, the teacher is not asked anything.
    sft_module = __import__(pipeline.STAGES["sft"].module, fromlist=["run"])
    monkeypatch.setattr(sft_module, "run", lambda *a, **k: pytest.fail("sft ran again"))
    capsys.readouterr()
    asked = fake.requests
    cli.main(["pipeline", path])
    assert capsys.readouterr().out.count("finished earlier") == 3 and fake.requests == asked

    # Changed args of a finished data stage: an error naming the flag.
    with pytest.raises(
        SystemExit, match=r"stage filter finished with a different config:\n  args.near_dup: None -> 0.5"
    ):
        cli.main(["pipeline", path, "--stage.filter.args.near_dup=0.5"])


def test_a_data_stage_names_a_known_command(tmp_path, tiny_model_dir):
    path = tmp_path / "bad.yaml"
    stages = [{"name": "g", "stage": "data", "command": "generat", "args": {}}]
    path.write_text(
        yaml.safe_dump({"model": {"name_or_path": str(tiny_model_dir)}, "pipeline": {"stages": stages}})
    )
    with pytest.raises(ConfigError, match=r"unknown data command 'generat'; valid: \[.*'filter', 'generate'"):
        pipeline.load(path, [], cli.DATA_COMMANDS)


def test_the_distill_recipe_as_written():
    """recipes/distill.yaml: data stages first; the three students all start from the same student (none from
    another's output), read the same held-out file, and the distill stage asks the server generate asked."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "distill.yaml"
    pipe, shared, stages = pipeline.load(recipe, [], cli.DATA_COMMANDS)
    assert [(s.name, s.kind) for s in stages] == [
        ("seeds", "data"), ("instructions", "data"), ("heldout", "data"), ("generate", "data"),
        ("filter", "data"), ("sft_seeds", "sft"), ("sft_teacher", "sft"), ("distill", "distill"),
    ]  # fmt: skip
    state = pipeline.State(policy="unused")
    cfgs = {s.name: pipeline.stage_config(s, shared, state, Path(pipe.output_dir)) for s in stages[5:]}
    assert {c.model.name_or_path for c in cfgs.values()} == {shared["model"]["name_or_path"]}
    assert {c.data.eval_path for c in cfgs.values()} == {f"{pipe.output_dir}/heldout/rows.jsonl"}
    assert cfgs["sft_teacher"].data.path == cfgs["distill"].data.path
    assert (
        cfgs["distill"].distill.teacher == stages[3].sections["args"]["url"]
        and cfgs["distill"].distill.endpoint
    )
