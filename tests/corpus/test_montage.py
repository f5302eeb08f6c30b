import matplotlib.image
import numpy as np
import pytest
from corpus_cases import small_case

from corpus.montage import _display_axial, _display_coronal, panel_from_case, write_montage


def test_display_is_radiological():
    volume = np.zeros((10, 12, 14), dtype=np.uint8)
    volume[9, 6, 7] = 1  # patient's far right (RAS +x)
    volume[5, 11, 7] = 2  # most anterior
    axial = _display_axial(volume, 7)
    assert axial.shape == (12, 10)
    row, col = np.argwhere(axial == 1)[0]
    assert col == 0  # patient's right on the viewer's left
    row, col = np.argwhere(axial == 2)[0]
    assert row == 0  # anterior at the top
    volume[5, 6, 13] = 3  # most superior
    coronal = _display_coronal(volume, 6)
    assert np.argwhere(coronal == 3)[0][0] == 0 and np.argwhere(coronal == 1)[0][1] == 0


def test_panel_cuts_through_the_largest_tumor_section():
    case = small_case("kidney tumor", 3)
    panel = panel_from_case(case)
    axial_tumor = panel.views[0][2]
    per_slice = (case.tumor_mask > 0).sum(axis=(0, 1))
    assert axial_tumor.sum() == per_slice.max() > 0
    assert "kidney tumor" in panel.title


def test_montage_png_shows_red_tumor_outlines(tmp_path):
    path = write_montage([panel_from_case(small_case("liver tumor", 4)), panel_from_case(small_case("healthy MR", 4))], tmp_path / "m.png", columns=2)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    red = (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)
    assert red.sum() > 10
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_montage_needs_at_least_one_panel(tmp_path):
    with pytest.raises(ValueError, match="panels"):
        write_montage([], tmp_path / "m.png")
