"""pixiu eval: multiple choice log-likelihoods against a direct forward, prompts, averages, answer extraction,
resume, bad input, and the CLI end to end on tiny fixtures. SmolLM2 / shared data runs are marked slow."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from pixiu.config import EvalConfig, ModelConfig
from pixiu.engine import Completion
from pixiu.eval import choice, run
from pixiu.eval.run import EvalContext, EvalError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MMLU_COLUMNS = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


@pytest.fixture
def mmlu_dir(tmp_path) -> Path:
    """Two subjects: 'math' with 3 test questions and 1 dev example, 'art' with 2 test questions."""
    root = tmp_path / "mmlu"
    math_rows = [
        ["1 + 1 = ?", "2", "3", "4", "5", 0],
        ["2 + 2 = ?", "3", "4", "5", "6", 1],
        ["3 * 3", "6", "8", "9", "12", 2],
    ]
    write_csv(root / "test" / "math_test.csv", MMLU_COLUMNS, math_rows)
    write_csv(root / "dev" / "math_dev.csv", MMLU_COLUMNS, [["0 + 1 = ?", "0", "1", "2", "3", 1]])
    write_csv(
        root / "test" / "art_test.csv",
        MMLU_COLUMNS,
        [["Who?", "a", "b", "c", "d", 3], ["Red?", "x", "y", "z", "w", 0]],
    )
    return root


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from pixiu.model import io

    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"))
    loaded.model.eval()
    return loaded


def context(tmp_path, model=None, **opts) -> EvalContext:
    return EvalContext(EvalConfig(model=str(model) if model else "", tasks="x", **opts), tmp_path / "out")


# ---------------------------------------------------------------- scoring and prompts


def direct_logp(model, ctx: list[int], cont: list[int]) -> float:
    """Summed log p of `cont` after `ctx` from one plain forward over both."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
    return sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))


def test_choice_logps_equal_a_direct_forward(tiny):
    """Batched, padded, head-at-targets scoring == log_softmax of a plain forward over context + continuation,
    for single-token choices (one shared row) and multi-token ones (a row each)."""
    ids = lambda s: tiny.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    requests = [
        (ids("What is two plus two? Answer:"), [[40], [41], [399]]),
        (ids("Hello"), [ids(" world, hello there"), [50], [60, 61]]),
    ]
    got = choice.choice_logps(tiny, requests)
    for (ctx, conts), row in zip(requests, got):
        assert row == pytest.approx([direct_logp(tiny.model, ctx, c) for c in conts], abs=1e-4)


def test_split_tokens_moves_trailing_space_to_the_continuation(tokenizer):
    ctx_ids, cont = choice.split_tokens(tokenizer, "Answer: ", "A")
    whole = tokenizer("Answer: A", add_special_tokens=False)["input_ids"]
    assert ctx_ids == tokenizer("Answer:", add_special_tokens=False)["input_ids"]
    assert ctx_ids + cont == whole


def test_few_shot_prompt_golden():
    layout = choice.LAYOUTS["mmlu"]
    shot = choice.Item("high_school_physics", " What is g? ", ["9.8", "1", "0", "3"], 0, "")
    item = choice.Item("high_school_physics", "Unit of force?", ["J", "N", "W", "Pa"], 1, "")
    assert choice.prompt(layout, item, [shot]) == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "What is g?\nA. 9.8\nB. 1\nC. 0\nD. 3\nAnswer: A\n\n"
        "Unit of force?\nA. J\nB. N\nC. W\nD. Pa\nAnswer:"
    )
    cm = choice.Item("agronomy", "问题", ["甲", "乙", "丙", "丁"], 2, "")
    assert choice.prompt(choice.LAYOUTS["cmmlu"], cm, []) == (
        "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n问题\nA. 甲\nB. 乙\nC. 丙\nD. 丁\n答案："
    )


def test_macro_and_micro_averages():
    """math 2/4 = 0.5, art 1/1 = 1.0: macro (0.5 + 1) / 2 = 0.75, micro 3/5 = 0.6."""
    rows, metrics = choice.averages({"math": [True, False, True, False], "art": [True]})
    assert rows == [
        {"subject": "math", "n": 4, "accuracy": 0.5},
        {"subject": "art", "n": 1, "accuracy": 1.0},
    ]
    assert metrics["accuracy_macro"] == 0.75 and metrics["accuracy_micro"] == 0.6
    assert metrics["questions"] == 5 and metrics["subjects"] == 2


