"""Shared by the tests and the scripts they launch with torchrun: the tiny model, a stand-in verifier, CPU settings.

`conftest.py` turns these into fixtures; a torchrun script imports them directly (it puts this folder on `sys.path`).
"""

import os
from pathlib import Path

from datasets import Dataset

from dsdr_trl.config import DEFAULT_DIVERSITY_ENCODER
from dsdr_trl.toy.models import build_model as build_tiny_model
from dsdr_trl.toy.models import build_tiny_tokenizer

__all__ = [
    "PROMPTS",
    "SOLUTIONS",
    "TEST_ENCODER",
    "TINY_CPU",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "even_length_reward",
    "prompt_dataset",
    "save_tiny_model",
    "tiny_settings",
]

PROMPTS = ["Solve 2+2.", "What is 3*3?", "Compute 1/2+1/3.", "Find x if 2x=4.", "Add 5 and 7.", "Halve 10."]
SOLUTIONS = ["4", "9", "\\frac{5}{6}", "2", "12", "5"]

# The diversity encoder of the GPU tests: the bundled default, or the local copy that DSDR_TEST_ENCODER names
# (`scripts/gpu_check.sh` names the float16 copy it carries, on a machine without the bundled package).
TEST_ENCODER = os.environ.get("DSDR_TEST_ENCODER", DEFAULT_DIVERSITY_ENCODER)

# What every tiny CPU run sets: fp32 on the CPU (bf16 autocast is slower there and adds noise), no activation
# checkpointing (nothing to save on a 17k-parameter model), a log line per step, nothing written but the logs.
TINY_CPU = dict(
    use_cpu=True,
    bf16=False,
    activation_checkpointing=False,
    logging_steps=1,
    report_to="none",
    save_strategy="no",
)


def tiny_settings(**overrides) -> dict:
    """[`TINY_CPU`] plus what every tiny training run shares, with `overrides` on top.

    G = 4 and 8 new tokens keep a step well under a second on CPU; the high learning rate makes every trainable tensor
    move in one step, so a divergence between two trainers shows up in the next step's numbers.
    """
    return {**TINY_CPU, "num_generations": 4, "max_completion_length": 8, "learning_rate": 0.1, **overrides}


def even_length_reward(completions, **kwargs):
    """A deterministic stand-in verifier for random-weight models: about half of the completions are 'correct'."""
    return [float(len(c) % 2 == 0) for c in completions]


def save_tiny_model(directory: str | os.PathLike, seed: int = 0) -> Path:
    """Builds the tiny test model and its tokenizer and saves both to `directory`, a model any command can load."""
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, seed=seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def prompt_dataset(num_prompts: int = 4) -> Dataset:
    """The first `num_prompts` stand-in prompts with their `solution` column."""
    return Dataset.from_dict({"prompt": PROMPTS[:num_prompts], "solution": SOLUTIONS[:num_prompts]})
