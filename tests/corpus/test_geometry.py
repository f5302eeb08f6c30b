import nibabel as nib
import numpy as np
import pytest

from corpus.geometry import VoxelGrid, ras_affine, spacing_from_affine


def test_affine_is_ras_and_centres_the_volume():
    affine = ras_affine((10, 20, 30), (1.0, 2.0, 3.0))
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    centre = affine @ np.array([4.5, 9.5, 14.5, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    assert spacing_from_affine(affine) == (1.0, 2.0, 3.0)


def test_box_coordinates_match_the_affine_and_clip_to_the_grid():
    grid = VoxelGrid((32, 32, 32), (2.0, 2.0, 2.0))
    box = grid.box((25.0, 0.0, 0.0), 10.0)
    assert box.slices[0].stop == 32  # clipped at the grid edge
    index = np.array([box.slices[0].start, box.slices[1].start, box.slices[2].start, 1.0])
    world = grid.affine @ index
    np.testing.assert_allclose(world[:3], [box.x[0, 0, 0], box.y[0, 0, 0], box.z[0, 0, 0]], atol=1e-5)
    assert grid.box((1000.0, 0.0, 0.0), 5.0).empty


def test_index_to_mm_agrees_with_the_affine():
    grid = VoxelGrid((17, 20, 23), (1.5, 2.0, 2.5))
    index = np.array([3.0, 7.0, 11.0])
    np.testing.assert_allclose(grid.index_to_mm(index), (grid.affine @ np.append(index, 1.0))[:3])


@pytest.mark.parametrize(
    ("shape", "spacing", "match"),
    [((8, 64, 64), (1.0, 1.0, 1.0), "size"), ((64, 64), (1.0, 1.0, 1.0), "size"), ((64, 64, 64), (1.0, 0.0, 1.0), "spacing")],
)
def test_grid_rejects_bad_size_or_spacing(shape, spacing, match):
    with pytest.raises(ValueError, match=match):
        VoxelGrid(shape, spacing)
