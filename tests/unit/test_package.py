"""The top-level package exposes every public name it lists, and the library stays UI-free."""

from __future__ import annotations

import subprocess
import sys

import pytest

import trait_lab


@pytest.mark.parametrize("name", trait_lab.__all__)
def test_every_listed_name_imports(name: str) -> None:
    assert getattr(trait_lab, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        trait_lab.nope  # noqa: B018


def test_library_never_imports_ui_packages() -> None:
    code = (
        "import sys, trait_lab\n"
        "for n in trait_lab.__all__: getattr(trait_lab, n)\n"
        "bad = [m for m in ('ipywidgets', 'plotly', 'anywidget') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
