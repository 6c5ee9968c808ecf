"""HTML post bodies (Stack Exchange dumps, Zhihu exports) -> markdown text, with the standard library only.

What Q&A sites write: paragraphs, line breaks, lists (nested, numbered), links, images, inline code and
<pre><code> blocks, emphasis, headings, block quotes, rules; entities are decoded. Unknown tags keep their text.
Whitespace outside code collapses as a browser would; code blocks keep theirs verbatim inside ``` fences.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SPACE = re.compile(r"\s+")
_BLANKS = re.compile(r"\n{3,}")
_TRAILING = re.compile(r"[ \t]+\n")
INLINE = {"em": "*", "i": "*", "strong": "**", "b": "**", "del": "~~", "s": "~~"}
BLOCKS = {"p", "div", "table", "tr", "dl", "dd", "dt", "figure", "section"}
HEADINGS = {f"h{n}": "#" * n for n in range(1, 7)}


def html_to_markdown(html: str) -> str:
    """One HTML fragment -> markdown text (blocks separated by one blank line, no trailing spaces)."""
    parser = _Markdown()
    parser.feed(html)
    parser.close()
    text = _TRAILING.sub("\n", "".join(parser.out))
    return _BLANKS.sub("\n\n", text).strip()


class _Markdown(HTMLParser):
    """Line breaks and blank lines are owed, not written, until the next text arrives: so a run of closing tags
    leaves one blank line, and nothing trails the last text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)  # entities (&amp; &#xA; &quot;) arrive decoded in handle_data
        self.out: list[str] = []
        self.lists: list[list] = []  # open lists, innermost last: [kind "ul"/"ol", next number]
        self.links: list[str] = []  # hrefs of the open <a> tags
        self.quote = 0  # depth of open <blockquote>s: each line starts with that many "> "
        self.pre = 0  # inside <pre>: text is kept verbatim
        self.line = False  # a line break is owed
        self.gap = False  # a blank line is owed, inside `gap_depth` quotes
        self.gap_depth = 0
        self.bare = True  # the line holds only markup so far (prefix, "- ", "# "): leading spaces drop
        self.item = False  # the owed line starts a list item: its marker replaces the last indent step

    # -- output
    def _write(self, text: str, markup: bool = False) -> None:
        if self.out and (self.gap or self.line):
            blank = ("> " * min(self.gap_depth, self.quote)).rstrip() + "\n" if self.gap else ""
            indent = "   " * (len(self.lists) - self.item)
            self.out.append("\n" + blank + "> " * self.quote + indent)
            self.bare = True
        self.gap = self.line = self.item = False
        self.out.append(text)
        self.bare = self.bare and markup

    def _newline(self) -> None:
        self.line = True

    def _block(self) -> None:
        self.gap_depth = min(self.gap_depth, self.quote) if self.gap else self.quote
        self.gap = True

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag in INLINE:
            self._write(INLINE[tag], markup=True)
        elif tag in BLOCKS or tag in HEADINGS:
            self._block()
            if tag in HEADINGS:
                self._write(HEADINGS[tag] + " ", markup=True)
        elif tag == "br":
            self._newline()
        elif tag == "hr":
            self._block()
            self._write("---")
            self._block()
        elif tag in ("ul", "ol"):
            self._newline() if self.lists else self._block()
            self.lists.append([tag, int(a.get("start") or 1) if tag == "ol" else 0])
        elif tag == "li":
            self._li()
        elif tag == "blockquote":
            self._block()
            self.quote += 1
        elif tag == "pre":
            self._block()
            self._write("```\n")
            self.pre += 1
        elif tag == "code" and not self.pre:
            self._write("`", markup=True)
        elif tag == "a":
            self.links.append(a.get("href") or "")
            self._write("[", markup=True)
        elif tag == "img":
            self._write(f"![{a.get('alt') or ''}]({a.get('src') or ''})")

    def _li(self) -> None:
        if not self.lists:  # a stray <li>: still one item per line
            self.lists.append(["ul", 0])
        kind = self.lists[-1]
        self._newline()
        self.item = True
        if kind[0] == "ol":
            self._write(f"{kind[1]}. ", markup=True)
            kind[1] += 1
        else:
            self._write("- ", markup=True)

    def handle_endtag(self, tag: str) -> None:
        if tag in INLINE:
            self._write(INLINE[tag], markup=True)
        elif tag in BLOCKS or tag in HEADINGS:
            self._block()
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self._newline() if self.lists else self._block()
        elif tag == "blockquote" and self.quote:
            self.quote -= 1
            self._block()
        elif tag == "pre" and self.pre:
            self.pre -= 1
            code = "".join(self.out).rstrip("\n")  # the dump ends code with a newline before </code></pre>
            self.out = [code, "\n```"]
            self._block()
        elif tag == "code" and not self.pre:
            self._write("`", markup=True)
        elif tag == "a" and self.links:
            href = self.links.pop()
            self._write(f"]({href})" if href else "]", markup=True)

    def handle_data(self, data: str) -> None:
        if self.pre:  # verbatim (code lines inside a quote or a list are not re-prefixed)
            self.out.append(data)
            return
        text = _SPACE.sub(" ", data)
        if self.bare or self.gap or self.line:
            text = text.lstrip()
        if text:
            self._write(text)