@pytest.mark.parametrize(
    ("reply", "number"),
    [
        ("The farm has 1,234 apples in total.", "1234"),
        ("It costs $5.", "5"),
        ("She earns 12 dollars an hour.", "12"),
        ("The temperature is -7 degrees.", "-7"),
        ("First 3 eggs, then 4, so 10 in all.", "10"),  # several numbers, no marker: the last
        ("3 + 4 = 7 cups\n#### 7\nHope that helps with all 2 questions", "7"),  # after the last ####
        ("The answer is $18.00. Check: 9 * 2 = 18 with 5 left", "18"),  # after 'answer is'
        ("#### 2,500", "2500"),
        ("Answer: 0.50", "0.5"),
        ("I don't know.", None),
    ],
)
def test_gsm8k_answer_extraction(reply, number):
    from pixiu.data.tasks import extract_number

    assert extract_number(reply) == number


@pytest.mark.parametrize(
    ("reply", "index"),
    [("B", 1), ("C. Paris", 2), ("The answer is D", 3), ("答案：A", 0), ("As I see it", None)],
)
def test_generated_letter(reply, index):
    assert choice.letter(reply) == index


# ---------------------------------------------------------------- data errors


def test_missing_csv_column_names_file_and_columns(tmp_path, mmlu_dir):
    bad = write_csv(mmlu_dir / "test" / "math_test.csv", MMLU_COLUMNS[:-1], [["q", "a", "b", "c", "d"]])
    with pytest.raises(EvalError, match=r"math_test\.csv: missing column\(s\) \['answer'\]") as e:
        choice.evaluate(choice.LAYOUTS["mmlu"], context(tmp_path, data=str(mmlu_dir)))
    assert str(bad) in str(e.value) and "'choice0', 'choice1'" in str(e.value)


def test_empty_task_is_an_error(tmp_path):
    root = tmp_path / "empty"
    write_csv(root / "test" / "math_test.csv", MMLU_COLUMNS, [])
    with pytest.raises(EvalError, match="mmlu: no questions to score"):
        choice.evaluate(choice.LAYOUTS["mmlu"], context(tmp_path, data=str(root)))
    with pytest.raises(EvalError, match=r"subject\(s\) \['nope'\].*found: math"):
        choice.evaluate(choice.LAYOUTS["mmlu"], context(tmp_path, data=str(root), subjects="nope"))


def test_a_file_or_empty_folder_names_the_expected_layout(tmp_path, mmlu_dir):
    """Issue 14.9: --data FILE.csv said "no questions to score (subjects [])"."""
    for data in (mmlu_dir / "test" / "math_test.csv", tmp_path):
        with pytest.raises(EvalError, match=r"mmlu: --data must be a folder .* ROOT/test/SUBJECT_test\.csv"):
            choice.evaluate(choice.LAYOUTS["mmlu"], context(tmp_path, data=str(data)))


def test_bad_rows_are_counted(tmp_path, mmlu_dir):
    rows = [
        ["ok?", "a", "b", "c", "d", 1],
        ["bad answer", "a", "b", "c", "d", 7],
        ["", "a", "b", "c", "d", 0],
    ]
    write_csv(mmlu_dir / "test" / "math_test.csv", MMLU_COLUMNS, rows)
    skipped: dict = {}
    items = choice.read_items(choice.LAYOUTS["mmlu"], mmlu_dir / "test" / "math_test.csv", "math", skipped)
    assert [i.question for i in items] == ["ok?"] and skipped == {"bad answer": 1, "empty question": 1}


def test_unknown_task_lists_valid_ones(tmp_path):
    with pytest.raises(SystemExit, match="unknown eval task 'mmlux'; valid: .*cmmlu.*mmlu"):
        run.cli(["--tasks", "mmlux", "--out", str(tmp_path)])


# ---------------------------------------------------------------- CLI, results and resume


