"""The feedback store: logged chats, arena votes and K-wise rankings (with edits). exports.py turns them into
training data (it imports the store; the store never imports it back), ratings.py into agreement and Elo.

SQLite by default (one file, WAL), PostgreSQL for teams (`postgresql://...`, psycopg imported only then). Every
add_* is one committed transaction before it returns, so a vote the UI acknowledged survives a kill -9 of the
server. Exports are rows the data loader reads as they are (`pixiu train rm|dpo|rrhf|sft --data.path=OUT`):
pairs {prompt, chosen, rejected}, rankings {prompt, responses best first}, sft {messages}; each row also keeps
`meta` (record id, annotator, models), a column no format reads. Data flows: server -> store -> records again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

WINNERS = ("a", "b", "tie", "both_bad")
PROMPT_ROLES = ("system", "user", "assistant", "tool")
KINDS = ("pairs", "rankings", "sft")

# The same SQL for both engines; only the id column and the placeholder differ.
DIALECTS = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "ph": "?"},
    "postgresql": {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "ph": "%s"},
}
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS chats (id {id}, created TEXT NOT NULL, annotator TEXT NOT NULL,
       model TEXT NOT NULL, model_version TEXT NOT NULL, messages TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS votes (id {id}, created TEXT NOT NULL, annotator TEXT NOT NULL,
       prompt TEXT NOT NULL, model_a TEXT NOT NULL, reply_a TEXT NOT NULL, model_b TEXT NOT NULL,
       reply_b TEXT NOT NULL, winner TEXT NOT NULL CHECK (winner IN ('a', 'b', 'tie', 'both_bad')),
       model_versions TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rankings (id {id}, created TEXT NOT NULL, annotator TEXT NOT NULL,
       prompt TEXT NOT NULL, model TEXT NOT NULL, model_version TEXT NOT NULL, replies TEXT NOT NULL,
       ord TEXT NOT NULL, edited TEXT)""",
]


@dataclass
class Vote:
    id: int
    annotator: str
    prompt: list[dict]  # OpenAI messages up to and including the last user turn
    model_a: str
    reply_a: str
    model_b: str
    reply_b: str
    winner: str  # a | b | tie | both_bad
    model_versions: dict  # {"a": version, "b": version} as the server passed them


@dataclass
class RankingRow:
    id: int
    annotator: str
    prompt: list[dict]
    model: str
    model_version: str
    replies: list[str]  # as shown, in sampling order
    order: list[int]  # indices into replies, best first
    edited: str | None  # the annotator's rewrite of the best reply, if any

    def best_first(self) -> list[str]:
        """The replies best first, the edit (when it changes anything) in front of them."""
        ordered = [self.replies[i] for i in self.order]
        if self.edited is not None and self.edited.strip() not in ("", ordered[0].strip()):
            ordered.insert(0, self.edited)
        return ordered


