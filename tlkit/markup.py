"""Text from records, summaries and bench files as the book's Markdown (MyST) shows it: literally.

MyST passes raw HTML through to the pages and reads ``|`` as a table cell's end, ``[..](..)`` as
a link, ``$..$`` as math; a value a page embeds goes through :func:`md_text` (or :func:`md_code`
inside a code span) where it enters the page, never the sentences and tables that embed it.
Large counts (FLOPs, parameters) read as :func:`si` writes them: ``1.42 G``, not ``1416462336``.
"""
from __future__ import annotations

import math
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


SI_PREFIXES = ("", "k", "M", "G", "T", "P")


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits with an SI prefix and ``unit``:
    ``si(1416462336)`` is ``1.42 G``, ``si(1416462336, "FLOP")`` ``1.42 GFLOP``, ``si(950)`` ``950``."""
    if value != value or value in (math.inf, -math.inf):
        return f"{value} {unit}".strip()
    # the prefix of the value as rounded (999,999 is 1.00 M, not 1000 k)
    rounded = float(f"{value:.{digits}g}")
    group = min(max(int(math.floor(math.log10(abs(rounded)) / 3)), 0), len(SI_PREFIXES) - 1) if rounded else 0
    scaled = rounded / 1000 ** group
    text = f"{scaled:.{digits}g}" if group == 0 else f"{scaled:#.{digits}g}".rstrip(".")
    if "e" in text:  # beyond the largest prefix
        text = f"{scaled:,.0f}"
    prefix = SI_PREFIXES[group]
    return f"{text} {prefix}{unit}".strip() if prefix or unit else text
