"""Feedback store: round trip, exports the data loader reads, kill -9 durability, Elo and agreement by hand.

Every store test runs on SQLite and on PostgreSQL (`backend` fixture). PostgreSQL needs
PIXIU_TEST_POSTGRES=postgresql://user@host:port/db, a scratch database whose tables each test drops (CI starts
one with .ci/postgres.sh); without the variable those cases skip, with it a server that does not answer fails.
"""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from pixiu import config
from pixiu.chat import Conversation
from pixiu.data import load_records
from pixiu.data.records import PreferencePair, Ranking
from pixiu.feedback import exports, model_version, open_store, ratings
from pixiu.feedback.ratings import Game
from pixiu.serve.feedback import cli

HI = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]
SUM = [{"role": "user", "content": "what is two plus two"}]


def postgres_url() -> str:
    """The scratch PostgreSQL database, emptied; skips when none is configured."""
    url = os.environ.get("PIXIU_TEST_POSTGRES")
    if not url:
        pytest.skip("PIXIU_TEST_POSTGRES not set (CI starts a server with .ci/postgres.sh)")
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:  # configured but down: an error, not a skip
        conn.execute("DROP TABLE IF EXISTS chats, votes, rankings")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path) -> str:
    """Where a test's store lives: a fresh SQLite file, or the emptied PostgreSQL database."""
    return str(tmp_path / "fb.db") if request.param == "sqlite" else postgres_url()


@pytest.fixture
def store(backend):
    s = open_store(backend)
    yield s
    s.close()


def fill(store) -> None:
    """3 decided votes (one duplicate-reply), a tie, a both_bad, a K=3 ranking with an edit, one without."""
    store.add_vote(HI, "m1", "hello there", "m2", "go away", "a", annotator="ann", model_versions={"a": "v1"})
    store.add_vote(SUM, "m2", "four", "m1", "five", "a", annotator="bob")
    store.add_vote(SUM, "m1", "same", "m2", "same ", "b")  # prefers nothing: left out of pairs
    store.add_vote(HI, "m1", "hey", "m2", "yo", "tie")
    store.add_vote(HI, "m1", "bad", "m2", "worse", "both_bad")
    store.add_ranking(SUM, "m1", ["4", "four", "5"], [1, 0, 2], edited="It is four.", annotator="ann")
    store.add_ranking(HI, "m2", ["a", "b"], [1, 0], model_version="m2@abc")


def test_round_trip_and_counts(store, backend):
    chat = [*HI, {"role": "assistant", "content": "hello!"}]
    assert store.add_chat(chat, "m1", annotator="ann", model_version="m1@123") == 1
    fill(store)
    votes, ranks = store.votes(), store.rankings()
    assert [v.id for v in votes] == [1, 2, 3, 4, 5]
    assert (votes[0].prompt, votes[0].reply_a, votes[0].winner, votes[0].model_versions) == (
        HI, "hello there", "a", {"a": "v1"},
    )  # fmt: skip
    assert (ranks[0].replies, ranks[0].order, ranks[0].edited) == (
        ["4", "four", "5"],
        [1, 0, 2],
        "It is four.",
    )
    assert ranks[1].model_version == "m2@abc" and ranks[1].edited is None
    assert store.chats() == [
        {"id": 1, "annotator": "ann", "model": "m1", "model_version": "m1@123", "messages": chat}
    ]
    assert store.counts() == {
        "chats": 1, "votes": 5, "rankings": 2, "edits": 1, "annotators": 2,
        "votes_by_winner": {"a": 2, "b": 1, "tie": 1, "both_bad": 1},
    }  # fmt: skip
    store.close()
    url = backend if "://" in backend else f"sqlite:///{backend}"  # the URL form opens the same file
    with open_store(url) as again:
        assert again.counts()["votes"] == 5 and again.votes()[0].prompt == HI


