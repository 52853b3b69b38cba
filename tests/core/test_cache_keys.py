"""Dataset cache keys follow a file's content and the processing settings, not its timestamp."""

import os
import shutil

from crystalflow.crystals.dataset import cache_file_for


def test_cache_key_follows_content_not_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))
    a = tmp_path / "a" / "test.csv"
    a.parent.mkdir()
    a.write_text("material_id,cif\nx,1\n")
    b = tmp_path / "b" / "test.csv"
    b.parent.mkdir()
    shutil.copy(a, b)
    os.utime(b, ns=(10**18, 10**18))  # re-stamped copy: same bytes, other path and time
    assert cache_file_for(a, "t") == cache_file_for(b, "t")
    assert cache_file_for(a, "t") != cache_file_for(a, "other settings")
    b.write_text("material_id,cif\nx,2\n")  # same size, other content
    assert cache_file_for(a, "t") != cache_file_for(b, "t")
