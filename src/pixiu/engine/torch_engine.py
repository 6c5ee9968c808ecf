"""The torch backend: one scheduler thread, continuous batching over a slot KV cache.

Each scheduler iteration (see `_loop`):
  1. admit waiting requests into free slots: prefill them together, right-padded, in batches of at most
     PREFILL_TOKENS (a prompt never attends to padding; a lone prompt runs unpadded, exactly as HF's), copy
     each row's KV into its slot, sample each first token;
  2. run ONE batched decode step for all running sequences (B, 1) with a (B, 1, 1, T) length mask;
  3. sample per sequence (its own settings and generator), turn tokens into safe text, emit Deltas;
  4. retire finished or cancelled sequences: their slot is free for the next waiting request.
Only this thread touches the model and the cache; `submit` only tokenizes, checks the context window and
queues. A live engine (`live=True`, what `engine.sample` builds for rollouts and evaluation) has no thread: it
runs on the model being trained as it is (adapters active, nothing merged) and the caller drives the same
iterations with `run` until its requests are done. HF's own continuous batching (`generate_batch`, paged
attention) was measured on this CPU first: ~9x slower than a plain `generate` loop for 4 prompts x 16 tokens,
and built around CUDA graphs.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from dataclasses import dataclass

import torch

from pixiu.engine import graphs, quant
from pixiu.engine.base import Delta, Engine, Request, TokenLogprob
from pixiu.engine.cache import SlotCache
from pixiu.engine.sampler import Choice, pick
from pixiu.engine.text import Reply, stop_token_ids
from pixiu.model.forward import base_lm
from pixiu.model.io import Loaded, merged, unwrap

log = logging.getLogger(__name__)
# Padded tokens per prefill forward: batching the prompts that arrive together reads the weights once for all
# of them (32 prompts prefilled alone took 10.6 s before the first token on a 0.5B model), while a cap keeps the
# activations of long prompts bounded.
PREFILL_TOKENS = 4096


@dataclass
class Sequence:
    reply: Reply
    choice: Choice
    pos: int  # where its next token's key goes = tokens already in the cache
    last: int = -1  # the latest sampled token: the input of the next decode step


class TorchEngine(Engine):
    def __init__(
        self,
        loaded: Loaded,
        name: str,
        max_batch: int = 16,
        quantize: str = "none",
        live: bool = False,
        decode: str = "auto",
    ):
        """live: generate with `loaded.model` as it stands (no merge, no copy, no thread; see `run`).
        decode: 'auto' (CUDA graphs on a GPU, eager on a CPU), 'graphs', 'compile' or 'eager' (engine/graphs.py)."""
        self.prompts = prompt_adapter(loaded.model)  # prefix tuning: its key/values lead every sequence
        self.n_prefix = self.prompts.active_peft_config.num_virtual_tokens if self.prompts else 0
        self.model = base_lm(unwrap(loaded.model)) if live else serving_model(loaded.model, quantize)
        self.tokenizer, self.template, self.name = loaded.tokenizer, loaded.template, name
        self.context_len = context_window(self.model.config) - self.n_prefix
        self.max_batch = max_batch
        self._threads = torch.get_num_threads()
        self.device = next(self.model.parameters()).device
        self.vocab = self.model.get_output_embeddings().out_features
        self.stop_ids = stop_token_ids(self.tokenizer, self.template.stop)
        self.cache = SlotCache(
            self.model.config.num_hidden_layers, max_batch, self.context_len + self.n_prefix, self.device
        )
        self._positions = torch.arange(self.context_len + self.n_prefix, device=self.device)
        # transformers renamed `past_key_values` to `cache` in 5.2x; pass whichever this version takes
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.fast = graphs.decoder(self.model, self.cache, self._cache_kw, decode)  # None: eager decode steps
        self._waiting: deque[Request] = deque()
        self._running: list[Sequence] = []  # row i of the cache holds _running[i]
        self._wake = threading.Condition()
        self._closed = False
        self._thread = None
        if not live:
            self._thread = threading.Thread(target=self._loop, name=f"pixiu-engine-{name}", daemon=True)
            self._thread.start()

    # ---------------------------------------------------------------- caller side

    def submit(self, prompt, sampling, stop=(), on_delta=None) -> Request:
        return self.enqueue(prompt, sampling, stop, on_delta)

    @property
    def running(self) -> int:
        """Sequences holding a batch slot."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread not in (None, threading.current_thread()):
            self._thread.join()

    @torch.no_grad()  # not inference_mode: the model is also trained, and its tensors must stay usable for that
    def run(self, requests: list[Request]) -> None:
        """A live engine: run the scheduler's iterations in this thread until these requests are done."""
        self._waiting.extend(requests)
        while self._waiting or self._running:
            free = self.max_batch - len(self._running)
            self._iterate([self._waiting.popleft() for _ in range(min(free, len(self._waiting)))])

    # ---------------------------------------------------------------- scheduler thread

    def _loop(self) -> None:
        torch.set_num_threads(self._threads)  # a new thread does not inherit the caller's setting
        with torch.inference_mode():
            while True:
                admitted = self._next_work()
                if admitted is None:
                    break
                self._iterate(admitted)
        for seq in self._running:
            seq.reply.cancel()
        while self._waiting:
            self._waiting.popleft().emit(Delta("", [], "cancelled"))

    def _iterate(self, admitted: list[Request]) -> None:
        """Admit, retire, one decode step; a failed step fails the requests in it, not the engine."""
        try:
            self._start(admitted)
            self._retire()
            if self._running:
                self._step()
        except Exception as error:
            log.exception("generation step failed")
            for seq in self._running:
                seq.reply.request.fail(error)
            for request in admitted:
                request.fail(error)
            self._running.clear()
        if not self._running and self.fast is None:  # captured graphs point at the cache's tensors: keep them
            self.cache.release()

    def _next_work(self) -> list[Request] | None:
        """Block until there is work; take as many waiting requests as there are free slots. None: closed."""
        with self._wake:
            while not (self._closed or self._waiting or self._running):
                self._wake.wait()
            if self._closed:
                return None
            for request in [r for r in self._waiting if r.cancelled]:
                self._waiting.remove(request)  # a client that left while waiting never takes a slot
                request.emit(Delta("", [], "cancelled"))
            free = self.max_batch - len(self._running)
            return [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]

    def _start(self, requests: list[Request]) -> None:
        """Prefill the admitted prompts into the next free rows and take their first tokens."""
        for request in [r for r in requests if r.cancelled]:
            request.emit(Delta("", [], "cancelled"))
        batch: list[Request] = []
        for request in sorted((r for r in requests if not r.cancelled), key=lambda r: len(r.prompt_ids)):
            if batch and (len(batch) + 1) * len(request.prompt_ids) > PREFILL_TOKENS:
                self._prefill(batch)
                batch = []
            batch.append(request)
        if batch:
            self._prefill(batch)

    def _prefill(self, requests: list[Request]) -> None:
        """One forward over the distinct prompts, right-padded (U, T); each request copies its prompt's first T_i
        keys into its own slot. n replies to one prompt (a GRPO group: 8 x 47 tokens) prefill it once."""
        from transformers import DynamicCache

        index: dict[tuple, int] = {}  # distinct prompt -> its row of the prefill, in order of arrival
        rows = [index.setdefault(tuple(r.prompt_ids), len(index)) for r in requests]
        prompts = list(index)
        lengths = [len(p) for p in prompts]
        width, pad = max(lengths), self.tokenizer.pad_token_id or 0
        ids = torch.tensor([list(p) + [pad] * (width - n) for p, n in zip(prompts, lengths)])
        mask = (
            None if min(lengths) == width else (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
        )
        prefill, p = DynamicCache(config=self.model.config), self.n_prefix
        if self.prompts is not None:  # rows start after the prefix: positions p.., as peft trains them
            prefill = self.prompts.get_prompt(len(prompts), max_cache_len=p + width)
            mask = torch.cat(
                [
                    torch.ones(len(prompts), p, dtype=torch.long),
                    torch.ones_like(ids) if mask is None else mask,
                ],
                1,
            )
        hidden = self.model.get_decoder()(
            input_ids=ids.to(self.device),
            attention_mask=None if mask is None else mask.to(self.device),
            use_cache=True,
            **{self._cache_kw: prefill},
        ).last_hidden_state
        last = hidden[torch.arange(len(prompts)), torch.tensor(lengths) - 1]  # (U, H) each prompt's end
        logits = self.model.get_output_embeddings()(last)[torch.tensor(rows, device=self.device)]  # (B, V)
        seqs = []
        for request, i in zip(requests, rows):
            n = p + lengths[i]  # positions in the cache: the prefix, then the prompt
            self.cache.put(len(self._running), prefill, n, source=i)
            choice = Choice.new(
                request.sampling, request.prompt_ids, self.vocab, self.device, request.sampled_logps
            )
            seqs.append(Sequence(Reply(request, self.tokenizer, self.stop_ids), choice, n))
            self._running.append(seqs[-1])
        tokens, logprobs = pick(logits, [s.choice for s in seqs])
        for seq, token, logprob in zip(seqs, tokens, logprobs):
            self._accept(seq, token, logprob)

    def _step(self) -> None:
        """One decode step for every running sequence: (B, 1) tokens in, one new token each out."""
        running = self._running
        width = max(s.pos for s in running) + 1
        fast = self.fast is not None
        logits = self.fast.step([s.last for s in running], width) if fast else self._forward(running, width)
        tokens, logprobs = pick(logits, [s.choice for s in running])
        for seq, token, logprob in zip(running, tokens, logprobs):
            seq.pos += 1
            self._accept(seq, token, logprob)
        self._retire()

    def _forward(self, running: list[Sequence], width: int) -> torch.Tensor:
        """The eager decode forward: (B, 1) latest tokens over `width` positions -> (B, V) logits."""
        self.cache.bind(len(running), width)
        pos = self.cache.batch_pos  # (B,) each row's position
        tokens = torch.tensor([[s.last] for s in running], device=self.device)  # (B, 1)
        mask = None  # rows of one length need no mask (and then match HF's unpadded decode exactly)
        if any(s.pos != running[0].pos for s in running):
            mask = (self._positions[:width] <= pos[:, None])[:, None, None, :]  # (B, 1, 1, T)
        out = self.model(
            input_ids=tokens,
            position_ids=pos[:, None],
            attention_mask=mask,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: self.cache},
        )
        pos += 1
        return out.logits[:, -1]

    def _accept(self, seq: Sequence, token: int, logprob: TokenLogprob | None) -> None:
        seq.last = token
        seq.choice.saw(token)
        seq.reply.accept(token, logprob)

    def _retire(self) -> None:
        """Free the rows of finished and cancelled sequences; the last row moves into each hole."""
        running, i = self._running, 0
        while i < len(running):
            seq = running[i]
            if seq.reply.request.cancelled:
                seq.reply.cancel()
            if not seq.reply.finished:
                i += 1
                continue
            last = running.pop()
            if last is not seq:
                self.cache.move(len(running), i, last.pos)
                running[i] = last


