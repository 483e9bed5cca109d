"""Figure export: PNG, SVG, PDF and self-contained HTML from any plotly figure, plus a small
ipywidgets bar that every view puts under its figure.

Static images go through kaleido, which drives a local chromium (Debian's ``/usr/bin/chromium``
works: ``apt-get install -y chromium``). The first image starts one kaleido server for the
process, so later images cost a fraction of a second. HTML needs no browser and carries
plotly.js inside the file, so it opens offline.

Example:
    >>> import plotly.graph_objects as go
    >>> export_figure(go.Figure(), "figure.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: cannot export to 'figure.txt': unknown extension '.txt'; use one of .png, ...
"""

from __future__ import annotations

import html
import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go
import plotly.io as pio

from trait_lab.core import atomic_write

FORMATS = (".png", ".svg", ".pdf", ".html")
_CHROME_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_server_lock = threading.Lock()
_server_started = False


class ChromiumMissingError(RuntimeError):
    """Static export needs a chromium that kaleido can start."""


def find_chromium() -> str | None:
    """The browser kaleido will use: ``$BROWSER_PATH``, else the first chromium on ``PATH``.

    Example:
        >>> find_chromium() is None or Path(find_chromium()).exists()
        True
    """
    explicit = os.environ.get("BROWSER_PATH")
    if explicit and Path(explicit).exists():
        return explicit
    for name in _CHROME_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing_message(path: Path) -> str:
    return (
        f"cannot write {path.name}: static export (PNG/SVG/PDF) needs chromium and none was "
        "found (looked at $BROWSER_PATH and for chromium / google-chrome on PATH). Install it "
        "with `sudo apt-get install -y chromium` (Debian/Ubuntu) or `brew install --cask "
        "chromium` (macOS), or point BROWSER_PATH at a Chrome binary. HTML export works without "
        f"it: export_figure(fig, {str(path.with_suffix('.html'))!r})"
    )


def _start_server() -> None:
    global _server_started
    with _server_lock:
        if _server_started:
            return
        import kaleido

        pio.defaults.mathjax = None  # offline: no MathJax download
        kaleido.start_sync_server(silence_warnings=True)
        _server_started = True


def _export_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path`` to a figure file: a name plus one of ``FORMATS``."""
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError(
            f"cannot export to {text!r}: the path is empty; pass a file name such as "
            "'figures/figure.png' (the extension picks the format)"
        )
    target = Path(text)
    if target.name in ("", "..") or (not target.suffix and target.is_dir()):
        raise ValueError(
            f"cannot export to {text!r}: it names a folder, not a file; add a file name, e.g. "
            f"{str(target / 'figure.png')!r}"
        )
    if target.name.lower() in FORMATS:  # ".png": Path takes it for a hidden file, no extension
        raise ValueError(
            f"cannot export to {text!r}: the file name is only an extension; put a name "
            f"before it, e.g. {str(target.with_name('figure' + target.name))!r}"
        )
    if target.suffix.lower() not in FORMATS:
        raise ValueError(
            f"cannot export to {text!r}: unknown extension {target.suffix!r}; use one of "
            f"{', '.join(FORMATS)}, e.g. {str(target.with_suffix('.png'))!r}"
        )
    return target


def export_figure(fig: go.Figure, path: str | os.PathLike[str], *, scale: float = 2.0) -> Path:
    """Write ``fig`` to ``path``; the extension picks the format (.png, .svg, .pdf, .html).

    The file appears whole or not at all (written to a temporary file in the same folder,
    then renamed), so an existing figure is never left half-overwritten; this function
    replaces a file at ``path`` (the Save button of :class:`ExportBar` picks a free name
    instead). The file gets the usual permissions (``0666`` less the umask, 0644 typically).

    Args:
        fig: a plotly figure (a ``FigureWidget`` works too).
        path: where to write; missing folders are created.
        scale: pixel density for PNG (2 = sharp on high-DPI screens).

    Returns:
        The path written.

    Example:
        >>> import plotly.graph_objects as go
        >>> export_figure(go.Figure(go.Bar(y=[1, 2])), "bars.html")  # doctest: +SKIP
        PosixPath('bars.html')
    """
    target = _export_path(path)
    suffix = target.suffix.lower()
    if not isinstance(fig, go.Figure | go.FigureWidget):
        raise TypeError(f"export_figure needs a plotly figure, got {type(fig).__name__}")
    if suffix != ".html" and find_chromium() is None:
        raise ChromiumMissingError(_missing_message(target))

    def write(tmp: Path) -> None:
        if suffix == ".html":
            fig.write_html(tmp, include_plotlyjs=True, full_html=True)
            return
        _start_server()
        with warnings.catch_warnings():  # plotly warns that kaleido's server ignores kopts
            warnings.filterwarnings("ignore", message="The kopts argument")
            fig.write_image(tmp, format=suffix[1:], scale=scale if suffix == ".png" else 1)

    def write_readable(tmp: Path) -> None:
        write(tmp)
        _readable_by_umask(tmp)

    atomic_write(target, write_readable)
    return target


def default_stem(kind: str, *parts: object) -> str:
    """A default file name (no extension) under ``figures/`` that says what the figure is:
    the widget ``kind`` and ``parts`` such as the trait and the view, made file-name safe, so
    two widgets (or notebooks) do not default to the same file.

    Example:
        >>> default_stem("geometry", "PCA")
        'figures/geometry_pca'
        >>> default_stem("steering", "optimism/v2", "L 12")
        'figures/steering_optimism-v2_l-12'
    """
    words = [str(p) for p in (kind, *parts) if p is not None and str(p).strip()]
    if not words:
        raise ValueError("default_stem needs a widget kind such as 'geometry'; got nothing")
    slug = "_".join(re.sub(r"[^a-z0-9.]+", "-", x.lower()).strip("-.") or "x" for x in words)
    return f"figures/{slug}"


def free_path(path: Path) -> Path:
    """``path`` if no file is there, else the first free ``<stem>_2<ext>``, ``<stem>_3<ext>`` …

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "fig.png").write_bytes(b"")
        >>> free_path(folder / "fig.png").name, free_path(folder / "new.png").name
        ('fig_2.png', 'new.png')
    """
    if not path.exists():
        return path
    n = 2
    while (candidate := path.with_name(f"{path.stem}_{n}{path.suffix}")).exists():
        n += 1
    return candidate


def _umask() -> int:
    """The process umask: from ``/proc`` where there is one (no side effect), else by setting
    it and putting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    with _server_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _readable_by_umask(path: Path) -> None:
    """Give a freshly written file the mode a plain ``open()`` would (0644 under umask 022),
    whatever the writer did (temporary-file writers create 0600 files)."""
    os.chmod(path, 0o666 & ~_umask())


