"""The supervised baseline's threshold is chosen on validation cases by mean per-category DSC."""

import numpy as np

from benchmarks.baseline_unet import best_threshold


def test_the_cut_with_the_best_mean_category_dice_wins_and_ties_go_to_the_one_nearest_half():
    reference = np.zeros((8, 8, 8), bool)
    reference[2:6, 2:6, 2:6] = True
    confident = np.where(reference, 0.95, 0.05)
    # Background at 0.75: only cuts at or above 0.8 remove it.
    noisy = np.where(reference, 0.95, 0.75)
    result = best_threshold([("kidney tumor", confident, reference), ("lung tumor", noisy, reference)], (0.3, 0.5, 0.8, 0.9))
    assert result["threshold"] == 0.8 and result["cases"] == 2
    assert result["mean_dsc_by_threshold"]["0.8"] == 1.0 and result["mean_dsc_by_threshold"]["0.5"] < 1.0
    tie = best_threshold([("kidney tumor", confident, reference)], (0.3, 0.5, 0.8))
    assert tie["threshold"] == 0.5


def test_the_mirror_ensemble_averages_the_flipped_back_views_and_keeps_an_equivariant_network_unchanged():
    import torch

    from benchmarks.baseline_unet import MirrorEnsemble

    window = torch.rand(1, 1, 6, 6, 6)
    equivariant = torch.nn.Conv3d(1, 1, 1)  # a pointwise network: flipping commutes with it
    assert torch.allclose(MirrorEnsemble(equivariant)(window), equivariant(window), atol=1e-6)

    class LeftEdge(torch.nn.Module):  # marks the first plane of the first spatial axis: not equivariant
        def forward(self, x):
            out = torch.zeros_like(x)
            out[:, :, 0] = 1.0
            return out

    mirrored = MirrorEnsemble(LeftEdge(), flips=((2,),))(window)
    # The flipped view marks the last plane once flipped back: each plane gets half.
    assert mirrored[:, :, 0].eq(0.5).all() and mirrored[:, :, -1].eq(0.5).all() and mirrored[:, :, 1:-1].eq(0).all()
