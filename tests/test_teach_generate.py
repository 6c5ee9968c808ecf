"""pixiu data generate against a fault-injecting fake teacher: every item accounted for, nothing empty written,
a kill -9 mid-run then resume gives no duplicate and no lost item; pacing, Retry-After, cost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_teacher import FakeTeacher  # noqa: E402

from pixiu.teach.methods import GenerateConfig, get_method  # noqa: E402
from pixiu.teach.run import generate  # noqa: E402
from pixiu.teach.teacher import HTTPTeacher, Pacer, TeacherConfig, TeacherError, retry_after  # noqa: E402

FAULTS = ["RATE429", "ERR500", "SLOW", "BADJSON", "EMPTY", "REFUSE"]


@pytest.fixture
def fake():
    server = FakeTeacher(slow=0.6)
    yield server
    server.close()


def lines(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().split("\n") if x] if Path(path).exists() else []


def teacher_for(url: str, **kw) -> HTTPTeacher:
    cfg = TeacherConfig(url=url, model="fake", timeout=0.3, retries=2, backoff=0.01, concurrency=4, **kw)
    return HTTPTeacher(cfg)


def test_every_item_is_accounted_for(fake, tmp_path):
    """4 plain + each fault twice, 2 samples each: 429 and SLOW recover (kept), REFUSE is dropped, ERR500,
    BADJSON and EMPTY fail after retries; kept + dropped + failed = asked and no empty row is written."""
    items = [f"question {i}" for i in range(4)] + [f"{f} question {i}" for f in FAULTS for i in range(2)]
    (tmp_path / "in.txt").write_text("\n".join(items))
    cfg = GenerateConfig(
        method="answer", inputs=str(tmp_path / "in.txt"), out=str(tmp_path / "out.jsonl"), n=2
    )
    teacher = teacher_for(fake.url, price_in=1.0, price_out=2.0)
    out = generate(cfg, get_method("answer")(cfg), teacher, concurrency=4, bar=False)
    t = out.tally
    assert (t.asked, t.kept, t.dropped, t.failed) == (32, 16, 4, 12)
    assert t.kept + t.dropped + t.failed == t.asked
    rows = lines(cfg.out)
    assert len(rows) == 16 and all(r["output"].strip() for r in rows)
    assert not any(f in r["instruction"] for r in rows for f in ("ERR500", "BADJSON", "EMPTY", "REFUSE"))
    assert {r["meta"]["method"] for r in rows} == {"answer"} and all(
        len(r["meta"]["prompt_hash"]) == 16 for r in rows
    )
    failed = lines(f"{cfg.out}.failed.jsonl")
    assert len(failed) == 12 and {f["error"].split(":")[0] for f in failed} == {"HTTP 500", "an unreadable reply",
                                                                               "an empty reply (3 attempts)"}  # fmt: skip
    assert all(len(f["prompt_hash"]) == 16 for f in failed)
    assert t.reasons == {"refusal": 4}
    u = teacher.usage
    assert (
        u.requests == 20 and u.failures == 12 and u.retries == 2 + 2 + 12 * 2
    )  # one 429 and one SLOW per text; 12 failures x 2
    assert u.cost == pytest.approx((u.prompt_tokens * 1.0 + u.completion_tokens * 2.0) / 1e6)


def test_kill9_then_resume(tmp_path):
    """SIGKILL a running generate, add a torn line, resume: every job once, none lost, none twice."""
    server = FakeTeacher(delay=0.1)
    try:
        # U+2028 inside an item: JSON keeps it raw, and str.splitlines would cut the row there
        (tmp_path / "in.txt").write_text("\n".join(f"item\u2028{i}" for i in range(40)))
        out = tmp_path / "out.jsonl"
        cmd = [sys.executable, "-m", "pixiu.teach.cli", "generate", "--method", "answer", "--url", server.url,
               "--model", "fake", "--inputs", str(tmp_path / "in.txt"), "--out", str(out), "--concurrency", "2"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(lines(out)) < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = len(lines(out))
        assert 8 <= before < 40, "the run must be killed midway"
        with open(out, "a") as f:  # a row of a job the journal never finished, and a torn last line
            f.write(
                json.dumps({"instruction": "orphan", "output": "x", "meta": {"job": "answer-39-0"}}) + "\n"
            )
            f.write('{"instruction": "torn')
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        rows = lines(out)
        jobs = [r["meta"]["job"] for r in rows]
        assert len(jobs) == len(set(jobs)) == 40 and "orphan" not in {r["instruction"] for r in rows}
        assert sorted(r["instruction"] for r in rows) == sorted(f"item\u2028{i}" for i in range(40))
        assert len(lines(f"{out}.journal.jsonl")) == 40
        assert json.loads(done.stdout)["kept"] == 40
    finally:
        server.close()


def test_ctrl_c_leaves_at_once_and_resumes(tmp_path):
    """SIGINT while 2 requests hang: exit 130 within seconds (not after --timeout), their jobs asked again."""
    gate = threading.Event()

    def reply(text):
        if int(text.split()[-1]) >= 8:
            gate.wait(60)  # a teacher slower than the user's patience
        return f"Answer: {text}"

    server = FakeTeacher(reply=reply)
    try:
        (tmp_path / "in.txt").write_text("\n".join(f"item {i}" for i in range(12)))
        out = tmp_path / "out.jsonl"
        cmd = [sys.executable, "-m", "pixiu.teach.cli", "generate", "--method", "answer", "--url", server.url,
               "--model", "fake", "--inputs", str(tmp_path / "in.txt"), "--out", str(out), "--concurrency", "2"]  # fmt: skip
        # Ctrl-C as in a terminal: a test run started in the background (`cmd &` in a script) ignores SIGINT,
        # and a child would inherit that and never see it
        terminal = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=terminal
        )
        deadline = time.monotonic() + 60
        while server.requests < 10 and time.monotonic() < deadline:  # items 8 and 9 hang in flight
            time.sleep(0.05)
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:  # communicate reads stderr while it waits: a full pipe cannot stall the child
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"still running 20 s after SIGINT; stderr:\n{proc.communicate()[1][-3000:]}")
        assert proc.returncode == 130 and time.monotonic() - asked < 10, err[-3000:]
        assert "interrupted" in err
        assert sorted(r["instruction"] for r in lines(out)) == [f"item {i}" for i in range(8)]
        gate.set()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert sorted(r["instruction"] for r in lines(out)) == sorted(f"item {i}" for i in range(12))
    finally:
        gate.set()
        server.close()


def test_retry_after_is_honoured(fake):
    """429 with Retry-After: 0 waits 0 s (not the 5 s backoff); the header's date form is read too."""
    waits = []
    cfg = TeacherConfig(url=fake.url, model="fake", retries=1, backoff=5.0)
    teacher = HTTPTeacher(cfg, sleep=waits.append)
    assert teacher.chat([{"role": "user", "content": "RATE429 hi"}]).text == "Answer: RATE429 hi"
    assert waits == [0.0]
    assert retry_after("Fri, 04 Dec 2026 21:00:10 GMT", now=1796418000.0) == 10.0
    assert retry_after("soon") is None and retry_after("3") == 3.0


