"""The generation loop: jobs to worker threads, results back in order of arrival, each written as it lands.

Workers only talk to the teacher; the main thread alone runs `accept` and writes, so the output needs no lock
and the ROUGE-L pool sees kept items one at a time, as Alpaca's loop did. A job whose teacher call fails for
good is recorded as failed (OUT.failed.jsonl), never as a row; a 401/403/404 stops the run.
"""

from __future__ import annotations

import itertools
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from pixiu.teach.methods import GenerateConfig, Job, Method, Result, prompt_hash
from pixiu.teach.output import Output
from pixiu.teach.teacher import Teacher, TeacherError


def generate(
    cfg: GenerateConfig, method: Method, teacher: Teacher, concurrency: int, bar: bool = True
) -> Output:
    """Run `method`'s unfinished jobs until the inputs run out, `cfg.target` items are kept or time is up."""
    out = Output(cfg.out)
    method.restore(out.rows)
    pending = (job for job in method.jobs() if job.key not in out.done)
    progress = _bar(cfg, out, bar)
    start, inflight = time.monotonic(), {}
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="teach")
    try:
        while True:
            # at most `concurrency` jobs in flight: at the target or the time limit none is left queued
            room = 0 if _enough(cfg, out, start) else concurrency - len(inflight)
            for job in itertools.islice(pending, max(0, room)):
                inflight[pool.submit(_work, method, job, teacher)] = job
            if not inflight:
                break
            finished, _ = wait(inflight, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                _record(method, out, inflight.pop(future), future, teacher.name)
            _show(progress, out, teacher)
    finally:
        # An interrupt or error leaves without waiting for the replies in flight (up to --timeout each: urllib
        # cannot abort a read from another thread). Their jobs are not recorded, so a rerun asks them again.
        pool.shutdown(wait=False, cancel_futures=True)
        out.close()
        if progress is not None:
            progress.close()
    return out


def _work(method: Method, job: Job, teacher: Teacher) -> Result:
    try:
        return method.run(job, teacher)
    except TeacherError as e:
        # the job's payload identifies what was asked, for the failure record
        return Result(failed=str(e) or type(e).__name__, prompt_hash=prompt_hash(job.payload))


def _record(method: Method, out: Output, job: Job, future: Future, teacher: str) -> None:
    result = future.result()  # TeacherFatal and bugs propagate: stop the run
    rows, dropped = [], list(result.dropped)
    for row in result.rows:
        why = method.accept(row)
        if why:
            dropped.append([why, _example(row)])
        else:
            meta = {
                "teacher": teacher,
                "method": method.name,
                "prompt_hash": result.prompt_hash,
                "job": job.key,
            }
            rows.append(row | {"meta": meta})
    missing = job.asked - len(rows) - len(dropped)
    if not result.failed and missing > 0:  # asked for but never returned: dropped, so every item is counted
        dropped += [["not returned", ""]] * missing
    out.finish(job.key, job.asked, rows, dropped, result.failed, result.prompt_hash)


def _example(row: dict) -> str:
    for key in ("instruction", "prompt"):
        if isinstance(row.get(key), str):
            return row[key][:200]
    return str(row)[:200]


def _enough(cfg: GenerateConfig, out: Output, start: float) -> bool:
    if cfg.target and out.tally.kept >= cfg.target:
        return True
    return bool(cfg.time_limit) and time.monotonic() - start >= cfg.time_limit


def _bar(cfg: GenerateConfig, out: Output, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.target or None, initial=out.tally.kept, unit="item", file=sys.stderr, mininterval=5)


def _show(progress, out: Output, teacher: Teacher) -> None:
    if progress is None:
        return
    t, u = out.tally, teacher.usage
    progress.update(t.kept - progress.n)
    # refresh=False: tqdm redraws at its own pace (mininterval), not once a second per call
    progress.set_postfix(
        kept=t.kept, dropped=t.dropped, failed=t.failed, tokens=u.tokens, cost=f"{u.cost:.4f}", refresh=False
    )
