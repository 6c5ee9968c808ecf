"""`pixiu data stackexchange`: Posts.xml / Zhihu-style JSONL -> SFT, reward-model pairs with margins, PPO prompts.

The dump below is written by hand; the expected records are worked out from it in the comments.
"""

import json
from pathlib import Path

import pytest

from pixiu.cli import main
from pixiu.config import DatasetSpec
from pixiu.data import DataError, load_records
from pixiu.data.html_md import html_to_markdown
from pixiu.data.records import PreferencePair
from pixiu.data.stackexchange import pair_rows, pm_score, read_dump, read_posts, split

HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n'
ROWS = [
    # line 3: question 1, answer 3 accepted
    '<row Id="1" PostTypeId="1" AcceptedAnswerId="3" Score="5" Title="Why &amp; how?" '
    'Body="&lt;p&gt;What is &lt;code&gt;IBU&lt;/code&gt;?&lt;/p&gt;&#xA;" />',
    # line 4-7: its answers; scores 7 -> pm 3, 1 + accepted -> 2, -2 -> -1, 0 -> 0
    '<row Id="2" PostTypeId="2" ParentId="1" Score="7" Body="&lt;p&gt;Bitterness &lt;a href=&quot;http://x.org&quot;'
    '&gt;units&lt;/a&gt;.&lt;br&gt;Really.&lt;/p&gt;" />',
    '<row Id="3" PostTypeId="2" ParentId="1" Score="1" Body="&lt;ul&gt;&lt;li&gt;one&lt;/li&gt;&lt;li&gt;two'
    '&lt;/li&gt;&lt;/ul&gt;" />',
    '<row Id="4" PostTypeId="2" ParentId="1" Score="-2" Body="&lt;p&gt;No idea.&lt;/p&gt;" />',
    '<row Id="5" PostTypeId="2" ParentId="1" Score="0" Body="&lt;pre&gt;&lt;code&gt;ibu = 10 &amp;lt; 20&#xA;'
    '&lt;/code&gt;&lt;/pre&gt;" />',
    # line 8: question 6 with two answers of the same pm score (votes 2 and 3 both round to 2): no pair
    '<row Id="6" PostTypeId="1" Score="1" Title="Lager or ale?" Body="" />',
    '<row Id="7" PostTypeId="2" ParentId="6" Score="2" Body="&lt;p&gt;Ale.&lt;/p&gt;" />',
    '<row Id="8" PostTypeId="2" ParentId="6" Score="3" Body="&lt;p&gt;Lager.&lt;/p&gt;" />',
    # line 11: a tag wiki (another post type); line 12: a question nobody answered
    '<row Id="9" PostTypeId="5" Score="0" Body="&lt;p&gt;wiki&lt;/p&gt;" />',
    '<row Id="10" PostTypeId="1" Score="0" Title="Unanswered?" Body="&lt;p&gt;Hm.&lt;/p&gt;" />',
]


