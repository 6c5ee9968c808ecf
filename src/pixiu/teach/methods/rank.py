"""RLAIF: the teacher, as a judge, scores K replies to one prompt; the order becomes rankings or pairs data.

Input rows: {prompt, responses: [K replies]} in any order (several student models' answers). The judge sees all
K at once and gives each a 1-10 score on its own line ("Reply 2: 7"), GPT-4-LLM's comparison style; a verdict
without a score for every reply, or with all scores equal, prefers nothing and is dropped with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pixiu.teach.methods import Job, Method, Result, instruction_of, prompt_hash, read_items, register

JUDGE = """Please act as an impartial judge and rate the quality of each reply to the user's question below, \
considering helpfulness, relevance, accuracy, depth and detail. Give each reply a score from 1 to 10, one line \
per reply, exactly in the form "Reply N: SCORE", and nothing else.

[Question]
{question}

{replies}"""
SCORE = re.compile(r"reply\s*(\d+)\s*[:：]\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_scores(text: str, k: int) -> list[float] | None:
    """Scores of replies 1..k from the verdict, or None if any is missing."""
    found: dict[int, float] = {}
    for n, score in SCORE.findall(text):
        found.setdefault(int(n), float(score))
    return [found[i] for i in range(1, k + 1)] if all(i in found for i in range(1, k + 1)) else None


@register("rank")
class Rank(Method):
    inputs = "{prompt, responses} rows"

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.format not in ("rankings", "pairs"):
            raise ValueError(f"rank: format must be rankings or pairs, got {cfg.format!r}")

    def jobs(self) -> Iterator[Job]:
        for i, row in enumerate(read_items(self.cfg.inputs)):
            yield Job(f"rank-{i}", 1, {"row": row})

    def run(self, job: Job, teacher) -> Result:
        row = job.payload["row"]
        question = instruction_of(row)
        replies = list(dict.fromkeys(str(r).strip() for r in row.get("responses") or [] if str(r).strip()))
        listing = "\n\n".join(f"[Reply {i}]\n{r}" for i, r in enumerate(replies, 1))
        messages = [{"role": "user", "content": JUDGE.format(question=question, replies=listing)}]
        result = Result(prompt_hash=prompt_hash(messages))
        if len(replies) < 2:
            result.dropped.append(["fewer than two distinct replies", question[:200]])
            return result
        scores = parse_scores(self.ask(teacher, messages, temperature=0.0).text, len(replies))
        if scores is None:
            result.dropped.append(["no score for every reply", question[:200]])
        elif len(set(scores)) == 1:
            result.dropped.append(["all replies scored equal", question[:200]])
        else:
            order = sorted(range(len(replies)), key=lambda i: -scores[i])  # stable: ties keep the input order
            ranked = [replies[i] for i in order]
            if self.cfg.format == "pairs":
                result.rows.append({"prompt": question, "chosen": ranked[0], "rejected": ranked[-1]})
            else:
                result.rows.append(
                    {"prompt": question, "responses": ranked, "scores": sorted(scores, reverse=True)}
                )
        return result
