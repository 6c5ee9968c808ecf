"""The generation methods on hand-made inputs: Alpaca's self-instruct filters one by one, ROUGE-L, the Chinese
mode, WizardLM's elimination rules, Baize's stop rules, the judge's ranking."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_teacher import FakeTeacher  # noqa: E402

from pixiu.teach.methods import GenerateConfig, get_method  # noqa: E402
from pixiu.teach.methods.evol import eliminated, evolve_prompt  # noqa: E402
from pixiu.teach.methods.rank import parse_scores  # noqa: E402
from pixiu.teach.methods.self_chat import clean_human, stop_reason  # noqa: E402
from pixiu.teach.methods.self_instruct import encode_prompt, parse_reply, rule  # noqa: E402
from pixiu.teach.run import generate  # noqa: E402
from pixiu.teach.teacher import HTTPTeacher, TeacherConfig  # noqa: E402
from pixiu.teach.text import chars_zh, lcs, rouge_l, words_en  # noqa: E402

SEEDS = [{"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well."},
         {"instruction": "Translate to French:", "input": "Good morning", "output": "Bonjour"},
         {"instruction": "What is  the capital of France?", "input": "", "output": "Paris."}]  # fmt: skip


def item(instruction: str, output: str = "ok") -> dict:
    return {"instruction": instruction, "input": "", "output": output}


def test_encode_prompt_matches_alpaca():
    prompt = encode_prompt(SEEDS, "HEADER")
    assert prompt == (
        "HEADER\n###\n1. Instruction: Give three tips for staying healthy.\n1. Input:\n<noinput>\n1. Output:\nEat well.\n"
        "###\n2. Instruction: Translate to French\n2. Input:\nGood morning\n2. Output:\nBonjour\n"
        "###\n3. Instruction: What is the capital of France?\n3. Input:\n<noinput>\n3. Output:\nParis.\n"
        "###\n4. Instruction:"
    )


def test_parse_reply_splits_numbered_items_and_drops_the_cut_last():
    reply = (" Name a primary colour.\n4. Input:\n<noinput>\n4. Output:\nRed.\n###\n"
             "5. Instruction: Sort these numbers.\n5. Input:\n3, 1, 2\n5. Output:\n1, 2, 3\n###\n"
             "6. Instruction: garbled without fields\n###\n7. Instruction: Cut off here")  # fmt: skip
    items, dropped = parse_reply(reply, "length", 3)
    assert items == [item("Name a primary colour.", "Red."),
                     {"instruction": "Sort these numbers.", "input": "3, 1, 2", "output": "1, 2, 3"}]  # fmt: skip
    assert [d[0] for d in dropped] == ["unparsed", "cut by length"]
    items, dropped = parse_reply(
        "4. Instruction: Name a primary colour.\n4. Input:\n\n4. Output:\nRed.", "stop", 3
    )
    assert (
        items == [item("Name a primary colour.", "Red.")] and not dropped
    )  # a chat reply repeating "4." parses


@pytest.mark.parametrize(
    "instruction,reason",
    [
        ("Say hi now", "too short (<= 3 words)"),
        ("word " * 151, "too long (> 150 words)"),
        ("Describe the image of a sunset.", "blacklist: image"),
        ("Make a Flowchart of your day.", "blacklist: flowchart"),
        ("Tell me how to go to the station.", "blacklist: go to"),
        ("Write a program that adds two numbers.", "starts with 'Write a program'"),
        ('"Quote" this sentence back to me please.', "leading punctuation"),
        ("Énumérez trois couleurs primaires ici.", "non-ASCII first character"),
        ("Explain how plants make their food.", None),
        ("Describe imagery in this poem please.", None),  # \b: "imagery" is not "image"
        ("Write a poem about programs and files", "blacklist: files"),
    ],
)
def test_alpaca_filters(instruction, reason):
    assert rule(item(instruction), "en") == reason


def test_an_output_that_is_only_the_input_placeholder_is_empty():
    for output in ("", "  ", "<noinput>", "<No Input>"):
        assert rule(item("Explain how plants make their food.", output), "en") == "empty output"
    assert rule(item("解释植物如何制造养分。", "<noinput>"), "zh") == "empty output"


def test_alpaca_word_bounds_are_exclusive_inclusive():
    assert rule(item("one two three four"), "en") is None  # 4 words: kept (> 3)
    assert rule(item(" ".join(["w"] * 150)), "en") is None  # 150 words: kept (<= 150)


def test_chinese_mode_rules():
    assert rule(item("请写一首关于秋天的诗"), "zh") is None  # non-ASCII first character is fine in Chinese
    assert rule(item("你好吗"), "zh") == "too short (<= 3 characters)"
    assert rule(item("请描述这张图片里的内容"), "zh") == "blacklist: 图片"
    assert rule(item("《红楼梦》的作者是谁？"), "zh") == "leading punctuation"
    assert rule(item("编写一个程序计算阶乘"), "zh") == "starts with 'Write a program'"


def test_rouge_l_as_rouge_score():
    """'the cat sat on the mat' vs 'the cat lay on a mat': LCS the, cat, on, mat = 4; P = R = 4/6, F = 2/3."""
    a, b = words_en("The cat sat on the mat."), words_en("the cat lay on a mat")
    assert a == ["the", "cat", "sat", "on", "the", "mat"] and lcs(a, b) == 4
    assert rouge_l(a, b) == pytest.approx(2 / 3)
    assert words_en("你好 world") == ["world"]  # rouge_score's tokenizer deletes Chinese: hence chars_zh
    # 今天天气很好 vs 今天天气不好: LCS 5 of 6 characters each, F = 5/6
    assert rouge_l(chars_zh("今天天气很好。"), chars_zh("今天天气不好")) == pytest.approx(5 / 6)
    assert rouge_l([], ["a"]) == 0.0


def self_instruct_reply(text: str) -> str:
    lines = ["List the planets of the solar system in order.", "List the planets of the solar system in order!",
             "Describe the image below.", "Explain why the sky looks blue during the day."]  # fmt: skip
    return "\n###\n".join(f"{i}. Instruction: {t}\n{i}. Input:\n<noinput>\n{i}. Output:\nAnswer {i}."
                          for i, t in enumerate(lines, 4))[len("4. Instruction:"):]  # fmt: skip


def test_self_instruct_end_to_end(tmp_path):
    """One request, 16 asked: the near-copy (ROUGE-L 1.0 with the item kept just before it) and the blacklisted
    one are dropped, 12 never returned. Resumed with a higher target, the method rebuilds its ROUGE pool from the
    kept rows, so the next request's items (the same four) all drop as copies."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": s["instruction"], "instances": [
        {"input": s["input"], "output": s["output"]}]}) + "\n" for s in SEEDS))  # fmt: skip
    server = FakeTeacher(reply=self_instruct_reply)
    try:
        cfg = GenerateConfig(inputs=str(seeds), out=str(tmp_path / "si.jsonl"), target=2)
        teacher = HTTPTeacher(TeacherConfig(url=server.url, model="fake", retries=0))
        out = generate(cfg, get_method("self-instruct")(cfg), teacher, concurrency=1, bar=False)
        assert (out.tally.asked, out.tally.kept, out.tally.dropped, out.tally.failed) == (16, 2, 14, 0)
        assert out.tally.reasons == {"ROUGE-L > 0.7": 1, "blacklist: image": 1, "not returned": 12}
        cfg.target, cfg.time_limit = 3, 0.3  # the target is out of reach: the time limit ends the run
        method = get_method("self-instruct")(cfg)
        assert len(method.pool) == len(SEEDS)
        out = generate(cfg, method, teacher, concurrency=1, bar=False)
        assert len(method.pool) == len(SEEDS) + 2 and out.tally.kept == 2
        assert out.tally.reasons["ROUGE-L > 0.7"] == 1 + 3 * (out.tally.jobs - 1)
        kept = [json.loads(x) for x in Path(cfg.out).read_text().splitlines()]
        assert [r["instruction"] for r in kept] == ["List the planets of the solar system in order.",
                                                    "Explain why the sky looks blue during the day."]  # fmt: skip
        assert kept[0]["meta"]["job"] == "si-0" and kept[0]["meta"]["teacher"] == f"fake@{server.url}"
    finally:
        server.close()