def write(tmp_path: Path, rows: list[str], name: str = "Posts.xml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD + "".join(f"  {r}\n" for r in rows) + "</posts>\n", encoding="utf-8")
    return path


def test_pm_score_is_askell_et_al():
    # round(log2(1 + votes)) half up; -1 below zero; +1 accepted. log2(3) = 1.58 -> 2, log2(6) = 2.58 -> 3.
    got = [pm_score(v) for v in (-5, -1, 0, 1, 2, 3, 5, 7, 100)]
    assert got == [-1, -1, 0, 1, 2, 2, 3, 3, 7]
    assert pm_score(1, accepted=True) == 2 and pm_score(-3, accepted=True) == 0


def test_html_to_markdown():
    html = (
        "<p>Hello &amp; <b>bold</b> <em>it</em></p>\n\n<p>A <a href='http://x.y'>link</a>, <code>a&lt;b</code>."
        "<br>next</p>\n<ol><li>one</li><li>two<ul><li>sub</li></ul></li></ol>\n"
        "<pre><code>x = 1\nif x &lt; 2:\n    pass\n</code></pre>\n<blockquote><p>q1</p><p>q2</p></blockquote>"
        "<h2>Head</h2><p>end &#169;</p>"
    )
    assert html_to_markdown(html) == (
        "Hello & **bold** *it*\n\nA [link](http://x.y), `a<b`.\nnext\n\n1. one\n2. two\n   - sub\n\n"
        "```\nx = 1\nif x < 2:\n    pass\n```\n\n> q1\n>\n> q2\n\n## Head\n\nend ©"
    )


def test_read_posts_joins_answers_converts_html(tmp_path):
    dump = read_posts(write(tmp_path, ROWS))
    assert [q.id for q in dump.questions] == ["1", "6", "10"] and dump.other_posts == 1 and not dump.skipped
    q = dump.questions[0]
    assert (q.title, q.body, q.prompt) == ("Why & how?", "What is `IBU`?", "Why & how?\n\nWhat is `IBU`?")
    assert q.source.endswith("Posts.xml:3")
    assert [(a.id, a.votes, a.accepted, a.score) for a in q.ranked()] == [
        ("2", 7, False, 3), ("3", 1, True, 2), ("5", 0, False, 0), ("4", -2, False, -1)
    ]  # fmt: skip
    texts = {a.id: a.text for a in q.answers}
    assert texts == {
        "2": "Bitterness [units](http://x.org).\nReally.",
        "3": "- one\n- two",
        "4": "No idea.",
        "5": "```\nibu = 10 < 20\n```",
    }
    assert dump.questions[1].prompt == "Lager or ale?" and dump.questions[2].answers == []


def test_pairs_every_score_gap_and_the_cap(tmp_path):
    q1, q6, _ = read_posts(write(tmp_path, ROWS)).questions
    # ranked: 2 (pm 3), 3 (2), 5 (0), 4 (-1): all six pairs differ; margin = pm gap
    got = [(r["chosen"][:5], r["rejected"][:5], r["margin"], r["votes"]) for r in pair_rows(q1)]
    assert got == [
        ("Bitte", "- one", 1, [7, 1]), ("Bitte", "```\ni", 3, [7, 0]), ("Bitte", "No id", 4, [7, -2]),
        ("- one", "```\ni", 2, [1, 0]), ("- one", "No id", 3, [1, -2]), ("```\ni", "No id", 1, [0, -2]),
    ]  # fmt: skip
    # three pairs: the largest margins (4, 3, 3), still in rank order
    capped = [(r["votes"], r["margin"]) for r in pair_rows(q1, max_pairs=3)]
    assert capped == [([7, 0], 3), ([7, -2], 4), ([1, -2], 3)]
    assert pair_rows(q6) == []  # votes 3 and 2 both score 2: no preference
    row = pair_rows(q1)[0]
    assert (row["prompt"], row["question_id"]) == ("Why & how?\n\nWhat is `IBU`?", "1")


def test_cli_writes_pixiu_formats_split_by_question(tmp_path):
    rows = list(ROWS)
    for i in range(20):  # 20 more questions with two answers each, so the split has something to split
        q, a, b = 100 + 3 * i, 101 + 3 * i, 102 + 3 * i
        rows += [
            f'<row Id="{q}" PostTypeId="1" Score="1" Title="Question {q}?" Body="&lt;p&gt;Body {q}&lt;/p&gt;" />',
            f'<row Id="{a}" PostTypeId="2" ParentId="{q}" Score="{i}" Body="Answer {a}" />',
            f'<row Id="{b}" PostTypeId="2" ParentId="{q}" Score="{i + 4}" Body="Answer {b}" />',
        ]
    out = tmp_path / "out"
    main(["data", "stackexchange", str(write(tmp_path, rows)), "--out", str(out), "--held_out", "0.25"])
    files = {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in out.glob("*.jsonl")}
    qid = {name: {r["question_id"] for r in rows} for name, rows in files.items()}
    assert len(qid["heldout_prompts.jsonl"]) == 6 and len(qid["prompts.jsonl"]) == 17  # 23 questions, 25%
    assert not qid["prompts.jsonl"] & qid["heldout_prompts.jsonl"]
    for kind in ("sft", "pairs"):  # every row belongs to its side's questions
        assert qid[f"{kind}.jsonl"] <= qid["prompts.jsonl"]
        assert qid[f"heldout_{kind}.jsonl"] <= qid["heldout_prompts.jsonl"]
    # the same seed gives the same split; the rows are pixiu's own formats
    again = tmp_path / "again"
    main(["data", "stackexchange", str(tmp_path / "Posts.xml"), "--out", str(again), "--held_out", "0.25"])
    assert (again / "heldout_pairs.jsonl").read_text() == (out / "heldout_pairs.jsonl").read_text()
    pairs, _ = load_records(DatasetSpec(str(out / "pairs.jsonl")))
    assert pairs and all(isinstance(p, PreferencePair) for p in pairs)
    sft, _ = load_records(DatasetSpec(str(out / "sft.jsonl")))
    best = {
        r["question_id"]: r["messages"][1]["content"] for r in files["sft.jsonl"] + files["heldout_sft.jsonl"]
    }
    assert best["1"].startswith("Bitterness") and best["6"] == "Lager." and "10" not in best
    assert len(sft) == len(files["sft.jsonl"])
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["questions"], stats["answers"], stats["other_posts"]) == (23, 46, 1)


