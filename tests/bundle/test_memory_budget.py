import pytest

from scripts import memory_budget
from scripts.memory_budget import GIB, check_memory_budget, estimate_bytes, working_shape


def test_working_shape_is_resampled_then_padded_to_the_divisor():
    assert working_shape((100, 100, 40), (1.0, 1.0, 5.0), (2.0, 2.0, 2.0), 16) == (64, 64, 112)
    assert working_shape((30, 30, 1), (2.0, 2.0, 2.0), None, 16) == (32, 32, 16)


def test_estimate_grows_with_the_volume_and_the_prompts():
    def estimate(shape, prompts=1):
        return estimate_bytes(shape, (1.0, 1.0, 1.0), working_spacing=None, divisor=16, patch_size=(64, 64, 64), prompts=prompts)

    small, medium, large = (estimate((n, n, n)) for n in (64, 128, 256))
    assert small < medium < large
    assert (large - medium) / (medium - small) == pytest.approx(8, rel=0.01)  # the part that scales with the voxels
    one, two, three = (estimate((128, 128, 128), prompts=p) for p in (1, 2, 3))
    assert three - one == 2 * (two - one) > 0


def test_a_volume_over_the_budget_is_refused_naming_both_figures():
    arguments = dict(working_spacing=None, divisor=16, patch_size=(64, 64, 64), prompts=1)
    assert check_memory_budget((64, 64, 64), (1.0, 1.0, 1.0), budget_gb=1.0, **arguments) < GIB
    with pytest.raises(ValueError, match=r"a 1024x1024x512 volume needs about \d+\.\d+ GB .* memory budget of 1\.00 GB \(memory_budget_gb\)"):
        check_memory_budget((1024, 1024, 512), (1.0, 1.0, 1.0), budget_gb=1.0, **arguments)


def test_without_a_budget_the_available_memory_is_the_limit(monkeypatch):
    monkeypatch.setattr(memory_budget, "available_bytes", lambda: 2 * GIB)
    arguments = dict(working_spacing=None, divisor=16, patch_size=(64, 64, 64), prompts=1, budget_gb=None)
    check_memory_budget((128, 128, 128), (1.0, 1.0, 1.0), **arguments)
    with pytest.raises(ValueError, match="the memory available now"):
        check_memory_budget((512, 512, 512), (1.0, 1.0, 1.0), **arguments)


def test_on_an_accelerator_only_the_input_grid_counts_against_host_memory():
    arguments = dict(working_spacing=(0.5, 0.5, 0.5), divisor=32, patch_size=(128, 128, 128), prompts=1)
    on_host = estimate_bytes((256, 256, 256), (1.0, 1.0, 1.0), **arguments)
    on_device = estimate_bytes((256, 256, 256), (1.0, 1.0, 1.0), host_only=True, **arguments)
    assert on_device == 4 * 256**3 * 12 < on_host / 5
