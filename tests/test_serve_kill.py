"""Acknowledged feedback survives `kill -9` of a real `pixiu serve` process.

The server runs as a subprocess (`python -m pixiu.cli serve`) on the tiny model with a SQLite store and an API
key; the client logs in the way a browser does (GET /ui?key=K -> one HttpOnly cookie), labels through the web
UI's API, and the moment a vote or ranking is acknowledged the server gets SIGKILL. The store is then read with
a fresh plain connection (sqlite3, or psycopg for PostgreSQL: both backends run, see test_feedback.py's
`postgres_url`) and every acknowledged label must be in it, exactly as sent and with the served weights' version. Three server lives: kill after a vote, kill after a ranking, kill in the middle of a burst
of concurrent labels. Slow: each life starts a Python process that imports torch and loads a model.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_feedback import postgres_url

from pixiu.serve.feedback import model_version

pytestmark = pytest.mark.slow
KEY = "kill-test-key"
PROMPT = [{"role": "user", "content": "Hello there"}]
SAMPLING = {"temperature": 1.0, "max_tokens": 4}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`pixiu serve tiny=DIR` in a subprocess; `client` is logged in through the /ui?key= cookie."""

    def __init__(self, model_dir: Path, db: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "pixiu.cli", "serve", f"tiny={model_dir}", "--port", str(self.port)]
        cmd += ["--db", str(db), "--api-key", KEY, "--max-batch", "8"]
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.client = httpx.Client(base_url=self.url, timeout=60)
        self._wait()

    def _wait(self, limit: float = 300) -> None:
        deadline = time.time() + limit
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"pixiu serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/health", headers={"Authorization": f"Bearer {KEY}"}).is_success:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            self.kill()
            pytest.fail(f"pixiu serve did not answer in {limit} s:\n{self.log.read_text()[-3000:]}")
        login = self.client.get("/ui", params={"key": KEY})
        assert login.status_code == 303 and len(login.headers.get_list("set-cookie")) == 1
        self.client.cookies.set("pixiu_key", login.cookies["pixiu_key"])  # the jar ignores cookies for IPs

    def post(self, path: str, body: dict) -> dict:
        res = self.client.post(path, json=body)
        assert res.status_code == 200, res.text
        return res.json()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.client.close()
        assert self.proc.returncode == -signal.SIGKILL


def rows(db: str, sql: str) -> list[tuple]:
    """A fresh connection after the kill: it replays the write-ahead log the dead server left."""
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            return conn.execute(sql).fetchall()
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def votes(db: str) -> dict[str, tuple]:
    sql = "SELECT annotator, winner, prompt, model_a, reply_a, model_b, reply_b, model_versions FROM votes"
    return {r[0]: (r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows(db, sql)}


def rankings(db: str) -> dict[str, tuple]:
    sql = "SELECT annotator, prompt, model, model_version, replies, ord, edited FROM rankings"
    return {
        r[0]: (json.loads(r[1]), r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6]) for r in rows(db, sql)
    }


def battle(server: Server) -> dict:
    b = server.post("/ui/api/arena", {"messages": PROMPT, "sampling": SAMPLING})
    assert b["same_model"] is True  # one served model: two seeds of it
    return b


def sample(server: Server) -> dict:
    s = server.post(
        "/ui/api/rank/sample", {"messages": PROMPT, "model": "tiny", "k": 3, "sampling": SAMPLING}
    )
    assert len(s["replies"]) == 3
    return s


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_acknowledged_labels_survive_sigkill(tiny_model_dir, tmp_path, backend):
    db = str(tmp_path / "feedback.db") if backend == "sqlite" else postgres_url()
    version = model_version(str(tiny_model_dir))
    assert version.startswith(f"{tiny_model_dir.name}@") and len(version.split("@")[1]) == 12
    want_votes: dict[str, tuple] = {}
    want_ranks: dict[str, tuple] = {}

    def stored(text: str) -> str:  # the store drops NUL characters, which the tiny random model may write
        return text.replace("\x00", "")

    def want_vote(b: dict, name: str, winner: str) -> None:
        want_votes[name] = (
            winner,
            PROMPT,
            "tiny",
            stored(b["reply_a"]),
            "tiny",
            stored(b["reply_b"]),
            {"a": version, "b": version},
        )

    def want_rank(s: dict, name: str, order: list[int], edited: str | None) -> None:
        want_ranks[name] = (PROMPT, "tiny", version, [stored(r) for r in s["replies"]], order, edited)

    # life 1: one vote, killed the moment it is acknowledged
    server = Server(tiny_model_dir, db, tmp_path / "serve1.log")
    b = battle(server)
    ack = server.post("/ui/api/vote", {"battle_id": b["battle_id"], "winner": "b", "annotator": "v1"})
    server.kill()
    assert ack == {"model_a": "tiny", "model_b": "tiny", "winner": "b"}
    want_vote(b, "v1", "b")
    assert votes(db) == want_votes

    # life 2: one ranking with an edit, killed the moment it is acknowledged
    server = Server(tiny_model_dir, db, tmp_path / "serve2.log")
    s = sample(server)
    body = {"sample_id": s["sample_id"], "order": [2, 0, 1], "edited": "An edit.", "annotator": "r1"}
    ack = server.post("/ui/api/rank", body)
    server.kill()
    assert ack == {"stored": True, "model": "tiny", "edited": True}
    want_rank(s, "r1", [2, 0, 1], "An edit.")
    assert rankings(db) == want_ranks and votes(db) == want_votes  # life 1's vote is still there

    # life 3: eight labels in flight at once, killed right after the third acknowledgement
    server = Server(tiny_model_dir, db, tmp_path / "serve3.log")
    labels = [("vote", battle(server), f"v{i}") for i in range(2, 7)]
    labels += [("rank", sample(server), f"r{i}") for i in range(2, 5)]
    acked, lock, third = [], threading.Lock(), threading.Event()

    def send(kind: str, item: dict, name: str) -> None:
        if kind == "vote":
            path, body = "/ui/api/vote", {"battle_id": item["battle_id"], "winner": "a", "annotator": name}
        else:
            path, body = (
                "/ui/api/rank",
                {"sample_id": item["sample_id"], "order": [0, 2, 1], "annotator": name},
            )
        try:
            res = server.client.post(path, json=body)
        except httpx.TransportError:
            return  # killed before it answered: not acknowledged, may or may not be stored
        if res.status_code == 200:
            with lock:
                acked.append((kind, item, name))
                if len(acked) >= 3:
                    third.set()

    threads = [threading.Thread(target=send, args=label) for label in labels]
    for t in threads:
        t.start()
    assert third.wait(120), "fewer than three labels were acknowledged"
    server.kill()
    for t in threads:
        t.join(60)
    for kind, item, name in acked:
        (want_vote(item, name, "a") if kind == "vote" else want_rank(item, name, [0, 2, 1], None))
    got_votes, got_ranks = votes(db), rankings(db)
    assert {k: got_votes.get(k) for k in want_votes} == want_votes
    assert {k: got_ranks.get(k) for k in want_ranks} == want_ranks
    assert len(acked) >= 3
