"""Judged evals: position swapping on scripted verdicts, FastChat parsing, a judge that times out or talks
nonsense, win rates through a real HTTP judge (pixiu's own server over scripted judge engines) between two tiny
models, MT-bench grading by the same kind of judge, and Elo from a feedback store equal to pixiu.feedback.ratings."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from fake_engine import FakeEngine
from live_server import serving

from pixiu.chat.messages import Conversation
from pixiu.config import EvalConfig
from pixiu.data import read_rows
from pixiu.eval import endpoint, judge, mtbench
from pixiu.eval.run import EvalContext, EvalError
from pixiu.eval.run import cli as eval_cli
from pixiu.feedback import open_store, ratings
from pixiu.serve import api

ANSWER = r"\[The Start of Assistant {}'s Answer\]\n(.*?)\n\[The End of Assistant {}'s Answer\]"


class ScriptJudge(FakeEngine):
    """A judge engine whose reply is rule(last user message); it records every prompt it was sent."""

    def __init__(self, name: str, rule, delay: float = 0.0):
        super().__init__(name, context_len=10**6, delay=delay)
        self.rule, self.seen = rule, []

    def reply(self, prompt, sampling) -> str:
        self.seen.append(prompt)
        return self.rule(prompt.messages[-1].content)


def answers(text: str) -> tuple[str, str]:
    return tuple(re.search(ANSWER.format(x, x), text, re.S).group(1) for x in "AB")


def longer(text: str) -> str:
    """Prefers the longer answer, whichever side it is on; equal lengths tie: a judge without position bias."""
    first, second = answers(text)
    return "Verdict: " + (
        "[[A]]" if len(first) > len(second) else "[[B]]" if len(second) > len(first) else "[[C]]"
    )


JUDGES = {
    "longer": lambda: ScriptJudge("longer", longer),
    "first": lambda: ScriptJudge("first", lambda t: "The first one. [[A]]"),  # pure position bias
    "garbage": lambda: ScriptJudge("garbage", lambda t: "Both answers have merit."),
    "slow": lambda: ScriptJudge("slow", lambda t: "[[A]] [[A]]", delay=0.2),
}


@pytest.fixture(scope="module")
def judges():
    return {name: make() for name, make in JUDGES.items()}


@pytest.fixture(scope="module")
def judge_url(judges):
    with serving(api.create_app(judges)) as base:
        url = f"{base}/v1"
        yield url


def context(tmp_path, model="fake-a", **opts) -> EvalContext:
    return EvalContext(EvalConfig(model=model or "", **opts), tmp_path / "out")


@pytest.fixture
def fake_models(monkeypatch):
    """ctx.engine(name) -> a FakeEngine replying 'NAME says: PROMPT' (no model loading)."""
    engines = {}

    def load(model, **kw):
        return engines.setdefault(model, FakeEngine(model))

    monkeypatch.setattr("pixiu.engine.load_engine", load)
    return engines


def references(tmp_path, n: int) -> Path:
    rows = [{"instruction": f"question {i}", "output": f"reference reply {i}"} for i in range(n)]
    path = tmp_path / "refs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- pure logic


class Script:
    """A judge client answering from a table (first answer, second answer) -> reply; counts requests."""

    def __init__(self, table: dict):
        self.table, self.calls = table, 0

    def chat(self, messages, temperature=0.0, seed=None) -> str:
        self.calls += 1
        return self.table[answers(messages[-1]["content"])]


def test_position_swapping_on_scripted_verdicts():
    """Six pairs (A's reply a_i, B's reply b_i); g1 shows a_i first, g2 shows b_i first.
    0: A / B      -> A both times: win, consistent        3: C / C  -> tie, consistent
    1: A / B      (text around the mark) win, consistent  4: A / A  -> first position both times: tie, inconsistent
    2: B / A      -> B both times: loss, consistent       5: B / C  -> tie, inconsistent
    wins 2, ties 3, losses 1: win rate (2 + 3/2) / 6 = 0.58333; consistency 4/6; decisive verdicts 9, of which
    5 picked the answer shown first (0: A, 1: A, 2: A, 4: A A) -> 5/9."""
    verdicts = [("[[A]]", "[[B]]"), ("I pick [[A]].", "Verdict: [[B]]"), ("[[B]]", "[[A]]"), ("[[C]]", "[[C]]"),
                ("[[A]]", "[[A]]"), ("[[B]]", "[[C]]")]  # fmt: skip
    table = {}
    for i, (g1, g2) in enumerate(verdicts):
        table[(f"a{i}", f"b{i}")], table[(f"b{i}", f"a{i}")] = g1, g2
    client = Script(table)
    items = [judge.PairItem(str(i), Conversation.from_openai([{"role": "user", "content": f"q{i}"}]), f"a{i}", f"b{i}")
             for i in range(6)]  # fmt: skip
    rows = judge.LLMJudge(client, parallel=4).judge(items)
    assert [(r["outcome"], r["consistent"]) for r in rows] == [
        ("win", True), ("win", True), ("loss", True), ("tie", True), ("tie", False), ("tie", False)
    ]  # fmt: skip
    assert [(r["g1"], r["g2"]) for r in rows][4:] == [("A", "A"), ("B", "tie")]
    assert client.calls == 12
    m = judge.tally(rows)
    assert m == pytest.approx({"pairs": 6, "wins": 2, "ties": 3, "losses": 1, "win_rate": 3.5 / 6,
                               "consistency": 4 / 6, "first_position_rate": 5 / 9})  # fmt: skip


class Letters:
    """A judge client whose first-token top_logprobs come from a table keyed by (first answer, second answer)."""

    def __init__(self, table: dict):
        self.table = table

    def first_token(self, messages, top=20) -> list[tuple[str, float]]:
        assert "one letter only" in messages[0]["content"] and "[[A]]" not in messages[0]["content"]
        got = self.table[answers(messages[-1]["content"])]
        if isinstance(got, Exception):
            raise got
        return [(token, math.log(p)) for token, p in got.items()]


def test_letter_verdicts_from_logprobs():
    """Pair 0: A 0.5 vs B 0.3 -> A; swapped, "B" (0.2) and " [B" (0.25) add up to 0.45 > A 0.4 -> B (the same
    reply, now second): a consistent win. Pair 1: no letter among the top tokens -> unparsable. Pair 2: the
    endpoint refused -> judge_rejected. Pair 3: C then C -> a consistent tie."""
    table = {("a0", "b0"): {"A": 0.5, " B": 0.3, "The": 0.1}, ("b0", "a0"): {"A": 0.4, "B": 0.2, " [B": 0.25},
             ("a1", "b1"): {"The": 0.9}, ("b1", "a1"): {"A": 0.9},
             ("a2", "b2"): endpoint.JudgeRejected("HTTP 400: too long"), ("b2", "a2"): {"A": 0.9},
             ("a3", "b3"): {"C": 0.6, "A": 0.3}, ("b3", "a3"): {"\nC": 0.5}}  # fmt: skip
    items = [judge.PairItem(str(i), Conversation.from_openai([{"role": "user", "content": f"q{i}"}]), f"a{i}", f"b{i}")
             for i in range(4)]  # fmt: skip
    rows = judge.LLMJudge(Letters(table), letters=True).judge(items)
    assert (rows[0]["outcome"], rows[0]["consistent"], rows[0]["g1"], rows[0]["g2"]) == (
        "win",
        True,
        "A",
        "B",
    )
    assert rows[0]["judge_1"] == "A 0.500 B 0.300" and rows[0]["judge_2"] == "A 0.400 B 0.450"
    assert rows[1]["skip"] == "unparsable" and rows[1]["judge_1"] == "no letter in ['The']"
    assert rows[2]["skip"] == "judge_rejected"
    assert (rows[3]["outcome"], rows[3]["consistent"]) == ("tie", True)
    assert judge.tally(rows)["win_rate"] == 0.75


def test_first_token_logprobs_from_a_pixiu_server(tiny_model_dir):
    """JudgeClient.first_token reads what `pixiu serve` returns: the engine's own top-20 first-token logprobs."""
    from pixiu.engine import Sampling, load_engine

    engine = load_engine(str(tiny_model_dir), name="tiny", max_batch=2)
    try:
        with serving(api.create_app({"tiny": engine})) as base:
            messages = [{"role": "user", "content": "A or B? One letter."}]  # the tiny model's window is 512
            got = endpoint.JudgeClient(f"{base}/v1", "tiny").first_token(messages)
        conv = Conversation.from_openai(messages)
        (want,) = engine.generate([conv], Sampling(1, logprobs=20))[0].logprobs
        assert [t for t, _ in got] == [engine.tokenizer.decode([i]) for i, _ in want.top]
        assert [lp for _, lp in got] == pytest.approx([lp for _, lp in want.top], abs=1e-6) and len(got) == 20
    finally:
        engine.close()


