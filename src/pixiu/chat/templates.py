"""Chat templates: the one place where chat format and loss masking live.

`Template.render(conv) -> Rendered(input_ids, loss_mask)` serves training, evaluation and serving alike.
Every format first renders text plus the character spans of the turns the model must produce (assistant and
tool_call turns, with their end-of-turn marker); the text is tokenized once, and a token is trained on when its
character range overlaps a target span. So the ids equal what the tokenizer makes of the whole text, and the
mask never depends on searching the text for markers.

Two kinds of format:
- `JinjaFormat`: a Jinja chat template (by default the tokenizer's own). Target spans come from rendering
  growing prefixes of the conversation: turn i spans render(msgs[:i+1]) minus render(msgs[:i], generation
  prompt). A template that rewrites earlier turns when later ones arrive fails loudly, never silently.
- `SlotFormat`: a named family format from the registry below, one string per role.
"""

from __future__ import annotations

from dataclasses import dataclass

from pixiu.chat.messages import TARGET_ROLES, Conversation


class TemplateError(ValueError):
    """A template that cannot render a conversation, or an unknown template name."""


@dataclass
class Rendered:
    input_ids: list[int]  # (T,)
    loss_mask: list[int]  # (T,) 1 where the token is a target (assistant reply and its end-of-turn marker)


Spans = list[tuple[int, int]]  # [start, end) character ranges of target turns


@dataclass(frozen=True)
class SlotFormat:
    """A chat format as one string per role; `{content}` is the message text, `{round}` the 1-based user turn.

    The text of `assistant` before `{content}` is the generation prompt; the text after it (the end-of-turn
    marker) is trained on together with the reply.
    """

    name: str
    user: str
    assistant: str
    system: str = ""  # empty: the system text goes into the first user turn through `system_in_user`
    system_in_user: str = "{content}\n\n"
    tool_call: str = ""  # empty: same as assistant
    tool: str = ""  # empty: same as user
    prefix: str = ""  # written once at the start, e.g. a BOS marker
    default_system: str = ""
    tools_system: str = "{system}\n\nYou may call these tools; reply with a JSON call:\n{tools}"
    stop: tuple[str, ...] = ()

    def text(self, conv: Conversation, add_generation_prompt: bool = False) -> tuple[str, Spans]:
        msgs = list(conv.messages)
        system = msgs.pop(0).content if msgs and msgs[0].role == "system" else self.default_system
        if conv.tools:
            system = self.tools_system.replace("{system}", system).replace("{tools}", conv.tools).strip()
        parts, spans, pos, rnd = [self.prefix], [], len(self.prefix), 0
        pending_system = system
        if system and self.system:
            parts.append(self.system.replace("{content}", system))
            pos += len(parts[-1])
            pending_system = ""
        for m in msgs:
            if m.role == "system":
                raise TemplateError(f"template {self.name!r}: a system message may only come first")
            slot = {"user": self.user, "assistant": self.assistant, "tool": self.tool or self.user}.get(m.role)
            slot = slot or self.tool_call or self.assistant
            content = m.content
            if m.role == "user":
                rnd += 1
                if pending_system:
                    content = self.system_in_user.replace("{content}", pending_system) + content
                    pending_system = ""
            slot = slot.replace("{round}", str(rnd if m.role == "user" else max(rnd, 1)))
            head, _, tail = slot.partition("{content}")
            piece = head + content + tail
            if m.role in TARGET_ROLES:
                spans.append((pos + len(head), pos + len(piece)))
            parts.append(piece)
            pos += len(piece)
        if add_generation_prompt:
            parts.append(self.assistant.replace("{round}", str(max(rnd, 1))).partition("{content}")[0])
        return "".join(parts), spans


