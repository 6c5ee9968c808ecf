"""Data loading: sources (line numbers), formats (exact records), errors that point at the row, mixing, split."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from pixiu.chat.messages import Conversation, Message
from pixiu.config import DataConfig, DatasetSpec
from pixiu.data import DataError, DataSplit, detect, load_data, load_records, read_rows
from pixiu.data.records import PreferencePair, Prompt, Ranking, Text

SHARED = Path(__file__).parents[2] / "shared" / "data"


def write(path: Path, rows: list) -> str:
    """One JSON value per line; a str row is written as-is (to plant bad lines)."""
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)
    )
    return str(path)


def conv(*turns: tuple[str, str], tools: str = "") -> Conversation:
    return Conversation([Message(r, c) for r, c in turns], tools)


def one(tmp_path: Path, row, **spec) -> object:
    records, skipped = load_records(DatasetSpec(write(tmp_path / "file.jsonl", [row]), **spec))
    assert len(records) == 1 and skipped == []
    return records[0]


# fmt: off
OASST_TREE = {"message_tree_id": "t1", "tree_state": "ready_for_export", "prompt": {
    "text": "Q1", "role": "prompter", "replies": [
        {"text": "A-second", "role": "assistant", "rank": 1, "replies": []},
        {"text": "A-unranked", "role": "assistant", "replies": []},
        {"text": "A-best", "role": "assistant", "rank": 0, "replies": [
            {"text": "Q2", "role": "prompter", "replies": [
                {"text": "B-best", "role": "assistant", "rank": 0, "replies": []},
                {"text": "B-worse", "role": "assistant", "rank": 1, "replies": []}]}]}]}}
# fmt: on
TOOLS = [{"name": "f", "parameters": {}}]

# (row, expected records): every format, parsed through a real file
# fmt: off
CASES = {
    "alpaca": ({"instruction": "Add", "input": "1+1", "output": "2"}, conv(("user", "Add\n\n1+1"), ("assistant", "2"))),
    "alpaca_history": (
        {"instruction": "And 2+2?", "output": "4", "system": "Be brief.", "history": [["1+1?", "2"]]},
        conv(("system", "Be brief."), ("user", "1+1?"), ("assistant", "2"), ("user", "And 2+2?"), ("assistant", "4"))),
    "sharegpt": (
        {"system": "S", "tools": json.dumps(TOOLS), "conversations": [
            {"from": "human", "value": "hi"}, {"from": "function_call", "value": '{"name": "f"}'},
            {"from": "observation", "value": "42"}, {"from": "gpt", "value": "It is 42."}]},
        conv(("system", "S"), ("user", "hi"), ("tool_call", '{"name": "f"}'), ("tool", "42"), ("assistant", "It is 42."),
             tools=json.dumps(TOOLS))),
    "sharegpt_pairs": (
        {"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "good"},
         "rejected": {"from": "gpt", "value": "bad"}},
        PreferencePair(conv(("user", "Q")), "good", "bad")),
    "messages_kto": (
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "label": False,
         "tools": TOOLS},
        conv(("user", "Q"), ("assistant", "A"), tools=json.dumps(TOOLS))),
    "pairs": ({"prompt": "Q", "chosen": "good", "rejected": "bad"}, PreferencePair(conv(("user", "Q")), "good", "bad")),
    "pairs_messages": (
        {"prompt": [{"role": "user", "content": "Q"}], "rejected": [{"role": "assistant", "content": "bad"}],
         "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}]},
        PreferencePair(conv(("user", "Q")), "good", "bad")),
    "stack_exchange": ({"question": "Q", "response_j": "upvoted", "response_k": "downvoted"},
                       PreferencePair(conv(("user", "Q")), "upvoted", "downvoted")),
    "rankings": ({"prompt": "Q", "responses": ["a", "b", "c"]}, Ranking(conv(("user", "Q")), ["a", "b", "c"])),
    "oasst": (OASST_TREE, [
        Ranking(conv(("user", "Q1")), ["A-best", "A-second"]),
        Ranking(conv(("user", "Q1"), ("assistant", "A-best"), ("user", "Q2")), ["B-best", "B-worse"])]),
    "prompts": ({"prompt": "Q"}, Prompt(conv(("user", "Q")))),
    "prompts_bare_string": ('"Q"', Prompt(conv(("user", "Q")))),
    "prompts_messages": ({"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]},
                         Prompt(conv(("system", "S"), ("user", "Q")))),
    "text": ({"text": "Once upon a time."}, Text("Once upon a time.")),
}
# fmt: on


@pytest.mark.parametrize("case", CASES)
def test_each_format_parses_to_the_expected_record(tmp_path, case):
    row, expected = CASES[case]
    path = write(tmp_path / "file.jsonl", [row])
    records, skipped = load_records(DatasetSpec(path))
    expected = expected if isinstance(expected, list) else [expected]
    for e in expected:
        if not isinstance(e, Conversation):
            e.source = f"{path}:1"
    assert records == expected and skipped == []
    assert all(r.source == f"{path}:1" for r in records)


@pytest.mark.parametrize(
    "row, fmt",
    [
        ({"instruction": "i", "input": "", "output": "o"}, "alpaca"),
        ({"conversations": []}, "sharegpt"),
        ({"conversations": [], "chosen": {}, "rejected": {}}, "sharegpt_pairs"),
        ({"messages": [], "label": True}, "messages"),
        ({"prompt": "p", "prompt_id": "x", "messages": []}, "messages"),  # UltraChat: a tie goes to messages
        ({"prompt": "p", "chosen": "c", "rejected": "r", "messages": []}, "pairs"),  # UltraFeedback
        ({"question": "q", "response_j": "a", "response_k": "b"}, "pairs"),
        ({"prompt": "p", "responses": []}, "rankings"),
        (OASST_TREE, "oasst"),
        ({"prompt": "p"}, "prompts"),
        ({"text": "t"}, "text"),
    ],
)
def test_detect(row, fmt):
    assert detect(row) == fmt


def test_detect_unknown_columns_lists_the_formats():
    with pytest.raises(DataError, match=r"x.jsonl:3: cannot tell the format .*'answer', 'question'.*alpaca"):
        detect({"question": "q", "answer": "a"}, "x.jsonl:3")


def test_column_mapping_renames_before_detection(tmp_path):
    record = one(tmp_path, {"q": "2+2?", "a": "4"}, columns={"q": "instruction", "a": "output"})
    assert record == conv(("user", "2+2?"), ("assistant", "4"))


# ---------------------------------------------------------------- sources: every row knows its line


def test_jsonl_lines_skip_blank_lines(tmp_path):
    path = write(tmp_path / "file.jsonl", [{"text": "a"}, "", {"text": "b"}])
    assert [s for s, _ in read_rows(path)] == [f"{path}:1", f"{path}:3"]


def test_json_list_items_know_their_first_line(tmp_path):
    path = tmp_path / "file.json"
    path.write_text('[\n  {"text": "a"},\n\n  {\n    "text": "b"\n  }, "c"\n]\n')
    assert list(read_rows(str(path))) == [(f"{path}:2", {"text": "a"}), (f"{path}:4", {"text": "b"}),
                                          (f"{path}:6", {"prompt": "c"})]  # fmt: skip


def test_json_object_with_one_list_and_jsonl_named_json(tmp_path):
    wrapped, lines = tmp_path / "wrapped.json", tmp_path / "lines.json"
    wrapped.write_text('{"data": [\n {"text": "a"},\n {"text": "b"}]}')
    lines.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert [s for s, _ in read_rows(str(wrapped))] == [f"{wrapped}:2", f"{wrapped}:3"]
    assert [s for s, _ in read_rows(str(lines))] == [f"{lines}:1", f"{lines}:2"]


def test_csv_lines_count_the_header_and_multiline_fields(tmp_path):
    path = tmp_path / "file.csv"
    path.write_text('instruction,output\n"two\nlines",a\nq,b\n')
    assert list(read_rows(str(path))) == [(f"{path}:2", {"instruction": "two\nlines", "output": "a"}),
                                          (f"{path}:4", {"instruction": "q", "output": "b"})]  # fmt: skip


def test_txt_blocks_are_text_rows(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("first para\nstill first\n\n\nsecond\n")
    assert list(read_rows(str(path))) == [(f"{path}:1", {"text": "first para\nstill first"}),
                                          (f"{path}:5", {"text": "second"})]  # fmt: skip


def test_parquet_rows(tmp_path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "file.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"]}), path)
    assert [s for s, _ in read_rows(str(path))] == [f"{path}:row 0", f"{path}:row 1"]


def test_hub_name_goes_to_datasets(monkeypatch):
    calls = []
    fake = types.SimpleNamespace(
        load_dataset=lambda name, split: calls.append((name, split)) or [{"text": "t"}]
    )
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert list(read_rows("org/name", split="test")) == [("org/name[test]:row 0", {"text": "t"})]
    assert calls == [("org/name", "test")]


def test_missing_local_file_is_a_file_not_found_data_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file") as e:
        list(read_rows(str(tmp_path / "nope.jsonl")))
    assert isinstance(e.value, DataError)


# ---------------------------------------------------------------- bad rows: the error names file:line and why

BAD = {  # case -> (file lines, explicit format or "auto", line expected in the error, text expected in the error)
    "bad json line": ([{"text": "a"}, {"text": "b"}, '{"text": "c",'], "auto", 3, "bad JSON"),
    "not an object": ([{"text": "a"}, "[1, 2]"], "auto", 2, "must be a JSON object"),
    "missing field": ([{"instruction": "i", "output": "o"}, {"instruction": "i", "input": "x"}], "auto", 2,
                      "expected fields instruction, output; missing output; it has instruction, input"),
    "empty reply": ([{"prompt": "p", "chosen": "c", "rejected": "r"}, {"prompt": "p", "chosen": " ", "rejected": "r"}],
                    "auto", 2, "empty chosen reply"),
    "chosen == rejected": ([{"prompt": "p", "chosen": "same", "rejected": "same"}], "pairs", 1, "the same text"),
    "unknown role": ([{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}], "auto", 1,
                     "unknown role 'bot'"),
    "unknown sharegpt role": ([{"conversations": [{"from": "robot", "value": "a"}]}], "auto", 1, "unknown role 'robot'"),
    "no assistant turn": ([{"messages": [{"role": "user", "content": "q"}]}], "messages", 1, "no assistant turn"),
    "empty assistant turn": ([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]}],
                             "auto", 1, "empty assistant reply"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_rows_raise_with_file_and_line(tmp_path, case):
    rows, fmt, line, why = BAD[case]
    path = write(tmp_path / "file.jsonl", rows)
    with pytest.raises(DataError) as e:
        load_records(DatasetSpec(path, format=fmt))
    assert f"file.jsonl:{line}: " in str(e.value) and why in str(e.value)


def test_bad_json_in_a_list_file_names_the_line(tmp_path):
    path = tmp_path / "file.json"
    path.write_text('[\n {"text": "a"},\n {"text": "b" "c"}\n]')
    with pytest.raises(DataError, match=r"file.json:3: bad JSON"):
        load_records(DatasetSpec(str(path)), skip_bad_rows=True)  # past a syntax error nothing can be read


def test_missing_field_in_a_list_file_names_the_item_line(tmp_path):
    path = tmp_path / "file.json"
    path.write_text(
        '[\n {"prompt": "p", "chosen": "c", "rejected": "r"},\n {"prompt": "p",\n  "chosen": "c"}\n]'
    )
    with pytest.raises(DataError, match=r"file.json:3: pairs row: expected fields prompt, chosen, rejected"):
        load_records(DatasetSpec(str(path), format="pairs"))


def test_a_pair_margin_is_read_and_a_bad_one_names_its_line(tmp_path):
    path = tmp_path / "p.jsonl"
    good = {"prompt": "p", "chosen": "c", "rejected": "r"}
    path.write_text(json.dumps(good | {"margin": 2}) + "\n" + json.dumps(good) + "\n")
    assert [r.margin for r in load_records(DatasetSpec(str(path)))[0]] == [2.0, 0.0]
    for bad in ("2", -1, True, None):
        if bad is None:  # JSON has no NaN: Python's json writes it, a strict reader must still refuse it
            path.write_text(json.dumps(good) + "\n" + json.dumps(good | {"margin": float("nan")}) + "\n")
        else:
            path.write_text(json.dumps(good) + "\n" + json.dumps(good | {"margin": bad}) + "\n")
        with pytest.raises(DataError, match=r"p\.jsonl:2: pairs row: margin must be a finite number >= 0"):
            load_records(DatasetSpec(str(path)))


def test_missing_field_in_csv(tmp_path):
    path = tmp_path / "file.csv"
    path.write_text("instruction,input\nq,x\n")
    with pytest.raises(DataError, match=r"file.csv:2: alpaca row: expected fields instruction, output"):
        load_records(DatasetSpec(str(path), format="alpaca"))
    path.write_text("instruction,output\nq,a\nshort\n")
    with pytest.raises(DataError, match=r"file.csv:3: row has a different number of fields"):
        load_records(DatasetSpec(str(path)))


def test_skip_bad_rows_counts_and_reports_each(tmp_path):
    good = {"instruction": "i", "output": "o"}
    path = write(tmp_path / "file.jsonl", [good, "{oops", good, {"instruction": "i", "output": ""}, good])
    records, skipped = load_records(DatasetSpec(path), skip_bad_rows=True)
    assert len(records) == 3 and len(skipped) == 2
    assert skipped[0].startswith(f"{path}:2: bad JSON") and skipped[1].startswith(
        f"{path}:4: alpaca row: empty"
    )


def test_a_null_field_is_called_null_not_missing(tmp_path):
    """Issue 14.10: {"instruction": null, ...} read "missing instruction; it has instruction, input, output"."""
    path = write(tmp_path / "file.jsonl", [{"instruction": None, "input": "", "output": "o"}])
    with pytest.raises(DataError) as e:
        load_records(DatasetSpec(path, format="alpaca"))
    assert str(e.value) == f"{path}:1: alpaca row: instruction is null (expected fields instruction, output)"


# Each file: good row, a row holding the Latin-1 byte 0xe9 (not UTF-8), good row: (bytes, bad line, good lines).
LATIN1 = {
    "jsonl": (
        b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "b"}\n'
        b'{"instruction": "c", "output": "d"}\n',
        2, [1, 3],
    ),
    "json": (
        b'[\n {"instruction": "a", "output": "b"},\n {"instruction": "x",\n  "output": "caf\xe9"},\n'
        b' {"instruction": "c", "output": "d"}\n]\n',
        4, [2, 5],
    ),
    "csv": (b"instruction,output\na,b\ncaf\xe9,b\nc,d\n", 3, [2, 4]),
    "txt": (b"a b\n\ncaf\xe9\nmore\n\nc d\n", 3, [1, 6]),
}  # fmt: skip


@pytest.mark.parametrize("suffix", LATIN1)
def test_invalid_utf8_names_file_and_line_or_is_skipped(tmp_path, suffix):
    """Issue 14.5: a byte that is not UTF-8 was a UnicodeDecodeError traceback, even with skip_bad_rows."""
    data, line, good = LATIN1[suffix]
    path = tmp_path / f"file.{suffix}"
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"file\.{suffix}:{line}: .*not valid UTF-8"):
        load_records(DatasetSpec(str(path)))
    records, skipped = load_records(DatasetSpec(str(path)), skip_bad_rows=True)
    assert [r.source for r in records] == [f"{path}:{n}" for n in good]
    assert len(skipped) == 1 and "not valid UTF-8" in skipped[0]


def test_invalid_utf8_outside_a_string_and_in_a_csv_header(tmp_path):
    path = tmp_path / "file.json"
    path.write_bytes(b'[\n {"text": "a"},\n \xff{"text": "b"}\n]')
    with pytest.raises(DataError, match=r"file\.json:3: not valid UTF-8 \(byte 0xff at column 2\)"):
        load_records(DatasetSpec(str(path)), skip_bad_rows=True)
    path = tmp_path / "file.csv"
    path.write_bytes(b"instruction,outp\xfct\na,b\n")
    with pytest.raises(DataError, match=r"file\.csv:1: not valid UTF-8 \(byte 0xfc"):
        load_records(DatasetSpec(str(path)), skip_bad_rows=True)


# ---------------------------------------------------------------- mixing and the eval split


def texts(tmp_path: Path, name: str, n: int) -> str:
    return write(tmp_path / f"{name}.jsonl", [{"text": f"{name}{i}"} for i in range(n)])


def test_weights_give_expected_counts_deterministically(tmp_path):
    a, b, c = (texts(tmp_path, x, 10) for x in "abc")
    specs = [DatasetSpec(a), DatasetSpec(b, weight=2), DatasetSpec(c, weight=0.5)]
    split = load_data(DataConfig(datasets=specs, eval_size=0), want=Text)
    assert isinstance(split, DataSplit) and split.counts == {a: 10, b: 20, c: 5} and len(split.train) == 35
    assert sorted(r.text for r in split.train if r.text.startswith("b")) == sorted(
        [f"b{i}" for i in range(10)] * 2
    )
    again = load_data(DataConfig(datasets=specs, eval_size=0), want=Text)
    assert [r.source for r in again.train] == [r.source for r in split.train]


def test_split_is_deterministic_disjoint_and_independent_of_mix_order(tmp_path):
    a, b = texts(tmp_path, "a", 30), texts(tmp_path, "b", 10)

    def sources(specs, seed=0):
        split = load_data(DataConfig(datasets=specs, eval_size=0.25, seed=seed), want=Text)
        return {r.source for r in split.train}, {r.source for r in split.eval}, split

    train, held, split = sources([DatasetSpec(a), DatasetSpec(b)])
    assert len(held) == 10 and not train & held and len(train | held) == 40
    assert sources([DatasetSpec(b), DatasetSpec(a)])[1] == held
    assert sources([DatasetSpec(a), DatasetSpec(b)], seed=1)[1] != held
    oversampled = sources([DatasetSpec(a, weight=3), DatasetSpec(b)])  # copies never leak into eval
    assert oversampled[1] == held and not oversampled[0] & held


def test_eval_count_eval_path_and_max_samples(tmp_path):
    a, held = texts(tmp_path, "a", 20), texts(tmp_path, "held", 4)
    assert len(load_data(DataConfig(path=a, eval_size=3), want=Text).eval) == 3
    split = load_data(DataConfig(path=a, eval_path=held, max_samples=7), want=Text)
    assert len(split.train) == 7 and [r.text for r in split.eval] == [f"held{i}" for i in range(4)]
    with pytest.raises(DataError, match="eval_size=20 would hold out all 20"):
        load_data(DataConfig(path=a, eval_size=20), want=Text)


def test_wrong_record_type_for_the_stage(tmp_path):
    path = write(tmp_path / "file.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    with pytest.raises(
        DataError, match=r"file.jsonl: format 'pairs' gives PreferencePair .* needs Conversation"
    ):
        load_data(DataConfig(path=path, eval_size=0), want=Conversation)


def test_load_data_reports_skipped_rows(tmp_path):
    path = write(tmp_path / "file.jsonl", [{"text": "a"}, "nope", {"text": "b"}, {"text": ""}])
    split = load_data(DataConfig(path=path, eval_size=0, skip_bad_rows=True), want=Text)
    assert len(split.train) == 2 and [s.split(": ")[0] for s in split.skipped] == [f"{path}:2", f"{path}:4"]


# ---------------------------------------------------------------- the shared public data (DATA.md)

SHARED_FILES = [  # (file, format, records, skipped rows, a check of the first record)
    ("alpaca/alpaca_data.json", "alpaca", 51974, 28, lambda r: r.messages[0].content.startswith("Give three tips")),
    ("alpaca_zh/alpaca_data_zh_0-9407_translated.json", "alpaca", 9245, 6,
     lambda r: r.messages[0].content == "给出三个保持健康的提示。"),
    ("hh_rlhf/harmless-base_train_first5000_lastturn_derived.json", "pairs", 4999, 1, lambda r: r.rejected == "Ass."),
    ("llamafactory_demo/alpaca_en_demo.json", "alpaca", 999, 0, lambda r: "crepes" in r.messages[0].content),
    ("llamafactory_demo/alpaca_zh_demo.json", "alpaca", 1000, 0, lambda r: r.messages[-1].role == "assistant"),
    ("llamafactory_demo/identity.json", "alpaca", 91, 0, lambda r: r.messages[0].content == "hi"),
    ("llamafactory_demo/dpo_en_demo.json", "sharegpt_pairs", 300, 0, lambda r: "Angela" in r.prompt.messages[0].content),
    ("llamafactory_demo/dpo_zh_demo.json", "sharegpt_pairs", 300, 0, lambda r: r.chosen != r.rejected),
    ("llamafactory_demo/kto_en_demo.json", "messages", 300, 0, lambda r: r.messages[1].content.startswith("Ooh ooh")),
    ("llamafactory_demo/glaive_toolcall_en_demo.json", "sharegpt", 300, 0,
     lambda r: json.loads(r.tools)[0]["name"] == "search_recipes" and r.messages[3].role == "tool_call"),
    ("oasst_sample/en_100_tree.jsonl", "oasst", 212, 0,
     lambda r: r.prompt.messages[0].content.startswith("How can I find the best 401k") and len(r.responses) == 3),
    ("oasst_sample/prompt_lottery_en_250_text.jsonl", "prompts", 250, 0,
     lambda r: r.prompt.messages == [Message("user", "Can you tell me about GLaDOS?")]),
    ("stack_exchange_tiny/stack_exchange_paired_tiny.json", "pairs", 25, 0,
     lambda r: r.prompt.messages[0].content.startswith("I'm writing a code using Java Swing")),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not present")
@pytest.mark.parametrize("file, fmt, n, n_skipped, check", SHARED_FILES, ids=[f[0] for f in SHARED_FILES])
def test_shared_data_loads(file, fmt, n, n_skipped, check):
    path = str(SHARED / file)
    assert detect(next(read_rows(path))[1]) == fmt
    records, skipped = load_records(DatasetSpec(path), skip_bad_rows=True)
    assert (len(records), len(skipped)) == (n, n_skipped)
    assert check(records[0]) and records[0].source.startswith(f"{path}:")


@pytest.mark.parametrize("answer", [["105"], {"a": 1}, True])
def test_prompt_answer_must_be_text_or_a_number(tmp_path, answer):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "answer": answer}) + "\n")
    with pytest.raises(DataError, match=r"p\.jsonl:1.*answer must be text or a number"):
        load_records(DatasetSpec(str(path)))
