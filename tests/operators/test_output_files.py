"""atomic_path: an operator's output file appears whole or not at all; a file-system failure is one
UserError naming the file."""

import pytest

from operators.output_files import atomic_path
from scripts.errors import UserError


def test_the_block_writes_under_a_hidden_name_renamed_on_success(tmp_path):
    target = tmp_path / "out" / "report.json"
    with atomic_path(target) as partial:
        assert partial.parent == target.parent and partial.name.startswith(".") and not target.exists()
        partial.write_text("{}")
    assert target.read_text() == "{}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_a_failing_block_leaves_the_previous_file_and_nothing_partial(tmp_path):
    target = tmp_path / "seg.dcm"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="encoder failed"), atomic_path(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("encoder failed")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.dcm"]


def test_a_file_system_failure_is_a_user_error_naming_the_file(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write .*not_a_folder/seg.dcm"), atomic_path(blocker / "seg.dcm") as partial:
        partial.write_bytes(b"x")
