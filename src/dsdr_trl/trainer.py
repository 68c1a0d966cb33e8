"""`DSDRGRPOTrainer`: DSDR on top of TRL's `GRPOTrainer`, by wrapping its hooks (listed in the class docstring).

g, the bonus and ω are computed once on the gathered generation batch (a group may straddle processes); ω and c ride
along each row through TRL's shuffling and gradient-accumulation splits; the local term reuses the loss forward's
entropies (no second forward).
"""

from __future__ import annotations

import pkgutil
import warnings
from collections.abc import Callable, Sequence

import torch
from accelerate.utils import gather, gather_object
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler

from . import diversity
from .config import DSDR_PAPER, DSDRConfig, DSDRSettingWarning
from .data import hub_dataset_id
from .encoder import diversity_text, embed_rows, load_diversity_encoder, zero3_init_disabled
from .formulas import extract_formulas_batch
from .sampler import EpochSeededRepeatSampler


def dsdr_diversity(completions: list, **kwargs) -> list[float | None]:
    """The bonus column, written by `DSDRGRPOTrainer._calculate_rewards`; `None` here, so TRL's check for unscored
    rows sees the user's functions only."""
    return [None] * len(completions)


class DSDRGRPOTrainer(GRPOTrainer):
    """
    Trainer for DSDR (Dual-Scale Diversity Regularization, arXiv 2602.19895): GRPO whose correct completions get a
    bounded diversity bonus (Eq. 10), and whose loss gets a length-invariant entropy term on correct completions,
    weighted by the coupling softmax ω (Eq. 11–16). Takes the same arguments as [`~trl.GRPOTrainer`], with a
    [`DSDRConfig`].

    The only changes w.r.t. `GRPOTrainer` are these overrides, each calling `super()`:

    - `__init__`: copies the caller's reward lists, resolves the correctness reward, loads the sentence encoder outside
      DeepSpeed ZeRO-3, and appends the `dsdr_diversity` reward column;
    - `_calculate_rewards`: g, the bonus and ω on the gathered generation batch; S_i, U_i, ĝ_i, ω_i and the bonus go to
      TRL's completions table (`dsdr_semantic`, `dsdr_formula`, `dsdr_score`, `dsdr_omega`, `dsdr_bonus`);
    - `_generate_and_score_completions`: advantages of the shaped reward with `advantage_epsilon`, and the per-row
      `dsdr_weight` (ω) and `dsdr_correct` (c);
    - `_get_per_token_logps_and_entropies`: keeps the loss forward's log-probs and entropies;
    - `_compute_loss`: subtracts `local_entropy_coef · L_loc`;
    - `_get_train_sampler`: each epoch's prompt order reproducible after a resume ([`EpochSeededRepeatSampler`]);
    - `create_model_card`: links a dataset only when its name is a Hub id; `_paper` credits DSDR.

    Args:
        diversity_encoder (`SentenceTransformer`, *optional*):
            An already loaded encoder to use instead of loading `args.diversity_encoder`.
        **kwargs:
            Everything [`~trl.GRPOTrainer`] accepts.

    Example:

    ```python
    from dsdr_trl import DSDRConfig, DSDRGRPOTrainer, accuracy_reward
    from dsdr_trl.data import load_math_dataset

    dataset = load_math_dataset("dapo-math-17k")
    args = DSDRConfig(output_dir="dsdr-out", num_generations=8)
    DSDRGRPOTrainer("Qwen/Qwen2.5-0.5B-Instruct", accuracy_reward, args, train_dataset=dataset).train()
    ```
    """

    _tag_names = ["trl", "grpo", "dsdr"]
    _name = "DSDR"
    _paper = DSDR_PAPER  # the model card's "trained with … a method introduced in …" and its citation

    def __init__(self, model, reward_funcs=None, args: DSDRConfig | None = None, *, diversity_encoder=None, **kwargs):
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = DSDRConfig(f"{str(model_name).split('/')[-1]}-DSDR")
        if not isinstance(args, DSDRConfig):
            raise TypeError(
                f"DSDRGRPOTrainer needs a DSDRConfig, got {type(args).__name__}. Build the config with "
                "`DSDRConfig(...)`: it accepts every GRPOConfig field."
            )
        self.diversity_fn = resolve_diversity_fn(args.diversity_fn)
        # GRPOTrainer keeps the caller's lists and writes into them (loaded reward models, environment rewards, the
        # bonus column); copies leave them as the caller wrote them, e.g. for a second trainer.
        reward_funcs = list(reward_funcs) if isinstance(reward_funcs, list) else reward_funcs
        if isinstance(kwargs.get("reward_processing_classes"), list):
            kwargs["reward_processing_classes"] = list(kwargs["reward_processing_classes"])
        super().__init__(model, reward_funcs, args, **kwargs)

        names = list(self.reward_func_names)
        if args.correctness_reward is not None and args.correctness_reward not in names:
            raise ValueError(
                f"correctness_reward={args.correctness_reward!r} is not one of this trainer's reward functions "
                f"{names}. Set it to one of these names, or leave it unset to use the first one."
            )
        self._correctness_index = 0 if args.correctness_reward is None else names.index(args.correctness_reward)

        # The bonus gets its own reward column (weight 1), the way TRL adds environment rewards: the reward sum,
        # `rewards/dsdr_diversity/*` metrics and the completions table then include it with no copied code.
        self.reward_funcs.append(dsdr_diversity)
        self.reward_func_names.append(dsdr_diversity.__name__)
        self.reward_processing_classes.append(None)
        self.reward_weights = torch.cat([self.reward_weights, torch.ones(1)])

        self.diversity_encoder = diversity_encoder
        if self.diversity_encoder is None and args.needs_diversity_scores:
            with zero3_init_disabled():
                self.diversity_encoder = load_diversity_encoder(
                    args.diversity_encoder, self.accelerator.device, args.diversity_encoder_max_length
                )

        self._dsdr_pending: dict | None = None
        self._dsdr_forward: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._warned_no_formulas = False

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        return EpochSeededRepeatSampler.like(sampler) if type(sampler) is RepeatSampler else sampler

    # --- Global scale and coupling (Eq. 4–11) ----------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # (N, k+1)
        device = rewards_per_func.device
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rank = self.accelerator.process_index
        local = slice(rank * len(prompts), (rank + 1) * len(prompts))  # this process's rows of the gathered batch

        user_rewards = rewards_per_func[:, :-1]
        correct = user_rewards[:, self._correctness_index] > self.args.correctness_threshold  # NaN -> False
        # g matters only in groups with a correct row (bonus and ω are 0 elsewhere). With the bonus off it only shapes
        # ω, and a lone correct row gets ω = 1 whatever its score, so such groups need at least two correct rows.
        min_correct = 1 if self.args.diversity_coef > 0 else 2
        scored = (correct.view(-1, group_size).sum(dim=1) >= min_correct).repeat_interleave(group_size)
        if not self.args.needs_diversity_scores or group_size < 2:
            scored = torch.zeros_like(scored)

        among = correct if self.args.diversity_reference == "correct" else None
        semantic, formula = self._diversity_scores(prompts, completions, scored, local, group_size, among)
        score = diversity.diversity_score(semantic, formula, self.args.formula_weight)
        clipped = diversity.clip_score(score, self.args.diversity_clip)
        bonus = diversity.diversity_bonus(score, correct, self.args.diversity_coef, self.args.diversity_clip)
        weights = diversity.coupling_weights(clipped, correct, group_size, self.args.coupling_temperature)

        # A row every user reward function skipped (None) stays unscorable: TRL then excludes it from the baseline.
        unscorable = torch.isnan(user_rewards).all(dim=1)
        rewards_per_func[:, -1] = bonus.to(device).masked_fill(unscorable, float("nan"))
        weighted = rewards_per_func * self.reward_weights.to(device).unsqueeze(0)
        shaped = weighted.nansum(dim=1).masked_fill(unscorable, float("nan"))  # TRL's sum, bonus column included
        unshaped = weighted[:, :-1].nansum(dim=1).masked_fill(unscorable, float("nan"))
        advantages, std_after = diversity.group_advantages(
            shaped, group_size, self.scale_rewards, self.args.advantage_epsilon
        )
        _, std_before = diversity.group_advantages(unshaped, group_size, "group", self.args.advantage_epsilon)
        self._dsdr_pending = {"local": local, "advantages": advantages, "weights": weights, "correct": correct.float()}

        # One value per row of this process beside TRL's columns of the completions table (TRL gathers them); g's
        # parts are empty (None) in groups where they were not computed.
        columns = {"dsdr_semantic": semantic, "dsdr_formula": formula, "dsdr_score": clipped}
        columns |= {"dsdr_omega": weights, "dsdr_bonus": bonus}
        computed = scored[local].tolist()
        for name, values in columns.items():
            values = values[local].tolist()
            if name in ("dsdr_semantic", "dsdr_formula", "dsdr_score"):
                values = [value if c else None for value, c in zip(values, computed, strict=True)]
            self._log_completion_extra(name, values)
        self._log_metrics(mode, columns, scored, correct, group_size)
        for when, std in (("before", std_before), ("after", std_after)):
            # Every row repeats its group's std, so the share of rows is the share of groups.
            zero = torch.isclose(std, torch.zeros_like(std)).float().mean().item()
            self._metrics[mode][f"dsdr/frac_zero_std_{when}"].append(zero)
        return rewards_per_func

    def _diversity_scores(
        self,
        prompts: Sequence,
        completions: Sequence,
        scored: torch.Tensor,
        local: slice,
        group_size: int,
        among: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """S_i and U_i (or `diversity_fn`'s score) of every row of the gathered batch, `(N,)` each, 0 outside `scored`.

        Each process scores its own rows of `scored` groups (incorrect ones included: a correct row is compared with
        all other members, or with `among` (`diversity_reference="correct"`) only with the members it marks); the
        gathers are collectives, run by every process whatever its rows.
        """
        if not scored.any():
            return torch.zeros_like(scored, dtype=torch.float32), torch.zeros_like(scored, dtype=torch.float32)
        keep = scored[local].tolist()
        rows = zip(completions, keep, strict=True)
        texts = [diversity_text(c, self.args.diversity_include_reasoning) for c, kept in rows if kept]
        embeddings = embed_rows(
            self.diversity_encoder,
            texts,
            keep,
            self.accelerator.device,
            self.args.diversity_encoder_batch_size,
            self.args.diversity_encoder_max_length,
            self.args.diversity_encoder_pooling,
        )
        embeddings = gather(embeddings)  # (N, D)
        among = None if among is None else among.to(embeddings.device)
        semantic = diversity.semantic_diversity(embeddings, group_size, among).to(scored.device)

        if self.diversity_fn is not None:
            kept_texts = iter(texts)
            all_texts = gather_object([next(kept_texts) if kept else None for kept in keep])
            all_prompts = gather_object(list(prompts))
            formula = diversity.measured_uniqueness(self.diversity_fn, all_texts, all_prompts, group_size)
        else:
            found = iter(extract_formulas_batch(texts, canonicalize=self.args.formula_canonicalization))
            formulas = gather_object([next(found) if kept else frozenset() for kept in keep])
            self._warn_if_no_formulas(formulas)
            formula = diversity.formula_uniqueness(formulas, group_size, among)
        return semantic * scored, formula.to(scored.device) * scored

    def _warn_if_no_formulas(self, formulas: Sequence[frozenset[str]]) -> None:
        if self._warned_no_formulas or self.args.formula_weight == 0 or any(formulas):
            return
        self._warned_no_formulas = True
        warnings.warn(
            "No completion of a generation batch holds a formula ($…$, \\(…\\), \\[…\\], \\boxed{…}), so U_i = 0 and "
            f"the diversity score is only (1 − {self.args.formula_weight:g})·S_i. For a task without formulas, set "
            "diversity_fn to a measure that fits it, or formula_weight=0 to score the semantic distance alone.",
            DSDRSettingWarning,
            stacklevel=2,
        )

    def _log_metrics(self, mode: str, columns: dict, scored: torch.Tensor, correct: torch.Tensor, group_size: int):
        """The batch's `dsdr/*` means of the per-row columns, beside TRL's metrics."""
        metrics = self._metrics[mode]
        metrics["dsdr/frac_correct"].append(correct.float().mean().item())
        metrics["dsdr/bonus_mean"].append(columns["dsdr_bonus"].mean().item())
        metrics["dsdr/bonus_max"].append(columns["dsdr_bonus"].max().item())
        if self.args.needs_diversity_scores and group_size > 1:  # a group of one has no diversity to measure
            for metric, column, rows in (
                ("semantic_mean", "dsdr_semantic", scored),
                ("formula_mean", "dsdr_formula", scored),
                ("diversity_correct_mean", "dsdr_score", correct),
            ):
                values = columns[column][rows]
                metrics[f"dsdr/{metric}"].append(values.mean().item() if values.numel() else float("nan"))

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        pending, self._dsdr_pending = self._dsdr_pending, None
        local = pending["local"]
        output["advantages"] = pending["advantages"][local].to(output["advantages"].device)
        # TRL logged its own advantages for the completions table; log the ones that train instead.
        logged = self._logs["advantages"]
        for _ in range(min(pending["advantages"].numel(), len(logged))):  # the deque may hold fewer (maxlen)
            logged.pop()
        logged.extend(pending["advantages"].tolist())
        device = output["advantages"].device
        output["dsdr_weight"] = pending["weights"][local].to(device)
        output["dsdr_correct"] = pending["correct"][local].to(device)
        return output

    # --- Local scale (Eq. 12–16) -----------------------------------------------------------------------------------

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        # Only the loss forward asks for entropies (TRL's old/ref log-prob passes run under no_grad without them).
        if kwargs.get("compute_entropy") and self.args.local_entropy_coef > 0:
            self._dsdr_forward = (logps, entropies)
        return logps, entropies, aux_loss

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        if self.args.local_entropy_coef == 0:
            return loss
        logps, entropies = self._dsdr_forward
        self._dsdr_forward = None  # it holds the autograd graph

        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        if self.args.entropy_estimator == "full":
            token_entropy = entropies
        else:
            old_logps = inputs.get("old_per_token_logps")
            token_entropy = diversity.sampled_token_entropy(logps, logps.detach() if old_logps is None else old_logps)
        # Under vLLM, TRL multiplies its per-token policy loss by π_old/π_vLLM (truncated, or 0 where it masks a token
        # or sequence; shape (B, T) or (B, 1)); the local term's samples come from the same place, so it gets the same.
        is_ratio = inputs.get("importance_sampling_ratio")
        if is_ratio is not None:
            token_entropy = diversity.importance_weighted(token_entropy, is_ratio)
        seq_entropy = diversity.sequence_entropy(token_entropy, mask)
        weights = inputs["dsdr_weight"] * inputs["dsdr_correct"]

        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        local_objective = diversity.local_entropy_objective(seq_entropy, weights, group_size)
        # GRPOTrainer scales its loss for gradient accumulation itself (loss_is_scaled_for_ga), so must this term.
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss = loss - self.args.local_entropy_coef * local_objective / normalizer

        self._metrics[mode]["dsdr/local_entropy"].append(
            self.accelerator.gather(local_objective.detach()).mean().item()
        )
        correct = inputs["dsdr_correct"].bool()
        stats = torch.stack([(seq_entropy.detach() * correct).sum(), correct.sum().float()])
        total, count = self.accelerator.reduce(stats, reduction="sum").tolist()
        self._metrics[mode]["dsdr/entropy_correct"].append(total / count if count > 0 else float("nan"))
        return loss

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        # TRL links `dataset_name` to huggingface.co/datasets/<name>: only an `owner/name` Hub id (a named adapter's
        # included) gives a page that exists.
        dataset_name = hub_dataset_id(dataset_name)
        dataset_name = dataset_name if dataset_name and dataset_name.count("/") == 1 else None
        return super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)


def resolve_diversity_fn(diversity_fn: str | Callable | None) -> Callable | None:
    """`DSDRConfig.diversity_fn` as a callable: itself, or the function its dotted path names."""
    if diversity_fn is None or callable(diversity_fn):
        return diversity_fn
    try:
        function = pkgutil.resolve_name(diversity_fn)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(
            f"Could not import diversity_fn={diversity_fn!r} ({error}); give the dotted path of a function that the "
            "training process can import, such as 'my_module.my_fn'."
        ) from error
    if not callable(function):
        raise ValueError(f"diversity_fn={diversity_fn!r} names a {type(function).__name__}, not a function.")
    return function
