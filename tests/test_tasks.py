"""Tasks: number extraction on tricky replies, deterministic non-overlapping splits, format partial credit."""

from pathlib import Path

import pytest

from pixiu.chat.messages import Conversation, Message
from pixiu.data import tasks
from pixiu.data.tasks import canonical, extract_number, get_task, numbers, resolve, reward_fn

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("#### 72", "72"),
        ("She earns $1,234 in total.", "1234"),  # thousands separator and a dollar sign
        ("The answer is $1,234.50.", "1234.5"),  # trailing sentence period, trailing zero
        ("It drops to -7 degrees.", "-7"),
        ("It drops to −7 degrees.", "-7"),  # unicode minus
        ("10-5 = 5", "5"),  # a hyphen between digits is an operator, not a sign
        ("He buys 3 apples at 2 each, so 6 apples... #### 6 apples", "6"),
        ("#### 18 (not 20)", "18"),  # the number right after '####' wins over later ones
        ("The answer is 42. Check: 40 + 2 = 42, and 100 more is 142.", "42"),
        ("Answer: 12kg", "12"),  # units glued on
        ("so \\boxed{0.75} hours", "0.75"),
        ("3 boxes of 12 eggs make 36", "36"),  # no marker: the last number
        ("It costs 5.0 dollars", "5"),
        ("#### 1,000,000", "1000000"),
        ("1,2345", "2345"),  # not a thousands group: two numbers
        ("#### no number here, but 9 later", "9"),
        ("no digits at all", None),
        ("", None),
    ],
)
def test_extract_number(reply, expected):
    assert extract_number(reply) == expected


def test_numbers_and_canonical():
    assert numbers("x2 and 3, 4 and 50% of $7.25") == ["3", "4", "50", "7.25"]
    assert canonical("-0") == "0" and canonical("007") == "7" and canonical("1,234.500") == "1234.5"


def _conv(q: str, ref: str | None = None) -> Conversation:
    c = Conversation([Message("user", q)])
    return c.add("assistant", ref) if ref is not None else c


def test_arithmetic_is_deterministic_and_splits_never_overlap():
    a, b = get_task("arithmetic"), get_task("arithmetic", seed="0")
    train, test = a.examples("train"), a.examples("test")
    assert [e.prompt for e in test] == [e.prompt for e in b.examples("test")]
    qs = lambda xs: {e.prompt.messages[-1].content for e in xs}  # noqa: E731
    assert not qs(train) & qs(test) and len(test) == 500
    assert len(train) + len(test) == 90 * 90 + 90 * 91 // 2  # all sums + subtractions with a >= b
    other = get_task("arithmetic", seed=1).examples("test")
    assert qs(other) != qs(test)
    ex = test[0]
    a_, op, b_ = ex.prompt.messages[-1].content.split()[2:5]
    assert ex.answer == str(int(a_) + int(b_.rstrip("?")) if op == "+" else int(a_) - int(b_.rstrip("?")))
    assert all(int(e.answer) >= 0 for e in train)


def test_arithmetic_scores_with_or_without_the_reference():
    task = get_task("arithmetic")
    q = "What is 23 + 19? Reply with only the number."
    assert task.evaluate(_conv(q, "42"), "42") == 1.0
    assert task.evaluate(_conv(q), "23 + 19 = 42") == 1.0  # a bare prompt: the answer is recomputed
    assert task.reward(_conv(q), "41") == 0.0
    assert task.evaluate(_conv("What is 50 - 8?"), "The answer is 42.") == 1.0
    with pytest.raises(ValueError, match="not an arithmetic question"):
        task.evaluate(_conv("hello"), "42")
    with pytest.raises(ValueError, match="splits"):
        task.examples("validation")


def test_format_task_gives_partial_credit():
    """A quarter each: opening tag, closing tag after it, a lone number inside, nothing after the close."""
    task = get_task("format")
    ex = task.examples("test")[0]
    assert ex.prompt.messages[-1].content.endswith("<answer></answer> tags.")
    c = ex.conversation
    cases = {
        "<answer>42</answer>": 1.0,
        "Let me think. <answer> 42 </answer>\n": 1.0,
        "<answer>42</answer> done": 0.75,
        "<answer>forty-two</answer>": 0.75,
        "<answer>42": 0.25,
        "42</answer>": 0.0,
        "42": 0.0,
    }
    assert {r: task.reward(c, r) for r in cases} == cases
    assert task.evaluate(c, "<answer>7</answer>") == 1.0  # form only: a wrong number still follows it
    assert task.evaluate(c, "<answer>7</answer> ok") == 0.0


def test_gsm8k_reads_answers_after_hashes():
    if not (GSM8K / "test.jsonl").exists():
        pytest.skip("shared gsm8k data not present")
    task = get_task("gsm8k", path=str(GSM8K))
    train, test = task.examples("train"), task.examples("test")
    assert len(train) == 7473 and len(test) == 1319
    ex = train[0]  # Natalia: 48 + 24 = 72
    assert ex.answer == "72" and ex.solution.endswith("#### 72")
    assert task.evaluate(ex.conversation, "She sold 48 + 24 = 72 clips.\n#### 72") == 1.0
    assert task.evaluate(ex.conversation, "#### 73") == 0.0
    assert task.reward(ex.prompt, "The answer is 72") == 1.0  # bare prompt: looked up by question
    assert task.reward(Conversation([Message("user", ex.prompt.messages[-1].content)]), "72") == 1.0


def test_gsm8k_missing_path_says_how_to_fix(tmp_path):
    with pytest.raises(ValueError, match="task_args.path"):
        get_task("gsm8k", path=str(tmp_path)).examples("train")


def test_reward_functions_resolve():
    assert reward_fn("arithmetic")(_conv("What is 2 + 2?"), "4") == 1.0
    fn = resolve("pixiu.data.tasks:canonical")
    assert isinstance(fn, tasks.FunctionReward) and fn.fn is canonical
    with pytest.raises(ValueError, match="no examples"):
        fn.examples("train")
    with pytest.raises(ValueError, match="valid"):
        get_task("nope")
    with pytest.raises(ValueError, match="cannot be imported"):
        reward_fn("pixiu.data.tasks:nope")


def test_reference_task_checks_the_answer_the_data_carries():
    """`reference`: 1 when the reply holds the prompt's own answer as a whole unit ('105', not '1050'; Chinese
    as a substring), 0 otherwise, and 0 for a prompt without one."""
    task = get_task("reference")
    ask = Conversation([Message("user", "41 + 64?")])
    with_ref = ask.add("assistant", "105")
    assert task.reward(with_ref, "41 + 64 = 105.") == 1.0
    assert task.reward(with_ref, "41 + 64 = 1050.") == 0.0
    assert (
        task.reward(Conversation([Message("user", "门的英文？")]).add("assistant", "door"), "'门' is door")
        == 1.0
    )
    assert (
        task.reward(Conversation([Message("user", "说'door'")]).add("assistant", "门"), "'door' 是门。")
        == 1.0
    )
    assert task.reward(ask, "41 + 64 = 105.") == 0.0  # no reference: no signal
    with pytest.raises(tasks.TaskError, match="from data"):
        task.examples("train")
