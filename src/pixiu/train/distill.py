"""Token-level knowledge distillation (`pixiu train distill`): the student learns the teacher's next-token
distributions at every reply token, not only the reference token (Hinton et al. 2015; GKD, Agarwal et al. 2023,
https://arxiv.org/abs/2306.13649; MiniLLM, Gu et al. 2023).

Rows are SFT's (chat template, assistant tokens as targets, packing when asked). Per target token the loss is
distill.loss (losses.forward_kl / reverse_kl / generalized_jsd) between the student's and the teacher's
distributions at distill.temperature, summed and divided by the step's target tokens. The teacher is either
- live: a frozen model beside the student, scoring each batch (and, with distill.lmbda > 0, batches of replies the
  student samples through the engine: GKD's on-policy share); or
- stored: distill.teacher_logprobs, a safetensors file of its top-k token ids and log-probs at each target of the
  training and eval rows, written once by the teacher alone, so the two models are never resident together.
- an endpoint: distill.teacher = http(s)://HOST/v1 (`pixiu serve`, vLLM). The student's rows go as text to its
  echo-only completions (max_tokens 0, echo, logprobs K), whose top-K log-probs of the prompt's own tokens fill
  the same stored file once, before training; the echoed tokens must be the student's own, id for id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import random
import time
from pathlib import Path

import torch

from pixiu import losses
from pixiu.chat.messages import TARGET_ROLES, Conversation
from pixiu.chat.templates import Rendered
from pixiu.config import ConfigError, ModelConfig, RunConfig
from pixiu.data import load_data
from pixiu.data.collate import TokenBatch, collate, fit
from pixiu.engine import Sampling, sample
from pixiu.model import TargetLM, io
from pixiu.model.forward import autocast, base_lm
from pixiu.train.loop import Hooks, Optimizer, Rows
from pixiu.train.loop import fit as fit_loop
from pixiu.train.sft import REPORT_LINE, eval_loss, prepare
from pixiu.train.stages import begin, finish, print_report

# a teacher's answer at N targets: (N, K) token ids (None: all V tokens in order) and (N, K) log-probs
Teacher = tuple[torch.Tensor | None, torch.Tensor]


def run(cfg: RunConfig, stage: str = "distill") -> Path:
    """Distil distill.teacher (or its stored log-probs) into model.name_or_path; save `output_dir/final`."""
    job, d = begin(cfg, stage), cfg.distill
    stored = stored_path(cfg)
    if not d.teacher and not (stored and stored.exists()):
        raise ConfigError("distill.teacher is required (or an existing distill.teacher_logprobs file)")
    data = load_data(cfg.data, want=Conversation)
    if stored and not stored.exists() and not d.endpoint:
        if job.main:  # the teacher alone renders the rows, scores them and is freed before the student loads
            teacher = load_teacher(cfg, job.accelerator.device)
            rows = prepare("sft", data.train, data.eval, teacher.loaded, cfg)
            write_logprobs(stored, teacher, {"train": rows[0], "eval": rows[1]}, cfg)
            del teacher, rows
            gc.collect()  # the teacher's weights go before the student's arrive
        job.accelerator.wait_for_everyone()
    loaded = io.load(cfg.model, cfg.lora, for_training=True)
    train_rows, eval_rows, report = prepare("sft", data.train, data.eval, loaded, cfg)
    report["skipped_rows"] = data.skipped
    print_report(job, report, data.counts, REPORT_LINE)
    splits = {"train": train_rows, "eval": eval_rows}
    if d.endpoint and not stored.exists():  # the student's own rows, scored by the endpoint once
        if job.main:
            write_logprobs(
                stored, EndpointTeacher(d, loaded.tokenizer, vocab_size(loaded.model)), splits, cfg
            )
        job.accelerator.wait_for_everyone()
    teacher = (
        StoredTeacher(stored, splits, d.temperature) if stored else load_teacher(cfg, job.accelerator.device)
    )
    check_vocab(teacher.vocab, vocab_size(loaded.model))
    model = job.accelerator.prepare(TargetLM(loaded.model))
    step = DistillStep(cfg, loaded, model, teacher, splits, job.accelerator)
    step.prompts = [p for p in map(prompt_of, data.train) if p] if d.lmbda > 0 else []
    hooks = Hooks(step, step.per_epoch, step.evaluate if eval_rows else None, show=("loss", "tokens_per_s"))
    model.train()
    history = fit_loop(model, hooks, cfg.train, job.accelerator, job.out)
    return finish(job, loaded, history, data=report)


def stored_path(cfg: RunConfig) -> Path | None:
    """Where the teacher's log-probs are stored: distill.teacher_logprobs, or for an endpoint teacher (which
    cannot be asked at every step) OUTPUT/teacher_logprobs.safetensors; None: a live teacher."""
    d = cfg.distill
    if d.teacher_logprobs:
        return Path(d.teacher_logprobs)
    return Path(cfg.train.output_dir) / "teacher_logprobs.safetensors" if d.endpoint else None


def batching(cfg: RunConfig) -> tuple:
    return cfg.train.batch_size, cfg.data.seed, cfg.data.group_by_length, cfg.train.tokens_per_batch


def vocab_size(model) -> int:
    """Rows of the output embedding: the size of the distribution the model predicts."""
    return base_lm(model).get_output_embeddings().weight.shape[0]


def check_vocab(teacher: int, student: int) -> None:
    """Token-level distillation compares distributions over the same token ids."""
    if teacher != student:
        raise ConfigError(
            f"teacher vocabulary has {teacher} tokens, student vocabulary {student}: token-level distillation "
            "needs one vocabulary (sequence-level KD, SFT on the teacher's replies, does not)"
        )


def prompt_of(conv: Conversation) -> Conversation | None:
    """The conversation up to its last assistant turn: what the student answers on-policy (None: no such turn)."""
    last = max((i for i, m in enumerate(conv.messages) if m.role in TARGET_ROLES), default=0)
    return dataclasses.replace(conv, messages=conv.messages[:last]) if last else None


# ---------------------------------------------------------------- teachers


class LiveTeacher:
    """A frozen teacher model: its full next-token log-probs at a batch's targets."""

    def __init__(self, loaded: io.Loaded, temperature: float, device):
        loaded.model.requires_grad_(False)
        self.loaded, self.temperature, self.dtype = loaded, temperature, loaded.dtype
        self.lm = TargetLM(loaded.model.to(device).eval())
        self.vocab = vocab_size(loaded.model)

    @torch.no_grad()
    def __call__(self, batch: TokenBatch, split: str = "", idx: list[int] = ()) -> Teacher:
        with autocast(self.dtype, batch.input_ids.device):
            logits, _ = self.lm(batch)
        return None, losses.tempered(logits, self.temperature)

    def top_k(self, rows: list, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows -> their targets' k most likely tokens (N, k) int32 and log-probs (N, k), best first."""
        device = next(self.lm.parameters()).device
        _, full = self(collate(rows, self.loaded.tokenizer.pad_token_id).to(device))
        top = full.topk(k, -1)
        return top.indices.to(torch.int32).cpu(), top.values.cpu()


def load_teacher(cfg: RunConfig, device) -> LiveTeacher:
    m = cfg.model
    spec = ModelConfig(
        cfg.distill.teacher,
        dtype=m.dtype,
        template=m.template,
        trust_remote_code=m.trust_remote_code,
        attn_implementation=m.attn_implementation,
    )
    return LiveTeacher(io.load(spec, None, for_training=True), cfg.distill.temperature, device)


class EndpointTeacher:
    """distill.teacher as an OpenAI-compatible endpoint, through teach/'s HTTP client (pacing, retries, backoff):
    each rendered segment goes as text to an echo-only completion (HTTPTeacher.score), whose tokens must be the
    student's own ids, and whose top-k at each target becomes a row of the stored file."""

    PER_REQUEST = 16  # segments per request (pixiu serve takes up to 64 prompts in one)

    def __init__(self, d, tokenizer, student_vocab: int):
        from pixiu.teach.teacher import HTTPTeacher, TeacherConfig

        self.http = HTTPTeacher(TeacherConfig(url=d.teacher, model=d.teacher_model, concurrency=1))
        if not d.teacher_model:  # the only model served, or a clear choice to make
            served = self.http.served()
            if len(served) != 1:
                raise ConfigError(f"{d.teacher} serves {served}: set distill.teacher_model to one of them")
            self.http.cfg.model = served[0]
        vocab = self.http.model_card().get("vocab_size")  # pixiu's extension; other servers: checked per id
        if vocab is not None:
            check_vocab(int(vocab), student_vocab)
        self.vocab, self.tokenizer = int(vocab or student_vocab), tokenizer

    def top_k(self, rows: list, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows -> their targets' k most likely tokens (N, k) int32 and log-probs (N, k), best first."""
        segments = [s for r in rows for s in r]
        ids, logps = [torch.zeros(0, k, dtype=torch.int32)], [torch.zeros(0, k)]
        for i in range(0, len(segments), self.PER_REQUEST):
            part = segments[i : i + self.PER_REQUEST]
            texts = [self.tokenizer.decode(s.input_ids, skip_special_tokens=False) for s in part]
            for seg, lp in zip(part, self.http.score(texts, k).logprobs, strict=True):
                a, b = self.targets(seg, lp, k)
                ids.append(a)
                logps.append(b)
        return torch.cat(ids), torch.cat(logps)

    def targets(self, seg: Rendered, lp: dict, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One segment's echoed logprobs -> its targets' top k (ids, log-probs); the tokens must be the student's."""
        echoed, mine = [token_id(t) for t in lp["tokens"]], list(seg.input_ids)
        if echoed != mine:
            j = next((j for j, (a, b) in enumerate(zip(echoed, mine)) if a != b), min(len(echoed), len(mine)))
            raise ConfigError(
                f"the endpoint tokenizes a row into other tokens than the student: at token {j} it has "
                f"{echoed[j : j + 3]}, the student {mine[j : j + 3]} ({len(echoed)} vs {len(mine)} tokens); "
                "token-level distillation needs one tokenizer"
            )
        # echo's entry j is the distribution that predicts token j: a target wherever loss_mask[j] is set
        at = [j for j in range(1, len(mine)) if seg.loss_mask[j]]
        tops = [sorted(lp["top_logprobs"][j].items(), key=lambda kv: -kv[1])[:k] for j in at]
        if any(len(t) < k for t in tops):
            raise ConfigError(f"the endpoint returned fewer than distill.top_k={k} log-probs at a position")
        ids = torch.tensor([[token_id(t) for t, _ in top] for top in tops], dtype=torch.int32).reshape(-1, k)
        if ids.numel() and int(ids.max()) >= self.vocab:
            raise ConfigError(
                f"the endpoint returned token id {int(ids.max())}, outside a vocabulary of {self.vocab} tokens"
            )
        return ids, torch.tensor([[v for _, v in top] for top in tops]).reshape(-1, k)


def token_id(token: str) -> int:
    """ "token_id:N" (return_tokens_as_token_ids) -> N; text is refused, since it cannot name one token for sure."""
    if not token.startswith("token_id:"):
        raise ConfigError(f"the endpoint names tokens by text ({token!r}), not as token_id:N: it lacks vLLM's "
                          "return_tokens_as_token_ids, which distillation needs to match token ids")  # fmt: skip
    return int(token.removeprefix("token_id:"))


class StoredTeacher:
    """distill.teacher_logprobs: per split, the rows' tokens (to check they are this run's rows) and the teacher's
    top-k ids and log-probs at every target, rows one after another in TargetLM's order."""

    def __init__(self, path: Path, splits: dict[str, list], temperature: float):
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta, self.t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        self.vocab = int(meta["vocab"])
        if float(meta["temperature"]) != temperature:
            raise ConfigError(
                f"{path} holds log-probs at temperature {meta['temperature']}, not {temperature}"
            )
        for name, rows in splits.items():
            tokens, offsets, _ = flatten(rows)
            if not (
                torch.equal(tokens, self.t[f"{name}.tokens"]) and torch.equal(offsets, self.t[f"{name}.rows"])
            ):
                raise ConfigError(
                    f"{path} was written for other {name} rows (data, template, max_len or packing differ): "
                    "delete it to have the teacher write it again"
                )
        self.ends = {name: self.t[f"{name}.targets"] for name in splits}

    def __call__(self, batch: TokenBatch, split: str, idx: list[int]) -> Teacher:
        ends = self.ends[split]
        parts = [slice(int(ends[i]), int(ends[i + 1])) for i in idx]
        ids, logps = (torch.cat([self.t[f"{split}.{k}"][p] for p in parts]) for k in ("ids", "logps"))
        device = batch.input_ids.device
        return ids.to(device), logps.to(device)


def flatten(rows: list[list[Rendered]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows -> all their tokens (T,), each row's token offsets (R+1,) and target offsets (R+1,)."""
    tokens = [t for r in rows for s in r for t in s.input_ids]
    sizes = [sum(len(s.input_ids) for s in r) for r in rows]
    targets = [sum(sum(s.loss_mask[1:]) for s in r) for r in rows]
    cum = [torch.tensor([0, *x]).cumsum(0) for x in (sizes, targets)]
    return torch.tensor(tokens, dtype=torch.int32), *cum


def write_logprobs(path: Path, teacher, splits: dict[str, list], cfg: RunConfig) -> None:
    """Score every row of every split with the teacher (LiveTeacher or EndpointTeacher: `vocab`, `top_k(rows,
    k)`) and save its top-k per target (distill.top_k, 0 = all V tokens) as safetensors, atomically: never
    pickle, and a killed run leaves no half file."""
    from safetensors.torch import save_file

    k, size, out = min(cfg.distill.top_k or teacher.vocab, teacher.vocab), cfg.train.batch_size, {}
    for name, rows in splits.items():
        tokens, offsets, ends = flatten(rows)
        ids, logps = [], []
        for i in range(0, len(rows), size):
            top_ids, top_logps = teacher.top_k(rows[i : i + size], k)
            ids.append(top_ids)
            logps.append(top_logps)
        empty = (torch.zeros(0, k, dtype=torch.int32), torch.zeros(0, k))
        out.update({f"{name}.tokens": tokens, f"{name}.rows": offsets, f"{name}.targets": ends})
        out[f"{name}.ids"] = torch.cat(ids) if ids else empty[0]
        out[f"{name}.logps"] = torch.cat(logps) if logps else empty[1]
    meta = {"vocab": str(teacher.vocab), "top_k": str(k), "temperature": str(cfg.distill.temperature)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(out, str(tmp), metadata={**meta, "teacher": cfg.distill.teacher})
    tmp.replace(path)
    n = sum(len(v) for name, v in out.items() if name.endswith(".ids"))
    print(f"teacher log-probs: {path} ({n} targets, top {k} of {teacher.vocab})")


# ---------------------------------------------------------------- the step


class DistillStep:
    """The loop's step: train.grad_accum micro-batches of rows (each, with probability distill.lmbda, swapped
    for the student's own replies to random training prompts), the divergence summed over their targets and
    divided by the step's target count across processes, one update."""

    def __init__(self, cfg: RunConfig, loaded: io.Loaded, model, teacher, splits: dict, accelerator):
        self.cfg, self.loaded, self.model, self.teacher, self.acc = cfg, loaded, model, teacher, accelerator
        self.pad = loaded.tokenizer.pad_token_id
        self.rows, self.eval_rows = Rows(splits["train"], self.pad, *batching(cfg)), splits["eval"]
        self.prompts: list[Conversation] = []  # on-policy prompts, set when distill.lmbda > 0
        plan = self.rows.epoch(0, accelerator.num_processes)
        self.per_epoch = -(-len(plan) // cfg.train.grad_accum)
        self.plans = {0: plan}  # the current epoch's global micro-batches
        self.beta = {"forward_kl": 0.0, "reverse_kl": 1.0}.get(cfg.distill.loss, cfg.distill.beta)

    def divergence(self, batch: TokenBatch, teacher: Teacher) -> torch.Tensor:
        """Summed per-token divergence of the student from the teacher over the batch's targets."""
        with autocast(self.loaded.dtype, batch.input_ids.device, self.model):
            logits, _ = self.model(batch)
        student = losses.tempered(logits, self.cfg.distill.temperature)
        ids, t = teacher
        s, t = (student, t) if ids is None else losses.topk_support(student, ids, t)
        return losses.generalized_jsd(s, t, self.beta).sum()

    def micro(self, step: int, i: int, idx: list[int]) -> tuple[TokenBatch, Teacher, bool]:
        """Micro-batch i of a step on the device with its teacher log-probs; on-policy with probability lmbda,
        decided by (seed, step, i) so a resumed run makes the same choices."""
        key = self.cfg.train.seed * 1_000_003 + step * 1_009 + i
        rng = random.Random(key)
        if self.prompts and rng.random() < self.cfg.distill.lmbda:
            batch = self.on_policy(rng, key).to(self.acc.device)
            return batch, self.teacher(batch), True
        batch = self.rows.batch(idx).to(self.acc.device)
        return batch, self.teacher(batch, "train", idx), False

    def on_policy(self, rng: random.Random, seed: int) -> TokenBatch:
        """The student's replies (engine.sample with the gen section) to train.batch_size random prompts."""
        gen, cfg = self.cfg.gen, self.cfg
        convs = rng.sample(self.prompts, min(cfg.train.batch_size, len(self.prompts)))
        sampling = Sampling(gen.max_new_tokens, gen.temperature, gen.top_p, gen.top_k, seed=seed)
        samples = sample(self.loaded.model, self.loaded.tokenizer, self.loaded.template, convs, sampling)
        rendered = [
            Rendered(s.prompt_ids + s.reply_ids, [0] * len(s.prompt_ids) + [1] * len(s.reply_ids))
            for s in samples
        ]
        kept, _ = fit(rendered, cfg.data.max_len, "truncate")
        return collate([[r] for r in kept] or [[rendered[0]]], self.pad)

    def __call__(self, step: int, opt: Optimizer) -> dict:
        acc, ga = self.acc, self.cfg.train.grad_accum
        world, rank = acc.num_processes, acc.process_index
        epoch, within = divmod(step, self.per_epoch)
        if epoch not in self.plans:
            self.plans = {epoch: self.rows.epoch(epoch, world)}
        t0 = time.perf_counter()
        micro = self.plans[epoch][within * ga : (within + 1) * ga]
        batches = [self.micro(step, i, idx[rank::world]) for i, idx in enumerate(micro)]
        n_step = self.total(sum(b.n_targets for b, _, _ in batches))  # all processes: the loss's denominator
        loss_sum = 0.0
        for i, (batch, teacher, _) in enumerate(batches):
            with contextlib.nullcontext() if i == len(batches) - 1 else acc.no_sync(self.model):
                loss = self.divergence(batch, teacher)
                acc.backward(loss * (world / max(n_step, 1)))
            loss_sum += loss.item()
        grad_norm = opt.update()
        elapsed = time.perf_counter() - t0
        return {
            "epoch": round((step + 1) / self.per_epoch, 4),
            "loss": self.total(loss_sum) / max(n_step, 1),
            "on_policy": sum(on for _, _, on in batches) / len(batches),
            "grad_norm": grad_norm,
            "tokens_per_s": round(self.total(sum(b.n_tokens for b, _, _ in batches)) / elapsed, 1),
        }

    def total(self, x: float) -> float:
        """Sum over processes."""
        return self.acc.reduce(torch.tensor(float(x), device=self.acc.device), "sum").item()

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Held-out reference NLL (as SFT reports it) and the mean per-token divergence from the teacher."""
        size, dtype = self.cfg.train.batch_size, self.loaded.dtype
        out = eval_loss(self.model, self.eval_rows, self.pad, size, self.acc, dtype)
        mine = list(range(len(self.eval_rows)))[self.acc.process_index :: self.acc.num_processes]
        div, count = 0.0, 0
        self.model.eval()
        for i in range(0, len(mine), size):
            idx = mine[i : i + size]
            batch = collate([self.eval_rows[j] for j in idx], self.pad).to(self.acc.device)
            div += self.divergence(batch, self.teacher(batch, "eval", idx)).item()
            count += batch.n_targets
        self.model.train()
        return {**out, f"eval_{self.cfg.distill.loss}": round(self.total(div) / max(self.total(count), 1), 5)}
