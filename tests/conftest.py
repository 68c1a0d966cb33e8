"""Shared fixtures: a tiny causal LM and tokenizer built in code, so no test reaches a model hub (see `helpers.py`)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from helpers import build_tiny_model, build_tiny_tokenizer, prompt_dataset, save_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return build_tiny_model(tiny_tokenizer)


@pytest.fixture
def dataset():
    """Four stand-in prompts with a `solution` column."""
    return prompt_dataset(4)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny model and its tokenizer saved to a directory, for commands that take a model path."""
    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def diversity_encoder():
    """The real default sentence encoder (bundled, offline), loaded once for the tests that train with DSDR on."""
    from dsdr_trl.encoder import load_diversity_encoder

    return load_diversity_encoder()
