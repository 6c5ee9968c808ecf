"""Files and hub names -> (source, row) pairs, where source points at the row: "path:LINE" (1-based).

Every reader reports the line a row starts on, so a parse error later on names the exact place to look.
Readers are picked by file suffix from `READERS`; a missing path that looks like "org/name" is a hub dataset.
Text files are decoded with errors="surrogateescape": a byte that is not UTF-8 becomes one char in
U+DC80..U+DCFF, so the row holding it turns into a DataError naming its line (skippable) instead of a traceback.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path


class DataError(ValueError):
    """A row, file or dataset that cannot be turned into records; the message starts with "path:line"."""


class DataFileNotFound(DataError, FileNotFoundError):
    """A local path that does not exist and is not a hub dataset name (caught by either base class)."""


Row = dict | DataError  # a bad row travels as its error, so `skip_bad_rows` can skip it and read on
Reader = Callable[[Path], Iterator[tuple[str, Row]]]
READERS: dict[str, Reader] = {}
_WS = re.compile(r"[ \t\n\r]*")
_HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape turns an invalid UTF-8 byte into
_TEXT = {"encoding": "utf-8-sig", "errors": "surrogateescape"}


def register(*suffixes: str) -> Callable[[Reader], Reader]:
    def add(fn: Reader) -> Reader:
        for s in suffixes:
            READERS[s] = fn
        return fn

    return add


def read_rows(path: str, split: str = "train") -> Iterator[tuple[str, dict]]:
    """Yield (source, row) for every row of a local file or hub dataset; the first bad row raises DataError."""
    for source, row in rows_or_errors(path, split):
        if isinstance(row, DataError):
            raise row
        yield source, row


def rows_or_errors(path: str, split: str = "train") -> Iterator[tuple[str, Row]]:
    """Like `read_rows`, but a bad row is yielded as its DataError instead of raised (the loader skips it)."""
    if path.startswith("pixiu:"):  # data shipped inside the package, e.g. pixiu:demo/sft.jsonl
        path = str(Path(__file__).parent / path.removeprefix("pixiu:"))
    p = Path(path)
    if p.is_file():
        reader = READERS.get(p.suffix.lower())
        if reader is None:
            raise DataError(f"{path}: unsupported file type {p.suffix!r}; supported: {sorted(READERS)}")
        yield from reader(p)
    elif _looks_like_hub_name(path):
        yield from _read_hub(path, split)
    else:
        raise DataFileNotFound(f"{path}: no such file (and not a hub dataset name such as 'org/name')")


def _looks_like_hub_name(path: str) -> bool:
    # "data/train.jsonl" that is missing is a typo, not a hub dataset: hub names carry no file suffix.
    return bool(_HUB_NAME.match(path)) and Path(path).suffix.lower() not in READERS


def _as_row(value, source: str) -> Row:
    """Objects are rows; a bare JSON string is a prompt (the oasst prompt-lottery files are lists of strings)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"prompt": value}
    return DataError(
        f"{source}: a row must be a JSON object (or a string prompt), got {type(value).__name__}"
    )


def _bad_utf8(text: str, path: Path, line: int, start: int = 0, end: int | None = None) -> DataError | None:
    """The error for the first undecodable byte in text[start:end], which begins on `line` of the file."""
    bad = _BAD_BYTE.search(text, start, len(text) if end is None else end)
    if bad is None:
        return None
    pos, byte = bad.start(), ord(bad.group()) - 0xDC00
    line, col = line + text.count("\n", start, pos), pos - text.rfind("\n", 0, pos)
    return DataError(
        f"{path}:{line}: not valid UTF-8 (byte 0x{byte:02x} at column {col}); save the file as UTF-8"
    )


@register(".jsonl")
def _read_jsonl(path: Path) -> Iterator[tuple[str, Row]]:
    with path.open(**_TEXT) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            source = f"{path}:{n}"
            if bad := _bad_utf8(line, path, n):
                yield source, bad
                continue
            try:
                yield source, _as_row(json.loads(line), source)
            except json.JSONDecodeError as e:
                yield source, DataError(f"{source}: bad JSON: {e.msg} (column {e.colno})")


@register(".json")
def _read_json(path: Path) -> Iterator[tuple[str, Row]]:
    """A JSON list of rows, a {"name": [rows]} object, or JSON Lines under a .json name (common on the hub)."""
    text = path.read_text(**_TEXT)
    start = _WS.match(text).end()
    if start == len(text):
        return
    if text.startswith("[", start):
        yield from _read_list(path, text, start)
        return
    try:
        first, end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as e:
        raise _json_error(path, text, e) from None
    if _WS.match(text, end).end() < len(text):
        yield from _read_jsonl(path)  # more values follow the first: one object per line
    elif isinstance(first, dict) and len(first) == 1 and isinstance(next(iter(first.values())), list):
        yield from _read_list(path, text, _single_list_start(text, start))
    else:
        source = f"{path}:{_line(text, start)}"
        yield source, _bad_utf8(text, path, _line(text, start), start, end) or _as_row(first, source)


