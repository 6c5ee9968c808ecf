"""Chat templates: a hand-written golden render per named format, token/mask checks for every format, the
default (Jinja) template against the tokenizer's own `apply_chat_template`, and tool turns.

The goldens are written from each model's official chat template (see the comments in the registry), not
copied from pixiu's output: a format and its golden are two independent readings of the same spec.
"""

from __future__ import annotations

import copy
import time

import pytest

from pixiu.chat.messages import Conversation, Message
from pixiu.chat.templates import TEMPLATES, SlotFormat, Template, TemplateError, get_template, list_templates

S, U1, A1, U2, A2 = (
    "你是一个助手。",
    "你好",
    "你好！今天天气很好。",
    "What is two plus two?",
    "Two plus two is four.",
)
CONV = Conversation.from_openai(
    [
        {"role": "system", "content": S},
        {"role": "user", "content": U1},
        {"role": "assistant", "content": A1},
        {"role": "user", "content": U2},
        {"role": "assistant", "content": A2},
    ]
)

# name -> (whole text, trained text, how the generation prompt after U2 ends)
GOLDEN = {
    "chatml": (
        "<|im_start|>system\n你是一个助手。<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
        "<|im_start|>assistant\n你好！今天天气很好。<|im_end|>\n<|im_start|>user\nWhat is two plus two?<|im_end|>\n"
        "<|im_start|>assistant\nTwo plus two is four.<|im_end|>\n",
        "你好！今天天气很好。<|im_end|>\nTwo plus two is four.<|im_end|>\n",
        "two?<|im_end|>\n<|im_start|>assistant\n",
    ),
    "internlm2": (
        "<s><|im_start|>system\n你是一个助手。<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
        "<|im_start|>assistant\n你好！今天天气很好。<|im_end|>\n<|im_start|>user\nWhat is two plus two?<|im_end|>\n"
        "<|im_start|>assistant\nTwo plus two is four.<|im_end|>\n",
        "你好！今天天气很好。<|im_end|>\nTwo plus two is four.<|im_end|>\n",
        "two?<|im_end|>\n<|im_start|>assistant\n",
    ),
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n你是一个助手。<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n你好<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n你好！今天天气很好。<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is two plus two?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nTwo plus two is four.<|eot_id|>",
        "你好！今天天气很好。<|eot_id|>Two plus two is four.<|eot_id|>",
        "two?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "llama2": (
        "<s>[INST] <<SYS>>\n你是一个助手。\n<</SYS>>\n\n你好 [/INST] 你好！今天天气很好。 </s>"
        "<s>[INST] What is two plus two? [/INST] Two plus two is four. </s>",
        " 你好！今天天气很好。 </s> Two plus two is four. </s>",
        "<s>[INST] What is two plus two? [/INST]",
    ),
    "mistral": (
        "<s>[INST] 你是一个助手。\n\n你好[/INST] 你好！今天天气很好。</s>"
        "[INST] What is two plus two?[/INST] Two plus two is four.</s>",
        " 你好！今天天气很好。</s> Two plus two is four.</s>",
        "</s>[INST] What is two plus two?[/INST]",
    ),
    "gemma": (
        "<bos><start_of_turn>user\n你是一个助手。\n\n你好<end_of_turn>\n<start_of_turn>model\n你好！今天天气很好。"
        "<end_of_turn>\n<start_of_turn>user\nWhat is two plus two?<end_of_turn>\n<start_of_turn>model\n"
        "Two plus two is four.<end_of_turn>\n",
        "你好！今天天气很好。<end_of_turn>\nTwo plus two is four.<end_of_turn>\n",
        "two?<end_of_turn>\n<start_of_turn>model\n",
    ),
    "phi3": (
        "<|system|>\n你是一个助手。<|end|>\n<|user|>\n你好<|end|>\n<|assistant|>\n你好！今天天气很好。<|end|>\n"
        "<|user|>\nWhat is two plus two?<|end|>\n<|assistant|>\nTwo plus two is four.<|end|>\n",
        "你好！今天天气很好。<|end|>\nTwo plus two is four.<|end|>\n",
        "two?<|end|>\n<|assistant|>\n",
    ),
    "alpaca": (
        "<s>你是一个助手。\n\n### Instruction:\n你好\n\n### Response:\n你好！今天天气很好。</s>\n\n"
        "### Instruction:\nWhat is two plus two?\n\n### Response:\nTwo plus two is four.</s>\n\n",
        "你好！今天天气很好。</s>\n\nTwo plus two is four.</s>\n\n",
        "two?\n\n### Response:\n",
    ),
    "vicuna": (
        "<s>你是一个助手。 USER: 你好 ASSISTANT: 你好！今天天气很好。</s>"
        "USER: What is two plus two? ASSISTANT: Two plus two is four.</s>",
        " 你好！今天天气很好。</s> Two plus two is four.</s>",
        "USER: What is two plus two? ASSISTANT:",
    ),
    "chatglm2": (
        "[gMASK]sop[Round 1]\n\n问：你是一个助手。\n\n你好\n\n答：你好！今天天气很好。</s>\n\n"
        "[Round 2]\n\n问：What is two plus two?\n\n答：Two plus two is four.</s>\n\n",
        "你好！今天天气很好。</s>\n\nTwo plus two is four.</s>\n\n",
        "[Round 2]\n\n问：What is two plus two?\n\n答：",
    ),
    "chatglm3": (
        "[gMASK]sop<|system|>\n 你是一个助手。<|user|>\n 你好<|assistant|>\n 你好！今天天气很好。</s>"
        "<|user|>\n What is two plus two?<|assistant|>\n Two plus two is four.</s>",
        " 你好！今天天气很好。</s> Two plus two is four.</s>",
        "<|user|>\n What is two plus two?<|assistant|>\n",
    ),
    "baichuan2": (
        "你是一个助手。<reserved_106>你好<reserved_107>你好！今天天气很好。</s>"
        "<reserved_106>What is two plus two?<reserved_107>Two plus two is four.</s>",
        "你好！今天天气很好。</s>Two plus two is four.</s>",
        "<reserved_106>What is two plus two?<reserved_107>",
    ),
    "belle": (
        "<s>Human: 你是一个助手。\n\n你好\n\nBelle: 你好！今天天气很好。</s>\n\n"
        "Human: What is two plus two?\n\nBelle: Two plus two is four.</s>\n\n",
        " 你好！今天天气很好。</s>\n\n Two plus two is four.</s>\n\n",
        "Human: What is two plus two?\n\nBelle:",
    ),
    "moss": (
        "你是一个助手。\n<|Human|>: 你好<eoh>\n<|MOSS|>: 你好！今天天气很好。<eom>\n"
        "<|Human|>: What is two plus two?<eoh>\n<|MOSS|>: Two plus two is four.<eom>\n",
        " 你好！今天天气很好。<eom>\n Two plus two is four.<eom>\n",
        "<|Human|>: What is two plus two?<eoh>\n<|MOSS|>:",
    ),
    "ziya": (
        "<s><human>:你是一个助手。\n\n你好\n<bot>:你好！今天天气很好。</s>\n"
        "<human>:What is two plus two?\n<bot>:Two plus two is four.</s>\n",
        "你好！今天天气很好。</s>\nTwo plus two is four.</s>\n",
        "<human>:What is two plus two?\n<bot>:",
    ),
    "openchat": (
        "<s>GPT4 Correct System: 你是一个助手。<|end_of_turn|>GPT4 Correct User: 你好<|end_of_turn|>"
        "GPT4 Correct Assistant: 你好！今天天气很好。<|end_of_turn|>GPT4 Correct User: What is two plus two?"
        "<|end_of_turn|>GPT4 Correct Assistant: Two plus two is four.<|end_of_turn|>",
        " 你好！今天天气很好。<|end_of_turn|> Two plus two is four.<|end_of_turn|>",
        "two?<|end_of_turn|>GPT4 Correct Assistant:",
    ),
    "zephyr": (
        "<s><|system|>\n你是一个助手。</s>\n<|user|>\n你好</s>\n<|assistant|>\n你好！今天天气很好。</s>\n"
        "<|user|>\nWhat is two plus two?</s>\n<|assistant|>\nTwo plus two is four.</s>\n",
        "你好！今天天气很好。</s>\nTwo plus two is four.</s>\n",
        "two?</s>\n<|assistant|>\n",
    ),
    "deepseek": (
        "<｜begin▁of▁sentence｜>你是一个助手。\n\nUser: 你好\n\nAssistant: 你好！今天天气很好。<｜end▁of▁sentence｜>"
        "User: What is two plus two?\n\nAssistant: Two plus two is four.<｜end▁of▁sentence｜>",
        " 你好！今天天气很好。<｜end▁of▁sentence｜> Two plus two is four.<｜end▁of▁sentence｜>",
        "User: What is two plus two?\n\nAssistant:",
    ),
}
# Chatml variants differ from chatml only in what this conversation does not use (default system, tools).
GOLDEN |= {name: GOLDEN["chatml"] for name in ("qwen", "smollm", "yi")}


