"""The teacher answers your own instructions, n replies each (the Vicuna / GPT-4-LLM case).

Input: alpaca rows, prompts rows, messages rows or a text file with one instruction a line. Output: alpaca rows
when the input had `instruction`, else messages rows. A refusal is dropped here, not written.
"""

from __future__ import annotations

from collections.abc import Iterator

from pixiu.teach.methods import Job, Method, Result, instruction_of, prompt_hash, read_items, register
from pixiu.teach.text import is_refusal


@register("answer")
class Answer(Method):
    inputs = "the instructions to answer"

    def jobs(self) -> Iterator[Job]:
        for i, row in enumerate(read_items(self.cfg.inputs)):
            for k in range(self.cfg.n):
                yield Job(f"answer-{i}-{k}", 1, {"row": row, "sample": k})

    def run(self, job: Job, teacher) -> Result:
        row = job.payload["row"]
        text = instruction_of(row)
        messages = [{"role": "user", "content": text}]
        result = Result(prompt_hash=prompt_hash(messages))
        if not text.strip():
            result.dropped.append(["empty instruction", ""])
            return result
        seed = self.cfg.seed + job.payload["sample"]  # n samples differ; the same run resumes the same way
        reply = self.ask(teacher, messages, seed=seed).text.strip()
        if is_refusal(reply):
            result.dropped.append(["refusal", reply[:200]])
        elif "instruction" in row:
            result.rows.append(
                {"instruction": row["instruction"], "input": row.get("input") or "", "output": reply}
            )
        else:
            result.rows.append({"messages": messages + [{"role": "assistant", "content": reply}]})
        return result
