"""Fail (exit 1) when an installed package does not satisfy trait_lab's declared requirements.

scripts/setup.sh installs the lock with ``--no-deps`` (so a user's torch is never replaced);
this check makes sure the result is still consistent with pyproject.toml's bounds, for trait_lab
and its notebooks/dev extras, instead of failing later inside a test.
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement

EXTRAS = ("notebooks", "dev")


def problems() -> list[str]:
    found = []
    for line in metadata.requires("trait_lab") or []:
        req = Requirement(line)
        env = [{"extra": extra} for extra in ("", *EXTRAS)]
        if req.marker is not None and not any(req.marker.evaluate(e) for e in env):
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            found.append(f"{req.name} is not installed (needs {req.specifier or 'any version'})")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            found.append(f"{req.name} {version} is installed but trait_lab needs {req.specifier}")
    return found


if __name__ == "__main__":
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
