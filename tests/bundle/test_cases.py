"""The cases of a bundle run as a MONAI Dataset: checked when first used, read when reached."""

import nibabel as nib
import numpy as np
import pytest

from scripts.cases import Case, CaseDataset, ReadCase
from scripts.errors import UserError
from scripts.preprocessing import Modality


def _image(path, values):
    nib.save(nib.Nifti1Image(values.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def test_the_cases_are_checked_when_first_used_not_when_the_config_is_read(tmp_path):
    dataset = CaseDataset(input_image=str(tmp_path / "absent.nii.gz"), prompt="liver tumor")  # MONAI's property checks do this
    with pytest.raises(SystemExit, match=f"error: input image not found: {tmp_path / 'absent.nii.gz'}"):
        len(dataset)


def test_each_item_is_its_case_with_the_volume_read_and_its_warnings(tmp_path):
    image = _image(tmp_path / "ct.nii.gz", np.full((8, 8, 8), 40.0))  # a CT without air
    dataset = CaseDataset(input_image=str(image), prompt="liver tumor")
    assert len(dataset) == 1 and dataset.cases[0].prompts == ("liver tumor",)
    item = dataset[0]
    assert item["case"] is dataset.cases[0]
    assert tuple(item["image"].shape) == (8, 8, 8) and item["image"].affine[0, 0] == 2.0
    assert item["warnings"], "a CT without air is warned about"


def test_a_damaged_file_is_a_user_error_naming_it_not_a_transform_traceback(tmp_path):
    damaged = tmp_path / "case.nii.gz"
    damaged.write_bytes(b"not a gzip file")
    case = Case("case", damaged, ("liver tumor",), Modality.CT)
    with pytest.raises(UserError, match=f"cannot read image {damaged}"):
        CaseDataset(cases=[case])[0]
    with pytest.raises(UserError, match="cannot read image"):
        ReadCase()({"case": case})
