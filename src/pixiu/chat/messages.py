"""The internal conversation: OpenAI-style messages, plus two roles for tool use.

Roles: system, user, assistant, tool_call (an assistant turn that calls a tool; its content is the call as
JSON text) and tool (the tool's result, an observation). Assistant and tool_call turns are what the model
learns to produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant", "tool_call", "tool")
TARGET_ROLES = ("assistant", "tool_call")


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; valid roles: {list(ROLES)}")
        if not isinstance(self.content, str):
            raise ValueError(f"message content must be text, got {type(self.content).__name__}")


@dataclass
class Conversation:
    messages: list[Message]
    tools: str = ""  # JSON text describing the tools the assistant may call, if any
    source: str = field(default="", compare=False)  # provenance, "file:line"

    @classmethod
    def from_openai(cls, messages: list[dict], tools: str = "") -> Conversation:
        return cls([Message(m["role"], m["content"]) for m in messages], tools)

    def to_openai(self) -> list[dict]:
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def add(self, role: str, content: str) -> Conversation:
        return Conversation([*self.messages, Message(role, content)], self.tools, self.source)
