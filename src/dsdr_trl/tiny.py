"""A tiny random Qwen2-style model and byte-level BPE tokenizer, built offline in seconds.

Recipes and commands accept the pseudo-name `tiny-random-qwen2` wherever a model path goes
(`model_name_or_path: tiny-random-qwen2`, `dsdr-trl eval --model tiny-random-qwen2`): [`resolve_model_path`] builds
the model once into a local directory (`$DSDR_TRL_CACHE/tiny-random-qwen2`, by default
`~/.cache/dsdr_trl/tiny-random-qwen2`) and returns that path, which `from_pretrained` then loads like any other. Its
weights are random: it exercises every code path of training and evaluation on a CPU, not the method's effect.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TINY_MODEL_NAMES", "build_tiny_model", "build_tiny_tokenizer", "resolve_model_path", "save_tiny_model"]

TINY_MODEL_NAMES = ("tiny-random-qwen2",)

# Text the tokenizer's merges are learnt from: arithmetic, LaTeX and the answer formats the rewards read, so that
# prompts and completions tokenize into a few hundred pieces instead of single bytes.
_TOKENIZER_CORPUS = [
    "What is 3 + 4? Think step by step. 3 + 4 = 7. Answer: 7",
    "Compute $12 \\times 7$. We have $12 \\cdot 7 = 84$, so the answer is \\boxed{84}.",
    "Solve for x: $2x + 3 = 7$. Then $2x = 4$ and $x = 2$. Answer: \\boxed{2}",
    "Let $a^2 + b^2 = c^2$ with $a = 3$ and $b = 4$; then $c = 5$.",
    "\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}. Remember to put your answer on its own line after Answer:",
    "Solve the following math problem step by step. The last line of your response should be of the form Answer:",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 plus minus times equals sum product",
]
_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<|system|>", "<|user|>", "<|assistant|>"]
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer trained in memory, left padding, with a minimal chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=_SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_TOKENIZER_CORPUS, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", padding_side="left"
    )
    wrapped.chat_template = _CHAT_TEMPLATE
    return wrapped


def build_tiny_model(
    tokenizer,
    seed: int = 0,
    hidden_size: int = 16,
    intermediate_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
):
    """A Qwen2 causal LM randomly initialised from `seed`; the defaults (2 layers, hidden size 16) give about 17k
    parameters, enough for every attention and MLP code path in seconds-long CPU runs."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    )
    return model


def save_tiny_model(directory: str | os.PathLike, seed: int = 0) -> Path:
    """Builds the tiny model and tokenizer and saves both to `directory` (created if needed)."""
    directory = Path(directory)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def resolve_model_path(name_or_path: str) -> str:
    """`name_or_path` itself, or for a [`TINY_MODEL_NAMES`] pseudo-name the local directory holding that model.

    The directory is built on first use; a complete one (weights and tokenizer saved) is reused.
    """
    if name_or_path not in TINY_MODEL_NAMES:
        return name_or_path
    cache = Path(os.environ.get("DSDR_TRL_CACHE", Path.home() / ".cache" / "dsdr_trl"))
    directory = cache / name_or_path
    if not (directory / "config.json").exists() or not (directory / "tokenizer.json").exists():
        # Build next to the target and rename, so concurrent processes never read a half-written directory.
        staging = cache / f".{name_or_path}.{os.getpid()}"
        save_tiny_model(staging)
        try:
            staging.rename(directory)
        except OSError:  # another process got there first
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return str(directory)
