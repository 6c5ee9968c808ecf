"""`pixiu chat MODEL`: multi-turn chat in the terminal, replies streamed as they are generated.

Lines are read from stdin, so a script of lines can be piped in (`pixiu chat m < script.txt`). A line that
starts with `/` is a command (see HELP); anything else is the next user turn. Ctrl-C stops a reply early
(the partial reply stays in the history); Ctrl-D or /quit leaves.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TextIO

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import ContextError, Engine, Sampling, quant

HELP = """commands:
  /reset                 forget the conversation (the system prompt stays)
  /save FILE             write the conversation as JSON messages
  /load FILE             read a conversation of JSON messages (a list, or {"messages": [...]})
  /set NAME VALUE        sampling: temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed (or none)
  /system TEXT           replace the system prompt (empty: the template's default)
  /help                  this text
  /quit                  leave (Ctrl-D too)"""
CHAT_SAMPLING = Sampling(max_new_tokens=512, temperature=0.7, top_p=0.9)


@dataclass
class Chat:
    engine: Engine
    out: TextIO
    system: str = ""
    sampling: Sampling = field(default_factory=lambda: replace(CHAT_SAMPLING))
    history: list[Message] = field(default_factory=list)  # user and assistant turns
    tools: dict = field(default_factory=dict)  # name -> toolbox.Tool the model may call
    index: object = None  # a rag.Index: each user turn gets its top passages, numbered (--rag)
    max_calls: int = 3  # tool rounds per user turn

    def conversation(self) -> Conversation:
        system = [Message("system", self.system)] if self.system else []
        schemas = [t.schema["function"] for t in self.tools.values()]
        return Conversation(system + self.history, json.dumps(schemas) if schemas else "")

    def say(self, text: str) -> None:
        """A user turn: stream the reply to the terminal and keep it in the history. A reply that calls a tool
        runs it, shows the result and asks the model again (up to max_calls rounds)."""
        from pixiu.serve.toolbox import run_call
        from pixiu.serve.tools import parse_calls

        question, hits = self.retrieve(text)
        turns = [Message("user", question)]
        for _ in range(self.max_calls + 1):
            reply = self.stream(
                Conversation([*self.conversation().messages, *turns], self.conversation().tools)
            )
            if reply is None:
                return
            calls = parse_calls(reply, set(self.tools)) if self.tools else None
            if not calls:
                turns.append(Message("assistant", reply))
                break
            for call in calls:
                result = run_call(self.tools, call)
                self.out.write(f"[{call['function']['name']}({call['function']['arguments']}) -> {result}]\n")
                turns += [Message("tool_call", reply), Message("tool", result)]
        for h in hits:
            self.out.write(f"  [{h.rank}] {h.chunk.source}: {h.chunk.title}\n")
        self.history += turns

    def retrieve(self, text: str):
        from pixiu.rag import cite_prompt

        if self.index is None:
            return text, []
        hits = self.index.search(text, 3)
        return cite_prompt(text, hits), hits

    def stream(self, conv: Conversation) -> str | None:
        """One reply streamed to the terminal; None when the context is full."""
        pieces: list[str] = []
        try:
            for piece in self.engine.stream(conv, self.sampling):
                pieces.append(piece)
                self.out.write(piece)
                self.out.flush()
        except ContextError as e:
            self.out.write(f"[{e}; /reset or a lower max_new_tokens]\n")
            return None
        except KeyboardInterrupt:
            self.out.write(" [stopped]")
        self.out.write("\n")
        return "".join(pieces)

    def command(self, line: str) -> bool:
        """Run a /command; False when the chat should end."""
        name, _, arg = line.partition(" ")
        handler = COMMANDS.get(name)
        if handler is None:
            self.out.write(f"unknown command {name}; /help lists them\n")
            return True
        return handler(self, arg.strip()) is not False


def _reset(chat: Chat, arg: str) -> None:
    chat.history = []
    chat.out.write("[conversation cleared]\n")


def _save(chat: Chat, arg: str) -> None:
    if not arg:
        chat.out.write("usage: /save FILE\n")
        return
    Path(arg).write_text(json.dumps(chat.conversation().to_openai(), ensure_ascii=False, indent=2) + "\n")
    chat.out.write(f"[saved {len(chat.history)} turns to {arg}]\n")


def _load(chat: Chat, arg: str) -> None:
    try:
        data = json.loads(Path(arg).read_text())
        messages = data["messages"] if isinstance(data, dict) else data
        conv = Conversation.from_openai(messages)
    except (OSError, ValueError, KeyError, TypeError) as e:
        chat.out.write(f"[cannot load {arg!r}: {e}]\n")
        return
    msgs = list(conv.messages)
    if msgs and msgs[0].role == "system":
        chat.system = msgs.pop(0).content
    chat.history = msgs
    chat.out.write(f"[loaded {len(msgs)} turns from {arg}]\n")


SETTABLE = [f.name for f in fields(Sampling) if f.name != "logprobs"]  # the terminal shows text only


def _set(chat: Chat, arg: str) -> None:
    name, _, value = arg.partition(" ")
    if name not in SETTABLE or not value:
        chat.out.write(f"usage: /set NAME VALUE with NAME one of {SETTABLE}\n")
        return
    try:
        if name == "seed":
            parsed = _seed(value)
        else:
            parsed = (int if name in ("top_k", "max_new_tokens") else float)(value)
        chat.sampling = replace(chat.sampling, **{name: parsed})
    except ValueError as e:
        chat.out.write(f"[bad value for {name}: {e}]\n")
        return
    chat.out.write(f"[{name} = {parsed}]\n")


def _help(chat: Chat, arg: str) -> None:
    chat.out.write(HELP + "\n")


def _quit(chat: Chat, arg: str) -> bool:
    return False


def _system(chat: Chat, arg: str) -> None:
    chat.system = arg
    chat.out.write("[system prompt set]\n" if arg else "[system prompt: the template's default]\n")


COMMANDS: dict[str, Callable[[Chat, str], bool | None]] = {
    "/reset": _reset,
    "/save": _save,
    "/load": _load,
    "/set": _set,
    "/system": _system,
    "/help": _help,
    "/quit": _quit,
    "/exit": _quit,
}


def run(chat: Chat, lines: Iterable[str], prompt: str = "") -> None:
    """Read user turns and commands until /quit or the end of input."""
    for raw in _prompted(lines, prompt, chat.out):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not chat.command(line):
                return
        else:
            chat.say(line)


def _prompted(lines: Iterable[str], prompt: str, out: TextIO):
    it = iter(lines)
    while True:
        if prompt:
            out.write(prompt)
            out.flush()
        try:
            yield next(it)
        except StopIteration:
            return


def cli(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="pixiu chat", description=__doc__.split("\n")[0])
    p.add_argument("model", help="checkpoint dir, HF dir or hub name, .gguf file, or smollm2-135m")
    p.add_argument("--system", default="", help="system prompt (default: the template's own)")
    p.add_argument("--backend", default="auto", help="torch, llamacpp or auto")
    p.add_argument("--dtype", default="auto", help="auto, bf16 or fp32")
    p.add_argument("--template", default="default", help="chat template name (see `pixiu templates`)")
    p.add_argument("--quantize", default="none", choices=quant.QUANTIZE, help=quant.HELP)
    p.add_argument("--tools", default="", help="tools the model may call: calculator, search (needs --rag)")
    p.add_argument("--rag", default="", help="a `pixiu index build` folder: answers cite its passages")
    for name in SETTABLE:
        kind = _seed if name == "seed" else type(getattr(CHAT_SAMPLING, name))
        p.add_argument(f"--{name}", type=kind, default=getattr(CHAT_SAMPLING, name))
    a = p.parse_args(argv)
    from pixiu.engine import load_engine

    sampling = Sampling(**{name: getattr(a, name) for name in SETTABLE})
    opts = {"backend": a.backend, "dtype": a.dtype, "template": a.template, "quantize": a.quantize}
    with load_engine(a.model, max_batch=1, **opts) as engine:
        interactive = sys.stdin.isatty()
        if interactive:
            print(f"pixiu chat: {engine.name} ({engine.context_len} tokens of context). /help for commands.")
        chat = Chat(engine, sys.stdout, a.system, sampling, **toolkit(a.tools, a.rag))
        run(chat, sys.stdin, prompt=">>> " if interactive else "")


def toolkit(names: str, rag: str) -> dict:
    """--tools and --rag -> the Chat fields: the tools by name and the index."""
    from pixiu.serve import toolbox

    index = None
    if rag:
        from pixiu.rag import Index

        index = Index.load(rag)
    made = {"calculator": toolbox.calculator, "search": lambda: toolbox.search(index)}
    tools = {}
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name not in made or (name == "search" and index is None):
            sys.exit(f"error: unknown tool {name!r} (valid: calculator, search; search needs --rag IDX)")
        tools[name] = made[name]()
    return {"tools": tools, "index": index if "search" not in tools else None}


def _seed(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)
