r"""Models and tokenizers built in code, so nothing is downloaded: the toy task's policy and the tiny test model.

- [`build_task_tokenizer`]: a character-level tokenizer for the toy task (digits, `*+-=$ }`, `\boxed{` as one token).
- [`build_tiny_tokenizer`]: a byte-level BPE tokenizer learnt in memory from a few arithmetic and LaTeX sentences,
  with a minimal chat template, for tests and benchmarks that feed free text.
- [`build_model`]: one Qwen3-style causal LM builder for both (Qwen3 is the paper's model family, and a saved Qwen3
  directory loads its own tokenizer back with `AutoTokenizer`). Its defaults (2 layers, width 16, about 17k parameters)
  are the tiny test model, which exercises every attention and MLP code path in seconds on a CPU; [`POLICY_SHAPE`]
  (4 layers, width 128, 0.8M parameters) is the toy task's policy.
"""

from __future__ import annotations

from .task import BOXED

# Text the tiny tokenizer's merges are learnt from: arithmetic, LaTeX and the answer formats the rewards read, so that
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
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# The toy policy: the prompt (≤ 5 characters) and the longest solution (< 45) fit in 96 positions with room to spare.
POLICY_SHAPE = dict(
    hidden_size=128,
    intermediate_size=384,
    num_layers=4,
    num_heads=4,
    num_kv_heads=2,
    max_position_embeddings=96,
    tie_word_embeddings=True,
)


def build_task_tokenizer():
    r"""A character-level `PreTrainedTokenizerFast` for the toy task: digits, `*+-=$ }`, `\boxed{` and specials."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(("<pad>", "<eos>", "<unk>", BOXED, *"0123456789*+-=$ }"))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # characters are joined back without separators
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )


def build_tiny_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer trained in memory, left padding, with a minimal chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>", "<bos>", "<|system|>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_TOKENIZER_CORPUS, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", padding_side="left"
    )
    wrapped.chat_template = _CHAT_TEMPLATE
    return wrapped


def build_model(
    tokenizer,
    seed: int = 0,
    hidden_size: int = 16,
    intermediate_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    max_position_embeddings: int = 512,
    tie_word_embeddings: bool = False,
):
    """A Qwen3 causal LM over `tokenizer`'s vocabulary, randomly initialised from `seed`.

    The defaults give the tiny test model (about 17k parameters); `build_model(tokenizer, seed, **POLICY_SHAPE)` gives
    the toy task's policy.
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    special = dict(
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id
    )
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        **special,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(**special)
    return model


def build_policy(tokenizer=None, seed: int = 0):
    """The toy task's policy (0.8M parameters, random init) over [`build_task_tokenizer`]."""
    return build_model(tokenizer or build_task_tokenizer(), seed, **POLICY_SHAPE)