@dataclass(frozen=True)
class JinjaFormat:
    """A Jinja chat template, rendered by the tokenizer's `apply_chat_template`."""

    source: str
    name: str = "default"
    stop: tuple[str, ...] = ()

    def text(self, conv: Conversation, add_generation_prompt: bool = False, tokenizer=None) -> tuple[str, Spans]:
        msgs = [_hf_message(m) for m in conv.messages]

        def apply(ms, gen):
            kwargs = {"tools": [conv.tools]} if conv.tools else {}
            return tokenizer.apply_chat_template(
                ms, chat_template=self.source, tokenize=False, add_generation_prompt=gen, **kwargs
            )

        text = apply(msgs, add_generation_prompt)
        spans = []
        for i, m in enumerate(conv.messages):
            if m.role not in TARGET_ROLES:
                continue
            before, upto = apply(msgs[:i], True), apply(msgs[: i + 1], False)
            if not (upto.startswith(before) and text.startswith(upto)):
                raise TemplateError(
                    f"the {self.name!r} Jinja template rewrites earlier turns, so turn {i} cannot be masked "
                    "reliably; pick a named template with --model.template"
                )
            spans.append((len(before), len(upto)))
        return text, spans


def _hf_message(m) -> dict:
    return {"role": "assistant" if m.role == "tool_call" else m.role, "content": m.content}


class Template:
    """A format bound to a tokenizer: renders conversations to (input_ids, loss_mask)."""

    def __init__(self, fmt: SlotFormat | JinjaFormat, tokenizer):
        self.format, self.tokenizer = fmt, tokenizer
        self.name = fmt.name

    def text(self, conv: Conversation, add_generation_prompt: bool = False) -> tuple[str, Spans]:
        if isinstance(self.format, JinjaFormat):
            return self.format.text(conv, add_generation_prompt, tokenizer=self.tokenizer)
        return self.format.text(conv, add_generation_prompt)

    def render(self, conv: Conversation, train_on: str = "all", add_generation_prompt: bool = False) -> Rendered:
        text, spans = self.text(conv, add_generation_prompt)
        if train_on == "last":
            spans = spans[-1:]
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        mask = [int(any(s < b and e > a for a, b in spans)) for s, e in enc["offset_mapping"]]
        return Rendered(list(enc["input_ids"]), mask)

    def prompt_ids(self, conv: Conversation) -> list[int]:
        """Token ids that end with the assistant's generation prompt, for sampling a reply."""
        return self.render(conv, add_generation_prompt=True).input_ids

    @property
    def stop(self) -> list[str]:
        eos = self.tokenizer.eos_token
        return list(dict.fromkeys([*self.format.stop, *([eos] if eos else [])]))

    def to_json(self) -> dict:
        if isinstance(self.format, JinjaFormat):
            return {"name": self.name, "jinja": self.format.source}
        return {"name": self.name}


# ---------------------------------------------------------------- the registry

TEMPLATES: dict[str, SlotFormat] = {}


def register(fmt: SlotFormat) -> SlotFormat:
    TEMPLATES[fmt.name] = fmt
    return fmt


def list_templates() -> list[str]:
    return ["default", *sorted(TEMPLATES)]


def get_template(name: str, tokenizer, jinja: str = "") -> Template:
    """'default' -> the tokenizer's own Jinja template (or `jinja` when given); else a registered format."""
    if name == "default":
        source = jinja or getattr(tokenizer, "chat_template", None)
        if not source:
            raise TemplateError(
                "this tokenizer has no chat template; choose one with --model.template, one of "
                f"{list_templates()[1:]}"
            )
        return Template(JinjaFormat(source), tokenizer)
    if name not in TEMPLATES:
        raise TemplateError(f"unknown template {name!r}; valid: {list_templates()}")
    return Template(TEMPLATES[name], tokenizer)


register(SlotFormat(
    name="chatml",  # Qwen, SmolLM, Yi-chat, OpenHermes
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n",
    assistant="<|im_start|>assistant\n{content}<|im_end|>\n",
    tool="<|im_start|>tool\n{content}<|im_end|>\n",
    tool_call="<|im_start|>assistant\n<tool_call>\n{content}\n</tool_call><|im_end|>\n",
    stop=("<|im_end|>",),
))
