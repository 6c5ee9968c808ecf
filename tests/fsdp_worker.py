"""One process of tests/test_gpu_train.py's FSDP check (run by torchrun): pixiu's TargetLM and SFT loss under
torch's FSDP2 (`fully_shard`, what accelerate's fsdp_version 2 applies: one unit per decoder layer, then the
root) on gloo CPU processes. Writes the loss of its rows and the full (gathered) gradients and weights.
usage: torchrun --nproc_per_node N tests/fsdp_worker.py MODEL_DIR OUT_DIR"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM

from pixiu.chat.templates import Rendered
from pixiu.data.collate import collate
from pixiu.model import TargetLM


def rows() -> list[list[Rendered]]:
    """Four samples, long enough that a process's ~340 targets take the trained head's chunked path (N > 2H)."""
    return [
        [Rendered([5 + (i * 7 + n) % 300 for i in range(n)], [0] * 20 + [1] * (n - 20))]
        for n in (150, 170, 190, 210)
    ]


def main(model_dir: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = TargetLM(AutoModelForCausalLM.from_pretrained(model_dir))
    if world > 1:
        mesh = init_device_mesh("cpu", (world,))
        for layer in model.lm.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    loss = model(collate(rows()[rank::world], 0), nll=True)[0]
    (loss * world).backward()  # FSDP averages gradients over processes; the loop scales the same way
    grads = {n: (p.grad.full_tensor() if world > 1 else p.grad) for n, p in model.named_parameters()}
    total = loss.detach().clone()
    dist.all_reduce(total)
    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        Path(out).mkdir(parents=True, exist_ok=True)
        save_file(
            {"loss": total.reshape(1), **{"grad." + k: v.clone() for k, v in grads.items()}},
            Path(out) / "grads.safetensors",
        )
        save_file(
            {k: v.clone() for k, v in weights.items()}, Path(out) / "weights.safetensors"
        )  # tied: clone
    dist.barrier()  # tear down together: a rank that left while rank 0 still wrote aborted now and then (SIGABRT)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