def test_cli_end_to_end_and_resume(tmp_path, tiny_model_dir, tiny, mmlu_dir, monkeypatch):
    """The CLI writes results.json whose accuracies match a direct scoring; a killed run (items log cut after
    two questions, a torn last line) resumes scoring only the other three and reproduces the result; a finished
    task is skipped on re-run unless --force."""
    out = tmp_path / "run"
    argv = [
        str(tiny_model_dir),
        "--tasks",
        "mmlu",
        "--data",
        str(mmlu_dir),
        "--out",
        str(out),
        "--dtype",
        "fp32",
    ]
    first = run.cli(argv)
    res = json.loads((out / "results.json").read_text())
    assert res == first and (out / "results.md").is_file()
    metrics = res["tasks"]["mmlu"]["metrics"]
    # direct: the argmax of a plain forward over each prompt, per subject (art sorts before math)
    layout, right = choice.LAYOUTS["mmlu"], {}
    for subject in ("art", "math"):
        items = choice.read_items(layout, mmlu_dir / "test" / f"{subject}_test.csv", subject, {})
        for it in items:
            text = choice.prompt(layout, it, [])
            logps = [
                direct_logp(tiny.model, *choice.split_tokens(tiny.tokenizer, text, " " + L)) for L in "ABCD"
            ]
            right.setdefault(subject, []).append(logps.index(max(logps)) == it.answer)
    assert metrics["accuracy_micro"] == pytest.approx(sum(map(sum, right.values())) / 5)
    assert metrics["accuracy_macro"] == pytest.approx(sum(sum(v) / len(v) for v in right.values()) / 2)
    assert metrics["questions"] == 5

    log = out / "mmlu.items.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:3]) + '\n{"key": "math:0", "val')  # header + 2 items + a torn line
    (out / "results.json").unlink()
    scored = []
    real = choice.choice_logps
    monkeypatch.setattr(
        choice, "choice_logps", lambda loaded, reqs: scored.extend(reqs) or real(loaded, reqs)
    )
    again = run.cli(argv)
    assert len(scored) == 3
    assert again["tasks"]["mmlu"]["metrics"] == metrics

    scored.clear()
    run.cli(argv)  # finished under the same options: skipped
    assert scored == []
    run.cli([*argv, "--force"])
    assert len(scored) == 5
    run.cli([*argv, "--shots", "1", "--subjects", "math"])  # other options: the log restarts, math only
    assert len(scored) == 5 + 3


def test_ceval_layout_few_shot_from_dev(tmp_path, tiny_model_dir):
    """C-Eval CSVs (id,question,A..D,answer[,explanation]): scored on val, shots from dev."""
    root = tmp_path / "ceval"
    header = ["id", "question", "A", "B", "C", "D", "answer"]
    write_csv(
        root / "val" / "law_val.csv",
        header,
        [[0, "问一", "a", "b", "c", "d", "B"], [1, "问二", "a", "b", "c", "d", "D"]],
    )
    write_csv(
        root / "dev" / "law_dev.csv", [*header, "explanation"], [[0, "例题", "a", "b", "c", "d", "C", "因为"]]
    )
    ctx = context(tmp_path, tiny_model_dir, data=str(root), shots=1, dtype="fp32")
    evals, dev, skipped = choice.load(choice.LAYOUTS["ceval"], ctx)
    assert [i.answer for i in evals["law"]] == [1, 3] and skipped == {}
    assert choice.prompt(choice.LAYOUTS["ceval"], evals["law"][0], dev["law"]) == (
        "以下是中国关于法学的单项选择题，请选出其中的正确答案。\n\n"
        "例题\nA. a\nB. b\nC. c\nD. d\n答案： C\n\n问一\nA. a\nB. b\nC. c\nD. d\n答案："
    )
    res = choice.evaluate(choice.LAYOUTS["ceval"], ctx)
    assert res["metrics"]["questions"] == 2


class StubEngine:
    """Replies from a function of the last user turn; counts prompts."""

    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def generate(self, prompts, sampling, n=1, stop=()):
        self.prompts += prompts
        return [Completion(self.reply(p.messages[-1].content), "stop", 1, 3) for p in prompts]

    def close(self):
        pass


