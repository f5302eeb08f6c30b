"""Shared fixtures: the frozen text encoder is loaded once per session (about 3 s)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def text_encoder():
    from scripts.text import SentenceEncoder

    return SentenceEncoder()
