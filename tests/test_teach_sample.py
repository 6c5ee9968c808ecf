"""`pixiu data sample`: seeded slices of one file are disjoint and reproducible; seed tasks become alpaca rows."""

import json

import pytest

from pixiu import cli


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_slices_are_disjoint_reproducible_and_seed_tasks_become_alpaca(tmp_path, capsys):
    src = tmp_path / "seeds.jsonl"
    tasks = [{"id": i, "instruction": f"task {i}", "instances": [{"input": f"in {i}", "output": f"out {i}"}]}
             for i in range(10)]  # fmt: skip
    src.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    a, b, c = (tmp_path / f"{x}.jsonl" for x in "abc")
    cli.main(["data", "sample", str(src), f"--out={a}", "--n=4", "--seed=3"])
    cli.main(["data", "sample", f"--inputs={src}", f"--out={b}", "--offset=4", "--seed=3"])
    cli.main(["data", "sample", str(src), f"--out={c}", "--n=4", "--seed=3"])
    assert "4 rows" in capsys.readouterr().out
    first, rest = rows(a), rows(b)
    assert rows(c) == first and len(rest) == 6  # the same seed, the same slice
    assert sorted(r["instruction"] for r in first + rest) == sorted(f"task {i}" for i in range(10))
    i = int(first[0]["instruction"].split()[1])
    assert first[0] == {"instruction": f"task {i}", "input": f"in {i}", "output": f"out {i}"}
    with pytest.raises(SystemExit, match="10 rows, fewer than offset 8 \\+ n 4"):
        cli.main(["data", "sample", str(src), f"--out={a}", "--n=4", "--offset=8"])
    cli.main(["data", "sample", str(src), f"--out={a}", "--n=2", "--seed=-1"])
    assert [r["instruction"] for r in rows(a)] == ["task 0", "task 1"]  # -1: the file's order
