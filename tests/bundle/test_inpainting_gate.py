"""The diffusion stage's gate measures: contrast of the lesion to its host before and after
inpainting, and the error outside the lesion against the VAE's own."""

import pytest
import torch

from scripts.features import EncoderFeatures
from scripts.inpainting_gate import gate_passed, inpainting_effect

HOST, LESION, OTHER = 0.55, 0.45, 0.30


class _Foundation:
    """A perfect VAE and an inpainting that writes ``fill`` into the lesion (None: changes nothing)."""

    scale_factor = 1.0

    def __init__(self, fill):
        self.fill = fill

    def encode(self, image):
        return EncoderFeatures([], image)

    def decode(self, latent):
        return latent

    def pseudo_healthy(self, patch, latent, region, **_):
        out = patch.clone()
        if self.fill is not None:
            out[0, 0][self.lesion] = self.fill
        return out


@pytest.fixture
def scan():
    image = torch.full((1, 1, 32, 32, 32), OTHER)
    organs = torch.zeros(32, 32, 32)
    organs[4:28, 4:28, 4:28] = 5  # the host organ
    image[0, 0][organs == 5] = HOST
    lesion = torch.zeros(32, 32, 32, dtype=torch.bool)
    lesion[12:18, 12:18, 12:18] = True
    image[0, 0][lesion] = LESION
    return image, lesion, organs


def _effect(foundation, scan):
    image, lesion, organs = scan
    foundation.lesion = lesion
    return inpainting_effect(foundation, image, lesion, organs, spacing=torch.full((1, 3), 200.0), class_labels=torch.tensor([1]))


def test_a_lesion_filled_with_its_host_has_lost_all_its_contrast(scan):
    effect = _effect(_Foundation(HOST), scan)
    assert effect.contrast_before == pytest.approx(HOST - LESION, rel=1e-5)
    assert effect.contrast_after == pytest.approx(0.0, abs=1e-6) and effect.contrast_drop == pytest.approx(1.0, abs=1e-5)
    assert effect.outside_error == 0.0 and effect.outside_ratio == 0.0
    assert gate_passed(effect.to_json())


def test_an_inpainting_that_changes_nothing_keeps_the_contrast(scan):
    effect = _effect(_Foundation(None), scan)
    assert effect.contrast_drop == pytest.approx(0.0) and not gate_passed(effect.to_json())


def test_half_the_contrast_is_a_drop_of_one_half(scan):
    assert _effect(_Foundation((HOST + LESION) / 2), scan).contrast_drop == pytest.approx(0.5)


def test_the_host_is_the_lesions_organ_not_what_lies_around_it(scan):
    image, lesion, organs = scan
    organs = organs.clone()
    organs[10:20, 10:20, 10:20][~lesion[10:20, 10:20, 10:20]] = 2  # another organ right around the lesion
    image = image.clone()
    image[0, 0][(organs == 2)] = OTHER
    effect = _effect(_Foundation(HOST), (image, lesion, organs))
    assert effect.contrast_before == pytest.approx(HOST - LESION, rel=1e-5)  # compared with the host further out


def test_an_empty_lesion_is_refused(scan):
    image, _, organs = scan
    with pytest.raises(ValueError, match="empty"):
        inpainting_effect(
            _Foundation(None), image, torch.zeros(32, 32, 32, dtype=torch.bool), organs, spacing=torch.full((1, 3), 200.0), class_labels=torch.tensor([1])
        )