def test_evol_elimination_rules():
    p = "Name a fruit."
    assert (
        eliminated(p, "Rewrite the #Given Prompt# with more detail", "Apple.", "Not Equal")
        == "copies the evolving prompt"
    )
    assert eliminated(p, "Name a tropical fruit rich in vitamin C.", "Sorry, I can't.", "Not Equal") == (
        "answer says sorry and is short")  # fmt: skip
    assert eliminated(p, "Name a tropical fruit.", "sorry " + "word " * 80, "Not Equal") is None  # long: kept
    assert eliminated(p, "Name a tropical fruit.", "It is what it is.", "Not Equal") == (
        "answer is only punctuation and stop words")  # fmt: skip
    assert eliminated(p, "Name one fruit.", "Mango.", "Equal") == "no information gain (judged equal)"
    assert eliminated(p, "Name a tropical fruit rich in vitamin C.", "Guava.", "Not Equal") is None
    assert eliminated("说一种水果。", "说一种富含维生素C的热带水果。", "抱歉，我不知道。", "Not Equal") == (
        "answer says sorry and is short")  # fmt: skip
    assert (
        eliminated("说一种水果。", "说一种热带水果。", "抱歉" + "水果" * 40, "Not Equal") is None
    )  # 82 characters


def test_evol_prompt_asks_for_chinese_in_zh_mode():
    en, zh = evolve_prompt("deepen", "说一种水果。"), evolve_prompt("deepen", "说一种水果。", "zh")
    assert "中文" not in en and zh == en.replace(
        "#Rewritten Prompt#:\n", "（请用中文写出新的指令。）\n#Rewritten Prompt#:\n"
    )
    assert evolve_prompt("breadth", "x", "zh").endswith("（请用中文写出新的指令。）\n#Created Prompt#:\n")


