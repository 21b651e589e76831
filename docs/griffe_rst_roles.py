"""Griffe extension for the API reference: render the reST bits of jppl's docstrings.

jppl's docstrings are Google style, with a few reST constructs that Markdown lacks:

* Sphinx roles such as ``:class:`NUTS``` and ``:func:`~jppl.infer.log_density``` become plain
  code spans (``NUTS``, ``log_density``);
* simple tables (framed by ``=== ===`` rule lines) become fenced text blocks, so their columns
  stay aligned;
* a paragraph ending in ``::`` (an indented literal block follows) ends in ``:`` instead, and
  a lone ``::`` line is dropped; the indented block itself is already a Markdown code block.

mkdocstrings then renders the rewritten docstring.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const|term):`([^`]+)`")
TABLE_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _code_span(match: re.Match[str]) -> str:
    target = match.group(1)
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def _fence_tables(lines: list[str]) -> list[str]:
    """Wrap each reST simple table (from its first rule line to its last) in a text fence."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not TABLE_RULE.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip():
            end += 1  # the table runs to the next blank line
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        out += [f"{indent}```text", *lines[i:end], f"{indent}```"]
        i = end
    return out


def _literal_markers(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if line.strip() == "::":
            continue
        out.append(line[:-1] if line.endswith("::") else line)
    return out


def rewrite(text: str) -> str:
    """``text`` with the reST constructs above turned into Markdown."""
    lines = _fence_tables(ROLE.sub(_code_span, text).split("\n"))
    return "\n".join(_literal_markers(lines))


class RstRoles(griffe.Extension):
    """Rewrite every docstring with :func:`rewrite` when griffe creates its object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