def test_generate_mode_reads_the_letter(tmp_path, mmlu_dir, monkeypatch):
    """Every reply says C: right exactly on the one question whose answer is C (math #3)."""
    engine = StubEngine(lambda q: "The answer is C.")
    monkeypatch.setattr(EvalContext, "engine", lambda self, model=None: engine)
    res = choice.evaluate(choice.LAYOUTS["mmlu"], context(tmp_path, "m", data=str(mmlu_dir), mode="generate"))
    assert res["metrics"]["accuracy_micro"] == pytest.approx(1 / 5) and len(engine.prompts) == 5
    assert res["rows"][1] == {"subject": "math", "n": 3, "accuracy": pytest.approx(1 / 3)}


def test_gsm8k_exact_match_with_limit(tmp_path, monkeypatch):
    from pixiu.eval import scores

    rows = [
        {"question": f"Q{i}", "answer": f"work\n#### {a}"} for i, a in enumerate(["1,200", "5", "-3", "8"])
    ]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    replies = {"Q0": "so 1200 in all", "Q1": "#### 6", "Q2": "It drops by -3 degrees", "Q3": "8"}
    engine = StubEngine(lambda q: replies[q.split("\n")[0]])
    monkeypatch.setattr(EvalContext, "engine", lambda self, model=None: engine)
    res = scores.gsm8k(context(tmp_path, "m", data=str(tmp_path), limit=3))
    assert res["metrics"]["exact_match"] == pytest.approx(2 / 3) and len(engine.prompts) == 3


def test_perplexity_equals_a_direct_computation(tmp_path, tiny_model_dir, tiny):
    """exp(-(sum of log p over assistant tokens of the conversations and all tokens after the first of the
    texts) / their count); the row without an instruction is counted in skipped."""
    from pixiu.chat.messages import Conversation, Message
    from pixiu.eval import scores

    data = tmp_path / "alpaca.json"
    rows = [
        {"instruction": "Hello", "output": "Hello world"},
        {"instruction": "Two plus two?", "output": "Four."},
    ]
    data.write_text(json.dumps([*rows, {"output": "no instruction"}]))
    res = scores.perplexity(context(tmp_path, tiny_model_dir, data=str(data), dtype="fp32"))
    total, count = 0.0, 0
    for r in rows:
        conv = Conversation([Message("user", r["instruction"]), Message("assistant", r["output"])])
        rendered = tiny.template.render(conv)
        with torch.no_grad():
            logp = torch.log_softmax(tiny.model(torch.tensor([rendered.input_ids])).logits[0].float(), -1)
        for t in range(1, len(rendered.input_ids)):
            if rendered.loss_mask[t]:
                total, count = total + float(logp[t - 1, rendered.input_ids[t]]), count + 1
    assert res["metrics"]["tokens"] == count
    assert res["metrics"]["perplexity"] == pytest.approx(math.exp(-total / count), rel=1e-4)
    assert res["skipped"] == {"bad row": 1}


@pytest.fixture
def reward_model(tmp_path, tiny_model_dir):
    """A tiny reward model: the tiny LM with a seeded scalar head, saved as `pixiu train rm` saves one."""
    from pixiu.model import heads, io

    torch.manual_seed(1)
    loaded, scalar = heads.load_scalar(ModelConfig(str(tiny_model_dir), dtype="fp32"))
    return io.save(tmp_path / "rm", loaded, head=scalar.head)


def direct_rewards(rm_path, convs: list[tuple[str, str]]) -> list[float]:
    """The head at the last token of each (prompt, reply), one unpadded row at a time."""
    from pixiu.chat.messages import Conversation, Message
    from pixiu.data.collate import collate
    from pixiu.model import heads

    loaded, scalar = heads.load_scalar(ModelConfig(str(rm_path), dtype="fp32"))
    out = []
    for prompt, reply in convs:
        conv = Conversation([Message("user", prompt), Message("assistant", reply)])
        with torch.no_grad():
            batch = collate([[loaded.template.render(conv)]], loaded.tokenizer.pad_token_id)
            out.append(float(scalar.eval()(batch)))
    return out


