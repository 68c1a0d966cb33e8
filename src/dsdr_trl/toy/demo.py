r"""
The demo behind `dsdr-trl demo`: GRPO against DSDR on the embedded toy task, on CPU, in minutes.

Settings are the fields of [`DemoArguments`] on top of a named regime ([`REGIMES`]). From the regime's shipped warm
start ([`dsdr_trl.toy.warmstart`]) it trains plain GRPO (`DSDRConfig(diversity_coef=0, local_entropy_coef=0)`) and DSDR
with the same seeds, steps, batch and learning rate, then samples `num_samples` completions per held-out problem and
reports pass@k (unbiased estimator), avg@N, distinct correct solutions per problem (by formula set), the semantic
distance among correct samples, the strategies the correct samples use and the training curves, next to the committed
many-seed results (docs/effect-study.md).

DSDR's toy coefficients were fixed before any comparison: λ_d = 0.1 (at toy scale with binary rewards it still keeps
every correct completion above every incorrect one), λ_ℓ = 0.01 (the largest value the paper reports as stable),
τ = 5 (the paper's). Both methods share the paper's backbone: clip-higher ε = (0.2, 0.28), no KL, per-sequence token
mean. RL runs 100 steps at a constant learning rate of 1e-4 (`hard-family`, `minority-rescue`; `collapse` keeps the
2e-4 set from one GRPO-only trial). Torch uses one thread: the model is so small that a second barely helps, while on
a busy 2-core machine two threads contend.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .console import METRICS_FILE, MetricsFile, TrainingBar, quiet_run
from .report import LABELS, METHODS, aggregate, rebuild_report
from .task import (
    MINORITY_MIX,
    NUM_EVAL_PROBLEMS,
    NUM_RL_PROBLEMS,
    STRATEGY_SETS,
    Splits,
    minority_rescue_splits,
    rl_dataset,
    solution_strategy,
    split_problems,
)
from .warmstart import CPU_RUN, load_policy, shipped_warmstart, train_warmstart

# Named regimes: settings of `DemoArguments`, as changes to its defaults (`--regime NAME`; flags override them).
# - `hard-family` (the defaults, chosen by the regime study, docs/effect-study.md): balanced strategies, evaluation on a
#   problem family (multipliers 8 and 9) that SFT saw a fifth of and RL none of. Its warm start ships.
# - `collapse`: the original task from its shipped 600-step warm start, RL at 2e-4; RL collapses both methods onto the
#   most accurate strategy.
# - `minority-rescue`: the task variant of `dsdr_trl.toy.task.minority_rescue_splits`, where only the strategy SFT
#   uses least (round-up, 5 % of its rows) solves the evaluation family, and the warm start has memorised the RL
#   problems, so that most RL groups are all-correct: where DSDR's bonus is the only signal (Prop. C.4).
REGIMES: dict[str, dict[str, Any]] = {
    "hard-family": {},
    "collapse": {"strategies": "original", "hard_multipliers": [], "sft_steps": 600, "learning_rate": 2e-4},
    "minority-rescue": {"task_variant": "minority-rescue", "hard_multipliers": [], "sft_includes_rl": True},
}
TASK_VARIANTS = ("standard", "minority-rescue")
DEFAULT_REGIME = "hard-family"
# The numeric settings' ranges, bounds included; GRPO compares a group, so it needs two completions per problem.
_RANGES = {"num_eval_problems": (1, NUM_EVAL_PROBLEMS), "num_generations": (2, math.inf), "hard_sft_fraction": (0, 1)}
_RANGES |= {name: (1, math.inf) for name in ("max_steps", "prompts_per_step", "num_samples", "max_completion_length")}
_RANGES |= {name: (1, math.inf) for name in ("num_threads", "sft_steps", "num_rl_problems")}


@dataclass
class DemoArguments:
    """Everything that defines a demo run; stored in `report.json` so that a run can be repeated."""

    output_dir: str = field(default="outputs/demo", metadata={"help": "Where the report, JSON and plots go."})
    regime: str = field(
        default=DEFAULT_REGIME,
        metadata={"help": f"Named settings of the fields below ({', '.join(REGIMES)}); flags override them."},
    )
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Seeds to run; reported as mean ± std."})
    task_variant: str = field(default="standard", metadata={"help": "The task variant.", "choices": TASK_VARIANTS})
    strategies: str = field(
        default="balanced",
        metadata={"help": "'original' or 'balanced' (carry written in three steps).", "choices": list(STRATEGY_SETS)},
    )
    hard_multipliers: list[int] = field(
        default_factory=lambda: [8, 9],
        metadata={"help": "Evaluate on problems a*b with b in this list, which RL never sees; empty: a random split."},
    )
    hard_sft_fraction: float = field(default=0.2, metadata={"help": "Share of the other hard-family problems in SFT."})
    sft_steps: int = field(default=1000, metadata={"help": "SFT steps of the warm start."})
    sft_includes_rl: bool = field(default=False, metadata={"help": "Also SFT on the RL problems (memorising them)."})
    warmstart_cache: str = field(
        default="outputs/warmstarts", metadata={"help": "Where warm starts that do not ship are trained, once."}
    )
    num_rl_problems: int = field(default=NUM_RL_PROBLEMS, metadata={"help": "Problems in the RL split."})
    max_steps: int = field(default=100, metadata={"help": "RL steps per method and seed."})
    prompts_per_step: int = field(default=8, metadata={"help": "Problems per RL step."})
    num_generations: int = field(default=8, metadata={"help": "G, completions per problem."})
    learning_rate: float = field(default=1e-4, metadata={"help": "RL learning rate (constant), both methods."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature during RL."})
    max_completion_length: int = field(default=48, metadata={"help": "Completion cap, RL and evaluation."})
    num_eval_problems: int = field(default=NUM_EVAL_PROBLEMS, metadata={"help": "Held-out problems to evaluate on."})
    num_samples: int = field(default=16, metadata={"help": "Samples per held-out problem (the largest k of pass@k)."})
    eval_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the evaluation."})
    diversity_coef: float = field(default=0.1, metadata={"help": "DSDR's λ_d (Eq. 10); GRPO uses 0."})
    local_entropy_coef: float = field(default=0.01, metadata={"help": "DSDR's λ_ℓ (Eq. 16); GRPO uses 0."})
    coupling_temperature: float = field(default=5.0, metadata={"help": "DSDR's τ (Eq. 11)."})
    warmstart: str | None = field(default=None, metadata={"help": "A directory of warm-start weights to use instead."})
    rebuild_report: bool = field(default=False, metadata={"help": "Only rewrite report.md and plots from output_dir."})
    num_threads: int = field(default=1, metadata={"help": "Torch CPU threads."})
    plots: bool = field(default=True, metadata={"help": "Draw the PNG plots."})
    verbose: bool = field(default=False, metadata={"help": "Print TRL's per-step metrics and the libraries' notices."})

    def __post_init__(self):
        for name, known in (("regime", REGIMES), ("task_variant", TASK_VARIANTS), ("strategies", STRATEGY_SETS)):
            if getattr(self, name) not in known:
                raise ValueError(f"--{name} must be one of {sorted(known)}, got '{getattr(self, name)}'.")
        if self.task_variant == "minority-rescue" and (self.strategies != "balanced" or self.hard_multipliers):
            raise ValueError("--task_variant minority-rescue needs --strategies balanced and no --hard_multipliers.")
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed, e.g. --seeds 0 1 2.")
        if not set(self.hard_multipliers) <= set(range(2, 10)):
            raise ValueError(f"--hard_multipliers must lie in 2…9, got {self.hard_multipliers}.")
        for name, (low, high) in _RANGES.items():
            if not low <= (value := getattr(self, name)) <= high:
                bounds = f"be at least {low}" if high == math.inf else f"lie in [{low}, {high}]"
                raise ValueError(f"--{name} must {bounds}, got {value}.")

    @property
    def strategy_names(self) -> tuple[str, ...]:
        return STRATEGY_SETS[self.strategies]

    @property
    def sft_mix(self) -> dict[str, int] | None:
        """How often SFT solves a problem with each strategy (`None`: once with each)."""
        return MINORITY_MIX if self.task_variant == "minority-rescue" else None

    def splits(self) -> Splits:
        """The SFT, RL and held-out problems of this setting."""
        if self.task_variant == "minority-rescue":
            return minority_rescue_splits(num_rl=self.num_rl_problems)
        return split_problems(
            num_rl=self.num_rl_problems,
            hard_multipliers=tuple(self.hard_multipliers),
            hard_sft_fraction=self.hard_sft_fraction,
        )

    @property
    def warmstart_name(self) -> str:
        """The name of the warm start these settings train from, unique per strategy set, SFT steps and split."""
        name = f"{self.strategies}-sft{self.sft_steps}" + ("-memorised" if self.sft_includes_rl else "")
        name = ("minority-rescue-" if self.task_variant == "minority-rescue" else "") + name
        if self.hard_multipliers:
            family = "".join(map(str, sorted(self.hard_multipliers)))
            name += f"-hard{family}-{self.hard_sft_fraction:g}"
        return name + (f"-rl{self.num_rl_problems}" if self.num_rl_problems != NUM_RL_PROBLEMS else "")

    def warmstart_recipe(self) -> dict[str, Any]:
        """The `train_warmstart` arguments of that warm start: its SFT problems, strategies, their mix and steps."""
        splits = self.splits()
        problems = splits.sft + splits.rl if self.sft_includes_rl else splits.sft
        return dict(problems=problems, strategies=self.strategy_names, mix=self.sft_mix, max_steps=self.sft_steps)

    @classmethod
    def from_regime(cls, name: str, **overrides: Any) -> DemoArguments:
        """The settings of the named regime, with `overrides` on top."""
        return cls(**(regime_settings(name) | overrides))


def regime_settings(name: str) -> dict[str, Any]:
    """Every field any regime sets, at the value regime `name` gives it (so it can be applied over any settings)."""
    defaults = DemoArguments(regime=name)  # which checks the name
    fields = {key for preset in REGIMES.values() for key in preset}
    return {key: getattr(defaults, key) for key in fields} | REGIMES[name] | {"regime": name}


def make_mode_monitor(group_size: int, strategies: tuple[str, ...]):
    """A zero-weight reward function that logs which strategies the correct completions of each step use.

    It logs `toy/modes_per_group` (distinct strategies among the correct completions of a group, averaged over groups
    with a correct one), `toy/share_<strategy>` (the share of correct completions using each strategy) and
    `toy/frac_all_correct` (groups whose every completion is correct: where DSDR's bonus is the only signal), so the
    mode collapse can be watched for GRPO too, which computes no diversity scores. Correctness here is an exact match
    of the boxed integer, which is what `accuracy_reward` decides on this task, without a second verifier call.
    """
    from ..rewards import extract_answer

    def toy_modes(completions: list[str], solution: list[str], log_metric=None, **kwargs) -> list[float]:
        correct = [extract_answer(text) == gold for text, gold in zip(completions, solution, strict=True)]
        used = [solution_strategy(text) if ok else None for text, ok in zip(completions, correct, strict=True)]
        if log_metric is not None:
            groups = [range(i, i + group_size) for i in range(0, len(completions), group_size)]
            modes = [len({used[i] for i in group} - {None}) for group in groups if any(correct[i] for i in group)]
            counts = Counter(name for name in used if name)
            total = sum(counts.values())
            log_metric("toy/modes_per_group", sum(modes) / len(modes) if modes else 0.0)
            log_metric("toy/frac_all_correct", sum(all(correct[i] for i in group) for group in groups) / len(groups))
            for name in strategies:
                log_metric(f"toy/share_{name}", counts[name] / total if total else 0.0)
        return [0.0] * len(completions)

    return toy_modes


def train_method(
    method: str,
    seed: int,
    settings: DemoArguments,
    warmstart: Path,
    encoder: Any,
    train_dataset: Any,
    run_dir: Path,
    dsdr_options: dict[str, Any] | None = None,
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Trains `"grpo"` or `"dsdr"` from the warm start with `DSDRGRPOTrainer` and returns the model, its tokenizer and
    the per-step log history. GRPO is the same trainer with both DSDR coefficients at 0, so the two runs differ in
    nothing else; `dsdr_options` are further `DSDRConfig` fields."""
    from transformers import PrinterCallback

    from ..config import DSDRConfig
    from ..rewards import accuracy_reward
    from ..trainer import DSDRGRPOTrainer

    model, tokenizer = load_policy(warmstart)
    dsdr = method == "dsdr"
    args = DSDRConfig(
        output_dir=str(run_dir),
        seed=seed,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        num_generations=settings.num_generations,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        temperature=settings.temperature,
        max_completion_length=settings.max_completion_length,
        # The monitor only logs; its zero weight keeps the reward, and so both methods' advantages, untouched.
        reward_weights=[1.0, 0.0],
        diversity_coef=settings.diversity_coef if dsdr else 0.0,
        local_entropy_coef=settings.local_entropy_coef if dsdr else 0.0,
        coupling_temperature=settings.coupling_temperature,
        logging_steps=1,
        disable_tqdm=not settings.verbose,  # without --verbose, the demo's own bar (console.TrainingBar)
        **CPU_RUN,
        **(dsdr_options or {}),
    )
    trainer = DSDRGRPOTrainer(
        model=model,
        reward_funcs=[accuracy_reward, make_mode_monitor(settings.num_generations, settings.strategy_names)],
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        diversity_encoder=encoder if dsdr else None,
        callbacks=[MetricsFile(run_dir / METRICS_FILE)],
    )
    if not settings.verbose:  # one TrainingBar in place of TRL's console
        trainer.remove_callback(PrinterCallback)  # what disable_tqdm puts in the progress bar's place
        trainer.add_callback(TrainingBar(f"seed {seed}: {LABELS[method]}"))
    trainer.train()
    trainer.save_state()  # trainer_state.json in run_dir, next to metrics.jsonl
    history = [entry for entry in trainer.state.log_history if "reward" in entry]
    return trainer.model, tokenizer, history


def evaluate(
    model: Any, tokenizer: Any, problems: list, settings: DemoArguments, seed: int, encoder: Any
) -> dict[str, Any]:
    """Samples `num_samples` completions per held-out problem and returns pass@k, avg@N and the diversity numbers."""
    from ..generation import generate_samples
    from ..metrics import evaluate_samples

    samples = generate_samples(
        model,
        tokenizer,
        [p.prompt for p in problems],
        num_samples=settings.num_samples,
        temperature=settings.eval_temperature,
        max_new_tokens=settings.max_completion_length,
        batch_size=256,
        seed=seed,
    )
    answers = [p.answer for p in problems]
    result = evaluate_samples(samples, answers, range(1, settings.num_samples + 1), encoder, keep_samples=True)
    # Per problem, the strategy of each correct sample ("other" when it follows none).
    named = [
        [solution_strategy(t) or "other" for t, ok in zip(p["samples"], p["correct"], strict=True) if ok]
        for p in result.per_problem
    ]
    used = Counter(name for group in named for name in group)
    total = sum(used.values())
    modes = [len(set(group) - {"other"}) for group in named]
    return {
        "pass@k": {str(k): v for k, v in result.pass_at_k.items()},
        f"avg@{settings.num_samples}": result.avg_accuracy,
        "distinct_correct": result.diversity.get("distinct_correct"),
        "semantic_distance": result.diversity.get("semantic_distance"),
        "strategies_per_problem": sum(modes) / len(modes),
        "strategy_share": {name: used[name] / total if total else 0.0 for name in (*settings.strategy_names, "other")},
        "examples": {p.prompt: group[:4] for p, group in list(zip(problems, samples, strict=True))[:3]},
    }


def resolve_warmstart(settings: DemoArguments, quiet: bool = False) -> Path:
    """The warm start of `settings`: `--warmstart`, else a shipped one, else one trained once into the cache."""
    if settings.warmstart:
        return Path(settings.warmstart)  # `load_policy` says how to train weights when there are none
    name = settings.warmstart_name
    if (shipped := shipped_warmstart(name)) is not None:
        return shipped
    path = Path(settings.warmstart_cache) / name
    if not (path / "model.safetensors").exists():
        if not quiet:
            print(f"[demo] training the warm start {name} ({settings.sft_steps} SFT steps) into {path}, once")
        # Trained next to the target and renamed, so that a concurrent run never reads a half-written directory.
        staging = path.parent / f".{name}.{os.getpid()}"
        train_warmstart(staging, **settings.warmstart_recipe(), disable_tqdm=quiet)
        try:
            staging.rename(path)
        except OSError:  # another run got there first
            shutil.rmtree(staging, ignore_errors=True)
    return path


@quiet_run
def run_demo(settings: DemoArguments) -> dict[str, Any]:
    """Runs the whole comparison and writes `report.md`, `report.json` and the plots; returns the report."""
    from ..encoder import load_diversity_encoder

    torch.set_num_threads(settings.num_threads)
    start = time.time()
    output_dir = Path(settings.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    warmstart = resolve_warmstart(settings)
    splits = settings.splits()
    eval_problems = splits.held_out[: settings.num_eval_problems]
    train_dataset = rl_dataset(splits.rl)
    encoder = load_diversity_encoder()

    per_seed: dict[str, list[dict[str, Any]]] = {"warmstart": [], **{m: [] for m in METHODS}}
    seconds = dict.fromkeys(per_seed, 0.0)  # each method's own wall time: training and evaluation, all seeds
    for seed in settings.seeds:
        for method in per_seed:
            began = time.time()
            if method == "warmstart":
                print(f"[demo] seed {seed}: evaluating the warm start")
                model, tokenizer = load_policy(warmstart)
            else:
                print(f"[demo] seed {seed}: training {LABELS[method]} for {settings.max_steps} steps")
                run_dir = output_dir / "runs" / f"{method}-seed{seed}"
                model, tokenizer, history = train_method(
                    method, seed, settings, warmstart, encoder, train_dataset, run_dir
                )
                (run_dir / "log_history.json").write_text(json.dumps(history, indent=1))
                print(f"[demo] seed {seed}: evaluating {LABELS[method]}")
            per_seed[method].append(evaluate(model, tokenizer, eval_problems, settings, seed, encoder))
            seconds[method] += time.time() - began

    report = {
        "seeds": settings.seeds,
        "wall_seconds": time.time() - start,
        "settings": asdict(settings) | {"warmstart": str(warmstart)},
        "methods": {name: aggregate(runs, settings.num_samples) for name, runs in per_seed.items()},
    }
    for name, method in report["methods"].items():
        method.update(seeds=settings.seeds, wall_seconds=seconds[name])
    (output_dir / "report.json").write_text(json.dumps(report, indent=1))
    return rebuild_report(output_dir)