def test_self_chat_stop_rules():
    assert clean_human(" [|Human|] What about cats? [|AI|] Cats are...") == "What about cats?"
    assert stop_reason("", ["hi"]) == "human turn empty"
    assert stop_reason("Tell me about dogs.", ["tell me  about DOGS."]) == "human repeats itself"
    assert stop_reason("Thanks, goodbye!", ["hi"]) == "human says goodbye"
    assert stop_reason("谢谢，再见！", ["你好"]) == "human says goodbye"
    assert stop_reason("And what do they eat?", ["Tell me about dogs."]) is None


def test_rank_scores_order_replies():
    assert parse_scores("Reply 1: 3\nReply 2: 9\nReply 3：5", 3) == [3.0, 9.0, 5.0]
    assert parse_scores("Reply 1: 3", 2) is None


def run_method(tmp_path, name: str, reply, inputs: list, **cfg):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in inputs))
    server = FakeTeacher(reply=reply)
    try:
        c = GenerateConfig(
            method=name, inputs=str(tmp_path / "in.jsonl"), out=str(tmp_path / "out.jsonl"), **cfg
        )
        teacher = HTTPTeacher(TeacherConfig(url=server.url, model="fake", retries=0))
        out = generate(c, get_method(name)(c), teacher, concurrency=2, bar=False)
    finally:
        server.close()
    return out.tally, [json.loads(x) for x in Path(c.out).read_text().splitlines()]


def test_evol_rounds_and_eliminations(tmp_path):
    """Round 1 evolves (judged Not Equal); round 2's rewrite is judged Equal, so it is dropped and round 3 evolves
    the round-1 prompt again."""
    calls = {"n": 0}

    def reply(text):
        if text.startswith("Here are two Instructions"):
            return "Equal" if "v2" in text.split("The Second Prompt:")[1] else "Not Equal"
        if "#Rewritten Prompt#:" in text or "#Created Prompt#:" in text:
            calls["n"] += 1
            return f"Name a tropical fruit rich in vitamin C, version v{calls['n']}."
        return "Guava is a tropical fruit with plenty of vitamin C."

    tally, rows = run_method(tmp_path, "evol", reply, [{"instruction": "Name a fruit."}], rounds=3)
    assert (tally.asked, tally.kept, tally.dropped, tally.failed) == (3, 2, 1, 0)
    assert tally.reasons == {"no information gain (judged equal)": 1}
    assert [r["instruction"].split()[-1] for r in rows] == ["v1.", "v3."] and rows[0]["output"].startswith(
        "Guava"
    )


def test_self_chat_turns_and_stop(tmp_path):
    def reply(text):
        if "[|Human|]" not in text:
            return f"Assistant reply to: {text[:20]}"
        return (
            "Thanks, goodbye!" if text.count("[|AI|]") >= 3 else f"Follow-up number {text.count('[|AI|]')}?"
        )

    tally, rows = run_method(
        tmp_path, "self-chat", reply, ["What is tea?", "Why is the sky blue?"], max_turns=5
    )
    assert (tally.asked, tally.kept) == (2, 2)
    roles = [m["role"] for m in rows[0]["messages"]]
    assert roles == ["user", "assistant"] * 2 and rows[0]["stop"] == "human says goodbye"


def test_rank_into_rankings_and_pairs(tmp_path):
    inputs = [
        {"prompt": "2+2?", "responses": ["five", "4", "four"]},
        {"prompt": "x", "responses": ["a", "a"]},
    ]
    verdict = lambda text: "Reply 1: 2\nReply 2: 9\nReply 3: 7"  # noqa: E731
    tally, rows = run_method(tmp_path, "rank", verdict, inputs)
    assert (tally.kept, tally.reasons) == (1, {"fewer than two distinct replies": 1})
    assert rows[0]["responses"] == ["4", "four", "five"]
    (tmp_path / "p").mkdir()
    _, rows = run_method(tmp_path / "p", "rank", verdict, inputs[:1], format="pairs")
    assert (rows[0]["chosen"], rows[0]["rejected"]) == ("4", "five")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_teacher_corpus_is_what_parse_reply_reads(lang):
    """scripts/si_teacher_corpus.py: each document is the request self-instruct sends, continued with 16 items
    that parse back (Alpaca's stop strings applied) into 16 items of the pool with nothing dropped."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    corpus = pytest.importorskip("si_teacher_corpus")
    if not (corpus.DATA / corpus.SOURCES[lang][0]).exists():
        pytest.skip("shared Alpaca data absent")
    texts, pool = corpus.documents(lang, 2, 400, seed=0)
    known = {" ".join(r["instruction"].split()).rstrip(":") for r in pool}
    for text in texts:
        request, reply = text.split("###\n4. Instruction:", 1)
        assert request.startswith(corpus.SOURCES[lang][2])  # the header self-instruct sends
        reply = reply[: reply.index("\n20")]  # where the stop string ends the teacher's reply
        items, dropped = parse_reply(reply, "stop", 3)
        assert len(items) == 16 and not dropped
        assert all(i["instruction"] in known for i in items)
