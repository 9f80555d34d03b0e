"""Text from records, summaries and bench files as the book's Markdown (MyST) shows it: literally.

MyST passes raw HTML through to the pages and reads ``|`` as a table cell's end, ``[..](..)`` as
a link, ``$..$`` as math; a value a page embeds goes through :func:`md_text` (or :func:`md_code`
inside a code span) where it enters the page, never the sentences and tables that embed it.
"""
from __future__ import annotations

import re

# Characters Markdown, GFM tables and MyST's dollarmath read as syntax anywhere in a line,
# backslash-escaped; '_' only where it can open or close emphasis (not inside a word).
_ACTIVE = re.compile(r"[\\`*\[\]|$]|(?<![^\W_])_|_(?![^\W_])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}  # no HTML tag, entity or autolink
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def one_line(value) -> str:
    """``value`` as text on one line: a value never ends a table row, a directive or its option."""
    return _LINE_BREAKS.sub(" ", str(value))


def md_text(value) -> str:
    """``value`` as Markdown text that renders as itself: HTML characters as entities and
    Markdown syntax escaped, on one line."""
    text = re.sub(r"[&<>]", lambda m: _ENTITIES[m.group(0)], one_line(value))
    return _ACTIVE.sub(lambda m: "\\" + m.group(0), text)


def md_code(value) -> str:
    """``value`` as a Markdown code span, fenced by more backticks than it holds (not for a
    table cell, where a ``|`` inside a code span still ends the cell)."""
    text = one_line(value)
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"
