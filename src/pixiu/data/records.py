"""Typed records: what every data format turns into, whatever its columns were.

Each record keeps `source` ("file:line") so any later error can point at the row it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from pixiu.chat.messages import Conversation


@dataclass
class PreferencePair:
    prompt: Conversation  # the context, ending with a user turn
    chosen: str  # the preferred assistant reply
    rejected: str  # the dispreferred assistant reply
    source: str = ""
    # how much better chosen is (a vote or rating gap); the reward model adds it to the pair's margin
    margin: float = 0.0


@dataclass
class Ranking:
    prompt: Conversation
    responses: list[str]  # best first: responses[0] is preferred to responses[1], and so on
    source: str = ""


@dataclass
class Labelled:
    prompt: Conversation  # the context, ending with a user turn
    reply: str  # one assistant reply
    desirable: bool  # True: a good reply, False: a bad one (KTO's unpaired feedback)
    source: str = ""


@dataclass
class Prompt:
    prompt: Conversation  # ends with a user turn; the policy writes the reply (PPO, GRPO)
    source: str = ""
    answer: str = ""  # the row's reference answer ("105", "Athens"), when it has one: rewards that check it

    @property
    def conversation(self) -> Conversation:
        """What a reward function takes (data/tasks.py): the prompt, plus the reference as the assistant turn
        when there is one."""
        return self.prompt.add("assistant", self.answer) if self.answer else self.prompt


@dataclass
class Text:
    text: str  # raw text for continued pretraining
    source: str = ""


Record = Conversation | PreferencePair | Ranking | Labelled | Prompt | Text