def test_verdict_parsing_follows_fastchat():
    parse = judge.parse_verdict
    assert [parse(t) for t in ("[[A]]", "so [[B]].", "[[C]]", "garbage", "[A]", "[[a]]", "")] == [
        "A", "B", "tie", None, None, None, None
    ]  # fmt: skip
    # FastChat looks for [[A]] first, then [[B]], then [[C]], wherever they sit in the text
    assert parse("[[B]] or rather [[A]]") == "A" and parse("[[C]] no, [[B]]") == "B"


def test_rating_parsing_follows_fastchat():
    r = mtbench.parse_rating
    assert [r(t) for t in ("Rating: [[7]]", "[[8.5]]", "score [6] of 10", "[[3]] then [[9]]", "[2] and [[9]]")] == [
        7.0, 8.5, 6.0, 3.0, 9.0
    ]  # fmt: skip
    assert [r(t) for t in ("no rating", "[[ten]]", "[[-3]]")] == [None, None, None]
    assert [mtbench.grade(t) for t in ("[[11]]", "[[0]]", "[10]", "[[1]]")] == [None, None, 10.0, 1.0]


def test_chat_url_and_judge_choice(tmp_path):
    assert endpoint.chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert endpoint.chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert endpoint.chat_url("http://h/x/v1/chat/completions") == "http://h/x/v1/chat/completions"
    with pytest.raises(EvalError, match="needs a judge"):
        judge.make_judge(context(tmp_path))
    with pytest.raises(EvalError, match="not both"):
        judge.make_judge(context(tmp_path, reward_model="rm", judge="http://h"))


