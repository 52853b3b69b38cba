"""Output folders: checked before work, safe unique file names, --overwrite clears the last run."""

from __future__ import annotations

import os
import warnings

import pytest

from crystalflow.errors import InputError
from crystalflow.outputs import MANIFEST, prepare_output_dir, record_outputs, safe_stems


def test_new_folder_is_created(tmp_path):
    out = prepare_output_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.parametrize("below,needle", [("", "is a file"), ("sub/dir", "under the file")])
def test_file_paths_are_refused(tmp_path, below, needle):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=needle):
        prepare_output_dir(tmp_path / "f" / below if below else tmp_path / "f")


def test_unwritable_folder_is_refused(tmp_path, monkeypatch):
    """The probe file cannot be created (what a read-only folder does for a non-root user)."""
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(InputError, match="not writable"):
        prepare_output_dir(tmp_path / "ro")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            prepare_output_dir(ro)
    finally:
        ro.chmod(0o700)


def test_non_empty_folder_needs_overwrite_which_clears_the_manifest_files(tmp_path):
    (tmp_path / "old.cif").write_text("x")
    (tmp_path / "notes.txt").write_text("keep")
    record_outputs(tmp_path, ["old.cif", "../notes.txt"])
    with pytest.raises(InputError, match="--overwrite"):
        prepare_output_dir(tmp_path)
    prepare_output_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_overwrite_without_manifest_removes_only_outputs_directly_inside(tmp_path):
    for name in ("a.cif", "b.pdb", "summary.csv", "other.csv"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.cif").write_text("x")
    prepare_output_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.csv", "sub"]
    assert (tmp_path / "sub" / "c.cif").exists()


def test_record_outputs_appends_once(tmp_path):
    record_outputs(tmp_path, ["a.cif", "b.cif"])
    record_outputs(tmp_path, ["b.cif", "c.cif"])
    assert (tmp_path / MANIFEST).read_text().split() == ["a.cif", "b.cif", "c.cif"]
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]  # no temporary file left


@pytest.mark.parametrize("ident", ["../../x", "/tmp/x", "..", ".", "", ".hidden", "a/../../b",
                                   "C:\\win\\x", "new\nline", "nul\x00", "ü-é", "...", " "])
def test_safe_stems_stay_inside_the_folder(tmp_path, ident):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (stem,) = safe_stems([ident])
    assert stem and not stem.startswith(".") and "/" not in stem and "\\" not in stem
    assert ".." not in stem and all(c.isascii() and c.isprintable() for c in stem)
    path = (tmp_path / f"{stem}.cif").resolve()
    assert path.parent == tmp_path.resolve()


def test_safe_stems_keep_plain_ids_and_suffix_duplicates_with_one_warning():
    with pytest.warns(UserWarning, match="3 id") as caught:
        stems = safe_stems(["mp-1", "mp-1", "a/b", "a_b", "mp-1", "mp-1__2"])
    assert len(caught) == 1
    assert stems[0] == "mp-1" and len(set(stems)) == len(stems)
    assert stems[:3] == ["mp-1", "mp-1__3", "a_b"]
