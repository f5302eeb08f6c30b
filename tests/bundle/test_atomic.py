"""atomic_write: the file appears whole under its name or not at all, and keeps its suffixes for
writers that choose the format from them."""

import os
from pathlib import Path

import pytest

from scripts.atomic import atomic_write


def test_the_file_appears_whole_with_umask_permissions_and_no_temporary_left(tmp_path):
    names = []

    def write(temporary):
        names.append(temporary)
        Path(temporary).write_text("complete")

    atomic_write(tmp_path / "mask.nii.gz", write)
    assert (tmp_path / "mask.nii.gz").read_text() == "complete"
    assert names[0].endswith(".nii.gz") and Path(names[0]).parent == tmp_path  # same folder: the rename is atomic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "mask.nii.gz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("previous")

    def fail(temporary):
        Path(temporary).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_the_context_manager_form_renames_on_success_and_cleans_up_on_failure(tmp_path):
    from scripts.atomic import atomic_path

    with atomic_path(tmp_path / "seg.dcm") as partial:
        assert partial.name.startswith(".seg.dcm.") and partial.suffix == ".dcm"
        partial.write_bytes(b"whole")
    assert (tmp_path / "seg.dcm").read_bytes() == b"whole"
    with pytest.raises(ValueError), atomic_path(tmp_path / "seg.dcm") as partial:
        partial.write_bytes(b"half")
        raise ValueError
    assert (tmp_path / "seg.dcm").read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["seg.dcm"]
