"""A griffe extension for the docs site (mkdocs.yml): read docstrings as Napoleon does.

The docstrings are Google style as Sphinx's Napoleon reads it, which griffe's Google parser
does not entirely: it knows ``Examples:`` but not the singular ``Example:`` used throughout
(it would render the doctest as plain Markdown), and it leaves Sphinx roles such as
:func:`name` as literal text. Before griffe parses a docstring this rewrites ``Example:``
section titles to ``Examples:`` and each role to inline code (``:func:`~a.b`` → ``b``).
Only the docs see the change; the source and its doctests are untouched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1]}`" if match.group(1) else f"`{target}`"


class NapoleonDocstrings(griffe.Extension):
    """Rewrite ``Example:`` sections and Sphinx roles before griffe parses a docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None:
            docstring.value = _ROLE.sub(_role, _EXAMPLE.sub(r"\1Examples:", docstring.value))
