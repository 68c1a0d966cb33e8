"""`PassAtKCallback`: pass@k, avg@N and diversity of a held-out set during training, logged beside TRL's metrics.

GRPO's own evaluation reports rewards; the paper's claims are about pass@k at large k and the diversity of correct
solutions, so this callback logs `eval/pass@k`, `eval/avg@N`, `eval/semantic_distance`, ... through the Trainer's `log`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import Trainer, TrainerCallback

from .generation import evaluate_policy, prompt_texts
from .metrics import EvaluationResult, evaluate_samples, parse_ks

__all__ = ["PassAtKArguments", "PassAtKCallback"]


class PassAtKCallback(TrainerCallback):
    """
    Evaluates pass@k and the diversity of correct samples on a fixed problem set before training and every
    `eval_steps` optimizer steps (default: `args.eval_steps` when an integer; else call [`PassAtKCallback.evaluate`]).

    Process i % num_processes samples problem i (with the trainer's vLLM engine if it has one), under its own seed and
    the trainer's `chat_template_kwargs`; the counts are gathered, so each process holds the same numbers. Under
    ZeRO-3 give at least as many problems as processes. `encoder="trainer"` reuses the trainer's sentence encoder,
    `None` skips the semantic distance. `prefix="eval_"` puts the numbers in the `eval/` section of Weights & Biases
    and Trackio. `generation_kwargs` go to [`~dsdr_trl.generation.generate_samples`].
    """

    def __init__(
        self,
        trainer: Any,
        prompts: Sequence[Any],
        solutions: Sequence[str],
        ks: Sequence[int] | str = (1,),
        num_samples: int = 1,
        eval_steps: int | None = None,
        encoder: Any = "trainer",
        prefix: str = "eval/",
        **generation_kwargs: Any,
    ):
        if len(prompts) != len(solutions):
            raise ValueError(f"Got {len(prompts)} prompts but {len(solutions)} solutions.")
        self.ks = parse_ks(ks, num_samples)
        self.trainer = trainer
        self.prompts, self.solutions = list(prompts), list(solutions)
        self.num_samples = num_samples
        self.eval_steps = eval_steps
        self.encoder = getattr(trainer, "diversity_encoder", None) if encoder == "trainer" else encoder
        self.prefix = prefix
        self.chat_template_kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        self.generation_kwargs = generation_kwargs
        self.history: list[tuple[int, dict[str, float]]] = []

    def _due(self, args: Any, step: int) -> bool:
        steps = self.eval_steps if self.eval_steps is not None else args.eval_steps
        # A fractional `eval_steps` (a share of the run) is a Trainer convention for its own loop; here it is ignored.
        return steps is not None and steps >= 1 and float(steps).is_integer() and step % int(steps) == 0

    def evaluate(self, step: int) -> EvaluationResult:
        """Runs the evaluation now, records it in the trainer's metrics and in `history`, and returns it."""
        from accelerate.utils import gather_object

        trainer, accelerator = self.trainer, self.trainer.accelerator
        rank, world = accelerator.process_index, accelerator.num_processes
        prompts, solutions = self.prompts[rank::world], self.solutions[rank::world]
        if getattr(trainer, "use_vllm", False):
            result = self._evaluate_with_vllm(prompts, solutions)
        else:
            result = evaluate_policy(
                trainer.model,
                trainer.processing_class,
                prompts,
                solutions,
                ks=self.ks,
                num_samples=self.num_samples,
                encoder=self.encoder,
                show_progress=False,
                chat_template_kwargs=self.chat_template_kwargs,
                **self.generation_kwargs,
            )
        per_problem = result.per_problem if world == 1 else gather_object(result.per_problem)
        merged = EvaluationResult(ks=self.ks, per_problem=per_problem)
        metrics = {f"{self.prefix}{name}": float(value) for name, value in merged.metrics().items()}
        # The base Trainer's `log`, not GRPOTrainer's: the latter would also flush (and clear) TRL's training metrics
        # of the step into this entry.
        Trainer.log(self.trainer, dict(metrics))
        self.history.append((step, metrics))
        return merged

    def _evaluate_with_vllm(self, prompts: list[Any], solutions: list[str]) -> EvaluationResult:
        """Samples through the trainer's vLLM engine (colocated or server) with the current weights, then scores."""
        trainer, engine = self.trainer, self.trainer.vllm_generation
        if trainer.state.global_step != trainer._last_loaded_step:
            engine.sync_weights()
            trainer._last_loaded_step = trainer.state.global_step
        tokenizer = trainer.processing_class
        texts = prompt_texts(tokenizer, prompts, self.chat_template_kwargs)
        prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        repeated = [ids for ids in prompt_ids for _ in range(self.num_samples)]  # TRL's layout: each prompt G times
        overrides = {
            "temperature": self.generation_kwargs.get("temperature", engine.temperature),
            "top_p": self.generation_kwargs.get("top_p", engine.top_p),
            "max_completion_length": self.generation_kwargs.get("max_new_tokens", engine.max_completion_length),
        }
        saved = {name: getattr(engine, name) for name in overrides}
        try:
            for name, value in overrides.items():
                setattr(engine, name, value)
            _, completion_ids, _, _ = engine.generate(prompts=repeated, images=None, num_generations=self.num_samples)
        finally:
            for name, value in saved.items():
                setattr(engine, name, value)
        decoded = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        samples = [decoded[i * self.num_samples : (i + 1) * self.num_samples] for i in range(len(prompts))]
        return evaluate_samples(samples, solutions, self.ks, self.encoder)

    def on_train_begin(self, args, state, control, **kwargs):
        # The baseline: the policy before its first update (not again when a run resumes from a checkpoint).
        if state.global_step == 0 and self._due(args, 0):
            self.evaluate(0)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self._due(args, state.global_step):
            self.evaluate(state.global_step)
        return control


@dataclass
class PassAtKArguments:
    """The [`PassAtKCallback`] of `dsdr-trl train`, as flags: off unless `passk_eval_dataset` is given."""

    passk_eval_dataset: str | None = field(
        default=None,
        metadata={"help": "Pass@k callback data (as dataset_name), logged as eval/* every passk_eval_steps."},
    )
    passk_eval_split: str | None = field(default=None, metadata={"help": "Split of passk_eval_dataset."})
    passk_eval_limit: int | None = field(default=None, metadata={"help": "Evaluate on the first N problems only."})
    passk_eval_num_samples: int = field(default=4, metadata={"help": "Samples per problem for the pass@k callback."})
    passk_eval_k: str = field(default="1", metadata={"help": "Comma-separated k of pass@k, each <= num_samples."})
    passk_eval_temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the callback."})
    passk_eval_top_p: float = field(default=0.9, metadata={"help": "Top-p of the callback (the paper's 0.9)."})
    passk_eval_max_new_tokens: int | None = field(default=None, metadata={"help": "Default: max_completion_length."})
    passk_eval_steps: int | None = field(
        default=None, metadata={"help": "Callback every N steps; default: eval_steps."}
    )
    passk_eval_prefix: str = field(
        default="eval/", metadata={"help": "Metric prefix; 'eval_' files them under eval/ in W&B and Trackio."}
    )

    def passk_callback(self, trainer: Any, dataset: Any) -> PassAtKCallback:
        """The callback on `dataset`'s `prompt` and `solution` columns; length, batch size and seed from `trainer.args`."""
        args = trainer.args
        return PassAtKCallback(
            trainer,
            dataset["prompt"],
            dataset["solution"],
            ks=self.passk_eval_k,
            num_samples=self.passk_eval_num_samples,
            eval_steps=self.passk_eval_steps,
            temperature=self.passk_eval_temperature,
            top_p=self.passk_eval_top_p,
            max_new_tokens=self.passk_eval_max_new_tokens or args.max_completion_length,
            batch_size=args.per_device_eval_batch_size,
            seed=args.seed,
            prefix=self.passk_eval_prefix,
        )
