"""CPU thread count from affinity and the cgroup quota, on fake cgroup trees; the --threads override (issue 14.11)."""

import os
from pathlib import Path

import pytest
import torch

from pixiu import cli, threads


def tree(tmp_path: Path, files: dict[str, str], proc: str = "0::/\n") -> tuple[Path, Path]:
    """A fake /sys/fs/cgroup with `files` ({relative path: content}) and a fake /proc/self/cgroup."""
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    (tmp_path / "proc_cgroup").write_text(proc)
    return root, tmp_path / "proc_cgroup"


@pytest.mark.parametrize(
    "files, proc, quota",
    [
        ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),  # v2 in a container: docker --cpus 1.5
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),  # v2, no limit
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", 2.0),  # v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, "", None),
        # v2 on a host: this process's cgroup and its parent; the tighter one (the parent's 1 CPU) wins
        ({"a/b/cpu.max": "300000 100000", "a/cpu.max": "100000 100000"}, "0::/a/b\n", 1.0),
        ({"cpu.max": "garbage"}, "0::/\n", None),
        ({}, "0::/\n", None),
    ],
)
def test_cgroup_quota(tmp_path, files, proc, quota):
    root, proc_file = tree(tmp_path, files, proc)
    assert threads.cgroup_quota(root, proc_file) == quota


def test_available_cpus_is_affinity_capped_by_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert threads.available_cpus(*tree(tmp_path / "a", {"cpu.max": "250000 100000"})) == 2  # 2.5 -> 2
    assert threads.available_cpus(*tree(tmp_path / "b", {"cpu.max": "50000 100000"})) == 1  # never 0
    assert threads.available_cpus(*tree(tmp_path / "c", {"cpu.max": "max 100000"})) == 4
    assert threads.available_cpus(*tree(tmp_path / "d", {"cpu.max": "900000 100000"})) == 4


@pytest.fixture
def restore_threads(monkeypatch):
    for var in (threads.ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_configure_sets_torch_and_openmp(restore_threads, monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 1)
    assert threads.configure() == 1 and torch.get_num_threads() == 1
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv(threads.ENV, "2")  # the variable beats detection, the argument beats both
    assert threads.configure() == 2 and torch.get_num_threads() == 2
    assert threads.configure(1) == 1 and os.environ[threads.ENV] == "1"


def test_threads_flag_before_the_command(restore_threads, capsys):
    assert cli.thread_flag(["--threads", "3", "train", "sft"]) == (["train", "sft"], 3)
    assert cli.thread_flag(["--threads=2", "eval"]) == (["eval"], 2)
    assert cli.thread_flag(["train", "--threads", "2"]) == (["train", "--threads", "2"], None)
    with pytest.raises(SystemExit, match="positive whole number"):
        cli.thread_flag(["--threads", "zero", "train"])
    cli.main(["--threads", "1", "templates"])
    assert torch.get_num_threads() == 1 and os.environ[threads.ENV] == "1"