# ---------------------------------------------------------------- a judge that fails


def test_garbage_verdicts_are_retried_then_counted(tmp_path, judge_url, judges, fake_models):
    """Two pairs; each order asked once at temperature 0 and once more sampled (parse_retries=1): 8 requests, both
    pairs skipped as unparsable, the run finishes with nothing judged."""
    before = len(judges["garbage"].requests)
    ctx = context(tmp_path, against=str(references(tmp_path, 2)), judge=judge_url, judge_model="garbage",
                  parse_retries=1, max_new_tokens=8)  # fmt: skip
    out = judge.winrate(ctx)
    assert len(judges["garbage"].requests) - before == 8
    assert out["skipped"] == {"unparsable": 2}
    assert out["metrics"] == {"pairs": 0, "wins": 0, "ties": 0, "losses": 0}
    assert [r["skip"] for r in out["rows"]] == ["unparsable"] * 2
    assert out["rows"][0]["a"] == "fake-a says: question 0" and out["rows"][0]["b"] == "reference reply 0"


def test_a_position_biased_judge_yields_only_ties(tmp_path, judge_url, fake_models):
    """The 'first' judge always names the answer shown first: A wins one order and loses the other, so every
    pair is an inconsistent tie; win rate 0.5, consistency 0, first-position rate 1."""
    ctx = context(
        tmp_path, against=str(references(tmp_path, 3)), judge=judge_url, judge_model="first", max_new_tokens=8
    )
    out = judge.winrate(ctx)
    assert out["metrics"] == {"pairs": 3, "wins": 0, "ties": 3, "losses": 0, "win_rate": 0.5, "consistency": 0.0,
                              "first_position_rate": 1.0}  # fmt: skip
    assert [(r["g1"], r["g2"], r["consistent"]) for r in out["rows"]] == [("A", "A", False)] * 3


