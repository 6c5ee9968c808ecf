"""Where a model runs: the one function every inference entry point asks (`pick`), fed by `model.device`.

    pick("auto")    -> cuda:0 when a CUDA GPU is there (this process's GPU under a multi-process launch), else cpu
    pick("cuda:1")  -> the second GPU; pick("cpu") forces the CPU even on a GPU host

The engine (serve, chat, generate, eval's generations), reward-model scoring (score, eval, the moderation hook)
and every frozen model `model/io.py` loads go through it. Training models (`io.load(..., for_training=True)`)
stay where they load: accelerate places them (its launch config decides the GPUs).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cuda", "cuda:N", "mps", "cpu")


class DeviceError(ValueError):
    """A device name that is not valid or not present on this machine."""


def check(name: str) -> str:
    """Validate the spelling of a device name (not whether it is present): config validation uses this."""
    if name in ("auto", "cuda", "mps", "cpu") or re.fullmatch(r"cuda:\d+", name):
        return name
    raise DeviceError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")


def pick(name: str = "auto") -> torch.device:
    """A device name -> the torch.device to run on. Raises DeviceError for a bad name or an absent device."""
    import torch  # here, so that config validation (`check`) does not import torch

    check(name)
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # launchers (accelerate, torchrun) give each process its GPU through LOCAL_RANK
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", rank if rank < torch.cuda.device_count() else 0)
    if name.startswith("cuda"):
        index = int(name.split(":")[1]) if ":" in name else 0
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            raise DeviceError(f"device {name!r} is not present: this machine has {count} CUDA GPU(s)")
        return torch.device("cuda", index)
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError("device 'mps' is not present: no Apple GPU (Metal) is available to torch")
    return torch.device(name)