def _single_list_start(text: str, start: int) -> int:
    """Offset of the list in `{"key": [...]}` (already known to parse): skip "{", the key and ":"."""
    pos = _WS.match(text, start + 1).end()
    _, pos = json.JSONDecoder().raw_decode(text, pos)
    pos = _WS.match(text, pos).end() + 1  # past ":"
    return _WS.match(text, pos).end()


def _read_list(path: Path, text: str, start: int) -> Iterator[tuple[str, Row]]:
    """Decode one item at a time so each row knows the line it starts on.

    A syntax error ends the file even with skip_bad_rows: past it there is no telling where the next item starts.
    """
    decoder, pos, line, seen = json.JSONDecoder(), start + 1, 1 + text.count("\n", 0, start), start
    while True:
        pos = _WS.match(text, pos).end()
        if text.startswith("]", pos):
            return
        line += text.count("\n", seen, pos)
        seen, source = pos, f"{path}:{line}"
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise _json_error(path, text, e) from None
        # a bad byte inside a string parses (as a surrogate): the item is the bad row, and reading goes on
        yield source, _bad_utf8(text, path, line, pos, end) or _as_row(item, source)
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            raise DataError(f"{path}:{_line(text, pos)}: bad JSON: expected ',' or ']' after the item")


def _line(text: str, pos: int) -> int:
    return 1 + text.count("\n", 0, pos)


def _json_error(path: Path, text: str, e: json.JSONDecodeError) -> DataError:
    """A syntax error, or an undecodable byte outside any string (which the decoder sees as a bad character)."""
    if e.pos < len(text) and _BAD_BYTE.match(text, e.pos):
        return _bad_utf8(text, path, e.lineno, e.pos)
    return DataError(f"{path}:{e.lineno}: bad JSON: {e.msg} (column {e.colno})")


@register(".csv")
def _read_csv(path: Path) -> Iterator[tuple[str, Row]]:
    with path.open(newline="", **_TEXT) as f:
        reader = csv.DictReader(f)
        if header := _bad_utf8(",".join(reader.fieldnames or []), path, 1):
            raise header  # every row's keys would carry it: one error for the file
        for row in reader:
            # line_num is the row's last line; quoted fields may span lines, so count back to its first.
            n = reader.line_num - sum(v.count("\n") for v in row.values() if isinstance(v, str))
            source = f"{path}:{n}"
            if None in row or None in row.values():
                yield source, DataError(f"{source}: row has a different number of fields than the header")
            elif bad := next((k for k, v in row.items() if _BAD_BYTE.search(v)), None):
                yield (
                    source,
                    DataError(f"{source}: column {bad!r} is not valid UTF-8; save the file as UTF-8"),
                )
            else:
                yield source, row


@register(".parquet")
def _read_parquet(path: Path) -> Iterator[tuple[str, Row]]:
    """Sources are "path:row N", N the 0-based row index (parquet has no lines)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    n = 0
    for batch in pq.ParquetFile(path).iter_batches():
        for row in batch.to_pylist():
            yield f"{path}:row {n}", row
            n += 1


@register(".txt")
def _read_txt(path: Path) -> Iterator[tuple[str, Row]]:
    """Each blank-line-separated block is one {"text": ...} row (plain text for continued pretraining)."""
    block, first, bad = [], 0, None
    with path.open(**_TEXT) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                first, bad = first or n, bad or _bad_utf8(line, path, n)
                block.append(line.rstrip("\r\n"))
            elif block:
                yield f"{path}:{first}", bad or {"text": "\n".join(block)}
                block, first, bad = [], 0, None
    if block:
        yield f"{path}:{first}", bad or {"text": "\n".join(block)}


def _read_hub(name: str, split: str) -> Iterator[tuple[str, Row]]:
    """Sources are "name[split]:row N", N the 0-based index (as in `dataset[N]`)."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{name}: not a local file; loading it from the hub needs `pip install datasets`"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, missing split: say which dataset, keep the cause
        raise DataError(f"{name}: not a local file, and loading it from the hub failed: {e}") from e
    for n, row in enumerate(ds):
        source = f"{name}[{split}]:row {n}"
        yield source, _as_row(row, source)