def test_split_is_disjoint_and_covers_all(tmp_path):
    questions = read_posts(write(tmp_path, ROWS)).questions
    train, held = split(questions, 1, seed=3)
    assert len(held) == 1 and {q.id for q in train} | {q.id for q in held} == {"1", "6", "10"}
    assert not {q.id for q in train} & {q.id for q in held}


@pytest.mark.parametrize(
    "broken, line, why",
    [
        ('<row Id="50" PostTypeId="2" ParentId="1" Score="1" Body="a < b" />', 13, "malformed XML"),
        ('<row Id="50" PostTypeId="2" ParentId="1" Body="Ok" />', 13, "has no Score attribute"),
        ('<row Id="50" PostTypeId="2" ParentId="1" Score="many" Body="Ok" />', 13, "not a whole number"),
        ('<row Id="50" PostTypeId="2" ParentId="999" Score="1" Body="Ok" />', 13, "ParentId=999"),
        ('<row Id="2" PostTypeId="2" ParentId="1" Score="1" Body="Ok" />', 13, "appears twice"),
    ],
)
def test_bad_row_names_file_and_line(tmp_path, broken, line, why):
    path = write(tmp_path, [*ROWS, broken])
    with pytest.raises(DataError, match=why) as e:
        read_posts(path)
    assert str(e.value).startswith(f"{path}:{line}:")
    if why == "malformed XML":  # past a syntax error nothing can be read, skipping or not
        with pytest.raises(DataError, match="even with --skip_bad_rows"):
            read_posts(path, skip_bad_rows=True)
        return
    dump = read_posts(path, skip_bad_rows=True)
    assert len(dump.skipped) == 1 and dump.skipped[0].startswith(f"{path}:{line}:")
    assert sum(len(q.answers) for q in dump.questions) == 6  # the good rows are all there


def test_cli_bad_row_exits_with_the_place(tmp_path):
    path = write(tmp_path, [*ROWS, '<row Id="50" PostTypeId="2" ParentId="1" Body="Ok" />'])
    with pytest.raises(SystemExit, match=f"{path}:13: answer row Id=50 has no Score"):
        main(["data", "stackexchange", str(path), "--out", str(tmp_path / "o")])
    main(["data", "stackexchange", str(path), "--out", str(tmp_path / "o"), "--skip_bad_rows"])
    assert json.loads((tmp_path / "o" / "stats.json").read_text())["skipped_rows"] == 1


