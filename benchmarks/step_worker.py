"""One timed training run, GRPO or DSDR, in a fresh process: per-step wall times and peak memory as JSON.

`benchmarks/run.py` launches this script once per (method, config, repetition), alternating the methods, so that the
two sides of every ratio run under the same conditions. A fresh process per run keeps the peak-memory figure honest
(nothing from the other method stays resident) and keeps caches (formula extraction, the time-limit worker) cold.

    python benchmarks/step_worker.py --method dsdr --config long --steps 4 --out run.json

The `qwen2-0.5b-*` configs are for a GPU: a randomly initialised policy of Qwen2-0.5B's shape (hidden size 896, 24
layers, 14 heads, 2 KV heads, MLP 4864, vocabulary 151,936) with its output head untied, 0.63B parameters (the tied
original has 0.49B), in bfloat16 on a GPU, generating 1K or 4K tokens for G = 8. A word-level tokenizer of the same
vocabulary is built in code (every id decodes to a short lowercase word), so its completions are text of realistic
length for the encoder. Their warm-up is a one-step run at 16 tokens in the same process, so every step of the timed
run is counted.
`--layers`, `--tokens` and `--vocab` shrink a config for a smoke run on a CPU (the test suite runs `qwen2-0.5b-1k` so).
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import os
import resource
import string
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# name -> (policy hidden size, layers, intermediate size, heads, KV heads, G, prompts per optimizer step, tokens).
# "tiny" is the test-suite model; "long" keeps it but generates 256 tokens for G = 8; "policy" is a policy a few times
# the encoder's size (all-MiniLM-L6-v2: 22.7M parameters, 6 layers of width 384) at the same generation length.
# A config with a `vocab` is a Qwen2-shaped policy over a word-level tokenizer of that size, warmed up by a one-step run
# at `warmup_tokens` tokens rather than by its first step.
QWEN2_0_5B = dict(hidden=896, layers=24, intermediate=4864, heads=14, kv_heads=2, vocab=151_936, warmup_tokens=16)
CONFIGS = {
    "tiny": dict(hidden=16, layers=2, intermediate=32, heads=2, kv_heads=1, group=4, prompts=2, tokens=8),
    "long": dict(hidden=16, layers=2, intermediate=32, heads=2, kv_heads=1, group=8, prompts=2, tokens=256),
    "policy": dict(hidden=512, layers=8, intermediate=1536, heads=8, kv_heads=2, group=8, prompts=2, tokens=256),
    "qwen2-0.5b-1k": dict(QWEN2_0_5B, group=8, prompts=2, tokens=1024),
    "qwen2-0.5b-4k": dict(QWEN2_0_5B, group=8, prompts=2, tokens=4096),
}
_WORD_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")

PROMPTS = [
    "Solve for x: 2x + 3 = 7.",
    "What is 12 times 7?",
    "Compute 1/2 + 1/3.",
    "Let a^2 + b^2 = c^2 with a = 3, b = 4. Find c.",
    "What is the sum 1 + 2 + 3?",
    "Find the product 2 * 3.",
    "Simplify (x + 1)^2 - x^2.",
    "How many primes are below 20?",
]


def parity_reward(completions, **kwargs):
    """A cheap, deterministic stand-in verifier: about half of the completions are 'correct'."""
    return [float(len(c) % 2 == 0) for c in completions]


def build_word_tokenizer(vocab_size: int):
    """A word-level tokenizer of `vocab_size` ids: special tokens, then lowercase words of 1 to 4 letters in order."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = (map("".join, itertools.product(string.ascii_lowercase, repeat=n)) for n in range(1, 5))
    tokens = itertools.chain(_WORD_SPECIAL_TOKENS, itertools.islice(itertools.chain.from_iterable(words), vocab_size))
    vocab = {token: index for index, token in enumerate(itertools.islice(tokens, vocab_size))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # without a decoder, decoding joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="left",
    )