def prompt_adapter(model):
    """The peft model of a prefix-tuning adapter (its `get_prompt` gives the virtual key/values), else None."""
    model = unwrap(model)
    config = getattr(model, "active_peft_config", None)
    return model if config is not None and config.is_prompt_learning else None


def serving_model(model, quantize: str = "none"):
    """The plain causal LM to serve: unwrapped, LoRA adapters merged into the weights (one matmul per layer
    instead of three), eval mode, SDPA attention (the slot cache passes boolean length masks), its linear
    layers int8 when asked (see engine/quant.py). A prefix-tuning adapter has no weights to merge: the base
    serves, and the engine prefills its key/values (`prompt_adapter`)."""
    model = unwrap(model)
    model = model.get_base_model() if prompt_adapter(model) is not None else merged(model)
    model.eval()
    if getattr(model.config, "_attn_implementation", "sdpa") != "sdpa":
        model.set_attn_implementation("sdpa")
    return quant.quantize(model, quantize)


def context_window(config) -> int:
    """Positions the model can attend over. Sliding-window attention is not modelled by the slot cache, so a
    model with a window serves at most that many tokens (exact results rather than silently wrong ones)."""
    keys = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
    n = next((getattr(config, k) for k in keys if getattr(config, k, None)), 2048)
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True) is not False:
        n = min(n, window)
    return n