class Store:
    """One connection behind a lock: writes serialize anyway (SQLite has one writer), and a lock is simpler
    to reason about than a connection per thread. Other processes are waited for up to 30 s (busy timeout)."""

    def __init__(self, conn, dialect: str, where: str):
        self.conn, self.dialect, self.where = conn, dialect, where
        self.lock = threading.Lock()
        self._ph = DIALECTS[dialect]["ph"]
        with self.lock:
            for sql in SCHEMA:
                conn.execute(sql.format(**DIALECTS[dialect]))
            conn.commit()

    # ------------------------------------------------------------ writes: one committed transaction each

    def _insert(self, table: str, row: dict) -> int:
        row = {"created": _now(), **row}
        cols = ", ".join(row)
        marks = ", ".join([self._ph] * len(row))
        sql = f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id"
        with self.lock:
            try:
                (new_id,) = self.conn.execute(sql, tuple(row.values())).fetchone()
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
        return int(new_id)

    def add_chat(self, messages: list[dict], model: str, annotator: str = "", model_version: str = "") -> int:
        """Log a conversation (any roles, any last turn)."""
        return self._insert(
            "chats",
            {
                "annotator": _text(annotator, "annotator"),
                "model": _text(model, "model"),
                "model_version": _text(model_version, "model_version"),
                "messages": _json(_messages(messages, "messages")),
            },
        )

    def add_vote(
        self,
        prompt: list[dict],
        model_a: str,
        reply_a: str,
        model_b: str,
        reply_b: str,
        winner: str,
        annotator: str = "",
        model_versions: dict | None = None,
    ) -> int:
        """An arena vote: which of two anonymous replies to `prompt` is better (or tie / both bad)."""
        if winner not in WINNERS:
            raise ValueError(f"winner must be one of {', '.join(WINNERS)}, got {winner!r}")
        return self._insert(
            "votes",
            {
                "annotator": _text(annotator, "annotator"),
                "prompt": _json(_prompt(prompt)),
                "model_a": _text(model_a, "model_a"),
                "reply_a": _text(reply_a, "reply_a"),
                "model_b": _text(model_b, "model_b"),
                "reply_b": _text(reply_b, "reply_b"),
                "winner": winner,
                "model_versions": _json(dict(model_versions or {})),
            },
        )

    def add_ranking(
        self,
        prompt: list[dict],
        model: str,
        replies: list[str],
        order: list[int],
        edited: str | None = None,
        annotator: str = "",
        model_version: str = "",
    ) -> int:
        """K replies of one model to `prompt`, ordered best first (`order` = indices into `replies`)."""
        if not isinstance(replies, list) or len(replies) < 2:
            raise ValueError("a ranking needs a list of at least two replies")
        replies = [_text(r, f"reply {i}") for i, r in enumerate(replies)]
        if not isinstance(order, list) or sorted(order) != list(range(len(replies))):
            raise ValueError(f"order must list each reply index 0..{len(replies) - 1} once, got {order!r}")
        return self._insert(
            "rankings",
            {
                "annotator": _text(annotator, "annotator"),
                "prompt": _json(_prompt(prompt)),
                "model": _text(model, "model"),
                "model_version": _text(model_version, "model_version"),
                "replies": _json(replies),
                "ord": _json([int(i) for i in order]),
                "edited": None if edited is None else _text(edited, "edited"),
            },
        )

    # ------------------------------------------------------------ reads

    def _rows(self, sql: str) -> list[tuple]:
        with self.lock:
            rows = self.conn.execute(sql).fetchall()
            self.conn.commit()  # end the read transaction (PostgreSQL opens one for every statement)
        return rows

    def votes(self) -> list[Vote]:
        """All votes in the order they were cast."""
        sql = "SELECT id, annotator, prompt, model_a, reply_a, model_b, reply_b, winner, model_versions FROM votes"
        return [
            Vote(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))
            for r in self._rows(sql + " ORDER BY id")
        ]

    def rankings(self) -> list[RankingRow]:
        sql = "SELECT id, annotator, prompt, model, model_version, replies, ord, edited FROM rankings"
        return [
            RankingRow(r[0], r[1], json.loads(r[2]), r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7])
            for r in self._rows(sql + " ORDER BY id")
        ]

    def chats(self) -> list[dict]:
        sql = "SELECT id, annotator, model, model_version, messages FROM chats ORDER BY id"
        keys = ("id", "annotator", "model", "model_version")
        return [dict(zip(keys, r[:4]), messages=json.loads(r[4])) for r in self._rows(sql)]

    def counts(self) -> dict:
        """Rows per table, edits, votes per winner and distinct named annotators."""
        one = lambda sql: self._rows(sql)[0][0]  # noqa: E731
        by_winner = dict(self._rows("SELECT winner, COUNT(*) FROM votes GROUP BY winner"))
        names = "SELECT annotator FROM votes UNION SELECT annotator FROM rankings UNION SELECT annotator FROM chats"
        return {
            "chats": one("SELECT COUNT(*) FROM chats"),
            "votes": one("SELECT COUNT(*) FROM votes"),
            "rankings": one("SELECT COUNT(*) FROM rankings"),
            "edits": one("SELECT COUNT(*) FROM rankings WHERE edited IS NOT NULL"),
            "votes_by_winner": {w: by_winner.get(w, 0) for w in WINNERS},
            "annotators": one(f"SELECT COUNT(*) FROM ({names}) AS u WHERE annotator <> ''"),
        }

    def stats(self, bootstrap: int = 100) -> dict:
        """counts, agreement between annotators (votes and rankings) and the arena Elo table."""
        from pixiu.feedback import ratings

        return {"counts": self.counts(), **ratings.feedback_stats(self.votes(), self.rankings(), bootstrap)}

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- opening


