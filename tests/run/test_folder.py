"""The output folder: one writer (in this process too), and a refused start leaves none."""
import pytest

from patchenv.run import RunError, clear_out, locked


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    with locked(tmp_path / "out"):
        (tmp_path / "out" / "metrics.json").write_text("{}")
        with pytest.raises(RunError, match="being written by another process"):
            with locked(tmp_path / "out"):
                pass
    with locked(tmp_path / "out"):  # released: the next writer gets it
        pass
    assert (tmp_path / "out" / "metrics.json").read_text() == "{}"


def test_a_folder_the_lock_created_and_nothing_wrote_is_removed(tmp_path):
    with pytest.raises(ValueError):
        with locked(tmp_path / "new"):
            raise ValueError("the agent does not fit the env")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with locked(tmp_path / "old"):
        pass
    assert (tmp_path / "old").is_dir()  # the user's folder stays


def test_clear_out_removes_the_named_files_and_folders_only(tmp_path):
    (tmp_path / "checkpoints" / "step-1").mkdir(parents=True)
    for name in ("metrics.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    clear_out(tmp_path, ("metrics.json", "checkpoints", "progress.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
