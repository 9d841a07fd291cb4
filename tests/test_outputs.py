"""Atomic output: nothing partial on failure, nothing overwritten without asking."""

from __future__ import annotations

import pytest

from khe_bayes.toolkit.errors import OutputExistsError
from khe_bayes.toolkit.outputs import staged_directory


def test_success_moves_everything_into_place(tmp_path):
    out = tmp_path / "res"
    with staged_directory(out) as stage:
        (stage / "a.txt").write_text("a")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["res"]


def test_failure_leaves_no_partial_output(tmp_path):
    out = tmp_path / "res"
    with pytest.raises(RuntimeError), staged_directory(out) as stage:
        (stage / "a.txt").write_text("a")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_result_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "manifest.json").write_text("{}")  # a khe-bayes result: --overwrite may replace it
    with pytest.raises(OutputExistsError, match="--overwrite"), staged_directory(out):
        pass
    assert (out / "old.txt").read_text() == "old"

    with pytest.raises(KeyboardInterrupt), staged_directory(out, overwrite=True) as stage:
        (stage / "new.txt").write_text("new")
        raise KeyboardInterrupt
    assert (out / "old.txt").exists() and not (out / "new.txt").exists()

    with staged_directory(out, overwrite=True) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["res"]


def test_relative_output_paths_stage_to_an_absolute_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with staged_directory("results/run") as stage:
        assert stage.is_absolute()
        (stage / "a.txt").write_text("a")
    assert (tmp_path / "results" / "run" / "a.txt").exists()
