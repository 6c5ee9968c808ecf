"""Tools `pixiu chat --tools` can run for the model: a calculator and a search over a retrieval index.

Each tool is an OpenAI function schema plus a Python function of its arguments returning text (the tool turn
the model reads next). The calculator evaluates arithmetic on an AST whitelist (numbers, + - * / // % **,
parentheses), never `eval`, with a cap on exponents so `9**9**9` cannot hang the terminal.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass

OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}  # fmt: skip
MAX_EXPONENT = 1000


@dataclass
class Tool:
    schema: dict  # OpenAI's {"type": "function", "function": {...}}
    run: Callable[[dict], str]

    @property
    def name(self) -> str:
        return self.schema["function"]["name"]


def calculate(expression: str) -> float | int:
    """Arithmetic only: '12 * (3 + 4) / 2' -> 42.0; anything else is a ValueError."""

    def ev(node):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool)
        ):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
                raise ValueError(f"exponent above {MAX_EXPONENT}")
            return OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPS:
            return OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"not arithmetic: {ast.unparse(node)}")

    try:
        return ev(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ZeroDivisionError, OverflowError) as e:
        raise ValueError(str(e)) from None


def calculator() -> Tool:
    schema = {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression, e.g. '12 * (3 + 4)'.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                           "required": ["expression"]},
        },
    }  # fmt: skip
    return Tool(schema, lambda args: str(calculate(str(args.get("expression", "")))))


def search(index, k: int = 3) -> Tool:
    """Top-k passages of a `pixiu index build` index, numbered."""
    schema = {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the documents; returns numbered passages.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }

    def run(args: dict) -> str:
        hits = index.search(str(args.get("query", "")), k)
        return "\n\n".join(f"[{h.rank}] {h.chunk.title}\n{h.chunk.text}" for h in hits) or "no passage found"

    return Tool(schema, run)


def run_call(tools: dict[str, Tool], call: dict) -> str:
    """One OpenAI tool call -> the tool's text; a failing tool answers with the error (the model reads it)."""
    import json

    fn = call["function"]
    try:
        return tools[fn["name"]].run(json.loads(fn["arguments"]))
    except (ValueError, KeyError, TypeError) as e:
        return f"error: {e}"
