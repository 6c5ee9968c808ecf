"""The torch backend for encoder-decoder models (T5, mT0, ChatYuan): transformers' `generate` behind `Engine`.

The causal engine's slot KV cache (engine/torch_engine.py) holds one growing sequence per row; an encoder-decoder
runs its encoder once over the prompt and its decoder over the reply with a cross-attention cache, which
`generate` already does. pixiu's own parts still decide every token and what a reply is: a logits processor picks
each row's token with the engine's sampler (engine/sampler.py: the same seeds, top-k/p, repetition penalty and
log-probabilities as the causal engine) and hands it to the row's `Reply` (engine/text.py: stop strings, safe
streamed text, Deltas as tokens come), and a stopping criterion ends a row once its Reply has finished or its
request was cancelled. Requests that arrive together run as one batch of at most max_batch; later ones wait for
the next batch (no continuous batching). `generate.build` picks this engine for an encoder-decoder.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, LogitsProcessor, StoppingCriteria

from pixiu.chat.messages import Conversation
from pixiu.engine.base import Delta, Engine, Request
from pixiu.engine.sampler import Choice, pick
from pixiu.engine.text import Reply, stop_token_ids
from pixiu.engine.torch_engine import context_window
from pixiu.model import seq2seq
from pixiu.model.forward import base_lm
from pixiu.model.io import Loaded, merged, unwrap

log = logging.getLogger(__name__)


@dataclass
class Row:
    reply: Reply
    choice: Choice


class Seq2SeqEngine(Engine):
    def __init__(
        self, loaded: Loaded, name: str, max_batch: int = 16, quantize: str = "none", live: bool = False
    ):
        """live: generate with `loaded.model` as it stands (adapters active, nothing merged, no thread; `run`)."""
        if quantize != "none":  # T5's feed-forward reads its weight's dtype, which int8 layers do not have
            raise ValueError(f"--quantize {quantize} is for causal LMs, not encoder-decoder models (T5)")
        model = unwrap(loaded.model)
        self.model = base_lm(model) if live else merged(model).eval()
        self.tokenizer, self.template, self.name = loaded.tokenizer, loaded.template, name
        self.context_len = context_window(self.model.config)
        self.max_batch = max_batch
        self.device = next(self.model.parameters()).device
        self.vocab = self.model.get_output_embeddings().out_features
        self.stop_ids = stop_token_ids(self.tokenizer, self.template.stop)
        self._threads = torch.get_num_threads()
        self._waiting: deque[Request] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = None
        if not live:
            self._thread = threading.Thread(target=self._loop, name=f"pixiu-seq2seq-{name}", daemon=True)
            self._thread.start()

    def prompt_ids(self, prompt) -> list[int]:
        """A conversation -> the encoder's input (model/seq2seq.py: plain text or the named template, with EOS);
        raw text -> its tokens with the tokenizer's special tokens."""
        if isinstance(prompt, Conversation):
            return seq2seq.source_ids(self.template, prompt)
        return super().prompt_ids(prompt)

    def submit(self, prompt, sampling, stop=(), on_delta=None) -> Request:
        return self.enqueue(prompt, sampling, stop, on_delta)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread not in (None, threading.current_thread()):
            self._thread.join()

    @torch.no_grad()  # not inference_mode: a live model is also trained
    def run(self, requests: list[Request]) -> None:
        """A live engine: generate these requests in this thread, max_batch at a time."""
        for i in range(0, len(requests), self.max_batch):
            self._batch(requests[i : i + self.max_batch])

    def _loop(self) -> None:
        torch.set_num_threads(self._threads)  # a new thread does not inherit the caller's setting
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not (self._closed or self._waiting):
                        self._wake.wait()
                    if self._closed:
                        break
                    batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
                self._batch(batch)
        while self._waiting:
            self._waiting.popleft().emit(Delta("", [], "cancelled"))

    def _batch(self, requests: list[Request]) -> None:
        """One `generate` over these prompts; a failure fails its requests, not the engine."""
        for request in [r for r in requests if r.cancelled]:
            request.emit(Delta("", [], "cancelled"))
        requests = [r for r in requests if not r.cancelled]
        if not requests:
            return
        rows = [
            Row(
                Reply(r, self.tokenizer, self.stop_ids),
                Choice.new(r.sampling, r.prompt_ids, self.vocab, self.device, r.sampled_logps),
            )
            for r in requests
        ]
        try:
            self._generate(rows)
        except Exception as error:
            log.exception("generation failed")
            for row in rows:
                row.reply.request.fail(error)
            return
        for row in rows:  # generate ended without the row ending it (cannot happen unless generate changes)
            row.reply.cancel()

    def _generate(self, rows: list[Row]) -> None:
        """(B, S) right-padded prompts -> `generate`, whose every token our processor picks and our Replies take."""
        prompts = [row.reply.request.prompt_ids for row in rows]
        width, pad = max(map(len, prompts)), self.tokenizer.pad_token_id or 0
        ids = torch.tensor([p + [pad] * (width - len(p)) for p in prompts], device=self.device)
        mask = (torch.arange(width) < torch.tensor([len(p) for p in prompts])[:, None]).long()
        config = self.model.generation_config
        settings = GenerationConfig(  # only how decoding starts: every choice is ours (`Pick`)
            max_new_tokens=max(row.reply.request.sampling.max_new_tokens for row in rows),
            do_sample=False,
            num_beams=1,
            decoder_start_token_id=config.decoder_start_token_id or self.model.config.decoder_start_token_id,
            pad_token_id=pad,
        )
        self.model.generate(
            input_ids=ids,
            attention_mask=mask.to(self.device),
            generation_config=settings,
            logits_processor=[Pick(rows)],
            stopping_criteria=[Finished(rows)],
        )


class Pick(LogitsProcessor):
    """Each running row's next token, chosen by the engine's sampler and accepted by its Reply; the scores
    handed back allow that token only, so `generate`'s greedy step takes it."""

    def __init__(self, rows: list[Row]):
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """input_ids: (B, t) the decoder's tokens so far; scores: (B, V) the next token's logits."""
        running = [i for i, row in enumerate(self.rows) if not row.reply.finished]
        forced = torch.full_like(scores, float("-inf"))
        forced[:, 0] = 0  # a finished row's filler token: `Finished` has already stopped it
        if running:
            tokens, logprobs = pick(scores[running], [self.rows[i].choice for i in running])
            for i, token, logprob in zip(running, tokens, logprobs):
                forced[i, 0], forced[i, token] = float("-inf"), 0
                self.rows[i].choice.saw(token)
                self.rows[i].reply.accept(token, logprob)
        return forced


class Finished(StoppingCriteria):
    """(B,) True where the row's reply has ended (stop token or string, its max_new_tokens) or was cancelled."""

    def __init__(self, rows: list[Row]):
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
        for row in self.rows:
            if row.reply.request.cancelled:
                row.reply.cancel()
        return torch.tensor([row.reply.finished for row in self.rows], device=input_ids.device)