def trained_text(text: str, spans) -> str:
    return "".join(text[a:b] for a, b in spans)


def test_every_registered_template_has_a_golden():
    assert set(GOLDEN) == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_stops_on_its_own_end_of_turn_marker(name):
    fmt = TEMPLATES[name]
    end_of_turn = fmt.assistant.partition("{content}")[2]
    assert any(stop in end_of_turn for stop in fmt.stop)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_render(name, tokenizer):
    want_text, want_trained, want_prompt_end = GOLDEN[name]
    template = get_template(name, tokenizer)
    text, spans = template.text(CONV)
    assert text == want_text
    assert trained_text(text, spans) == want_trained

    prompt, _ = template.text(Conversation(CONV.messages[:-1]), add_generation_prompt=True)
    assert prompt.endswith(want_prompt_end)
    assert want_text.startswith(prompt)  # the reply continues the prompt exactly: no trailing space to undo


def masked_runs(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) token index ranges of consecutive 1s."""
    runs, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, clean_up_tokenization_spaces=False)


def check_mask(tokenizer, template, conv) -> tuple[str, list[int]]:
    """What holds for any tokenizer: the ids are the tokenizer's own for the whole text, and each target span
    is trained as one run of tokens that covers it and overshoots by less than one token at either end (a
    token that straddles a span edge overlaps the span, so it is trained). Returns the text and masked ids."""
    text, spans = template.text(conv)
    rendered = template.render(conv)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert rendered.input_ids == enc["input_ids"]
    offsets, runs = enc["offset_mapping"], masked_runs(rendered.loss_mask)
    assert len(runs) == len(spans)
    for (i, j), (a, b) in zip(runs, spans, strict=True):
        assert decode(tokenizer, rendered.input_ids[i:j]) == text[offsets[i][0] : offsets[j - 1][1]]
        assert offsets[i][0] <= a < offsets[i][1] and offsets[j - 1][0] < b <= offsets[j - 1][1]
    return text, [i for i, m in zip(rendered.input_ids, rendered.loss_mask, strict=True) if m]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_ids_and_mask_match_the_text(name, tokenizer):
    template = get_template(name, tokenizer)
    text, masked = check_mask(tokenizer, template, CONV)
    # Exact with the tiny tokenizer: every span edge sits on a token boundary (a special token, a newline,
    # the space that starts a word), so exactly the target text is trained.
    assert decode(tokenizer, masked) == trained_text(text, template.text(CONV)[1])


def test_a_token_straddling_a_span_edge_is_trained(tokenizer):
    # The reply "us two is four." follows "pl" in the prompt: the tokenizer makes one token " plus" across
    # the edge, and it is trained, so the masked text starts before the reply does.
    fmt = SlotFormat(name="straddle", user="{content}\n", assistant="Two pl{content}\n")
    conv = Conversation([Message("user", U1), Message("assistant", "us two is four.")])
    template = Template(fmt, tokenizer)
    text, masked = check_mask(tokenizer, template, conv)
    assert trained_text(text, template.text(conv)[1]) == "us two is four.\n"
    assert decode(tokenizer, masked) == " plus two is four.\n"


# ------------------------------------------------------------------ defaults and the Jinja template


def test_default_system_prompts(tokenizer):
    conv = Conversation([Message("user", U1)])
    qwen, _ = get_template("qwen", tokenizer).text(conv, add_generation_prompt=True)
    assert qwen == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # smollm is the tiny tokenizer's own template (SmolLM2's) written as slots: same text, same ids
    multi = Conversation(CONV.messages[1:])
    smol = get_template("smollm", tokenizer)
    assert smol.text(multi)[0] == tokenizer.apply_chat_template(multi.to_openai(), tokenize=False)
    assert smol.render(multi).input_ids == tokenizer.apply_chat_template(multi.to_openai())["input_ids"]
    yi, _ = get_template("yi", tokenizer).text(conv)
    assert yi == "<|im_start|>user\n你好<|im_end|>\n"


def test_chatglm2_counts_rounds_from_one(tokenizer):
    conv = Conversation.from_openai(
        [
            {"role": "user", "content": "一"},
            {"role": "assistant", "content": "二"},
            {"role": "user", "content": "三"},
            {"role": "assistant", "content": "四"},
        ]
    )
    text, _ = get_template("chatglm2", tokenizer).text(conv)
    assert text == "[gMASK]sop[Round 1]\n\n问：一\n\n答：二</s>\n\n[Round 2]\n\n问：三\n\n答：四</s>\n\n"
    prompt, _ = get_template("chatglm2", tokenizer).text(
        Conversation(conv.messages[:1]), add_generation_prompt=True
    )
    assert prompt == "[gMASK]sop[Round 1]\n\n问：一\n\n答："


def test_default_template_matches_the_tokenizer(tokenizer):
    conv = Conversation(CONV.messages[1:])  # no system: the template adds SmolLM's default one
    template = get_template("default", tokenizer)
    rendered = template.render(conv)
    assert rendered.input_ids == tokenizer.apply_chat_template(conv.to_openai(), tokenize=True)["input_ids"]
    masked = [i for i, m in zip(rendered.input_ids, rendered.loss_mask, strict=True) if m]
    assert tokenizer.decode(masked) == f"{A1}<|im_end|>\n{A2}<|im_end|>\n"

    last = template.render(conv, train_on="last")
    masked = [i for i, m in zip(last.input_ids, last.loss_mask, strict=True) if m]
    assert tokenizer.decode(masked) == f"{A2}<|im_end|>\n"


def test_jinja_template_that_rewrites_earlier_turns_fails_loudly(tokenizer):
    # marks whichever message is last, so each new turn changes how the one before it was written
    rewriting = "{% for m in messages %}{% if loop.last %}>> {% endif %}{{ m['content'] }}\n{% endfor %}"
    template = get_template("default", tokenizer, jinja=rewriting)
    with pytest.raises(TemplateError, match="rewrites earlier turns"):
        template.render(CONV)


def test_unknown_template_lists_the_valid_names(tokenizer):
    with pytest.raises(TemplateError) as err:
        get_template("llama9", tokenizer)
    assert all(name in str(err.value) for name in list_templates())


def test_default_needs_a_chat_template(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(TemplateError, match="no chat template.*--model.template"):
        get_template("default", bare)


def test_default_template_passes_tools_as_json_schemas(tokenizer):
    tools = '[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]'
    listing = "{% for t in tools %}{{ t['function']['name'] }};{% endfor %}"
    source = listing + "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    conv = Conversation(CONV.messages[1:3], tools=tools)
    text, spans = get_template("default", tokenizer, jinja=source).text(conv)
    assert text == f"get_weather;user: {U1}\nassistant: {A1}\n"
    assert trained_text(text, spans) == f"assistant: {A1}\n"  # this template has no generation prompt


# ------------------------------------------------------------------ tool turns

TOOLS = '{"name": "get_weather", "parameters": {"city": {"type": "string"}}}'
RESULT = '{"temperature": 22}'
REPLY = "北京今天22度。"


def tool_conv(call: str, tools: str = "") -> Conversation:
    turns = [("user", "北京天气怎么样？"), ("tool_call", call), ("tool", RESULT), ("assistant", REPLY)]
    return Conversation([Message(role, content) for role, content in turns], tools)


QWEN_CALL = '{"name": "get_weather", "arguments": {"city": "北京"}}'
LLAMA_CALL = '{"name": "get_weather", "parameters": {"city": "北京"}}'
TOOL_GOLDEN = {
    "qwen": (
        tool_conv(QWEN_CALL, TOOLS),
        "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to "
        "assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML "
        f"tags:\n<tools>\n{TOOLS}\n</tools>\n\nFor each function call, return a json object with function name "
        'and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
        '"arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n北京天气怎么样？<|im_end|>\n"
        f"<|im_start|>assistant\n<tool_call>\n{QWEN_CALL}\n</tool_call><|im_end|>\n"
        f"<|im_start|>user\n<tool_response>\n{RESULT}\n</tool_response><|im_end|>\n"
        f"<|im_start|>assistant\n{REPLY}<|im_end|>\n",
        f"<tool_call>\n{QWEN_CALL}\n</tool_call><|im_end|>\n{REPLY}<|im_end|>\n",
    ),
    "llama3": (
        tool_conv(LLAMA_CALL, TOOLS),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou have access to the following "
        "functions. To call a function, please respond with JSON for a function call.Respond in the format "
        '{"name": function name, "parameters": dictionary of argument name and its value}.Do not use '
        f"variables.\n\n{TOOLS}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n北京天气怎么样？<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{LLAMA_CALL}<|eot_id|>"
        f"<|start_header_id|>ipython<|end_header_id|>\n\n{RESULT}<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{REPLY}<|eot_id|>",
        f"{LLAMA_CALL}<|eot_id|>{REPLY}<|eot_id|>",
    ),
    "mistral": (
        tool_conv(f"[{QWEN_CALL}]"),
        f"<s>[INST] 北京天气怎么样？[/INST][TOOL_CALLS] [{QWEN_CALL}]</s>"
        f'[TOOL_RESULTS] {{"content": {RESULT}}}[/TOOL_RESULTS] {REPLY}</s>',
        f"[TOOL_CALLS] [{QWEN_CALL}]</s> {REPLY}</s>",
    ),
    "internlm2": (
        tool_conv(LLAMA_CALL, TOOLS),
        f"<s><|im_start|>system\n{TEMPLATES['internlm2'].default_system}<|im_end|>\n"
        f"<|im_start|>system name=<|plugin|>\n{TOOLS}<|im_end|>\n"
        "<|im_start|>user\n北京天气怎么样？<|im_end|>\n"
        f"<|im_start|>assistant\n<|action_start|><|plugin|>\n{LLAMA_CALL}<|action_end|><|im_end|>\n"
        f"<|im_start|>environment name=<|plugin|>\n{RESULT}<|im_end|>\n"
        f"<|im_start|>assistant\n{REPLY}<|im_end|>\n",
        f"<|action_start|><|plugin|>\n{LLAMA_CALL}<|action_end|><|im_end|>\n{REPLY}<|im_end|>\n",
    ),
}


@pytest.mark.parametrize("name", sorted(TOOL_GOLDEN))
def test_tool_turns(name, tokenizer):
    conv, want_text, want_trained = TOOL_GOLDEN[name]
    template = get_template(name, tokenizer)
    text, spans = template.text(conv)
    assert text == want_text
    assert trained_text(text, spans) == want_trained  # the call and its marker are trained, the result is not

    rendered = template.render(conv)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    result_at = text.index(RESULT)
    for (s, e), m in zip(enc["offset_mapping"], rendered.loss_mask, strict=True):
        if s >= result_at and e <= result_at + len(RESULT):
            assert m == 0


# ------------------------------------------------------------------ prompts for sampling


def long_conversation(n: int) -> Conversation:
    return Conversation([Message(("user", "assistant")[i % 2], f"message number {i}") for i in range(n)])


@pytest.mark.parametrize("name", ["default", *sorted(TEMPLATES)])
def test_prompt_ids_are_the_generation_prompt_render(name, tokenizer):
    """The serving path renders the text alone; its ids are those of the full render with the prompt."""
    template = get_template(name, tokenizer)
    conv = Conversation(CONV.messages[:-1])
    assert template.prompt_ids(conv) == template.render(conv, add_generation_prompt=True).input_ids


def test_a_prompt_is_one_render_in_linear_time(tokenizer, monkeypatch):
    """Issue 14: a prompt's render used to compute target spans too, two prefix renders per assistant turn, so
    2,401 messages kept the server busy 27 s. Now: one Jinja render, whatever the length, and twice the
    messages take about twice the time (a generous 3.5x bound; CPU time of this thread, as the machine is
    shared)."""
    calls = []
    real = tokenizer.apply_chat_template
    monkeypatch.setattr(tokenizer, "apply_chat_template", lambda *a, **k: calls.append(1) or real(*a, **k))
    conv = long_conversation(2001)
    ids = get_template("default", tokenizer).prompt_ids(conv)
    assert len(calls) == 1
    want = real(conv.to_openai(), add_generation_prompt=True, tokenize=True)["input_ids"]
    assert ids == want

    def seconds(n: int) -> float:
        conv = long_conversation(n)
        best = float("inf")
        for _ in range(3):  # a fresh template each time: nothing remembered
            t0 = time.thread_time()
            get_template("default", tokenizer).prompt_ids(conv)
            best = min(best, time.thread_time() - t0)
        return best

    assert seconds(2001) < 3.5 * seconds(1001)


def test_recent_prompts_are_remembered_not_shared(tokenizer, monkeypatch):
    template = get_template("default", tokenizer)
    calls = []
    real = tokenizer.apply_chat_template
    monkeypatch.setattr(tokenizer, "apply_chat_template", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = template.prompt_ids(long_conversation(5))
    first.append(-1)  # the caller's copy
    again = template.prompt_ids(long_conversation(5))  # equal, not the same object: remembered
    assert len(calls) == 1 and again == first[:-1]
    for n in range(6, 12):
        template.prompt_ids(long_conversation(n))
    template.prompt_ids(long_conversation(5))  # pushed out by newer ones: rendered again
    assert len(calls) == 8


# ------------------------------------------------------------------ long conversations for training


def exact_spans(template, conv) -> list[tuple[int, int]]:
    fmt, tok = template.format, template.tokenizer
    msgs = [
        {"role": "assistant" if m.role == "tool_call" else m.role, "content": m.content}
        for m in conv.messages
    ]
    text = fmt._apply(tok, conv, msgs, False)
    return [
        fmt._span(tok, conv, msgs, text, i)
        for i, m in enumerate(conv.messages)
        if m.role in ("assistant", "tool_call")
    ]


COUNTING = "{% for m in messages %}<{{ m['role'] }} {{ loop.index }}>{{ m['content'] }}</{{ loop.index }}>{% endfor %}"
TRIMMING = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] | trim }}[/]{% endfor %}"


@pytest.mark.parametrize("jinja", ["", COUNTING, TRIMMING], ids=["smollm2", "numbered turns", "trimmed"])
def test_long_conversation_spans_equal_the_prefix_renders(tokenizer, jinja):
    """The constant-render spans must be the exact ones; a template that numbers its turns, or trims what it
    is given, cannot use them and still gets exact spans (by rendering the prefixes)."""
    template = get_template("default", tokenizer, jinja=jinja)
    conv = Conversation(
        [Message("system", S), *long_conversation(12).messages, Message("tool_call", '{"a": 1}')]
    )
    conv = conv.add("user", "  padded  ")
    text, spans = template.text(conv)
    assert spans == exact_spans(template, conv) and len(spans) == 7
    fmt, msgs = (
        template.format,
        [{"role": m.role.replace("tool_call", "assistant"), "content": m.content} for m in conv.messages],
    )
    targets = [i for i, m in enumerate(conv.messages) if m.role in ("assistant", "tool_call")]
    by_pattern = fmt._spans_by_pattern(tokenizer, conv, msgs, text, targets, False)
    assert by_pattern == (spans if not jinja else None)  # the SmolLM2 template writes every turn alike
    assert trained_text(text, spans).count("message number") == 6


def test_long_conversation_spans_take_a_constant_number_of_renders(tokenizer, monkeypatch):
    """Issue 14: two prefix renders per assistant turn made a 2,001-message conversation 2,001 renders."""
    calls = []
    real = tokenizer.apply_chat_template
    monkeypatch.setattr(tokenizer, "apply_chat_template", lambda *a, **k: calls.append(1) or real(*a, **k))
    text, spans = get_template("default", tokenizer).text(long_conversation(2001))
    assert len(spans) == 1000 and len(calls) <= 6
    assert all(text[a:b] == f"message number {2 * k + 1}<|im_end|>\n" for k, (a, b) in enumerate(spans))


def test_a_rewriting_template_still_fails_loudly_on_long_conversations(tokenizer):
    rewriting = "{% for m in messages %}{% if loop.last %}>> {% endif %}{{ m['content'] }}\n{% endfor %}"
    with pytest.raises(TemplateError, match="rewrites earlier turns"):
        get_template("default", tokenizer, jinja=rewriting).render(long_conversation(9))
