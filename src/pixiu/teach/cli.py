"""`pixiu data generate` and `pixiu data filter`: one flag per field of the config dataclasses, help from their
docstrings (TeacherConfig for the teacher, GenerateConfig / FilterConfig for the work)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing

from pixiu import config
from pixiu.teach.filter import FilterConfig, format_report, run_filter
from pixiu.teach.methods import GenerateConfig, get_method
from pixiu.teach.sample import SampleConfig
from pixiu.teach.sample import sample as run_sample
from pixiu.teach.teacher import TeacherConfig, TeacherFatal, make_teacher


def generate(argv: list[str]) -> None:
    """pixiu data generate --method self-instruct|evol|self-chat|answer|rank: training data from a teacher."""
    teacher_cfg, cfg = _parse("pixiu data generate", generate.__doc__, argv, TeacherConfig, GenerateConfig)
    from pixiu.teach.run import generate as run

    try:
        method = get_method(cfg.method)(cfg)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    teacher = make_teacher(teacher_cfg)
    try:
        out = run(cfg, method, teacher, teacher_cfg.concurrency)
    except TeacherFatal as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        print(f"\ninterrupted: the kept items are in {cfg.out}; the same command resumes", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # at exit Python would join the teacher threads, each maybe in a read for --timeout s
    finally:
        teacher.close()
    t = out.tally
    summary = {"out": str(out.path), "jobs": t.jobs, "asked": t.asked, "kept": t.kept, "dropped": t.dropped,
               "failed": t.failed, "dropped_by_reason": dict(t.reasons.most_common()), **teacher.usage.summary()}  # fmt: skip
    print(json.dumps(summary, ensure_ascii=False, indent=1))


def filter(argv: list[str]) -> None:  # noqa: A001 - the command's name
    """pixiu data filter FILE: judge rating, exact and near duplicates, length, language, refusals; a report."""
    teacher_cfg, cfg = _parse(
        "pixiu data filter", filter.__doc__, argv, TeacherConfig, FilterConfig, positional="inputs"
    )
    teacher = make_teacher(teacher_cfg) if cfg.judge else None
    try:
        report = run_filter(cfg, teacher, teacher_cfg.concurrency)
    except (TeacherFatal, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    finally:
        if teacher is not None:
            teacher.close()
    print(format_report(report))


def sample(argv: list[str]) -> None:
    """pixiu data sample FILE --out OUT --n N --offset K --seed S: rows K..K+N of FILE shuffled by S."""
    (cfg,) = _parse("pixiu data sample", sample.__doc__, argv, SampleConfig, positional="inputs")
    try:
        rows = run_sample(cfg)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"{cfg.inputs}: {len(rows)} rows -> {cfg.out}")


def _parse(prog: str, doc: str, argv: list[str], *classes: type, positional: str = "") -> list:
    """One instance per class from the flags; unknown or bad values exit with the reason."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, argument_default=argparse.SUPPRESS)
    if positional:  # or as --NAME, as a pipeline's data stage passes every argument
        ap.add_argument(positional, nargs="?", help="the input file")
    for cls in classes:
        hints, docs = typing.get_type_hints(cls), {n: d for n, _, d in config.describe(cls)}
        for f in dataclasses.fields(cls):
            if f.name == positional:
                ap.add_argument(f"--{f.name}", dest=f"{f.name}_flag", help=argparse.SUPPRESS)
                continue
            kind = (
                {"type": _bool, "nargs": "?", "const": True}
                if hints[f.name] is bool
                else {"type": hints[f.name]}
            )
            names = dict.fromkeys([f"--{f.name.replace('_', '-')}", f"--{f.name}"])
            ap.add_argument(*names, dest=f.name, help=f"{docs[f.name]} (default: {f.default})".replace("%", "%%"),
                            **kind)  # fmt: skip
    given = vars(ap.parse_args(argv))
    if positional and f"{positional}_flag" in given:
        given[positional] = given.pop(f"{positional}_flag")
    if positional and not given.get(positional):
        ap.error(f"the input file is required ({positional})")
    try:
        return [cls(**{k: v for k, v in given.items() if k in {f.name for f in dataclasses.fields(cls)}})
                for cls in classes]  # fmt: skip
    except (ValueError, TypeError) as e:
        sys.exit(f"error: {e}")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


if __name__ == "__main__":  # python -m pixiu.teach.cli generate ... (the kill -9 test runs it so)
    {"generate": generate, "filter": filter, "sample": sample}[sys.argv[1]](sys.argv[2:])
