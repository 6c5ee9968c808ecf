"""`pixiu serve` and `pixiu eval`: their typed options, read from --flags and a YAML file like a recipe."""

from __future__ import annotations

from dataclasses import dataclass, field

from pixiu.config.core import ConfigError, _choice


@dataclass
class ServeConfig:
    """`pixiu serve`: what to serve, where, and the limits every request must fit (over one: a 400 or 413
    naming the limit, answered before any rendering or tokenizing)."""

    models: list[str] = field(default_factory=list)
    """[NAME=]PATH of each model: checkpoint dir, HF dir, .gguf file or smollm2-135m; NAME is the served id."""
    host: str = "127.0.0.1"
    """Address to listen on (loopback unless you mean it)."""
    port: int = 8000
    """TCP port to listen on."""
    api_key: str = ""
    """Key required on every route; empty: read it from the variable named by api_key_env (keeps it out of
    files and the process list)."""
    api_key_env: str = "PIXIU_API_KEY"
    """Environment variable holding the API key when api_key is empty."""
    insecure: bool = False
    """Allow a non-loopback host without an API key."""
    db: str = ""
    """Feedback store: a SQLite file or postgresql://...; empty: $PIXIU_HOME/feedback.db, else
    ~/.local/share/pixiu/feedback.db (feedback.store.default_path), never the current directory."""
    moderation: str = ""
    """Input/output filter spec (see pixiu.serve.moderation); empty: none."""
    max_batch: int = 16
    """Sequences decoded together per model."""
    max_tokens: int = 512
    """Reply cap when a request sets no max_tokens."""
    dtype: str = "auto"
    """Compute dtype: auto, bf16 or fp32."""
    backend: str = "auto"
    """Engine backend: auto, torch or llamacpp."""
    quantize: str = "none"
    """Weights: none, or int8 (faster CPU decoding, torch backend; see pixiu.engine.quant)."""
    template: str = "default"
    """Chat template name (see `pixiu templates`)."""
    max_messages: int = 1000
    """Messages per chat request (400 above it)."""
    max_body_bytes: int = 2 * 1024 * 1024
    """Request body size in bytes, checked before the JSON is parsed (413 above it)."""
    max_stop: int = 16
    """Stop strings per request (OpenAI allows 4)."""
    max_stop_length: int = 256
    """Characters per stop string."""
    max_prompt_tokens: int = 0
    """Tokens per rendered prompt; 0: only the model's context window limits it."""
    rag: str = ""
    """A `pixiu index build` folder: each chat request's last user turn gets the top rag_k passages, numbered,
    in the prompt, and the response lists them as `sources`; empty: no retrieval."""
    rag_k: int = 3
    """Passages retrieved per chat request when rag is set."""

    def __post_init__(self):
        _choice("serve.dtype", self.dtype, ("auto", "bf16", "fp32"))
        _choice("serve.backend", self.backend, ("auto", "torch", "llamacpp"))
        _choice("serve.quantize", self.quantize, ("none", "int8"))  # = engine.quant.QUANTIZE (a test checks)
        if not 0 < self.port < 65536:
            raise ConfigError(f"serve.port must be in 1..65535, got {self.port}")
        low = {k: getattr(self, k) for k in ("max_batch", "max_tokens", "max_messages", "max_body_bytes")}
        low.update(max_stop_length=self.max_stop_length)
        for name, value in low.items():
            if value < 1:
                raise ConfigError(f"serve.{name} must be >= 1, got {value}")
        if self.max_stop < 0 or self.max_prompt_tokens < 0:
            raise ConfigError("serve.max_stop and serve.max_prompt_tokens must be >= 0")


