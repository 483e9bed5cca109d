"""Check installed packages against trait_lab's declared requirements, or print lower bounds.

``python scripts/check_requirements.py`` fails (exit 1) when an installed package does not
satisfy trait_lab's requirements (the package and its notebooks/serve/dev extras): scripts/setup.sh
installs the lock with ``--no-deps`` (so a user's torch is never replaced), and this makes sure
the result is still consistent with pyproject.toml's bounds instead of failing later in a test.

``python scripts/check_requirements.py --lower-bounds NAME …`` prints ``NAME==LOWER`` for each
named requirement's ``>=`` bound (what ``make test-oldest`` installs).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import metadata

from packaging.requirements import Requirement

EXTRAS = ("notebooks", "serve", "dev")


def requirements() -> Iterator[Requirement]:
    """trait_lab's requirements that apply to the package or its notebooks/serve/dev extras."""
    env = [{"extra": extra} for extra in ("", *EXTRAS)]
    for line in metadata.requires("trait_lab") or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate(e) for e in env):
            yield req


def problems() -> list[str]:
    found = []
    for req in requirements():
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            found.append(f"{req.name} is not installed (needs {req.specifier or 'any version'})")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            found.append(f"{req.name} {version} is installed but trait_lab needs {req.specifier}")
    return found


def lower_bounds(names: list[str]) -> list[str]:
    """``name==lower`` pins for the named requirements' ``>=`` bounds."""
    pins = {}
    for req in requirements():
        low = [s.version for s in req.specifier if s.operator == ">="]
        if req.name in names and low:
            pins[req.name] = f"{req.name}=={low[0]}"
    missing = sorted(set(names) - set(pins))
    if missing:
        raise SystemExit(f"no >= bound declared for {missing} in pyproject.toml")
    return [pins[name] for name in names]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lower-bounds"]:
        print(" ".join(lower_bounds(sys.argv[2:])))
        sys.exit(0)
    bad = problems()
    for line in bad:
        print(f"[setup] {line}", file=sys.stderr)
    if bad:
        print(
            "[setup] fix: reinstall with `make setup`, or install the versions named above "
            "(for torch, a build for your machine from pytorch.org)",
            file=sys.stderr,
        )
        sys.exit(1)
    print("[setup] installed packages satisfy trait_lab's requirements")