def test_rm_accuracy_and_reward_match_direct_scores(tmp_path, reward_model, monkeypatch):
    """rm-accuracy: the share of pairs whose chosen reply scores higher, each reply scored alone; a row without
    a rejected reply is counted in skipped. reward: the mean of the RM's scores of MODEL's replies."""
    from pixiu.eval import reward

    pairs = [
        ("Hello", "Hello world", "No."),
        ("Two plus two?", "Four.", "Five."),
        ("Help me", "Yes", "Maybe"),
    ]
    data = tmp_path / "pairs.json"
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in pairs]
    data.write_text(json.dumps([*rows, {"prompt": "x", "chosen": "y"}]))
    ctx = context(tmp_path, reward_model, data=str(data), dtype="fp32")
    res = reward.rm_accuracy(ctx)
    scores = direct_rewards(reward_model, [(p, reply) for p, c, r in pairs for reply in (c, r, "Thanks!")])
    direct = [scores[3 * i] > scores[3 * i + 1] for i in range(3)]
    assert res["metrics"]["accuracy"] == pytest.approx(sum(direct) / 3) and res["metrics"]["pairs"] == 3
    assert res["skipped"] == {"bad row": 1}

    engine = StubEngine(lambda q: "Thanks!")
    monkeypatch.setattr(EvalContext, "engine", lambda self, model=None: engine)
    ctx = context(tmp_path, "policy", data=str(data), dtype="fp32", reward_model=str(reward_model), limit=2)
    res = reward.reward(ctx)
    want = [scores[2], scores[5]]  # "Thanks!" to the first two prompts
    assert res["metrics"]["mean_reward"] == pytest.approx(sum(want) / 2, abs=1e-5)


# ---------------------------------------------------------------- slow: SmolLM2 on shared data


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "mmlu").is_dir(), reason="shared data absent")
def test_smollm2_mmlu_golden(tmp_path, monkeypatch):
    """Measured once: 6 of the first 20 marketing questions right (fp32, zero-shot, log-likelihood)."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    out = tmp_path / "smol"
    argv = ["smollm2-135m", "--tasks", "mmlu", "--subjects", "marketing", "--limit", "20", "--out", str(out)]
    res = run.cli([*argv, "--dtype", "fp32"])
    assert res["tasks"]["mmlu"]["metrics"]["accuracy_micro"] == pytest.approx(6 / 20)


# ---------------------------------------------------------------- gsm8k in lm-eval's format


class TextEngine:
    """Records each raw prompt and the stop strings it came with; replies from a function of the prompt."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def generate(self, prompts, sampling, n=1, stop=()):
        self.calls += [(p, tuple(stop)) for p in prompts]
        return [Completion(self.reply(p), "stop", 1, 3) for p in prompts]

    def close(self):
        pass


def gsm8k_files(root: Path, train: int, test: int) -> Path:
    rows = lambda name, n: "".join(  # noqa: E731
        json.dumps({"question": f"{name}{i}?", "answer": f"{name} work {i}\n#### {i}"}) + "\n"
        for i in range(n)
    )
    (root / "train.jsonl").write_text(rows("Q", train))
    (root / "test.jsonl").write_text(rows("T", test))
    return root


def test_lm_eval_gsm8k_prompt_is_byte_exact(tmp_path, monkeypatch):
    """lm-eval's gsm8k.yaml: "Question: {{question}}\\nAnswer:" after the shots, each shot "Question: q\\nAnswer: a"
    followed by "\\n\\n"; shots from train by random.Random(1234).sample(train, k), one draw per test problem in
    order: [3, 0] then [0, 3] of a 4-problem train split. Raw text, "Question:" as a stop."""
    from pixiu.eval import scores

    gsm8k_files(tmp_path, train=4, test=2)
    engine = TextEngine(lambda p: " T work\n#### 1" if p.endswith("T1?\nAnswer:") else " so 7")
    monkeypatch.setattr(EvalContext, "engine", lambda self, model=None: engine)
    res = scores.gsm8k(context(tmp_path, "m", data=str(tmp_path), gsm8k_prompt="lm-eval", shots=2))
    assert [p for p, _ in engine.calls] == [
        "Question: Q3?\nAnswer: Q work 3\n#### 3\n\nQuestion: Q0?\nAnswer: Q work 0\n#### 0\n\nQuestion: T0?\nAnswer:",
        "Question: Q0?\nAnswer: Q work 0\n#### 0\n\nQuestion: Q3?\nAnswer: Q work 3\n#### 3\n\nQuestion: T1?\nAnswer:",
    ]
    assert engine.calls[0][1] == ("Question:", "</s>", "<|im_end|>")
    assert res["metrics"]["exact_match"] == 0.5 and res["metrics"]["strict_match"] == 0.5
    assert res["rows"][0]["prompt"] == "lm-eval"


