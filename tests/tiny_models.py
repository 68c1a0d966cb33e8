"""A tiny Qwen2-style causal LM and a byte-level BPE tokenizer, built in code (no weights, no hub).

Also importable by the scripts that tests launch with torchrun.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

_CORPUS = [
    "Solve for x: 2x + 3 = 7. We get $2x = 4$, so $x = 2$. Answer: \\boxed{2}",
    "The sum $1 + 2 + 3 = 6$ and the product $2 \\cdot 3 = 6$. Therefore the answer is \\boxed{6}.",
    "Let $a^2 + b^2 = c^2$. With $a = 3$ and $b = 4$ we find $c = 5$.",
    "Compute \\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}. Answer: 5/6",
    "What is 12 times 7? 12 * 7 = 84.",
]
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<eos>", "<bos>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", padding_side="left"
    )
    wrapped.chat_template = _CHAT_TEMPLATE
    return wrapped


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Qwen2ForCausalLM:
    # Hidden size 16 and 2 layers: enough for real attention/MLP code paths, small enough for seconds-long tests.
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
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
