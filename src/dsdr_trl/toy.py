r"""
A toy reasoning task with several correct solution strategies, and a tiny policy that knows all of them.

The task is two-digit × one-digit multiplication. A prompt is just `47*6=`; a worked solution writes its steps as
formulas in `$…$` and ends with the answer in `\boxed{}`, so the package's own `accuracy_reward` checks it and
`extract_formulas` sees each strategy as a different formula set. Three strategies solve every problem:

    split   $40*6=240$ $7*6=42$ $240+42=282$ \boxed{282}     tens and ones, then add
    round   $50*6=300$ $3*6=18$ $300-18=282$ \boxed{282}     round up to the next ten, then subtract
    carry   $7*6=42$ $4*6+4=28$ \boxed{282}                  column multiplication with a carry

The policy is a Qwen2-style causal LM (0.8M parameters, random init) over a character-level tokenizer built in code
(`\boxed{` is one token), warm-started with TRL's `SFTTrainer` on worked solutions that use the three strategies
equally often. Everything is derived from a seed: the split of the 648 problems into 352 for SFT, 200 for RL and 96
held out for evaluation, the model's init and the SFT data order, so `train_warmstart(seed=0)` regenerates the
weights shipped in `dsdr_trl/assets/warmstart` (`dsdr-trl demo --regenerate-warmstart`).

The task was fixed before GRPO and DSDR were compared on it; nothing here is tuned to favour either.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

STRATEGIES = ("split", "round", "carry")
WARMSTART_SEED = 0
NUM_EVAL_PROBLEMS = 96
NUM_RL_PROBLEMS = 200
ASSET_DIR = Path(__file__).parent / "assets" / "warmstart"

# The SFT schedule of the shipped warm start: 600 steps reach 27 % held-out pass@1 (1500 steps reached 71 % and nearly
# memorised the SFT problems). The demo needs the middle ground: enough correct completions for GRPO groups to carry a
# signal, and room above pass@1 for pass@k to show what RL keeps or loses.
SFT_MAX_STEPS = 600
SFT_BATCH_SIZE = 64
SFT_LEARNING_RATE = 2e-3

_BOXED = "\\boxed{"
_SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")
_CHARACTERS = tuple("0123456789*+-=$ }")


@dataclass(frozen=True)
class Problem:
    """One multiplication problem `a*b` with `a` in 11…99 (not a multiple of 10) and `b` in 2…9."""

    a: int
    b: int

    @property
    def prompt(self) -> str:
        return f"{self.a}*{self.b}="

    @property
    def answer(self) -> str:
        return str(self.a * self.b)


def all_problems() -> list[Problem]:
    """The 648 problems of the task. Multiples of 10 are left out: every strategy would degenerate to one step."""
    return [Problem(a, b) for a in range(11, 100) if a % 10 for b in range(2, 10)]


@dataclass(frozen=True)
class Splits:
    """Three disjoint sets of problems: for SFT, for RL, and held out for evaluation.

    RL gets problems the warm start never saw: on its own SFT problems the policy is near-perfect, every group would
    be all-correct, and GRPO would have nothing to learn from.
    """

    sft: list[Problem]
    rl: list[Problem]
    held_out: list[Problem]


def split_problems(
    seed: int = WARMSTART_SEED, num_eval: int = NUM_EVAL_PROBLEMS, num_rl: int = NUM_RL_PROBLEMS
) -> Splits:
    """Disjoint SFT, RL and held-out problems, shuffled with `seed`."""
    problems = all_problems()
    random.Random(seed).shuffle(problems)
    return Splits(
        sft=problems[num_eval + num_rl :], rl=problems[num_eval : num_eval + num_rl], held_out=problems[:num_eval]
    )


def worked_solution(problem: Problem, strategy: str) -> str:
    """A worked solution of `problem` with one of the `STRATEGIES`, formulas in `$…$` and the answer boxed."""
    a, b = problem.a, problem.b
    tens, ones = divmod(a, 10)
    if strategy == "split":
        steps = [f"{tens * 10}*{b}={tens * 10 * b}", f"{ones}*{b}={ones * b}", f"{tens * 10 * b}+{ones * b}={a * b}"]
    elif strategy == "round":
        up, gap = (tens + 1) * 10, (tens + 1) * 10 - a
        steps = [f"{up}*{b}={up * b}", f"{gap}*{b}={gap * b}", f"{up * b}-{gap * b}={a * b}"]
    elif strategy == "carry":
        carry, digit = divmod(ones * b, 10)
        steps = [f"{ones}*{b}={ones * b}", f"{tens}*{b}+{carry}={tens * b + carry}"]
        del digit  # the last digit of the answer is written straight into the box
    else:
        raise ValueError(f"Unknown strategy '{strategy}'; choose one of {STRATEGIES}.")
    return " ".join(f"${step}$" for step in steps) + f" {_BOXED}{a * b}}}"


_STRATEGY_PATTERNS = {
    "split": re.compile(r"^\$\d0\*\d=\d+\$ \$\d\*\d=\d+\$ \$\d+\+\d+=\d+\$"),
    "round": re.compile(r"^\$\d+0\*\d=\d+\$ \$\d\*\d=\d+\$ \$\d+-\d+=\d+\$"),
    "carry": re.compile(r"^\$\d\*\d=\d+\$ \$\d\*\d\+\d=\d+\$"),
}


def solution_strategy(text: str) -> str | None:
    """The strategy a completion follows (by the shape of its steps), or `None` if it follows none of them."""
    for name, pattern in _STRATEGY_PATTERNS.items():
        if pattern.match(text):
            return name
    return None


def sft_dataset(problems: list[Problem], seed: int = WARMSTART_SEED):
    """A prompt–completion `Dataset` with every problem solved once by each strategy, shuffled with `seed`."""
    from datasets import Dataset

    rows = [
        {"prompt": problem.prompt, "completion": worked_solution(problem, strategy)}
        for problem in problems
        for strategy in STRATEGIES
    ]
    random.Random(seed).shuffle(rows)
    return Dataset.from_list(rows)


def rl_dataset(problems: list[Problem]):
    """A `Dataset` with the `prompt` and `solution` columns `GRPOTrainer` and `accuracy_reward` expect."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [p.prompt for p in problems], "solution": [p.answer for p in problems]})


