"""Self-instruct as Stanford Alpaca ran it (generate_instruction.py), and BELLE's Chinese variant.

Each request shows `num_prompt` (3) seed tasks as a numbered list and asks the teacher to continue it to
`num_asked` (20); Alpaca's stop strings ("\\n20", "20.") end the list before item 20, so one request asks for
20 - 3 - 1 = 16 items. The reply is cut on "###", each piece split on "N. Instruction/Input/Output:", and the
filters below run in Alpaca's order. Chinese mode (BELLE): a Chinese header, length and ROUGE-L in characters
(Alpaca's tokenizer deletes Chinese), a Chinese blacklist too, and no ASCII-first-character rule.
"""

from __future__ import annotations

import random
import re
import string
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from pixiu.teach.methods import Job, Method, Result, prompt_hash, read_items, register
from pixiu.teach.text import chars_zh, rouge_l, words_en

# Stanford Alpaca's prompt.txt (Apache-2.0), typos included: the instructions the teacher was trained to follow.
HEADER_EN = """You are asked to come up with a set of 20 diverse task instructions. These task instructions will be given to a GPT model and we will evaluate the GPT model for completing the instructions.

Here are the requirements:
1. Try not to repeat the verb for each instruction to maximize diversity.
2. The language used for the instruction also should be diverse. For example, you should combine questions with imperative instrucitons.
3. The type of instructions should be diverse. The list should include diverse types of tasks like open-ended generation, classification, editing, etc.
2. A GPT language model should be able to complete the instruction. For example, do not ask the assistant to create any visual or audio output. For another example, do not ask the assistant to wake you up at 5pm or set a reminder because it cannot perform any action.
3. The instructions should be in English.
4. The instructions should be 1 to 2 sentences long. Either an imperative sentence or a question is permitted.
5. You should generate an appropriate input to the instruction. The input field should contain a specific example provided for the instruction. It should involve realistic data and should not contain simple placeholders. The input should provide substantial content to make the instruction challenging but should ideally not exceed 100 words.
6. Not all instructions require input. For example, when a instruction asks about some general information, "what is the highest peak in the world", it is not necssary to provide a specific context. In this case, we simply put "<noinput>" in the input field.
7. The output should be an appropriate response to the instruction and the input. Make sure the output is less than 100 words.

List of 20 tasks:"""  # noqa: E501

HEADER_ZH = """你需要想出20个多样的任务指令。这些指令会交给一个GPT模型完成，我们会评估它完成指令的情况。

要求如下：
1. 尽量不要重复每条指令的动词，让指令尽可能多样。
2. 指令的语气也要多样，例如把问句和祈使句结合起来。
3. 任务类型要多样，包括开放式生成、分类、改写、提取、问答、总结等。
4. GPT语言模型应当能完成指令：不要让它生成图片、音频或视频，也不要让它执行任何动作（例如下午5点叫醒你）。
5. 指令用中文书写，1到2句话，祈使句或问句都可以。
6. 为指令写一个合适的输入：具体、真实的例子，不是简单的占位符，一般不超过100字。
7. 不是每条指令都需要输入。例如“世界上最高的山峰是什么”不需要上下文，这时在输入处写“<noinput>”。
8. 输出是对指令和输入的恰当回答，不超过100字。

20个任务的列表："""

BLACKLIST_EN = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram"]  # fmt: skip
BLACKLIST_ZH = ["图像", "图片", "照片", "图表", "图形", "文件", "地图", "绘制", "画一", "视频", "音频", "音乐",
                "流程图", "示意图"]  # fmt: skip
STOP = ["\n20", "20.", "20."]  # Alpaca's: the list stops before item 20
SEEDS = {"en": "alpaca/seed_tasks.jsonl", "zh": "belle/zh_seed_tasks.json"}  # under ../shared/data


def encode_prompt(tasks: list[dict], header: str) -> str:
    """Alpaca's encode_prompt: the header, then "###\\nN. Instruction: ...\\nN. Input:\\n...\\nN. Output:\\n..."."""
    prompt = header + "\n"
    for idx, task in enumerate(tasks):
        instruction = re.sub(r"\s+", " ", task["instruction"]).strip().rstrip(":")
        given = "<noinput>" if task["input"].lower() == "" else task["input"]
        prompt += (
            f"###\n{idx + 1}. Instruction: {instruction}\n{idx + 1}. Input:\n{given}\n{idx + 1}. Output:\n"
        )
        prompt += f"{task['output']}\n"
    return prompt + f"###\n{len(tasks) + 1}. Instruction:"


def parse_reply(text: str, finish_reason: str, num_prompt: int) -> tuple[list[dict], list[list]]:
    """Alpaca's post_process_gpt3_response, parsing only: (items, dropped [reason, text]) before the filters.

    A chat teacher often repeats the opening "4. Instruction:"; it is not prepended twice."""
    first = f"{num_prompt + 1}. Instruction:"
    raw = text if text.lstrip().startswith(first) else first + text
    pieces = re.split("###", raw)
    items, dropped = [], []
    for idx, piece in enumerate(pieces):
        if not piece.strip():
            continue
        if idx == len(pieces) - 1 and finish_reason == "length":
            dropped.append(["cut by length", piece.strip()[:200]])  # the last item is likely truncated
            continue
        n = idx + num_prompt + 1
        split = re.split(rf"{n}\.\s+(Instruction|Input|Output):", piece)
        if len(split) != 7:
            dropped.append(["unparsed", piece.strip()[:200]])
            continue
        given = split[4].strip()
        items.append({"instruction": split[2].strip(), "input": "" if given.lower() == "<noinput>" else given,
                      "output": split[6].strip()})  # fmt: skip
    return items, dropped