def build_policy(spec: dict, device: str = "cpu"):
    """The randomly initialised policy (seed 0) and tokenizer of a config, built on `device`.

    A Qwen2 policy on a GPU is cast to bfloat16, the dtype in which TRL loads a Qwen checkpoint (`from_pretrained`
    infers it from the weights); elsewhere every policy stays in float32.

    Returns:
        `tuple` of the model and its tokenizer: the test suite's Qwen3 family over the tiny BPE tokenizer, or, for a
        config with a `vocab`, a `Qwen2ForCausalLM` (untied output head) over [`build_word_tokenizer`].
    """
    import torch

    if "vocab" not in spec:
        from dsdr_trl.toy.models import build_model as build_tiny_model
        from dsdr_trl.toy.models import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        shape = dict(hidden_size=spec["hidden"], intermediate_size=spec["intermediate"], num_layers=spec["layers"])
        model = build_tiny_model(tokenizer, num_heads=spec["heads"], num_kv_heads=spec["kv_heads"], **shape)
        return model, tokenizer

    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_word_tokenizer(spec["vocab"])
    special = dict(
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id
    )
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden"],
        intermediate_size=spec["intermediate"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"],
        max_position_embeddings=32_768,
        tie_word_embeddings=False,
        **special,
    )
    torch.manual_seed(0)
    with torch.device(device):  # initialising 0.6B parameters on a GPU takes a fraction of the time it takes on a CPU
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(**special)
    if torch.device(device).type == "cuda":
        model.to(torch.bfloat16)
    return model, tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("grpo", "dsdr"), required=True)
    parser.add_argument("--config", choices=sorted(CONFIGS), required=True)
    parser.add_argument(
        "--steps",
        type=int,
        default=4,
        help="optimizer steps; the first one is a warm-up unless the config has its own",
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", type=int, help="the policy's layers instead of the config's (a CPU smoke run)")
    parser.add_argument("--tokens", type=int, help="completion tokens instead of the config's (a CPU smoke run)")
    parser.add_argument("--vocab", type=int, help="vocabulary size instead of the config's (a CPU smoke run)")
    parser.add_argument("--diversity-encoder", help="DSDR's encoder (a local sentence-transformers directory)")
    args = parser.parse_args(argv)
    if args.vocab and "vocab" not in CONFIGS[args.config]:
        parser.error(f"--vocab applies to the Qwen2 configs only, not to {args.config}")

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    spec = dict(CONFIGS[args.config])
    spec.update({key: getattr(args, key) for key in ("layers", "tokens", "vocab") if getattr(args, key)})
    cuda = torch.cuda.is_available()
    model, tokenizer = build_policy(spec, "cuda" if cuda else "cpu")
    dataset = Dataset.from_dict({"prompt": PROMPTS})
    rows = spec["prompts"] * spec["group"]

    def training_args(tokens: int, steps: int, output_dir: str) -> dict:
        return dict(
            output_dir=output_dir,
            use_cpu=not cuda,
            bf16=cuda,
            activation_checkpointing=False,
            per_device_train_batch_size=rows // 2,
            gradient_accumulation_steps=2,
            num_generations=spec["group"],
            max_completion_length=tokens,
            # Every completion has exactly `tokens` tokens on both sides, so the two methods do the same generation work.
            generation_kwargs={"min_new_tokens": tokens},
            max_steps=steps,
            learning_rate=1e-5,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            seed=0,
            disable_tqdm=True,
        )

    # DSDR's backbone (clip-higher, no KL, per-sequence mean) on both sides: the ratio isolates DSDR's own terms.
    backbone = dict(epsilon_high=0.28, beta=0.0, loss_type="grpo")
    if args.method == "dsdr":
        from dsdr_trl import DSDRConfig, DSDRGRPOTrainer

        encoder = {"diversity_encoder": args.diversity_encoder} if args.diversity_encoder else {}
        trainer_cls, config_cls = DSDRGRPOTrainer, functools.partial(DSDRConfig, **encoder)
    else:
        from trl import GRPOConfig, GRPOTrainer

        trainer_cls, config_cls = GRPOTrainer, functools.partial(GRPOConfig, **backbone)

    step_ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            step_ends.append(time.perf_counter())

        def on_step_end(self, *_, **__):
            if cuda:
                torch.cuda.synchronize()
            step_ends.append(time.perf_counter())

    output_dir = str(Path(args.out).with_suffix(""))
    warmup_tokens = spec.get("warmup_tokens")
    if warmup_tokens:
        # CUDA and cuBLAS set-up, the encoder's first batch, lazy imports: paid here, by a short run of its own.
        warmup = trainer_cls(
            model=model,
            reward_funcs=parity_reward,
            args=config_cls(**training_args(warmup_tokens, 1, output_dir + "-warmup")),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        warmup.train()
        del warmup
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    trainer = trainer_cls(
        model=model,
        reward_funcs=parity_reward,
        args=config_cls(**training_args(spec["tokens"], args.steps, output_dir)),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[StepClock()],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    step_times = [end - start for start, end in zip(step_ends, step_ends[1:], strict=False)]
    result = {
        "method": args.method,
        "config": args.config,
        "policy_parameters": sum(p.numel() for p in model.parameters()),
        "policy_layers": spec["layers"],
        "policy_vocab": len(tokenizer),
        "rows_per_step": rows,
        "completion_tokens": spec["tokens"],
        "step_times": step_times,
        "timed_step_times": step_times if warmup_tokens else step_times[1:],
        "warmup": f"a one-step run at {warmup_tokens} tokens" if warmup_tokens else "the first step",
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_cuda_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