def test_nul_characters_are_dropped_on_both_backends(store):
    """A model's reply can hold NUL (a byte token); PostgreSQL text cannot, and the vote was a 500."""
    store.add_vote(HI, "m1", "hel\x00lo", "m2", "hi", "a", annotator="a\x00b")
    store.add_ranking(HI, "m1", ["x\x00", "y"], [0, 1], edited="z\x00")
    store.add_chat([*HI, {"role": "assistant", "content": "ok\x00"}], "m1")
    vote, rank = store.votes()[0], store.rankings()[0]
    assert (vote.reply_a, vote.annotator, rank.replies, rank.edited) == ("hello", "ab", ["x", "y"], "z")
    assert store.chats()[0]["messages"][-1]["content"] == "ok"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s.add_vote(HI, "a", "x", "b", "y", "c"), "winner must be one of"),
        (
            lambda s: s.add_vote([*HI, {"role": "assistant", "content": "x"}], "a", "x", "b", "y", "a"),
            "user turn",
        ),
        (lambda s: s.add_vote([{"role": "robot", "content": "x"}], "a", "x", "b", "y", "a"), "role"),
        (lambda s: s.add_ranking(HI, "m", ["x", "y"], [0, 0]), "order must list"),
        (lambda s: s.add_ranking(HI, "m", ["x"], [0]), "at least two"),
        (lambda s: s.add_ranking(HI, "m", ["x", 3], [0, 1]), "must be text"),
    ],
)
def test_bad_input_is_a_value_error_and_writes_nothing(store, call, match):
    with pytest.raises(ValueError, match=match):
        call(store)
    assert store.counts()["votes"] == store.counts()["rankings"] == 0


def test_exports_load_as_pairs_rankings_and_conversations(store, tmp_path):
    fill(store)
    out = tmp_path / "pairs.jsonl"
    report = exports.export(store, "pairs", out)
    # votes: 2 decided pairs; rankings: [edit, four, 4, 5] -> 6 pairs, and [b, a] -> 1
    assert report.written == 9 == exports.export(store, "pairs", out).written
    assert report.skipped == {"tie": 1, "both_bad": 1, "identical replies": 1}
    pairs, _ = load_records(config.DatasetSpec(str(out)))
    assert all(isinstance(p, PreferencePair) for p in pairs)
    assert (pairs[0].prompt, pairs[0].chosen, pairs[0].rejected) == (
        Conversation.from_openai(HI),
        "hello there",
        "go away",
    )
    assert (pairs[1].chosen, pairs[1].rejected) == ("four", "five")
    assert [(p.chosen, p.rejected) for p in pairs[2:5]] == [("It is four.", "four"), ("It is four.", "4"), ("It is four.", "5")]  # fmt: skip
    assert exports.export(store, "pairs", out, pairs_from="votes").written == 2

    assert exports.export(store, "rankings", tmp_path / "rank.jsonl").written == 2
    ranks, _ = load_records(config.DatasetSpec(str(tmp_path / "rank.jsonl")))
    assert [type(r) for r in ranks] == [Ranking, Ranking]
    assert ranks[0].responses == ["It is four.", "four", "4", "5"] and ranks[1].responses == ["b", "a"]
    assert ranks[0].prompt == Conversation.from_openai(SUM)

    assert (
        exports.export(store, "sft", tmp_path / "sft.jsonl").written == 5
    )  # 2 rankings + 3 decided votes (identical ones too)
    convs, _ = load_records(config.DatasetSpec(str(tmp_path / "sft.jsonl")))
    assert [c.messages[-1].content for c in convs] == ["It is four.", "b", "hello there", "four", "same "]
    assert all(isinstance(c, Conversation) and c.messages[-1].role == "assistant" for c in convs)
    row = json.loads((tmp_path / "sft.jsonl").read_text().splitlines()[0])
    assert row["meta"] == {
        "ranking": 1,
        "annotator": "ann",
        "model": "m1",
        "model_version": "",
        "edited": True,
    }