def rule(item: dict, lang: str) -> str | None:
    """Alpaca's per-item filters in its order (Chinese variants in zh mode); the reason to drop, or None."""
    inst = item["instruction"]
    size = len(chars_zh(inst)) if lang == "zh" else len(inst.split())
    unit = "characters" if lang == "zh" else "words"
    if size <= 3:
        return f"too short (<= 3 {unit})"
    if size > 150:
        return f"too long (> 150 {unit})"
    for word in BLACKLIST_EN + (BLACKLIST_ZH if lang == "zh" else []):
        if re.search(rf"\b({word})\b", inst, flags=re.IGNORECASE) or (lang == "zh" and word in BLACKLIST_ZH
                                                                      and word in inst):  # fmt: skip
            return f"blacklist: {word}"
    if inst.startswith("Write a program") or (
        lang == "zh" and inst.startswith(("编写一个程序", "写一个程序"))
    ):
        return "starts with 'Write a program'"
    if inst[0] in string.punctuation or (lang == "zh" and unicodedata.category(inst[0]).startswith("P")):
        return "leading punctuation"
    if lang == "en" and not inst[0].isascii():
        return "non-ASCII first character"
    if item["output"].strip().lower() in ("", "<noinput>", "<no input>"):
        # not Alpaca's rule: pixiu's loaders refuse an empty reply, and a small teacher puts the input's
        # placeholder in the output (27 of 330 kept English items from SmolLM2-135M, docs/benchmarks.md)
        return "empty output"
    return None


def load_seeds(path: str) -> list[dict]:
    """Seed tasks ({instruction, instances: [{input, output}]}, Alpaca's and BELLE's layout) or alpaca rows."""
    out = []
    for row in read_items(path):
        first = (row.get("instances") or [{}])[0]
        out.append({"instruction": row["instruction"], "input": first.get("input", row.get("input", "")),
                    "output": first.get("output", row.get("output", ""))})  # fmt: skip
    return out


def default_seeds(lang: str) -> str:
    for root in (Path("../shared/data"), Path(__file__).parents[4] / "../shared/data"):
        if (root / SEEDS[lang]).exists():
            return str(root / SEEDS[lang])
    raise FileNotFoundError(f"no seed tasks given (--inputs) and ../shared/data/{SEEDS[lang]} is absent")


@register("self-instruct")
class SelfInstruct(Method):
    """Alpaca (en) / BELLE (zh) self-instruct: alpaca rows {instruction, input, output}."""

    inputs = ""  # default: the shared Alpaca / BELLE seed tasks

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.lang not in SEEDS:
            raise ValueError(f"self-instruct: lang must be one of {list(SEEDS)}, got {cfg.lang!r}")
        self.seeds = load_seeds(cfg.inputs or default_seeds(cfg.lang))
        if len(self.seeds) < cfg.num_prompt:
            raise ValueError(
                f"self-instruct needs at least {cfg.num_prompt} seed tasks, got {len(self.seeds)}"
            )
        self.tokens = chars_zh if cfg.lang == "zh" else words_en
        # ROUGE-L's pool: the seeds, then each kept item
        self.pool = [self.tokens(s["instruction"]) for s in self.seeds]
        self.asked = cfg.num_asked - cfg.num_prompt - 1

    def jobs(self) -> Iterator[Job]:
        i = 0
        while True:  # endless: the runner stops at the target or the time limit
            rng = random.Random(f"{self.cfg.seed}-{i}")
            yield Job(f"si-{i}", self.asked, {"tasks": rng.sample(self.seeds, self.cfg.num_prompt)})
            i += 1

    def run(self, job: Job, teacher) -> Result:
        prompt = encode_prompt(job.payload["tasks"], HEADER_ZH if self.cfg.lang == "zh" else HEADER_EN)
        s = self.sampling(stop=STOP)
        if self.cfg.api == "completions":
            reply = teacher.complete(prompt, **s)
        else:
            reply = teacher.chat([{"role": "user", "content": prompt}], **s)
        items, dropped = parse_reply(reply.text, reply.finish_reason, self.cfg.num_prompt)
        result = Result(prompt_hash=prompt_hash(prompt))
        for item in items:
            why = rule(item, self.cfg.lang)
            (result.dropped.append([why, item["instruction"][:200]]) if why else result.rows.append(item))
        result.dropped += dropped
        excess = len(result.rows) + len(result.dropped) - job.asked
        if excess > 0:  # a chat teacher ignoring the stop strings: items past the 16 asked are not counted
            result.rows = result.rows[: max(0, job.asked - len(result.dropped))]
            result.dropped = result.dropped[: job.asked - len(result.rows)]
        return result

    def accept(self, row: dict) -> str | None:
        tokens = self.tokens(row["instruction"])
        scores = [rouge_l(tokens, other) for other in self.pool]
        if max(scores) > self.cfg.rouge:
            return f"ROUGE-L > {self.cfg.rouge:g}"
        self.pool.append(tokens)
        return None
