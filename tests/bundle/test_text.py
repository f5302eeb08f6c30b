import pytest
import torch

from scripts.text import AttributeVocabulary, PromptBuilder


def test_vocabulary_prompt_expands_to_finding_and_organ_attributes():
    prompt = PromptBuilder().build("  Liver   tumor ")
    assert prompt.prompt == "Liver tumor" and prompt.finding == "liver tumor" and prompt.organ == "liver"
    assert prompt.abnormal[0] == "Liver tumor"
    joined = " ".join(prompt.abnormal)
    for word in ("hypodense", "margins", "lobulated"):
        assert word in joined
    assert any(s.startswith("normal liver") for s in prompt.normal)


def test_synonyms_and_free_text_work():
    builder = PromptBuilder()
    assert builder.build("glioblastoma of the temporal lobe").finding == "brain tumor"
    free = builder.build("a cyst in the spleen")
    assert free.finding is None and free.organ == "spleen"
    assert free.abnormal[0] == "a cyst in the spleen" and len(free.abnormal) > 1
    unknown = builder.build("something odd")
    assert unknown.organ is None and unknown.normal


@pytest.mark.parametrize("bad", ["", "   ", "!!!", None, "x" * 400])
def test_empty_or_absurd_prompts_are_rejected(bad):
    with pytest.raises(ValueError, match="prompt"):
        PromptBuilder().build(bad)


def test_vocabulary_is_one_file_shared_with_the_corpus():
    vocabulary = AttributeVocabulary()
    assert {"liver tumor", "brain tumor", "kidney tumor"} <= set(vocabulary.findings)
    for finding in vocabulary.findings.values():
        assert finding["organ"] in vocabulary.organs
        assert set(finding["attributes"]) <= set(vocabulary.attribute_kinds)


def test_different_prompts_give_different_embeddings_and_same_prompt_the_same(text_encoder):
    builder = PromptBuilder()
    liver = text_encoder.embed_prompt(builder.build("liver tumor"))
    kidney = text_encoder.embed_prompt(builder.build("kidney tumor"))
    again = text_encoder.embed_prompt(builder.build("liver tumor"))
    assert liver.embeddings.shape[1] == text_encoder.dimension == 384
    assert not torch.allclose(liver.embeddings[0], kidney.embeddings[0], atol=1e-3)
    torch.testing.assert_close(liver.embeddings, again.embeddings)
    torch.testing.assert_close(liver.embeddings.norm(dim=1), torch.ones(len(liver.embeddings)))
    assert liver.abnormal.sum() == len(liver.prompt.abnormal)


def test_encoder_output_does_not_depend_on_the_cache(text_encoder):
    from scripts.text import SentenceEncoder

    fresh = SentenceEncoder()
    sentence = ["hypodense lesion in the right lobe of the liver"]
    torch.testing.assert_close(fresh.encode(sentence), text_encoder.encode(sentence), atol=1e-5, rtol=0)


def test_related_prompts_are_closer_than_unrelated_ones(text_encoder):
    liver, hepatic, lung = text_encoder.encode(["liver tumor", "hepatic lesion", "normal lung parenchyma"])
    assert liver @ hepatic > liver @ lung


def test_encoder_loads_and_encodes_with_the_network_blocked(monkeypatch):
    import socket

    from scripts.text import SentenceEncoder

    def refuse(*args, **kwargs):
        raise AssertionError("the text encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    encoder = SentenceEncoder()
    assert encoder.encode(["liver tumor"]).shape == (1, 384)
