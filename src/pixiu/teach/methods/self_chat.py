"""Self-chat (Baize, https://arxiv.org/abs/2304.01196): the teacher plays both the human and the assistant.

Baize asked ChatGPT for a whole transcript at once in its [|Human|] / [|AI|] format; here the teacher writes one
turn at a time (the human's side from Baize's prompt and the transcript so far, the assistant's side as a plain
chat), so each stop rule can be applied as it happens: `max_turns` human turns, the human saying goodbye (or
thanks), an empty human turn, or a human turn repeating an earlier one. Output: messages rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pixiu.teach.methods import Job, Method, Result, instruction_of, prompt_hash, read_items, register
from pixiu.teach.text import normalize

HUMAN = """The following is a conversation between a human and an AI assistant. The human and the AI assistant \
take turns chatting. Human statements start with [|Human|] and AI assistant statements start with [|AI|]. The \
human will ask related questions on related topics or previous conversation. The human will stop the \
conversation when they have no more question. Write the human's next statement only, in the same language.

{transcript}
[|Human|]"""
HUMAN_ZH_NOTE = "（请用中文写出人类的下一句话。）"
GOODBYE = re.compile(r"\b(goodbye|bye|thanks?|thank you|that's all|no more questions?)\b|再见|谢谢|没有(?:别的|其他)?问题",
                     re.IGNORECASE)  # fmt: skip


def clean_human(text: str) -> str:
    """The human's turn only: the teacher may go on to write the AI's reply ([|AI|]) or tag its own turn."""
    text = text.split("[|AI|]")[0].replace("[|Human|]", "")
    return text.strip()


def stop_reason(turn: str, earlier: list[str]) -> str | None:
    if not turn:
        return "human turn empty"
    if normalize(turn) in {normalize(t) for t in earlier}:
        return "human repeats itself"
    if GOODBYE.search(turn) and len(turn) < 80:
        return "human says goodbye"
    return None


@register("self-chat")
class SelfChat(Method):
    inputs = "the seed questions"

    def jobs(self) -> Iterator[Job]:
        for i, row in enumerate(read_items(self.cfg.inputs)):
            yield Job(f"chat-{i}", 1, {"question": instruction_of(row)})

    def run(self, job: Job, teacher) -> Result:
        question = job.payload["question"].strip()
        messages = [{"role": "user", "content": question}]
        result = Result(prompt_hash=prompt_hash(question))
        stopped = ""
        while True:
            messages.append({"role": "assistant", "content": self.ask(teacher, messages).text.strip()})
            humans = [m["content"] for m in messages if m["role"] == "user"]
            if len(humans) >= self.cfg.max_turns:
                stopped = "max turns"
                break
            turn = clean_human(
                self.ask(teacher, [{"role": "user", "content": self._human_prompt(messages)}]).text
            )
            stopped = stop_reason(turn, humans) or ""
            if stopped:
                break
            messages.append({"role": "user", "content": turn})
        result.rows.append({"messages": messages, "stop": stopped})
        return result

    def _human_prompt(self, messages: list[dict]) -> str:
        tag = {"user": "[|Human|]", "assistant": "[|AI|]"}
        transcript = "\n".join(f"{tag[m['role']]} {m['content']}" for m in messages)
        prompt = HUMAN.format(transcript=transcript)
        if self.cfg.lang == "zh":  # the note goes just before the human's turn to write
            prompt = prompt.removesuffix("[|Human|]") + HUMAN_ZH_NOTE + "\n[|Human|]"
        return prompt