def build_tokenizer():
    r"""A character-level `PreTrainedTokenizerFast` for the task: digits, `*+-=$ }`, `\boxed{` and specials."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate((*_SPECIAL_TOKENS, _BOXED, *_CHARACTERS))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # characters are joined back without separators
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )


def build_model(tokenizer, seed: int = WARMSTART_SEED):
    """A randomly initialised Qwen2-style causal LM: 4 layers, width 128, 0.8M parameters."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=96,  # prompt (≤ 5) + the longest solution (< 45) with room to spare
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    return model


def train_warmstart(
    output_dir: str | Path,
    seed: int = WARMSTART_SEED,
    max_steps: int = SFT_MAX_STEPS,
    batch_size: int = SFT_BATCH_SIZE,
    learning_rate: float = SFT_LEARNING_RATE,
    report_to: str = "none",
    problems: list[Problem] | None = None,
) -> Path:
    """Warm-starts the policy with TRL's `SFTTrainer` on worked solutions of the SFT problems.

    Deterministic under `seed` on a given machine (CPU, fp32). The model and the training log are saved to
    `output_dir`; the tokenizer is not, since `build_tokenizer` rebuilds it. `problems` replaces the SFT problems of
    `split_problems(seed)`, e.g. to study a policy that has already memorised the RL problems.

    Returns:
        `Path`: `output_dir`.
    """
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed)
    train = split_problems(seed).sft if problems is None else problems
    args = SFTConfig(
        output_dir=str(output_dir / "checkpoints"),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, max_steps // 20),
        weight_decay=0.01,
        logging_steps=50,
        save_strategy="no",
        report_to=report_to,
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        max_length=64,
        dataset_num_proc=None,
        disable_tqdm=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(train, seed), processing_class=tokenizer)
    trainer.train()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    (output_dir / "sft_log.json").write_text(json.dumps({"seed": seed, "max_steps": max_steps, "log": losses}))
    return output_dir


def load_policy(path: str | Path | None = None):
    """The warm-started policy and its tokenizer, from `path` or else from the weights shipped in the package.

    Returns:
        `tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast]`
    """
    from transformers import AutoModelForCausalLM

    path = Path(path) if path is not None else ASSET_DIR
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(
            f"No warm-start weights in {path}. Regenerate them with `dsdr-trl demo --regenerate-warmstart`."
        )
    tokenizer = build_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
