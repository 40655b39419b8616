"""Result folders: the default one is new for every run, even two in the same second; a named one
must be empty, is claimed by one run only, and is replaced only when asked."""

import datetime
import os

import pytest

from smpsim.experiment import folder

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    base = str(tmp_path / "results")
    a = folder.result_dir("x", base, now=NOW)
    b = folder.result_dir("x", base, now=NOW)
    c = folder.result_dir("x", base, now=NOW)
    assert [os.path.basename(p) for p in (a, b, c)] == [
        "x-20260102-030405", "x-20260102-030405-2", "x-20260102-030405-3"]
    assert all(os.path.isdir(p) and not os.listdir(p) for p in (a, b, c))


def test_a_folder_is_claimed_by_one_run(tmp_path):
    out = str(tmp_path / "o" / "deep")
    assert folder.claim(out, "first") == out
    assert open(os.path.join(out, folder.CLAIM)).read() == "first"
    with pytest.raises(folder.FolderError, match="another run writes here"):
        folder.claim(out, "second")
    assert open(os.path.join(out, folder.CLAIM)).read() == "first"


def test_check_refuses_content_unless_replacing(tmp_path):
    folder.check(str(tmp_path / "new"))
    folder.check(str(tmp_path))
    (tmp_path / "old.txt").write_text("x")
    (tmp_path / "runs").mkdir()
    with pytest.raises(folder.FolderError) as e:
        folder.check(str(tmp_path))
    assert str(e.value) == (f"{tmp_path}: not empty (old.txt, runs); pass --replace to replace "
                            f"its content, or another --out")
    folder.check(str(tmp_path), replace_it=True)
    assert sorted(os.listdir(tmp_path)) == ["old.txt", "runs"]       # checking changes nothing
    with pytest.raises(folder.FolderError, match="is a file, not a result folder"):
        folder.check(str(tmp_path / "old.txt"))


def test_replace_empties_the_folder(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "result.json").write_text("{}")
    (tmp_path / "summary.json").write_text("{}")
    os.symlink(str(tmp_path / "runs"), str(tmp_path / "link"))
    folder.replace(str(tmp_path))
    assert os.listdir(tmp_path) == []