@dataclass
class EvalConfig:
    """`pixiu eval`: the model, the tasks, and each task's options (a recipe's `eval:` section, or
    `--eval.field=value`; `--field value` is the same). 0 or '' means the task's default where it says so."""

    model: str = ""
    """The model to evaluate: checkpoint dir, HF dir, .gguf file or smollm2-135m ('' for tasks that need none,
    such as elo); the positional MODEL sets it."""
    tasks: str = ""
    """Comma-separated task names: mmlu, cmmlu, ceval, gsm8k, perplexity, rm-accuracy, reward, winrate, mtbench,
    elo, ... (an unknown name lists the valid ones)."""
    out: str = ""
    """Run dir: results.json, results.md and per-task item logs ('' = runs/eval/<model name>)."""
    limit: int = 0
    """Only the first N items of each task, a fixed subset (0 = all)."""
    seed: int = 0
    """Sampling seed."""
    force: bool = False
    """Re-run tasks already finished in OUT/results.json under the same options."""
    data: str = ""
    """Task data file or dir ('' = the task's folder under ../shared/data)."""
    dtype: str = "auto"
    """Compute dtype: 'auto', 'bf16' or 'fp32'."""
    max_new_tokens: int = 0
    """Generation budget per reply (0 = the task's default: gsm8k 256, reward 128, winrate 256, mtbench 1024,
    multiple choice in generate mode 16)."""
    shots: int = -1
    """Few-shot examples per prompt (-1 = the task's default: 0, or 5 for gsm8k with gsm8k_prompt=lm-eval).
    Multiple choice takes them from the dev split, gsm8k from the train split."""
    mode: str = "loglik"
    """Multiple choice scoring: 'loglik' (the likeliest answer letter) or 'generate' (the letter a reply gives)."""
    subjects: str = ""
    """Comma-separated subjects of mmlu / cmmlu / ceval ('' = all)."""
    gsm8k_prompt: str = "pixiu"
    """gsm8k's prompt: 'pixiu' (a user turn through the chat template, asking for '#### <number>'; shots are earlier
    turns) or 'lm-eval' (lm-evaluation-harness's gsm8k task byte for byte: raw text 'Question: ...\\nAnswer:',
    shots drawn from the train split by random.Random(1234), stop at 'Question:'), so the number compares with
    lm-eval's."""
    rag: str = ""
    """A `pixiu index build` folder: generation tasks that support retrieval (lawbench:*) put the top rag_k
    passages of each question in its prompt, numbered for citation ('' = no retrieval)."""
    rag_k: int = 3
    """Passages per question when rag is set."""
    reward_model: str = ""
    """Reward model that scores replies (task reward; the judge of winrate when no judge URL is given)."""
    against: str = ""
    """winrate: the baseline model, or a file of reference replies, that MODEL is compared with."""
    judge: str = ""
    """Judge endpoint URL (OpenAI-compatible, e.g. a `pixiu serve`) for winrate and mtbench."""
    judge_model: str = ""
    """The judge's model name at that endpoint."""
    judge_key: str = ""
    """Judge API key (never written to disk)."""
    judge_timeout: float = 600.0
    """Seconds per judge request."""
    judge_retries: int = 3
    """Retries of a judge request after a timeout, 429 or 5xx."""
    judge_backoff: float = 2.0
    """Seconds before the first retry, doubled after each."""
    judge_max_tokens: int = 0
    """The judge's reply budget (0 = the endpoint's default)."""
    judge_parallel: int = 16
    """Judge requests in flight."""
    judge_logprobs: bool = False
    """winrate: one-letter verdicts read from the judge's top_logprobs (for judges too small to write [[A]])."""
    parse_retries: int = 2
    """Re-asks after an unparsable verdict."""
    tie_eps: float = 1e-3
    """Reward-model judge: scores this close are a tie."""
    ref_model: str = "gpt-4"
    """mtbench: whose reference answers grade the math and reasoning questions."""
    bootstrap: int = 100
    """elo: bootstrap rounds of the 95% interval."""
    db: str = ""
    """elo: the feedback store with the arena votes (a SQLite file or postgresql://...)."""

    def __post_init__(self):
        _choice("eval.dtype", self.dtype, ("auto", "bf16", "fp32"))
        _choice("eval.mode", self.mode, ("loglik", "generate"))
        _choice("eval.gsm8k_prompt", self.gsm8k_prompt, ("pixiu", "lm-eval"))
        if self.limit < 0 or self.max_new_tokens < 0 or self.shots < -1:
            raise ConfigError("eval.limit and eval.max_new_tokens must be >= 0, eval.shots >= -1")

    def task_names(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]
