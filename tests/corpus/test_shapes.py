import numpy as np
import pytest

from corpus.geometry import VoxelGrid
from corpus.shapes import Tube, ellipsoid_rho, rotation_matrix


def test_ellipsoid_rho_is_below_one_inside_and_one_on_the_surface():
    grid = VoxelGrid((41, 41, 41), (1.0, 1.0, 1.0))
    rho = ellipsoid_rho(grid.full(), (0.0, 0.0, 0.0), (10.0, 5.0, 5.0))
    assert rho[20, 20, 20] == 0.0
    assert rho[30, 20, 20] == pytest.approx(1.0)  # 10 mm along x
    assert rho[20, 25, 20] == pytest.approx(1.0)  # 5 mm along y
    assert rho[20, 30, 20] > 1.0


def test_rotation_turns_the_long_axis():
    grid = VoxelGrid((41, 41, 41), (1.0, 1.0, 1.0))
    rho = ellipsoid_rho(grid.full(), (0.0, 0.0, 0.0), (10.0, 5.0, 5.0), rotation_matrix((0.0, 0.0, 90.0)))
    assert rho[20, 30, 20] == pytest.approx(1.0, abs=1e-5)  # long axis now along y
    assert rho[30, 20, 20] > 1.5


def test_tube_radius_and_parameter_follow_the_polyline():
    grid = VoxelGrid((41, 41, 41), (1.0, 1.0, 1.0))
    tube = Tube([[-15.0, 0.0, 0.0], [15.0, 0.0, 0.0]], [3.0, 3.0])
    rho, t = tube.evaluate(grid)
    assert rho[20, 20, 20] == pytest.approx(0.0)
    assert rho[20, 23, 20] == pytest.approx(1.0)
    assert t[5, 20, 20] == pytest.approx(0.0) and t[35, 20, 20] == pytest.approx(1.0)
    assert np.isinf(rho[20, 40, 40]) and t[20, 40, 40] == -1.0


def test_tube_rejects_a_single_point():
    with pytest.raises(ValueError, match="points"):
        Tube([[0.0, 0.0, 0.0]], [1.0])
