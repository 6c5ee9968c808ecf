"""The llama.cpp backend: serves a .gguf file through llama-cpp-python (optional extra `pixiu[llamacpp]`).

One llama.cpp context runs one sequence, so requests are served one at a time, in order, by a worker
thread. llama.cpp reuses the KV cache of a shared prompt prefix, which helps multi-turn chat, but the logits it
then computes differ in the last bits from a full prefill's, enough to change a sampled reply: a request with a
seed therefore starts from an empty cache, so the same prompt and seed give the same reply (tested in
tests/test_llamacpp.py). Prompts are rendered and tokenized by pixiu's template with the GGUF's own tokenizer
(read by transformers), so both backends see the same prompt ids; text streaming and stops are the shared
`Reply` logic.

Sampling maps onto llama.cpp's sampler chain: temperature 0 is greedy; min_p is turned off to match HF.
llama.cpp's repetition penalty looks at the last 64 tokens, not the whole context as transformers does.
"""

from __future__ import annotations

import json
import random
import threading
from collections import deque
from pathlib import Path

import torch

from pixiu.engine.base import Delta, Engine, Request
from pixiu.engine.text import Reply, stop_token_ids

INSTALL = (
    "the llama.cpp backend needs llama-cpp-python: pip install 'pixiu[llamacpp]' "
    "(it compiles llama.cpp: a C++ compiler and cmake are needed when no wheel fits your platform)"
)


def gguf_path(model: str) -> Path:
    from pixiu.model import io

    if model in io.EMBEDDED:
        return io.embedded_gguf(model)
    path = Path(model).expanduser()
    if path.suffix != ".gguf":
        raise io.ModelError(
            f"the llama.cpp backend serves .gguf files; {model!r} is not one (use backend='torch')"
        )
    if not path.is_file():
        raise io.ModelError(f"GGUF file not found: {path}")
    return path


class LlamaCppEngine(Engine):
    def __init__(self, llm, tokenizer, template, name: str):
        self.llm, self.tokenizer, self.template, self.name = llm, tokenizer, template, name
        self.context_len = llm.n_ctx()
        self.stop_ids = stop_token_ids(tokenizer, template.stop)
        self._waiting: deque[Request] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"pixiu-llamacpp-{name}", daemon=True)
        self._thread.start()

    @classmethod
    def load(
        cls, model: str, template: str = "default", name: str = "", n_ctx: int = 0, threads: int | None = None
    ) -> LlamaCppEngine:
        """n_ctx 0: the model's trained context; threads: torch's setting, so both backends compare fairly."""
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise ImportError(INSTALL) from e
        from transformers import AutoTokenizer

        from pixiu.chat.templates import get_template
        from pixiu.model.export import TEMPLATE_KEY

        path = gguf_path(model)
        threads = threads or torch.get_num_threads()
        llm = Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # `pixiu export` records the checkpoint's template (a named format such as chatml, or its Jinja) in the
        # GGUF's metadata; "default" picks it, as the torch backend's GGUF path does (model/io.py).
        saved = json.loads(llm.metadata.get(TEMPLATE_KEY, "{}")) if template == "default" else {}
        chosen = get_template(saved.get("name", template), tokenizer, jinja=saved.get("jinja", ""))
        return cls(llm, tokenizer, chosen, name or path.stem)

    def submit(self, prompt, sampling, stop=(), on_delta=None) -> Request:
        if sampling.logprobs is not None:
            raise ValueError(
                "logprobs are not supported by the llama.cpp backend (serve the model with torch)"
            )
        return self.enqueue(prompt, sampling, stop, on_delta)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
            self.llm.close()  # free the model now, not in __del__ during interpreter shutdown

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._closed or self._waiting):
                    self._wake.wait()
                if self._closed:
                    break
                request = self._waiting.popleft()
            try:
                self._run(request)
            except Exception as error:
                request.fail(error)
        while self._waiting:
            self._waiting.popleft().emit(Delta("", [], "cancelled"))

    def _run(self, request: Request) -> None:
        reply = Reply(request, self.tokenizer, self.stop_ids)
        s = request.sampling
        if s.seed is None:
            self.llm.set_seed(random.getrandbits(31))
        else:
            self.llm.reset()  # a full prefill: reproducible, whatever ran before (see the module docstring)
            self.llm.set_seed(s.seed)
        tokens = self.llm.generate(
            request.prompt_ids,
            temp=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=0.0,
            repeat_penalty=s.repetition_penalty,
        )
        for token in tokens:
            if request.cancelled or self._closed:
                reply.cancel()
                return
            if reply.accept(token):
                return