def test_backoff_doubles_then_fails(fake):
    waits = []
    teacher = HTTPTeacher(
        TeacherConfig(url=fake.url, model="fake", retries=3, backoff=0.5), sleep=waits.append
    )
    with pytest.raises(TeacherError, match="HTTP 500"):
        teacher.chat([{"role": "user", "content": "ERR500"}])
    assert waits == [0.5, 1.0, 2.0]  # no wait after the last attempt


def test_pacer_spaces_requests():
    """rpm 120 = one start per 0.5 s: on a fake clock, 4 immediate calls start at 0, 0.5, 1.0, 1.5."""
    now, starts = [0.0], []

    def sleep(s):
        now[0] += s

    pacer = Pacer(120, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        pacer.wait()
        starts.append(now[0])
    assert starts == [0.0, 0.5, 1.0, 1.5]
    now[0] = 10.0  # idle for a while: no debt, no burst either
    pacer.wait()
    assert now[0] == 10.0


def test_fatal_status_stops_the_run():
    """401/403/404 mean a wrong key, URL or model: TeacherFatal, which ends the run instead of failing each item."""
    import urllib.error

    from pixiu.teach.teacher import TeacherFatal

    teacher = HTTPTeacher(TeacherConfig(url="http://127.0.0.1:9/nowhere", model="m", retries=0))
    err = urllib.error.HTTPError("u", 401, "no", {}, None)
    err.read = lambda: b"bad key"
    with pytest.raises(TeacherFatal, match="401"):
        teacher._http_error(err)


def test_engine_teacher_answers_and_counts(lively_dir, tmp_path):
    """`--url engine:DIR`: a local pixiu model through the engine, same accounting as over HTTP."""
    from pixiu.teach.teacher import make_teacher

    teacher = make_teacher(TeacherConfig(url=f"engine:{lively_dir}", concurrency=2))
    try:
        (tmp_path / "in.txt").write_text("Hello world\nWhat is two plus two?")
        cfg = GenerateConfig(method="answer", inputs=str(tmp_path / "in.txt"), out=str(tmp_path / "o.jsonl"),
                             max_tokens=8, temperature=0.0)  # fmt: skip
        out = generate(cfg, get_method("answer")(cfg), teacher, concurrency=2, bar=False)
    finally:
        teacher.close()
    t, u = out.tally, teacher.usage
    assert t.kept + t.dropped == t.asked == 2 and t.failed == 0, lines(f"{cfg.out}.failed.jsonl")
    assert u.requests == t.kept + t.dropped and u.completion_tokens <= 8 * u.requests and u.prompt_tokens > 0
    assert all(r["output"].strip() and r["meta"]["teacher"] == f"engine:{lively_dir}" for r in lines(cfg.out))


def test_a_4xx_fails_at_once_and_counts():
    """400 (say, a prompt too long for the context) is not retried: one request, one failure."""
    import urllib.error

    teacher = HTTPTeacher(
        TeacherConfig(url="http://127.0.0.1:9/v1", model="m", retries=3), sleep=lambda s: None
    )
    err = urllib.error.HTTPError("u", 400, "bad", {}, None)
    err.read = lambda: b"too long"
    teacher._attempt = lambda *a: teacher._http_error(err)
    with pytest.raises(TeacherError, match="HTTP 400"):
        teacher.chat([{"role": "user", "content": "x"}])
    assert (teacher.usage.failures, teacher.usage.retries) == (1, 0)
