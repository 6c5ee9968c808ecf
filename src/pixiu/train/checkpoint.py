"""Training checkpoints: atomic step-N folders of safetensors + JSON (no pickle), restored bit for bit.

A checkpoint holds the trainable weights, the optimizer moments, the torch and Python RNG states and a stage's own
JSON state (PPO's KL coefficient and reward statistics), so a resumed run continues exactly where it stopped.
The loop (loop.py) decides when to save and restore; nothing else calls these.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pixiu.model.io import unwrap


def save(root: Path, step: int, model, opt, keep: int, accelerator, extra: dict | None = None) -> None:
    """Write root/step-N atomically (temp dir, then rename) and keep the newest `keep`. `extra`: the stage's own
    JSON state, read back by `restore`."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp, final = root / f".step-{step}.tmp", root / f"step-{step}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        trainable = {
            n: p.detach().contiguous() for n, p in unwrap(model).named_parameters() if p.requires_grad
        }
        save_file(trainable, tmp / "trainable.safetensors")
        tensors, meta = _optimizer_state(opt)
        save_file(tensors, tmp / "optimizer.safetensors")
        save_file({"cpu": torch.get_rng_state()}, tmp / "rng.safetensors")
        state = {"step": step, "optimizer": meta, "python_rng": _py_rng_to_json(random.getstate())}
        state["extra"] = extra or {}
        (tmp / "state.json").write_text(json.dumps(state))
        tmp.rename(final)
        for old in sorted(steps(root))[:-keep] if keep > 0 else []:
            shutil.rmtree(root / f"step-{old}")
    accelerator.wait_for_everyone()


def restore(root: Path, model, opt) -> tuple[int, dict]:
    """Load the newest checkpoint under root into model, optimizer and RNGs -> (its step, the stage's extra
    state); (0, {}) when there is none."""
    found = sorted(steps(root))
    if not found:
        print(f"resume: no checkpoint under {root}, starting at step 0")
        return 0, {}
    ck = root / f"step-{found[-1]}"
    state = json.loads((ck / "state.json").read_text())
    weights = load_file(ck / "trainable.safetensors")
    named = dict(unwrap(model).named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            named[name].copy_(value)
    _load_optimizer_state(opt, load_file(ck / "optimizer.safetensors"), state["optimizer"])
    torch.set_rng_state(load_file(ck / "rng.safetensors")["cpu"])
    random.setstate(_py_rng_from_json(state["python_rng"]))
    print(f"resume: continuing from {ck} (step {state['step']})")
    return state["step"], state.get("extra", {})


def steps(root: Path) -> list[int]:
    return [int(p.name[5:]) for p in root.glob("step-*") if p.is_dir()] if root.exists() else []


def _optimizer_state(opt) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.contiguous() for i, s in sd["state"].items() for k, v in s.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optimizer_state(opt, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _py_rng_to_json(s):
    return [s[0], list(s[1]), s[2]]


def _py_rng_from_json(s):
    return (s[0], tuple(s[1]), s[2])