def test_doctype_and_entities_refused(tmp_path):
    path = tmp_path / "Posts.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE posts [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        '<posts><row Id="1" PostTypeId="1" Score="1" Title="&x;" Body="" /></posts>\n'
    )
    with pytest.raises(DataError, match=f"{path}:2: a DOCTYPE is not allowed"):
        read_posts(path)


def test_zhihu_style_jsonl_same_pairs(tmp_path):
    # the same question 1 as the XML, in the Zhihu-style fields: title/detail, content/voteup_count, accepted
    q = {
        "id": "z1",
        "title": "Why & how?",
        "detail": "<p>What is <code>IBU</code>?</p>",
        "answers": [
            {"content": '<p>Bitterness <a href="http://x.org">units</a>.<br>Really.</p>', "voteup_count": 7},
            {"text": "<ul><li>one</li><li>two</li></ul>", "votes": 1, "accepted": True},
            {"text": "No idea.", "votes": -2},
            {"text": "<pre><code>ibu = 10 &lt; 20\n</code></pre>", "votes": 0},
        ],
    }
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps(q) + "\n" + json.dumps({"question": "plain?", "answers": [{"text": 3}]}) + "\n"
    )
    with pytest.raises(DataError, match=f"{path}:2: answer 1: votes must be a whole number"):
        read_dump(path)
    dump = read_dump(path, skip_bad_rows=True)
    xml_q = read_posts(write(tmp_path, ROWS)).questions[0]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "question_id"} for r in rows]  # noqa: E731
    assert strip(pair_rows(dump.questions[0])) == strip(pair_rows(xml_q))
    assert len(dump.skipped) == 1


def test_recipe_runs_on_the_commands_output(tmp_path, tiny_model_dir, monkeypatch):
    """recipes/qa-votes.yaml as written (paths, stages, held-out evaluation) on the tiny model and data made by
    `pixiu data stackexchange` from the hand-written dump, cut to a couple of steps per stage."""
    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "qa-votes.yaml")
    rows = list(ROWS)
    for i in range(12):
        q = 100 + 3 * i
        rows += [f'<row Id="{q}" PostTypeId="1" Score="1" Title="Beer {q}?" Body="Why {q}?" />'] + [
            f'<row Id="{q + k}" PostTypeId="2" ParentId="{q}" Score="{4 * k + i}" Body="Answer {q + k}" />'
            for k in (1, 2)
        ]
    monkeypatch.chdir(tmp_path)  # the recipe reads runs/qa-votes-data and writes runs/qa-votes, as documented
    main(
        [
            "data",
            "stackexchange",
            str(write(tmp_path, rows)),
            "--out",
            "runs/qa-votes-data",
            "--held_out",
            "4",
        ]
    )
    main(["pipeline", recipe, f"--model.name_or_path={tiny_model_dir}", "--model.template=default",
          "--data.max_len=96", "--stage.sft.train.max_steps=2", "--stage.rm.train.max_steps=2",
          "--stage.ppo.train.max_steps=1", "--stage.ppo.ppo.rollout_prompts=4", "--stage.ppo.ppo.minibatch=4",
          "--stage.ppo.guard.probe_size=0", "--gen.max_new_tokens=8", "--pipeline.eval.max_prompts=4",
          "--pipeline.eval.samples=1"])  # fmt: skip
    summary = json.loads((tmp_path / "runs/qa-votes/summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["sft", "rm", "ppo"]
    held = [
        json.loads(line) for line in Path("runs/qa-votes-data/heldout_pairs.jsonl").read_text().splitlines()
    ]
    assert summary["reward_model"]["pairs"] == len(held) > 0  # every pair of the held-out questions
    assert summary["policies"]["prompts"] == 4 and "kl_final_to_start" in summary["policies"]