def default_path() -> Path:
    """Where votes go when no store is named: $PIXIU_HOME/feedback.db, else $XDG_DATA_HOME/pixiu/feedback.db
    (~/.local/share/pixiu/feedback.db). Never the current directory: SQLite's feedback.db, -wal and -shm files
    landed untracked in whatever repository `pixiu serve` was started from."""
    import os

    home = os.environ.get("PIXIU_HOME")
    if home:
        return Path(home).expanduser() / "feedback.db"
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data).expanduser() / "pixiu" / "feedback.db"


def open_store(url: str | Path = "") -> Store:
    """A path or sqlite:///path -> SQLite; postgresql://user@host/db -> PostgreSQL (needs psycopg);
    '' -> default_path() (its folder is made)."""
    if not str(url):
        url = default_path()
        url.parent.mkdir(parents=True, exist_ok=True)
    url = str(url)
    if url.startswith(("postgresql://", "postgres://")):
        return Store(_connect_postgres(url), "postgresql", url.split("@")[-1])
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if "://" in path:
        raise ValueError(
            f"unknown feedback store {url!r}: give a file path, sqlite:///PATH or postgresql://..."
        )
    return Store(_connect_sqlite(path), "sqlite", path)


def _connect_sqlite(path: str) -> sqlite3.Connection:
    """WAL with synchronous=FULL: each commit fsyncs the write-ahead log, so an acknowledged vote survives a
    process kill AND a power cut (NORMAL survives the kill but may lose the last commits on power loss). One
    fsync per human vote costs nothing a person would notice."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _connect_postgres(url: str):
    try:
        import psycopg
    except ImportError:
        raise ImportError(
            "a postgresql:// feedback store needs psycopg: pip install 'psycopg[binary]'"
        ) from None
    return psycopg.connect(url)


def model_version(name_or_path: str) -> str:
    """The served model's identity for the store: 'NAME@HASH12', the hash over its small config files (pixiu.json,
    adapter and model configs) and the size, head and tail of each weight file. A cheap fingerprint, not a full
    read: retraining changes the weights' bytes within the first or last MiB. A hub name or alias -> itself."""
    path = Path(name_or_path)
    if not path.exists():
        return name_or_path
    h = hashlib.blake2b(digest_size=6)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for f in files:
        if f.suffix == ".json":
            h.update(f.name.encode() + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".gguf", ".pt"):
            size = f.stat().st_size
            with f.open("rb") as fh:
                head = fh.read(1 << 20)
                fh.seek(max(0, size - (1 << 20)))
                h.update(f"{f.name}:{size}".encode() + head + fh.read())
    return f"{path.name}@{h.hexdigest()}"


# ---------------------------------------------------------------- validation and encoding


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _text(value, what: str) -> str:
    """The text without NUL characters: PostgreSQL text cannot hold them (a small model's reply can contain one,
    and storing it failed the vote), and both backends keep the same text."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    return value.replace("\x00", "")


def _messages(messages, what: str) -> list[dict]:
    """OpenAI messages reduced to {role, content} text; anything else is a ValueError (the server's 400)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{what} must be a non-empty list of {{role, content}} messages")
    out = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in PROMPT_ROLES:
            raise ValueError(f"each message needs a role in {', '.join(PROMPT_ROLES)}, got {str(m)[:80]}")
        out.append({"role": m["role"], "content": _text(m.get("content"), f"{m['role']} content")})
    return out


def _prompt(prompt) -> list[dict]:
    """The context the replies answer: it ends with a non-empty user turn, as the data loader requires."""
    messages = _messages(prompt, "prompt")
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise ValueError("the prompt must end with a non-empty user turn")
    return messages
