"""How many CPU threads torch/OpenMP work uses: the CPUs this process may actually run on, not os.cpu_count().

On a shared or containerised machine the affinity mask (taskset, cpusets) and the cgroup CPU quota (docker
--cpus, Kubernetes limits) cap what the process gets. More OpenMP threads than that, or idle workers that spin
at every barrier while a thread they wait for has no core, turn a fair slowdown into a collapse: a quickstart PPO
step went from ~25 s to 415-500 s beside other CPU-bound processes on 2 cores (issue 14.11). So the CLI calls
`configure()` once, before torch starts its thread pool: that many threads, and OMP_WAIT_POLICY=PASSIVE (a
waiting worker sleeps instead of burning the time slice another process, or its own peer, needs).

Override: `pixiu --threads N COMMAND ...` or PIXIU_THREADS=N (the flag sets the variable, so subprocesses the
command starts follow it too).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

ENV = "PIXIU_THREADS"
CGROUP = Path("/sys/fs/cgroup")


def available_cpus(root: Path = CGROUP, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs in this process's affinity mask, capped by its cgroup CPU quota (rounded down, at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity API
        n = os.cpu_count() or 1
    quota = cgroup_quota(root, proc_cgroup)
    return max(1, min(n, math.floor(quota))) if quota is not None else n


def cgroup_quota(root: Path = CGROUP, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The tightest CPU quota (in CPUs) of this process's cgroup and its ancestors; None when unlimited.

    cgroup v2: `cpu.max` holds "QUOTA PERIOD" or "max PERIOD". v1: `cpu.cfs_quota_us` (-1 = none) over
    `cpu.cfs_period_us`, under the cpu controller's mount. Inside a container the cgroup's own files sit at the
    mount root; on a host they sit at the path /proc/self/cgroup names, so both are read.
    """
    quotas = [q for d in _cgroup_dirs(root, proc_cgroup) if (q := _quota(d)) is not None]
    return min(quotas) if quotas else None


def _cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """Candidate directories: each controller mount root, and this process's cgroup path and its ancestors."""
    mounts = [root, root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"]
    rel = []
    try:
        for line in proc_cgroup.read_text().splitlines():  # "0::/user.slice/x" (v2), "4:cpu,cpuacct:/x" (v1)
            _, controllers, path = line.split(":", 2)
            if controllers in ("", "cpu,cpuacct", "cpuacct,cpu", "cpu") or "cpu" in controllers.split(","):
                rel.append(Path(path.lstrip("/")))
    except (OSError, ValueError):
        pass
    dirs = []
    for m in mounts:
        for r in rel:
            dirs += [m / p for p in [r, *r.parents] if str(p) != "."]
        dirs.append(m)
    return dirs


def _quota(d: Path) -> float | None:
    try:
        if (d / "cpu.max").is_file():
            quota, period = (d / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if (d / "cpu.cfs_quota_us").is_file():
            quota = int((d / "cpu.cfs_quota_us").read_text())
            return None if quota <= 0 else quota / int((d / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None


def configure(threads: int | None = None) -> int:
    """Set torch's and OpenMP's thread count: `threads`, else $PIXIU_THREADS, else `available_cpus()`.

    Call before torch is imported where possible: OMP_WAIT_POLICY and OMP_NUM_THREADS are read when the OpenMP
    runtime loads. torch.set_num_threads applies the count even when torch is already running.
    """
    env = os.environ.get(ENV, "").strip()
    n = threads or (int(env) if env.isdigit() and int(env) > 0 else available_cpus())
    os.environ[ENV] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
    return n
