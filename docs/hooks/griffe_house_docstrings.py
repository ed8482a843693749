"""Griffe extension: read the codebase's Google-style docstrings as they are written.

Two habits of the house style that griffe's Google parser reads otherwise, fixed before a docstring is parsed:

1. Parameters that share a meaning are documented on one line:

        Args:
            start, end: inclusive bounds on the candles' open time, epoch ms UTC.

   Griffe reads "start, end" as one parameter that is not in the signature and warns (which fails a strict
   build). The entry becomes one entry per name with the same description, so each parameter gets its row, its
   type from the signature, and no warning.
2. Sections follow each other without a blank line (`Args:` ... `Shapes:` ... `Raises:`). Griffe only starts a
   section after a blank line, so everything after the first one was shown as running text. A blank line is put
   above each section title; `Shapes:`, which is not a Google section, then renders as its own titled block.

Nothing else in a docstring changes. Loaded from mkdocs.yml (mkdocstrings' python handler, `extensions`).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(
    r"^(?P<indent>\s*)(Args|Arguments|Params|Parameters|Keyword Args|Keyword Arguments|Other Parameters|"
    r"Other Params|Attributes):\s*$"
)
_SHARED = re.compile(r"^(?P<indent>\s*)(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)(?P<rest>\s*(\([^)]*\))?:(\s.*)?)$")


_TITLE = re.compile(
    r"^(Args|Arguments|Params|Parameters|Keyword Args|Keyword Arguments|Other Parameters|Other Params|Attributes|"
    r"Returns|Return|Yields|Yield|Receives|Raises|Exceptions|Warns|Warnings|Examples|Example|Shapes):\s*$"
)


def separate_sections(text: str) -> str:
    """`text` with a blank line above every top-level section title that has an indented body below it."""
    lines = text.split("\n")
    out: list[str] = []
    in_fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        body_below = i + 1 < len(lines) and lines[i + 1].startswith(" ") and lines[i + 1].strip() != ""
        if not in_fence and _TITLE.match(line) and body_below and out and out[-1].strip():
            out.append("")
        out.append(line)
    return "\n".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def split_shared_entries(text: str) -> str:
    """`text` with every "a, b: description" entry of a parameter section written as "a: ..." and "b: ..."."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        header = _SECTION.match(line)
        if not header:
            continue
        section_indent = len(header.group("indent"))
        item_indent: int | None = None
        while i < len(lines):
            line = lines[i]
            if line.strip() and _indent(line) <= section_indent:
                break  # the section ended
            if not line.strip():
                out.append(line)
                i += 1
                continue
            if item_indent is None:
                item_indent = _indent(line)
            shared = _SHARED.match(line) if _indent(line) == item_indent else None
            if shared is None:
                out.append(line)
                i += 1
                continue
            # the entry's continuation lines: blank or indented deeper than the entry
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > item_indent):
                j += 1
            while j > i + 1 and not lines[j - 1].strip():
                j -= 1  # trailing blank lines belong to the section, not to the entry
            continuation = lines[i + 1:j]
            names = [name.strip() for name in shared.group("names").split(",")]
            for name in names:
                out.append(f"{shared.group('indent')}{name}{shared.group('rest')}")
                out.extend(continuation)
            i = j
    return "\n".join(out)


class HouseDocstrings(griffe.Extension):
    """Separate sections and split "a, b: description" parameter entries before griffe parses a docstring."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None:
            docstring.value = split_shared_entries(separate_sections(docstring.value))
