"""The API reference covers every module: the docs site is checked from its files alone.

Reads ``mkdocs.yml`` and the ``::: module`` directives of ``docs/api/*.md`` (nothing is
imported and mkdocs does not run; ``make docs`` builds the site with warnings as errors).
Every module of ``trait_lab/`` and ``widgets/`` needs a directive of its own, every directive
a module, and every API page a place in the nav.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("trait_lab", "widgets")
API = ROOT / "docs" / "api"
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)


def _modules() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name in ("__init__.py", "__main__.py"):
                continue
            found.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def _packages() -> set[str]:
    return {
        ".".join(path.parent.relative_to(ROOT).parts)
        for package in PACKAGES
        for path in (ROOT / package).rglob("__init__.py")
    }


def _directives() -> dict[str, list[str]]:
    return {
        page.name: DIRECTIVE.findall(page.read_text(encoding="utf-8"))
        for page in sorted(API.glob("*.md"))
    }


def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def _config() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def test_every_module_has_its_own_directive() -> None:
    documented = {name for names in _directives().values() for name in names}
    missing = sorted(_modules() - documented)
    assert not missing, f"modules without a '::: module' directive in docs/api/: {missing}"


def test_every_directive_names_a_module_or_package() -> None:
    known = _modules() | _packages()
    stale = sorted(
        f"{page}: {name}"
        for page, names in _directives().items()
        for name in names
        if name not in known
    )
    assert not stale, f"directives naming no module or package: {stale}"


def test_no_module_is_documented_twice() -> None:
    names = [name for names in _directives().values() for name in names]
    twice = sorted({name for name in names if names.count(name) > 1})
    assert not twice, f"documented more than once (duplicate anchors): {twice}"


def test_nav_lists_every_page_and_only_existing_ones() -> None:
    config = _config()
    docs = ROOT / config.get("docs_dir", "docs")
    pages = _nav_pages(config["nav"])
    assert not [p for p in pages if not (docs / p).is_file()], "nav names missing pages"
    in_nav = set(pages)
    outside = sorted(
        str(path.relative_to(docs))
        for path in docs.rglob("*.md")
        if str(path.relative_to(docs)) not in in_nav
    )
    assert not outside, f"pages missing from the nav in mkdocs.yml: {outside}"


def test_every_subpackage_has_an_api_page_in_the_nav() -> None:
    pages = set(_nav_pages(_config()["nav"]))
    subpackages = {name for name in _packages() if name.count(".") == 1}
    top_modules = {name for name in _modules() if name.count(".") == 1}
    expected = {f"api/{name}.md" for name in subpackages | top_modules}
    assert not sorted(expected - pages), f"no API page in the nav for: {sorted(expected - pages)}"
