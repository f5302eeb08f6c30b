"""The output folder a run starts with: refused with one line naming it, or staged.

(How staged outputs are committed, discarded and cleaned up after a killed run is tested in
``tests/reliability/test_partial_output.py``.)
"""

import os

import pytest

from scripts.errors import UserError
from scripts.output_staging import stage_outputs


def test_a_new_folder_is_staged_beside_it_and_appears_at_commit(tmp_path):
    staged = stage_outputs(tmp_path / "out")
    staged.path("a.txt").write_text("a")
    assert not (tmp_path / "out").exists()
    staged.commit(order=["a.txt"])
    assert (tmp_path / "out" / "a.txt").read_text() == "a"


def test_a_file_where_the_folder_should_be_is_refused_naming_it(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(UserError, match=f"cannot write in the output folder {tmp_path / 'out'}: {tmp_path / 'out'} is a file"):
        stage_outputs(tmp_path / "out")
    with pytest.raises(UserError, match=f"cannot write in the output folder {tmp_path / 'out' / 'sub'}: {tmp_path / 'out'} is a file"):
        stage_outputs(tmp_path / "out" / "sub")
    assert (tmp_path / "out").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    (tmp_path / "out").mkdir(mode=0o555)
    with pytest.raises(UserError, match="cannot write in the output folder .*: Permission denied"):
        stage_outputs(tmp_path / "out")