def test_lm_eval_gsm8k_defaults_to_five_shots_and_zero_shot_is_the_bare_question(tmp_path):
    from pixiu.config import EvalConfig
    from pixiu.eval import scores

    gsm8k_files(tmp_path, train=6, test=1)
    _, prompts, _ = scores.gsm8k_prompts(EvalConfig(gsm8k_prompt="lm-eval"), tmp_path, None)
    assert prompts[0].count("Question: ") == 6 and prompts[0].endswith("\n\nQuestion: T0?\nAnswer:")
    _, prompts, stop = scores.gsm8k_prompts(EvalConfig(gsm8k_prompt="lm-eval", shots=0), tmp_path, None)
    assert prompts == ["Question: T0?\nAnswer:"] and "Question:" in stop
    _, prompts, stop = scores.gsm8k_prompts(EvalConfig(), tmp_path, None)  # pixiu's: a chat turn
    assert prompts[0].messages[-1].content.startswith("T0?\nSolve it step by step") and stop == ()


@pytest.mark.parametrize(
    "reply, solution, right",
    [
        ("so #### 1,200.", "work\n#### 1200", True),
        ("#### -3.", "#### -3", True),
        ("#### $5", "#### 5", False),  # the regex wants the digits right after the marks
        ("the answer is 5", "#### 5", False),  # no '####': strict-match finds nothing
        ("#### 4 then #### 5", "#### 5", False),  # the first one counts
    ],
)
def test_strict_match_is_lm_evals_filter(reply, solution, right):
    from pixiu.eval import scores

    assert scores.strict_match(reply, solution) is right


# ---------------------------------------------------------------- typed options


def test_eval_help_lists_every_field_with_its_doc(capsys):
    from pixiu import cli, config
    from pixiu.config import EvalConfig

    cli.main(["eval", "--help"])  # returns: exit status 0
    out = capsys.readouterr().out
    rows = config.describe(EvalConfig, "eval.")
    assert len(rows) >= 28 and all(doc for _, _, doc in rows)
    for name, default, doc in rows:
        assert f"--{name}={default}\n" + "\n".join(f"      {line}" for line in doc.splitlines()) in out
    assert "--eval.gsm8k_prompt='pixiu'" in out


def test_recipe_eval_section_then_command_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {dtype: fp32}\neval: {model: runs/x, tasks: gsm8k, limit: 5, gsm8k_prompt: lm-eval}\n"
    )
    cfg = run.parse(["--config", str(recipe), "--eval.limit=7", "--max-new-tokens", "32", "--force"])
    assert (cfg.model, cfg.tasks, cfg.limit, cfg.gsm8k_prompt) == ("runs/x", "gsm8k", 7, "lm-eval")
    assert cfg.max_new_tokens == 32 and cfg.force is True
    cfg = run.parse(["other", "--config", str(recipe), "--judge", "http://h:1/v1", "--tie-eps", "1e-2"])
    assert (cfg.model, cfg.judge, cfg.tie_eps) == ("other", "http://h:1/v1", 0.01)
    assert run.parse(["m", "--eval.against=001"]).against == "001"  # text stays text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["m", "--bogus=1"], "unknown field(s) ['bogus'] in eval; valid: ['against', 'bootstrap'"),
        (["m", "--eval.limit=many"], "eval.limit must be int"),
        (
            ["m", "--gsm8k-prompt", "harness"],
            "eval.gsm8k_prompt='harness' is not one of ['pixiu', 'lm-eval']",
        ),
        (["m", "--tasks"], "--tasks needs a value"),
        (["a", "b"], "unexpected argument 'b'"),
    ],
)
def test_bad_eval_options_are_named(argv, message):
    with pytest.raises(SystemExit) as e:
        run.cli([*argv])
    assert message in str(e.value)


def test_recipe_without_an_eval_section_is_an_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("pipeline: {stages: [{name: sft}]}\n")
    with pytest.raises(SystemExit, match="reads the recipe's `eval:` section; it has none"):
        run.cli(["--config", str(recipe)])