class ExportBar(w.HBox):
    """A path box, a format picker and a Save button for the figure ``get_figure()`` returns.

    The format is read from the picker when Save is pressed; an extension typed in the box
    (``fig.svg``) is replaced by the picker's. Save never overwrites: if the file exists, the
    figure goes to the next free name (``fig_2.png``) and the status says so. Errors (no
    chromium, bad path) appear in the bar's status text instead of a traceback.

    Example:
        >>> import plotly.graph_objects as go
        >>> bar = ExportBar(lambda: go.Figure(), "figures/example")
        >>> bar.filename.value, bar.format.value
        ('figures/example', 'png')
    """

    def __init__(self, get_figure: Callable[[], Any], stem: str = "figures/figure") -> None:
        self._get_figure = get_figure
        self._suggested = stem
        self.filename = w.Text(value=stem, description="save as", layout=w.Layout(width="260px"))
        self.format = w.Dropdown(
            options=["png", "svg", "pdf", "html"], value="png", layout=w.Layout(width="80px")
        )
        self.button = w.Button(description="Save", icon="download", layout=w.Layout(width="90px"))
        self.status = w.HTML("")
        self.button.on_click(lambda _: self.save())
        super().__init__([self.filename, self.format, self.button, self.status])
        self.add_class("tl-export")

    def suggest(self, stem: str) -> None:
        """Show ``stem`` as the file name unless the user typed one of their own.

        Example:
            >>> import plotly.graph_objects as go
            >>> bar = ExportBar(lambda: go.Figure(), "figures/geometry_cosine")
            >>> bar.suggest("figures/geometry_pca"); bar.filename.value
            'figures/geometry_pca'
            >>> bar.filename.value = "mine"; bar.suggest("figures/geometry_rsa"); bar.filename.value
            'mine'
        """
        if self.filename.value == self._suggested:
            self.filename.value = stem
        self._suggested = stem

    def save(self) -> Path | None:
        """Export now, in the format picked now; returns the path written, or ``None`` with the
        reason shown in the bar. An existing file is kept: the figure goes to a free name."""
        stem = self.filename.value.strip()
        suffix = f".{self.format.value}"
        if Path(stem).suffix.lower() in FORMATS:  # "fig.svg" with png picked: the picker wins
            stem = stem[: -len(Path(stem).suffix)]
        asked = Path(stem + suffix)
        self.status.value = f"saving {html.escape(str(asked))} …"
        try:
            if not stem or stem.endswith(("/", os.sep)):
                raise ValueError(
                    f"cannot save to {stem!r}: the file name is empty; type one in the "
                    "'save as' box, e.g. figures/figure"
                )
            written = export_figure(self._get_figure(), free_path(_export_path(asked)))
        except (ValueError, TypeError, OSError, RuntimeError) as exc:
            self.status.value = f"<span style='color:#b00020'>{html.escape(str(exc))}</span>"
            return None
        note = "" if written == asked else f" ({html.escape(asked.name)} exists; kept it)"
        self.status.value = f"saved <code>{html.escape(str(written))}</code>{note}"
        return written