def test_cli_export_and_stats(store, backend, tmp_path, capsys):
    fill(store)
    db, out = backend, tmp_path / "out" / "r.jsonl"
    cli(["export", "--db", db, "--as", "rankings", str(out)])
    assert f"wrote 2 rankings rows to {out}" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 2
    cli(["stats", "--db", db, "--bootstrap", "20"])
    text = capsys.readouterr().out
    assert "votes 5 (a 2, b 1, tie 1, both_bad 1), rankings 2 (1 edited)" in text
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("m1 ", "m2 "))}
    assert lines["m1"][1:3] == ["5", "1-2-2"] and lines["m2"][1:3] == ["5", "2-2-1"]
    cli(["stats", "--db", db, "--json", "--bootstrap", "0"])
    assert json.loads(capsys.readouterr().out)["counts"]["rankings"] == 2
    with pytest.raises(SystemExit, match="no feedback store"):
        cli(["stats", "--db", str(tmp_path / "absent.db")])


def test_concurrent_writers_lose_nothing(store):
    def vote(t):
        for i in range(25):
            store.add_vote(HI, "m1", f"r{t}-{i}", "m2", "x", "a", annotator=f"t{t}")

    threads = [threading.Thread(target=vote, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    votes = store.votes()
    assert len(votes) == 200 and len({v.reply_a for v in votes}) == 200


WRITER = """
import sys
from pixiu.feedback import open_store
store = open_store(sys.argv[1])
i = 0
while True:  # vote until killed; the ack is printed only after the commit returned
    vid = store.add_vote([{"role": "user", "content": f"q{i}"}], "m1", f"r{i}", "m2", "x", "a", annotator="k")
    print(f"ack {vid} r{i}", flush=True)
    i += 1
"""


def test_acknowledged_votes_survive_sigkill(backend):
    db = backend
    proc = subprocess.Popen([sys.executable, "-c", WRITER, db], stdout=subprocess.PIPE, text=True)
    try:
        acks = [proc.stdout.readline().split() for _ in range(40)]
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the writer is committing the next votes
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with open_store(db) as store:
        stored = {v.id: v.reply_a for v in store.votes()}
    assert all(stored.get(int(vid)) == reply for _, vid, reply in acks)
    assert len(stored) >= 40


def test_online_elo_hand_computed():
    """K=32 from 1000. Vote 1 m1 beats m2: E = 0.5 -> m1 1016, m2 984. Vote 2 again: E = 1 / (1 + 10^(-32/400))
    = 0.545922 -> +14.5305 -> m1 1030.5305, m2 969.4695. Vote 3, m2 (side a) ties m1: E_m2 = 1 / (1 + 10^(61.061
    / 400)) = 0.413037 -> m2 += 32 (0.5 - 0.413037) = 2.7828 -> m1 1027.7471, m2 972.2529."""
    games = [Game("m1", "m2", "a"), Game("m2", "m1", "b"), Game("m2", "m1", "tie")]
    elo = ratings.online_elo(games)
    assert elo == {"m1": pytest.approx(1027.7471, abs=1e-4), "m2": pytest.approx(972.2529, abs=1e-4)}
    assert ratings.online_elo(games[:2]) == {"m1": pytest.approx(1030.5305, abs=1e-4), "m2": pytest.approx(969.4695, abs=1e-4)}  # fmt: skip


def test_bradley_terry_and_table():
    """m1 beats m2 3 times of 4: the MLE strength ratio is 3, 400 log10 3 = 190.85 Elo points apart, centred on
    1000: 1095.42 and 904.58. With the prior an unbeaten model still gets a finite rating."""
    games = [Game("m1", "m2", "a")] * 3 + [Game("m1", "m2", "b")]
    bt = ratings.bradley_terry(games, prior=0)
    assert bt == {"m1": pytest.approx(1095.4243, abs=1e-3), "m2": pytest.approx(904.5757, abs=1e-3)}
    unbeaten = ratings.bradley_terry([Game("m1", "m2", "a")] * 5)
    assert 1000 < unbeaten["m1"] < 1400 and unbeaten["m1"] - 1000 == pytest.approx(1000 - unbeaten["m2"])
    table = ratings.elo_table(games + [Game("m3", "m3", "a")], bootstrap=30)
    assert [r["model"] for r in table] == ["m1", "m2"]  # a model against itself is not a game
    assert (table[0]["games"], table[0]["wins"], table[0]["losses"]) == (4, 3, 1)
    assert table[0]["bt_low"] <= table[0]["bt"] <= table[0]["bt_high"]


def test_agreement_on_hand_made_votes_and_rankings(store):
    """Vote item 1: ann and bob pick the same reply (bob saw the sides swapped), cat the other -> pairs (ann,bob)
    agree, (ann,cat) and (bob,cat) do not. Item 2: ann and bob both say tie -> agree. 2 of 4 pairs agree = 0.5.
    Item 3 has one named annotator plus anonymous votes: not counted. Rankings of [x, y, z]: ann x>y>z, bob x>z>y
    -> of 3 reply pairs 2 in the same order = 2/3; not identical."""
    store.add_vote(HI, "m1", "good", "m2", "bad", "a", annotator="ann")
    store.add_vote(HI, "m2", "bad", "m1", "good", "b", annotator="bob")
    store.add_vote(HI, "m1", "good", "m2", "bad", "b", annotator="cat")
    store.add_vote(SUM, "m1", "4", "m2", "5", "tie", annotator="ann")
    store.add_vote(SUM, "m2", "5", "m1", "4", "tie", annotator="bob")
    store.add_vote(SUM, "m1", "four", "m2", "5", "a", annotator="ann")
    store.add_vote(SUM, "m1", "four", "m2", "5", "b")
    store.add_ranking(HI, "m1", ["x", "y", "z"], [0, 1, 2], annotator="ann")
    store.add_ranking(HI, "m1", ["z", "y", "x"], [2, 0, 1], annotator="bob")  # shown in another order
    agreement = store.stats(bootstrap=0)["agreement"]
    assert agreement["votes"] == {"items": 2, "pairs": 4, "agreement": 0.5}
    assert agreement["rankings"] == {"items": 1, "pairs": 1, "agreement": 0.6667, "exact": 0.0}


def test_model_version_changes_with_the_weights(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "pixiu.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"\0" * 4096)
    first = model_version(str(ckpt))
    assert first.startswith("ckpt@") and model_version(str(ckpt)) == first
    (ckpt / "model.safetensors").write_bytes(b"\1" + b"\0" * 4095)
    assert model_version(str(ckpt)) != first
    assert model_version("smollm2-135m") == "smollm2-135m"


def test_postgres_url_without_psycopg_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'psycopg\[binary\]'"):
        open_store("postgresql://nobody@localhost/none")
    with pytest.raises(ValueError, match="unknown feedback store"):
        open_store("mysql://x")


# ---------------------------------------------------------------- exported rankings train a reward model


def test_exported_rankings_train_reward_model_with_cli(tmp_path, tiny_model_dir, capsys):
    """serve -> rank -> export -> `pixiu train rm`: no conversion step between the store and the stage."""
    from pixiu.cli import main

    with open_store(tmp_path / "fb.db") as store:
        for i in range(16):
            replies = [f"the dog {i}", f"the dog {i} thanks", f"thanks thanks the fox {i}"]
            store.add_ranking(
                [HI[0], {"role": "user", "content": f"hello {i}"}], "m", replies, [2, 1, 0], annotator="a"
            )
        assert exports.export(store, "rankings", tmp_path / "rank.jsonl").written == 16
    run = tmp_path / "rm"
    main(["train", "rm", f"--model.name_or_path={tiny_model_dir}", "--model.dtype=fp32", "--lora.r=4",
          f"--data.path={tmp_path / 'rank.jsonl'}", '--data.eval_path=""', "--data.eval_size=0",
          "--data.max_len=128", f"--train.output_dir={run}", "--train.batch_size=4", "--train.max_steps=4",
          "--train.warmup_ratio=0", "--train.lr=5e-3"])  # fmt: skip
    assert f"saved {run / 'final'}" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["train"]["groups"] == 16 and summary["data"]["train"]["replies"] == 48
    assert (run / "final" / "score_head.safetensors").exists() and summary["last"]["step"] == 4
