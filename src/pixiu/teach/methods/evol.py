"""Evol-Instruct (WizardLM, https://arxiv.org/abs/2304.12244): rewrite instructions into harder ones, N rounds.

Each round picks one operation: in-depth (add constraints, deepen, concretize, increase reasoning steps,
complicate the input) or in-breadth (a new, rarer prompt of the same domain), with the paper's prompts. An
evolution is eliminated (section 3.3) when (1) the teacher judges it equal to its parent (no information gain),
(2) the answer says "sorry" and is short (< 80 words), (3) the answer is only punctuation and stop words, or
(4) it copies words of the evolving prompt ("#Rewritten Prompt#", "given prompt"). As in the paper, a failed
evolution leaves its parent to evolve in the next round. Every surviving round is one alpaca row. With
`--lang zh` the prompts stay the paper's English ones with a note asking for the new instruction in Chinese, and
rule (2) also reads 抱歉 / 对不起, counting a Chinese character as a word.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from pixiu.teach.methods import Job, Method, Result, instruction_of, prompt_hash, read_items, register
from pixiu.teach.teacher import TeacherError
from pixiu.teach.text import only_punctuation_and_stop_words, words_en

DEPTH = """I want you act as a Prompt Rewriter.
Your objective is to rewrite a given prompt into a more complex version to make those famous AI systems (e.g., \
chatgpt and GPT4) a bit harder to handle.
But the rewritten prompt must be reasonable and must be understood and responded by humans.
Your rewriting cannot omit the non-text parts such as the table and code in #The Given Prompt#:. Also, please \
do not omit the input in #The Given Prompt#.
You SHOULD complicate the given prompt using the following method:
{method}
You should try your best not to make the #Rewritten Prompt# become verbose, #Rewritten Prompt# can only add 10 \
to 20 words into #The Given Prompt#.
'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not allowed to appear in \
#Rewritten Prompt#
#The Given Prompt#:
{prompt}
#Rewritten Prompt#:
"""
BREADTH = """I want you act as a Prompt Creator.
Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.
This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.
The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.
The #Created Prompt# must be reasonable and must be understood and responded by humans.
'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in \
#Created Prompt#
#Given Prompt#:
{prompt}
#Created Prompt#:
"""
OPERATIONS = {
    "constraints": "Please add one more constraints/requirements into #The Given Prompt#'",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry "
    "can be increased.",
    "concretize": "Please replace general concepts with more specific concepts.",
    "reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite it "
    "to explicitly request multiple-step reasoning.",
    "complicate-input": "Please add a concrete, more complex input to #The Given Prompt# (a table, code, or data in "
    "a specific format) that the rewritten prompt asks to work on.",
    "breadth": None,  # in-breadth: BREADTH's prompt
}
EQUAL = """Here are two Instructions to ChatGPT AI, do you think they are equal to each other, which meet the \
following requirements:
1. They have same constraints and requirments.
2. They have same depth and breadth of the inquiry.
The First Prompt: {first}
The Second Prompt: {second}
Your Judgement (Just answer: Equal or Not Equal. No need to explain the reason.):"""
ZH_NOTE = "（请用中文写出新的指令。）"  # --lang zh: WizardLM's English prompt, the answer asked in Chinese
SORRY = ("sorry", "抱歉", "对不起")
COPIED = ("#the given prompt#", "#rewritten prompt#", "#given prompt#", "#created prompt#", "given prompt",
          "rewritten prompt", "created prompt")  # fmt: skip


def evolve_prompt(operation: str, prompt: str, lang: str = "en") -> str:
    if OPERATIONS[operation] is None:
        text = BREADTH.format(prompt=prompt)
    else:
        text = DEPTH.format(method=OPERATIONS[operation], prompt=prompt)
    if lang == "zh":  # the note goes just before the tag the teacher continues
        head, tag = text.rstrip("\n").rsplit("\n", 1)
        text = f"{head}\n{ZH_NOTE}\n{tag}\n"
    return text


def eliminated(parent: str, child: str, answer: str, verdict: str) -> str | None:
    """The paper's elimination rules, cheapest first; the reason, or None when the evolution survives."""
    if not child.strip() or any(c in child.lower() for c in COPIED):
        return "copies the evolving prompt"
    # a Chinese character counts as a word
    words = len(words_en(answer)) + sum("\u4e00" <= c <= "\u9fff" for c in answer)
    if any(s in answer.lower() for s in SORRY) and words < 80:
        return "answer says sorry and is short"
    if only_punctuation_and_stop_words(answer):
        return "answer is only punctuation and stop words"
    if verdict.strip().lower().startswith("equal") or child.strip() == parent.strip():
        return "no information gain (judged equal)"
    return None


@register("evol")
class Evol(Method):
    inputs = "the instructions to evolve"

    def jobs(self) -> Iterator[Job]:
        for i, row in enumerate(read_items(self.cfg.inputs)):
            yield Job(f"evol-{i}", self.cfg.rounds, {"instruction": instruction_of(row)})

    def run(self, job: Job, teacher) -> Result:
        rng = random.Random(f"{self.cfg.seed}-{job.key}")
        current = job.payload["instruction"]
        result = Result(prompt_hash=prompt_hash(current))
        for _ in range(self.cfg.rounds):
            operation = rng.choice(list(OPERATIONS))
            try:
                child = self.ask(
                    teacher, [{"role": "user", "content": evolve_prompt(operation, current, self.cfg.lang)}]
                ).text
                child = child.strip()
                answer = self.ask(teacher, [{"role": "user", "content": child}]).text.strip() if child else ""
                verdict = self._verdict(teacher, current, child, answer)
            except TeacherError as e:  # ends the job: earlier rounds stay, the rest count as failed
                result.failed = str(e) or type(e).__name__
                return result
            why = eliminated(current, child, answer, verdict)
            if why:
                result.dropped.append([f"{why}", child[:200]])
                continue
            result.rows.append({"instruction": child, "input": "", "output": answer, "evolution": operation})
            current = child
        return result

    def _verdict(self, teacher, parent: str, child: str, answer: str) -> str:
        if not child or any(c in child.lower() for c in COPIED):
            return ""  # already eliminated: no judge call needed
        equal = EQUAL.format(first=parent, second=child)
        return self.ask(teacher, [{"role": "user", "content": equal}], temperature=0.0, max_tokens=8).text
