"""A JupyterLab server on copies of the notebooks, and a Playwright page in Debian chromium.

The notebooks are copied to a temporary folder so the browser's autosave never writes executed
outputs into the repository; kernels find the repository's experiments through
``TRAIT_LAB_EXPERIMENTS``. Screenshots go to ``$TRAIT_LAB_ARTIFACTS`` (default
``test-artifacts/browser/`` in the repository, git-ignored).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from widgets.common.export import find_chromium

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = (
            "the browser tests need chromium: `sudo apt-get install -y chromium` (make test "
            "installs it when run as root)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("TRAIT_LAB_ARTIFACTS", REPO / "test-artifacts" / "browser"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Lab:
    """A running JupyterLab: ``url(notebook)`` opens one notebook alone (``?reset`` clears the
    workspace, so a tab left open by an earlier test cannot take the menu commands), and
    ``shutdown_kernels()`` frees the model copies the notebooks' kernels hold."""

    def __init__(self, base: str, token: str, root: Path) -> None:
        self.base, self.token, self.root = base, token, root

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def notebook(self, name: str, cells: list[str]) -> str:
        """Write a scratch notebook of code ``cells`` into the served folder; return its URL.

        Browser tests of one widget build it in a few cells (tiny data, no extraction) instead
        of running a whole tutorial notebook.
        """
        if not name.endswith(".ipynb") or "/" in name:
            raise ValueError(f"notebook name must be a bare '*.ipynb' file name, got {name!r}")
        code_cells = [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ]
        kernel = {"display_name": "Python 3", "language": "python", "name": "python3"}
        notebook = {
            "cells": code_cells,
            "metadata": {"kernelspec": kernel},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.root / name).write_text(json.dumps(notebook))
        return self.url(name)

    def shutdown_kernels(self) -> None:
        auth = {"Authorization": f"token {self.token}"}
        with urllib.request.urlopen(
            urllib.request.Request(f"{self.base}/api/kernels", headers=auth), timeout=10
        ) as response:
            kernels = json.load(response)
        for kernel in kernels:
            request = urllib.request.Request(
                f"{self.base}/api/kernels/{kernel['id']}", headers=auth, method="DELETE"
            )
            urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab serving copies of ``notebooks/``."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    config = root / "jupyter-config"
    settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "TRAIT_LAB_EXPERIMENTS": str(REPO / "experiments"),
    }
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={root / 'notebooks'}",
        "--LabApp.news_url=None",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = (root / "lab.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start; log:\n{(root / 'lab.log').read_text()}")
                time.sleep(0.5)
        yield Lab(base, token, root / "notebooks")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
