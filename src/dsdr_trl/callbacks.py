"""`PassAtKCallback`: pass@k, avg@N and diversity of a held-out set during training, logged beside TRL's metrics.

GRPO's own evaluation loop reports rewards on `eval_dataset`; the DSDR paper's claims are about pass@k at large k
and about the diversity of correct solutions, so this callback runs [`~dsdr_trl.evaluation.evaluate_policy`] every
`eval_steps` optimizer steps and appends the results to the trainer's metric buffer as `eval/pass@k`, `eval/avg@N`,
`eval/semantic_distance`, ... They are then logged with the next training log line, through every logger TRL uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from .evaluation import EvaluationResult, evaluate_policy, parse_ks

__all__ = ["PassAtKCallback"]


class PassAtKCallback(TrainerCallback):
    """
    Evaluates pass@k and the diversity of correct samples on a fixed problem set every `eval_steps` steps.

    Every process samples its share of the problems (problem i goes to process `i % num_processes`) and the
    per-problem counts are gathered, so each process holds the same numbers. Sampling uses its own seed and restores
    the global RNG state afterwards, so training is not perturbed. Under DeepSpeed ZeRO-3 every process must
    generate in lockstep; give at least as many problems as processes.

    Args:
        trainer ([`~trl.GRPOTrainer`]):
            The trainer whose model is evaluated and whose metric buffer receives the numbers.
        prompts (`Sequence`):
            One prompt per problem (strings or conversations), e.g. the `prompt` column of
            [`~dsdr_trl.data.load_math_dataset`].
        solutions (`Sequence[str]`):
            Their reference answers.
        ks (`Sequence[int]` or `str`, *optional*, defaults to `(1,)`):
            The k of pass@k; each at most `num_samples`.
        num_samples (`int`, *optional*, defaults to `1`):
            Samples per problem.
        eval_steps (`int`, *optional*):
            Evaluate every this many optimizer steps; defaults to `args.eval_steps` when it is an integer. Without
            either, nothing runs by itself; call [`PassAtKCallback.evaluate`] directly.
        encoder (`SentenceTransformer` or `str`, *optional*, defaults to `"trainer"`):
            Sentence encoder for the semantic distance: `"trainer"` reuses the DSDR trainer's encoder when it has
            one, `None` skips the semantic distance.
        prefix (`str`, *optional*, defaults to `"eval/"`):
            Prefix of the logged names.
        **generation_kwargs:
            `temperature`, `top_p`, `max_new_tokens`, `batch_size`, `seed` for
            [`~dsdr_trl.evaluation.generate_samples`].
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
        self.ks = parse_ks(ks)
        if max(self.ks) > num_samples:
            raise ValueError(
                f"pass@{max(self.ks)} needs at least {max(self.ks)} samples per problem, but num_samples is "
                f"{num_samples}. Lower k or raise num_samples."
            )
        self.trainer = trainer
        self.prompts, self.solutions = list(prompts), list(solutions)
        self.num_samples = num_samples
        self.eval_steps = eval_steps
        self.encoder = getattr(trainer, "diversity_encoder", None) if encoder == "trainer" else encoder
        self.prefix = prefix
        self.generation_kwargs = generation_kwargs
        self.history: list[tuple[int, dict[str, float]]] = []

    def _interval(self, args: Any) -> int | None:
        steps = self.eval_steps if self.eval_steps is not None else args.eval_steps
        # A fractional `eval_steps` (a share of the run) is a Trainer convention for its own loop; here it is ignored.
        return int(steps) if steps is not None and steps >= 1 and float(steps).is_integer() else None

    def evaluate(self, step: int) -> EvaluationResult:
        """Runs the evaluation now, records it in the trainer's metrics and in `history`, and returns it."""
        from accelerate.utils import gather_object

        accelerator = self.trainer.accelerator
        rank, world = accelerator.process_index, accelerator.num_processes
        local = list(range(rank, len(self.prompts), world))
        result = evaluate_policy(
            self.trainer.model,
            self.trainer.processing_class,
            [self.prompts[i] for i in local],
            [self.solutions[i] for i in local],
            ks=self.ks,
            num_samples=self.num_samples,
            encoder=self.encoder,
            show_progress=False,
            **self.generation_kwargs,
        )
        per_problem = result.per_problem if world == 1 else gather_object(result.per_problem)
        merged = EvaluationResult(ks=self.ks, per_problem=per_problem)
        metrics = {f"{self.prefix}{name}": value for name, value in merged.metrics().items()}
        buffer = self.trainer._metrics["train"]  # averaged and logged by GRPOTrainer.log with TRL's own metrics
        for name, value in metrics.items():
            buffer[name].append(float(value))
        self.history.append((step, metrics))
        return merged

    def on_step_end(self, args, state, control, **kwargs):
        interval = self._interval(args)
        if interval is not None and state.global_step % interval == 0:
            self.evaluate(state.global_step)
            control.should_log = True  # so the numbers are logged at this step, not averaged into a later one
        return control
