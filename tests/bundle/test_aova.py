import pytest
import torch

from scripts.aova import AOVAHead, FeatureAdapter, coarse_mask

CHANNELS = (8, 16, 32)


def _features(size=16):
    return [torch.randn(1, c, size // 2**i, size // 2**i, size // 2**i) for i, c in enumerate(CHANNELS)]


def _keys():
    return torch.randn(6, 384), torch.tensor([True, True, False, False, False, False])


def test_aova_map_is_full_resolution_and_in_unit_range():
    head = AOVAHead(CHANNELS)
    out = head(_features(), *_keys())
    assert out.aova_map.shape == (1, 1, 16, 16, 16)
    assert out.aova_map.min() >= 0 and out.aova_map.max() <= 1
    assert len(out.level_maps) == 3


def test_mean_aggregation_is_the_average_of_the_level_maps():
    out = AOVAHead(CHANNELS, aggregation="mean")(_features(), *_keys())
    torch.testing.assert_close(out.aova_map, torch.stack(out.level_maps).mean(0))


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_a_levels_log_odds_is_the_attention_mass_on_the_abnormal_keys(similarity):
    torch.manual_seed(0)
    head, features, (keys, abnormal) = AOVAHead(CHANNELS, similarity=similarity), _features(), _keys()
    projected = head.keys(keys)
    query = head.queries[1](head.adapters[1](features[1]))
    if similarity == "cosine":
        query, projected = torch.nn.functional.normalize(query, dim=1), torch.nn.functional.normalize(projected, dim=1)
        scale = head.log_temperature.exp()
    else:
        scale = head.embed_dim**-0.5
    attention = (torch.einsum("bexyz,ke->bkxyz", query, projected) * scale).softmax(dim=1)
    mass = attention[:, abnormal].sum(dim=1, keepdim=True)
    torch.testing.assert_close(torch.sigmoid(head.level_logit(1, features[1], projected, abnormal)), mass)


def test_level_logits_come_at_full_resolution_only_when_asked_for():
    head, features = AOVAHead(CHANNELS), _features()
    assert head(features, *_keys()).level_logits is None
    out = head(features, *_keys(), with_logits=True)
    assert [tuple(logit.shape) for logit in out.level_logits] == [(1, 1, 16, 16, 16)] * 3


def test_single_level_variant_uses_only_that_level():
    torch.manual_seed(0)
    single = AOVAHead(CHANNELS, levels=(2,))
    out = single(_features(), *_keys())
    assert len(out.level_maps) == 1
    torch.testing.assert_close(out.aova_map, out.level_maps[0])


def test_attention_mass_on_abnormal_keys_grows_with_their_share():
    torch.manual_seed(0)
    head, features = AOVAHead(CHANNELS), _features()
    embeddings = torch.randn(6, 384)
    few = head(features, embeddings, torch.tensor([True, False, False, False, False, False])).aova_map
    many = head(features, embeddings, torch.tensor([True, True, True, True, True, False])).aova_map
    assert (many >= few).all() and many.mean() > few.mean()


def test_learned_aggregation_has_trainable_level_weights():
    head = AOVAHead(CHANNELS, aggregation="learned")
    head(_features(), *_keys()).aova_map.sum().backward()
    assert head.level_logits.grad is not None


def test_keys_need_normal_and_abnormal_sentences():
    with pytest.raises(ValueError, match="both abnormal and normal"):
        AOVAHead(CHANNELS)(_features(), torch.randn(3, 384), torch.ones(3, dtype=torch.bool))


def test_adapter_mixes_with_the_constant_ratio():
    feature = torch.randn(1, 8, 4, 4, 4)
    torch.testing.assert_close(FeatureAdapter(8, alpha=0.0)(feature), feature)
    adapter = FeatureAdapter(8, alpha=0.3)
    torch.testing.assert_close(adapter(feature), 0.3 * adapter.transform(feature) + 0.7 * feature)
    with pytest.raises(ValueError, match="alpha"):
        FeatureAdapter(8, alpha=1.5)


def test_coarse_mask_thresholds_and_dilates():
    aova = torch.zeros(1, 1, 9, 9, 9)
    aova[0, 0, 4, 4, 4] = 0.9
    assert coarse_mask(aova, 0.5, dilation=0).sum() == 1
    assert coarse_mask(aova, 0.5, dilation=1).sum() == 27
    assert coarse_mask(aova, 0.95, dilation=2).sum() == 0
    with pytest.raises(ValueError, match="threshold"):
        coarse_mask(aova, 1.0)


def test_cosine_similarity_has_a_trainable_temperature():
    torch.manual_seed(0)
    head = AOVAHead(CHANNELS, similarity="cosine")
    out = head(_features(), *_keys())
    assert out.aova_map.min() >= 0 and out.aova_map.max() <= 1
    out.aova_map.sum().backward()
    assert head.log_temperature.grad is not None and head.log_temperature.grad != 0
    with pytest.raises(ValueError, match="similarity"):
        AOVAHead(CHANNELS, similarity="euclid")


def test_adapter_kernel_widens_the_receptive_field():
    feature = torch.zeros(1, 8, 7, 7, 7)
    feature[..., 3, 3, 3] = 1.0
    wide, point = FeatureAdapter(8, 1.0, kernel_size=3), FeatureAdapter(8, 1.0, kernel_size=1)
    changed = lambda adapter: (adapter(feature) - adapter(torch.zeros_like(feature))).abs().sum(1) > 0  # noqa: E731
    assert changed(point).sum() == 1 and changed(wide).sum() == 27
    with pytest.raises(ValueError, match="kernel_size"):
        FeatureAdapter(8, kernel_size=2)


def test_the_options_are_declared_once_and_overridden_by_name():
    from scripts.aova import AOVAOptions
    from scripts.foundation import PROFILES
    from scripts.heads import network_for_profile

    assert PROFILES["mini"].aova == AOVAOptions(similarity="cosine", adapter_kernel_size=3)
    # What `--network_def#levels "[1]"` gives: a list from the config, kept as a tuple.
    network = network_for_profile(PROFILES["mini"], text_dim=384, levels=[1])
    assert network.aova.levels == (1,) and network.aova.options.similarity == "cosine"
    with pytest.raises(TypeError, match="levelz"):
        AOVAOptions().with_overrides(levelz=(1,))
    with pytest.raises(ValueError, match="aggregation must be 'mean' or 'learned'"):
        AOVAOptions(aggregation="max")


def test_dilated_adapters_see_further_and_keep_the_plain_layout_when_absent():
    from scripts.aova import FeatureAdapter

    plain = FeatureAdapter(4, kernel_size=3)
    assert list(plain.state_dict()) == ["transform.0.weight", "transform.0.bias", "transform.2.weight", "transform.2.bias"]
    dilated = FeatureAdapter(4, kernel_size=3, dilations=(2, 4))
    feature = torch.zeros(1, 4, 25, 25, 25, requires_grad=True)
    dilated(feature)[0, :, 12, 12, 12].sum().backward()
    reach = (feature.grad.abs().sum(dim=(0, 1)) > 0).nonzero()
    assert int(reach[:, 0].min()) == 12 - (1 + 2 + 4) and int(reach[:, 0].max()) == 12 + 7  # 3x3x3 with dilations 1, 2, 4
    with pytest.raises(ValueError, match="dilations must be >= 1"):
        FeatureAdapter(4, dilations=(0,))