def test_judge_timeouts_are_retried_then_counted_and_not_logged(tmp_path, judge_url, fake_models):
    """The slow judge needs 0.4 s a reply; the client waits 0.1 s, retries once after 0.01 s, then gives up. The
    pairs are skipped as judge_error, and left out of the resume log so a re-run asks again."""
    ctx = context(tmp_path, against=str(references(tmp_path, 2)), judge=judge_url, judge_model="slow",
                  judge_timeout=0.1, judge_retries=1, judge_backoff=0.01, judge_max_tokens=2, max_new_tokens=8)  # fmt: skip
    out = judge.winrate(ctx)
    assert out["skipped"] == {"judge_error": 2} and out["metrics"]["pairs"] == 0
    assert "timed out after 0.1 s (2 attempts)" in out["rows"][0]["judge_1"]
    assert len(ctx.items("winrate")) == 0


def test_wrong_judge_model_stops_the_run_and_long_prompts_are_skipped(tmp_path, judge_url, fake_models):
    """A 404 (wrong model name) is a setup mistake: it stops the run. A reply budget that does not fit model A's
    64-token context skips the item before any judge call."""
    refs = str(references(tmp_path, 1))
    ctx = context(tmp_path, against=refs, judge=judge_url, judge_model="nope", max_new_tokens=8)
    with pytest.raises(EvalError, match="HTTP 404.*'nope' does not exist"):
        judge.winrate(ctx)
    out = judge.winrate(context(tmp_path / "long", against=refs, judge=judge_url, judge_model="nope"))
    assert out["skipped"] == {"context_too_long": 1} and out["metrics"]["pairs"] == 0


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def other_model_dir(tiny_model_dir, tmp_path_factory):
    """A copy of the tiny model with different random weights: a model B that answers differently."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
    path = tmp_path_factory.mktemp("tiny-llama-b")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


def test_winrate_between_two_models_through_a_real_http_judge(
    tmp_path, judge_url, judges, tiny_model_dir, other_model_dir
):
    """CLI -> both tiny models answer greedily -> pixiu's server judges each pair in both orders.
    The 'longer' judge has no position bias: every pair is consistent and the outcome is the length comparison."""
    out = tmp_path / "run"
    base = [str(tiny_model_dir), "--tasks", "winrate", "--against", str(other_model_dir), "--judge", judge_url,
            "--max-new-tokens", "8", "--out", str(out)]  # fmt: skip
    res = eval_cli([*base, "--judge-model", "longer", "--limit", "2"])["tasks"]["winrate"]
    assert res["metrics"]["pairs"] == 2 and len(judges["longer"].requests) == 4
    res = eval_cli([*base, "--judge-model", "longer", "--limit", "3"])["tasks"]["winrate"]
    assert len(judges["longer"].requests) == 6  # resumed: only the third pair was judged
    logged = [
        json.loads(line)["value"] for line in (out / "winrate.items.jsonl").read_text().splitlines()[1:]
    ]
    assert len(logged) == 3 and any(r["a"] != r["b"] for r in logged)
    expect = [
        "win" if len(r["a"]) > len(r["b"]) else "loss" if len(r["b"]) > len(r["a"]) else "tie" for r in logged
    ]
    assert [r["outcome"] for r in res["rows"]] == expect
    m = res["metrics"]
    assert (m["wins"], m["ties"], m["losses"]) == tuple(
        float(expect.count(x)) for x in ("win", "tie", "loss")
    )
    assert m["win_rate"] == pytest.approx((expect.count("win") + 0.5 * expect.count("tie")) / 3)
    assert m["consistency"] == 1.0 and res["skipped"] == {}
    prompts = [row["prompt"] for _, row in read_rows(judge.DEFAULT_PROMPTS)][:3]
    assert [r["prompt"] for r in logged] == prompts


def test_reward_model_judge_scores_each_pair_once(tmp_path, tiny_model_dir, fake_models):
    """A reward model (the tiny model with a fresh head) judges A against references; reference 1 is A's own
    reply, so that pair ties exactly; the others follow score_replies on the same conversations."""
    refs = references(tmp_path, 3)
    rows = [json.loads(line) for line in refs.read_text().splitlines()]
    rows[1]["output"] = "fake-a says: question 1"
    refs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.manual_seed(0)
    out = judge.winrate(
        context(tmp_path, against=str(refs), reward_model=str(tiny_model_dir), max_new_tokens=8)
    )
    got = out["rows"]
    assert got[1]["outcome"] == "tie" and got[1]["score_a"] == got[1]["score_b"]
    for r in got:
        d = r["score_a"] - r["score_b"]
        assert r["outcome"] == ("tie" if abs(d) <= 1e-3 else "win" if d > 0 else "loss")
    assert "consistency" not in out["metrics"] and out["metrics"]["pairs"] == 3


# ---------------------------------------------------------------- MT-bench


PROMPTS = {  # FastChat's placeholders, with a tag the scripted judge grades by
    "single-v1": "GEN1 {question} || {answer}",
    "single-math-v1": "MATH1 {question} || {ref_answer_1} || {answer}",
    "single-v1-multi-turn": "GEN2 {question_1} || {answer_1} || {question_2} || {answer_2}",
    "single-math-v1-multi-turn": "MATH2 {question_1} || {ref_answer_1} || {answer_1} || {question_2} || "
    "{ref_answer_2} || {answer_2}",
}
GRADES = {"GEN1": "Rating: [[4]]", "MATH1": "[[8]]", "GEN2": "I give it a [6].", "MATH2": "[[2]] out of 10"}


def grader(text: str) -> str:
    return "no idea" if "GARBAGE" in text else GRADES[text.split()[0]]


class Recording(FakeEngine):
    """The model under test: remembers every conversation it was asked to continue."""

    def __init__(self, name):
        super().__init__(name, context_len=512)
        self.convs = []

    def reply(self, prompt, sampling):
        self.convs.append([(m.role, m.content) for m in prompt.messages])
        return super().reply(prompt, sampling)


def write_bench(root: Path) -> Path:
    qdir = root / "mt_bench"
    (qdir / "reference_answer").mkdir(parents=True)
    questions = [
        {"question_id": 1, "category": "writing", "turns": ["write a poem", "shorter"]},
        {"question_id": 2, "category": "math", "turns": ["1+1?", "times 3?"]},
        {"question_id": 3, "category": "reasoning", "turns": ["why?", "why not?"]},  # no reference answer
        {"question_id": 4, "category": "writing", "turns": ["a story", "GARBAGE please"]},
    ]
    (qdir / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    ref = {"question_id": 2, "choices": [{"index": 0, "turns": ["2", "6"]}]}
    (qdir / "reference_answer" / "gpt-4.jsonl").write_text(json.dumps(ref) + "\n")
    prompts = [{"name": n, "type": "single", "system_prompt": "SYS", "prompt_template": t,
                "output_format": "[[rating]]"} for n, t in PROMPTS.items()]  # fmt: skip
    (root / "judge_prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return root


def test_mtbench_grades_both_turns_through_a_real_http_judge(tmp_path, monkeypatch):
    """Grades: writing 4 then 6, math (with its reference) 8 then 2, reasoning skipped twice (no reference),
    question 4's second turn unparsable after 1 + 2 retries. Graded 5: mean 24/5, turn 1 (4+8+4)/3, turn 2
    (6+2)/2, writing (4+6+4)/3, math 5."""
    model = Recording("m")
    monkeypatch.setattr("pixiu.engine.load_engine", lambda name, **kw: model)
    grading = ScriptJudge("grader", grader)
    with serving(api.create_app({"grader": grading})) as base:
        url = f"{base}/v1"
        ctx = context(tmp_path, data=str(write_bench(tmp_path / "mt")), judge=url, max_new_tokens=16)
        out = mtbench.mtbench(ctx)  # --judge-model left out: the only served model
    assert out["metrics"] == pytest.approx({"graded": 5, "score": 4.8, "turn1": 16 / 3, "turn2": 4.0,
                                            "category/math": 5.0, "category/writing": 14 / 3})  # fmt: skip
    assert out["skipped"] == {"no_reference": 2, "unparsable_grade": 1}
    assert [(r["question_id"], r["score_1"], r["score_2"]) for r in out["rows"]] == [
        (1, 4.0, 6.0), (2, 8.0, 2.0), (3, None, None), (4, 4.0, None)
    ]  # fmt: skip
    # turn 2 continues the model's own first answer
    assert [("user", "1+1?"), ("assistant", "m says: 1+1?"), ("user", "times 3?")] in model.convs
    math2 = next(p for p in grading.seen if p.messages[-1].content.startswith("MATH2"))
    assert [(m.role, m.content) for m in math2.messages] == [
        ("system", "SYS"), ("user", "MATH2 1+1? || 2 || m says: 1+1? || times 3? || 6 || m says: times 3?")
    ]  # fmt: skip
    assert sum("GARBAGE" in p.messages[-1].content for p in grading.seen) == 3


@pytest.mark.slow
def test_shared_mt_bench_files_load_and_render():
    """The real FastChat files: 80 questions, 8 categories, references for the 30 math/reasoning/coding ones,
    and every turn renders a judge prompt with the [[rating]] instruction."""
    path = Path(__file__).parents[2] / "shared" / "data" / "mt_bench"
    if not path.is_dir():
        pytest.skip("shared MT-bench data absent")
    bench = mtbench.load_bench(path)
    assert len(bench.questions) == 80 and len({q["category"] for q in bench.questions}) == 8
    assert len(bench.refs) == 30
    for q in bench.questions:
        for turn in (1, 2):
            messages = mtbench.judge_messages(bench, q, ["x", "y"], turn)
            assert messages is not None and '"[[rating]]"' in messages[1]["content"] + messages[0]["content"]


# ---------------------------------------------------------------- Elo


def test_elo_from_store_equals_ratings(tmp_path):
    """Elo of hand-made votes, through the eval, equals pixiu.feedback.ratings on the same games; the first vote
    alone would give x 1016, y 984 (K=32, expected 0.5). The self-vote is counted under skipped."""
    prompt = [{"role": "user", "content": "hi"}]
    votes = [("x", "y", "a"), ("x", "y", "a"), ("y", "z", "tie"), ("z", "x", "b"), ("z", "y", "both_bad"),
             ("x", "x", "a")]  # fmt: skip
    db = tmp_path / "fb.db"
    with open_store(db) as store:
        for a, b, w in votes:
            store.add_vote(prompt, a, f"{a} reply", b, f"{b} reply", w)
        expected_stats = store.stats(bootstrap=20)["elo"]
    out = judge.elo(context(tmp_path, model=None, db=str(db), bootstrap=20))
    games = [ratings.Game(*v) for v in votes]
    assert out["rows"] == ratings.elo_table(games, bootstrap=20, seed=0) == expected_stats
    online, bt = ratings.online_elo(games), ratings.bradley_terry(games)
    assert out["metrics"] == {"votes": 6.0, **{f"elo/{m}": round(online[m], 1) for m in "xyz"},
                              **{f"bt/{m}": round(bt[m], 1) for m in "xyz"}}  # fmt: skip
    assert out["skipped"] == {"same_model": 1}
    assert ratings.online_elo(games[:1]) == {"x": 1016.0, "y": 984.0}
    with pytest.raises(EvalError, match="needs --db"):
        judge.elo(context(tmp_path, model=None))


def test_judge_settings_reach_the_client_from_the_command_line(tmp_path):
    """Every judge setting the code reads is a flag; transport settings stay out of the resume fingerprint."""
    from pixiu.eval.run import context, fingerprint, parse

    argv = ["m", "--tasks", "winrate", "--out", str(tmp_path), "--judge", "http://127.0.0.1:9/v1", "--judge-model",
            "j", "--judge-timeout", "0.5", "--judge-retries", "0", "--judge-backoff", "0.25", "--judge-max-tokens",
            "7", "--judge-parallel", "3", "--parse-retries", "1"]  # fmt: skip
    ctx = context(parse(argv))
    client = judge.client_from(ctx)
    assert (client.timeout, client.retries, client.backoff, client.max_tokens) == (0.5, 0, 0.25, 7)
    assert judge.ask_settings(ctx.cfg) == (1, 3)
    assert "judge_timeout" not in fingerprint(ctx.cfg) and "parse_retries" in fingerprint(ctx.cfg)
