"""Figure export: file permissions, default names that do not collide, no silent overwrite, the
format picked at Save time, atomic writes. Ground truth: ``os.stat``, the bytes on disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import plotly.graph_objects as go
import pytest

from widgets.common.export import ExportBar, default_stem, export_figure, find_chromium, free_path
from widgets.geometry.explorer import GeometryExplorer

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="needs chromium")
MAGIC = {"png": b"\x89PNG", "svg": b"<svg", "pdf": b"%PDF", "html": b"<html"}


def _figure() -> go.Figure:
    return go.Figure(go.Bar(y=[1, 3, 2]), layout={"title": "bars"})


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _starts(path: Path, fmt: str) -> bool:
    head = path.read_bytes()[:400]
    return head.startswith(MAGIC[fmt]) or (fmt in ("html", "svg") and MAGIC[fmt] in head.lower())


class TestPermissions:
    @pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
    def test_html_gets_0666_less_the_umask(self, tmp_path, umask, mask):
        umask(mask)
        path = export_figure(_figure(), tmp_path / "fig.html")
        assert _mode(path) == 0o666 & ~mask

    @needs_chromium
    @pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
    def test_static_images_are_0644_under_umask_022(self, tmp_path, umask, fmt):
        umask(0o022)
        path = export_figure(_figure(), tmp_path / f"fig.{fmt}")
        assert _mode(path) == 0o644 and _starts(path, fmt)

    def test_a_writer_that_makes_private_files_still_gives_a_readable_figure(
        self, tmp_path, umask, monkeypatch
    ):
        umask(0o022)

        def private_write(self, file, **kwargs):  # what tempfile-based writers do
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write("<html></html>")

        monkeypatch.setattr(go.Figure, "write_html", private_write)
        path = export_figure(_figure(), tmp_path / "fig.html")
        assert _mode(path) == 0o644


class TestNames:
    def test_default_stems_differ_per_widget_trait_and_view(self):
        stems = {
            default_stem("geometry", "cosine"),
            default_stem("geometry", "PCA"),
            default_stem("steering", "optimism"),
            default_stem("steering", "humility"),
            default_stem("dynamics", "optimism", "L12"),
        }
        assert len(stems) == 5 and all(s.startswith("figures/") for s in stems)
        assert default_stem("a/b", "c d") == "figures/a-b_c-d"  # no folders sneak in
        with pytest.raises(ValueError, match="needs a widget kind"):
            default_stem("")

    def test_save_never_overwrites_it_picks_the_next_free_name(self, tmp_path):
        first = ExportBar(lambda: go.Figure(layout={"title": "first"}), str(tmp_path / "fig"))
        second = ExportBar(lambda: go.Figure(layout={"title": "second"}), str(tmp_path / "fig"))
        for bar in (first, second, first):
            bar.format.value = "html"
        a, b, c = first.save(), second.save(), first.save()
        assert [p.name for p in (a, b, c)] == ["fig.html", "fig_2.html", "fig_3.html"]
        assert "first" in a.read_text() and "second" in b.read_text()
        assert "fig.html exists; kept it" in second.status.value
        assert free_path(tmp_path / "other.html") == tmp_path / "other.html"

    def test_two_explorers_with_default_names_keep_both_files(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        vectors = {(t, 1, "probe"): [float(i == j) for j in range(4)] for i, t in enumerate("abcd")}
        one, two = GeometryExplorer(vectors), GeometryExplorer(vectors, view="PCA")
        for explorer in (one, two):
            explorer.export.format.value = "html"
        written = [one.export.save(), two.export.save(), one.export.save()]
        assert [str(p) for p in written] == [
            "figures/geometry_cosine.html",
            "figures/geometry_pca.html",
            "figures/geometry_cosine_2.html",
        ]
        assert all(p.is_file() for p in written)


class TestFormatAtSaveTime:
    @pytest.mark.parametrize("fmt", ["html", "svg", "png", "pdf"])
    def test_the_format_picked_right_before_save_is_the_one_saved(self, tmp_path, fmt):
        if fmt != "html" and find_chromium() is None:
            pytest.skip("needs chromium")
        bar = ExportBar(_figure, str(tmp_path / "fig"))
        bar.format.value = "pdf" if fmt != "pdf" else "png"
        bar.format.value = fmt  # changed just before Save
        path = bar.save()
        assert path == tmp_path / f"fig.{fmt}", bar.status.value
        assert _starts(path, fmt)

    def test_an_extension_typed_in_the_box_gives_way_to_the_picker(self, tmp_path):
        bar = ExportBar(_figure, str(tmp_path / "fig.png"))
        bar.format.value = "html"
        assert bar.save() == tmp_path / "fig.html"
        assert _starts(tmp_path / "fig.html", "html")


class TestAtomic:
    def test_a_failed_write_leaves_the_old_file_and_no_temporary(self, tmp_path, monkeypatch):
        path = export_figure(_figure(), tmp_path / "fig.html")
        before = path.read_bytes()

        def broken(self, file, **kwargs):
            Path(file).write_text("half")
            raise OSError("disk full")

        monkeypatch.setattr(go.Figure, "write_html", broken)
        with pytest.raises(OSError, match="disk full"):
            export_figure(_figure(), path)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.html"]
