"""Token ids in, safe text out: the streaming side of every backend.

Two things make naive streaming wrong. A token can hold half a UTF-8 character (byte-level BPE splits 你 into
several tokens), so decoding token by token would emit U+FFFD; text is released only once the decoded window
no longer ends in U+FFFD (the incremental scheme of TGI / vLLM: decode a short window of tokens with one token
of context, take what is new). And a stop string can arrive in pieces ("<|im" then "_end|>"), so text that
could be the start of a stop string is held back until it is known not to be one.
"""

from __future__ import annotations

import re

from pixiu.engine.base import Delta, Request, TokenLogprob

REPLACEMENT = "\ufffd"


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, character -> the byte it stands for (printable bytes stand for
    themselves, the other 68 are shifted past 255)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in kept]
    return {chr(b): b for b in kept} | {chr(256 + i): b for i, b in enumerate(shifted)}


BYTE_OF = _byte_alphabet()


def token_bytes(tokenizer, token: int) -> bytes:
    """The bytes one token stands for, also when it holds only part of a UTF-8 character (decoded alone it is
    U+FFFD): byte-level BPE pieces map back through their alphabet, SentencePiece byte-fallback pieces are
    <0xNN>; any other token is its decoded text. OpenAI's logprobs `bytes`: joined, they give the text."""
    piece = tokenizer.convert_ids_to_tokens(token)
    if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", piece):
        return bytes([int(piece[3:5], 16)])
    text = tokenizer.decode([token], skip_special_tokens=False)
    if REPLACEMENT in text and all(c in BYTE_OF for c in piece):
        return bytes(BYTE_OF[c] for c in piece)
    return text.encode()


class Reply:
    """One request's output side, shared by the backends: sampled ids in, Deltas out, end of reply decided."""

    def __init__(self, request: Request, tokenizer, stop_ids: set[int]):
        self.request = request
        self.text = TextStream(tokenizer, request.stop)
        self.stop_ids = stop_ids  # ids that end a reply (EOS, one-token stop strings)
        self.pending: list[int] = []  # sampled ids not yet sent in a Delta
        self.logprobs: list[TokenLogprob] | None = None if request.sampling.logprobs is None else []
        self.finished = False

    def accept(self, token: int, logprob: TokenLogprob | None = None) -> bool:
        """Record a sampled token (and its log-probabilities, when the request asked for them), emit the text it
        makes safe to show; True when the reply has ended."""
        request = self.request
        request.completion_tokens += 1
        self.pending.append(token)
        if self.logprobs is not None:
            self.logprobs.append(logprob)
        if token in self.stop_ids:
            text, reason = self.text.flush(), "stop"
        else:
            text, hit = self.text.add(token)
            reason = "stop" if hit else None
            if reason is None and request.completion_tokens >= request.sampling.max_new_tokens:
                text, reason = text + self.text.finish(), "length"
        if text or reason:
            self._emit(text, reason)
        self.finished = reason is not None
        return self.finished

    def cancel(self) -> None:
        if not self.finished:
            self._emit("", "cancelled")
            self.finished = True

    def _emit(self, text: str, reason: str | None) -> None:
        self.request.emit(Delta(text, self.pending, reason, self.logprobs))
        self.pending = []
        self.logprobs = None if self.logprobs is None else []


def stop_token_ids(tokenizer, stops: list[str]) -> set[int]:
    """Stop strings that are one token (e.g. <|im_end|>), plus EOS: these end a reply by id."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for s in stops:
        enc = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(enc) == 1:
            ids.add(enc[0])
    return ids


class TextStream:
    """Feed sampled token ids one at a time; get back text that is safe to show."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer = tokenizer
        self.stop = stop
        self.ids: list[int] = []
        self.prefix = 0  # ids[prefix:read] is the context the next piece is decoded after
        self.read = 0  # ids[read:] have not been turned into text yet
        self.held = ""  # text that may be the start of a stop string

    def add(self, token_id: int) -> tuple[str, bool]:
        """-> (text to emit now, True when a stop string ended the reply: the text stops before it)."""
        self.ids.append(token_id)
        return self._release(self._new_text())

    def finish(self) -> str:
        """The rest at the end of a reply, a trailing partial character included (as a plain decode shows it)."""
        rest = self._decode(self.ids[self.prefix :])[len(self._decode(self.ids[self.prefix : self.read])) :]
        self.read = len(self.ids)
        text, _ = self._release(rest)
        held, self.held = self.held, ""
        return text + held

    def flush(self) -> str:
        """Text held back as a possible stop string, released because the reply ended on a stop token."""
        held, self.held = self.held, ""
        return held

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False) if ids else ""

    def _new_text(self) -> str:
        before = self._decode(self.ids[self.prefix : self.read])
        text = self._decode(self.ids[self.prefix :])
        if len(text) <= len(before) or text.endswith(REPLACEMENT):
            return ""  # an unfinished character (or a token with no text yet): wait for more
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(before) :]

    def _release(self, piece: str) -> tuple[str, bool]:
        """Only held + piece is searched: a stop string that began in text already released would have made
        that text a held-back start (issue 14: a whole-text scan cost O(len(stop)^2) a token)."""
        text = self.held + piece
        hits = [i for s in self.stop if (i := text.find(s)) >= 0]
        if hits:
            self.held = ""
            return text[: min(hits)], True
        keep = max((held_back(text, s) for s in self.stop), default=0)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False


def held_back(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a proper prefix of `stop`: text that may be the start of it.
    Candidates are the places of stop's first character in the last len(stop) - 1 characters, each checked with
    one `startswith`, so the work grows with len(text) (held text plus the new piece), not with len(stop)."""
    first = stop[:1]
    i = text.find(first, max(0, len(text) - len(stop) + 1)) if first else -1
    while i >= 0:
        if stop.startswith(text[i:]):
            return len(text) - i
        i = text.find(first, i + 1)
    return 0
