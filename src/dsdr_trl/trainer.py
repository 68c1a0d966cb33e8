"""`DSDRGRPOTrainer`: DSDR on top of TRL's `GRPOTrainer`, by wrapping its hooks (listed in the class docstring).

A generation batch (rows of a group consecutive; a group may straddle processes): `_calculate_rewards` scores g, the
bonus and ω once on the gathered batch (each process embeds only its own rows of groups where g can matter) and
writes the bonus into an extra reward column, so TRL's reward sum, logs and completions table include it;
`_generate_and_score_completions` swaps in the shaped advantages with `advantage_epsilon` and attaches ω and c per
row, which TRL's shuffling and gradient-accumulation splits keep aligned; `_compute_loss` subtracts `λ_ℓ · L_loc`
using the entropies of the loss forward pass that `_get_per_token_logps_and_entropies` kept (no second forward).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from accelerate.utils import gather, gather_object
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler

from . import diversity
from .config import DSDR_PAPER, DSDRConfig
from .data import hub_dataset_id
from .encoder import diversity_text, embed_rows, load_diversity_encoder, zero3_init_disabled
from .formulas import extract_formulas_batch
from .sampler import EpochSeededRepeatSampler

DIVERSITY_REWARD_NAME = "dsdr_diversity"


def dsdr_diversity(completions: list, **kwargs) -> list[float | None]:
    """Placeholder for the bonus column; `DSDRGRPOTrainer._calculate_rewards` writes the real values.

    It returns `None` so that TRL's check for rows that no reward function scored still sees the user's functions.
    """
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
    - `_calculate_rewards`: computes g, the bonus and ω on the gathered generation batch;
    - `_generate_and_score_completions`: advantages of the shaped reward with `advantage_epsilon`; adds the per-row
      `dsdr_weight` (ω) and `dsdr_correct` (c) to the batch;
    - `_get_per_token_logps_and_entropies`: keeps the loss forward's log-probs and entropies;
    - `_compute_loss`: subtracts `local_entropy_coef · L_loc`;
    - `_get_train_sampler`: makes the prompt order of each epoch reproducible after resuming from a checkpoint
      ([`EpochSeededRepeatSampler`]; identical to TRL's order in an uninterrupted run);
    - `create_model_card`: links a dataset only when its name is a Hub id (`owner/name`, not a local path).

    The model card credits DSDR (arXiv 2602.19895) through the `_paper` class attribute, as TRL's trainers do.

    Args:
        diversity_encoder (`SentenceTransformer`, *optional*):
            An already loaded encoder to use instead of loading `args.diversity_encoder`.
        **kwargs:
            Everything [`~trl.GRPOTrainer`] accepts.

    Example:

    ```python
    from datasets import Dataset
    from dsdr_trl import DSDRConfig, DSDRGRPOTrainer
    from dsdr_trl.rewards import accuracy_reward

    dataset = Dataset.from_dict({"prompt": ["What is 2+2? Put the answer in \\\\boxed{}."], "solution": ["4"]})
    trainer = DSDRGRPOTrainer(
        model="Qwen/Qwen2.5-0.5B-Instruct",
        reward_funcs=accuracy_reward,
        args=DSDRConfig(output_dir="dsdr-out", num_generations=8),
        train_dataset=dataset,
    )
    trainer.train()
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
        self.reward_func_names.append(DIVERSITY_REWARD_NAME)
        self.reward_processing_classes.append(None)
        self.reward_weights = torch.cat([self.reward_weights, torch.ones(1)])

        self.diversity_encoder = diversity_encoder
        if self.diversity_encoder is None and args.needs_diversity_scores:
            self.diversity_encoder = self._load_diversity_encoder()

        self._dsdr_pending: dict[str, torch.Tensor] | None = None
        self._dsdr_forward: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def _load_diversity_encoder(self):
        with zero3_init_disabled():
            return load_diversity_encoder(
                self.args.diversity_encoder, self.accelerator.device, self.args.diversity_encoder_max_length
            )

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        return EpochSeededRepeatSampler.like(sampler) if type(sampler) is RepeatSampler else sampler

    # --- Global scale and coupling (Eq. 4–11) ----------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # (N, k+1)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        num_local = len(prompts)
        process_slice = slice(
            self.accelerator.process_index * num_local, (self.accelerator.process_index + 1) * num_local
        )

        user_rewards = rewards_per_func[:, :-1]
        correct = user_rewards[:, self._correctness_index] > self.args.correctness_threshold  # NaN -> False
        # g matters only in groups with a correct row (bonus and ω are 0 elsewhere). With the bonus off it only shapes
        # ω, and a lone correct row gets ω = 1 whatever its score, so such groups need at least two correct rows.
        min_correct = 1 if self.args.diversity_coef > 0 else 2
        scored = (correct.view(-1, group_size).sum(dim=1) >= min_correct).repeat_interleave(group_size)

        among = correct if self.args.diversity_reference == "correct" else None
        scores = self._diversity_scores(completions, scored, process_slice, group_size, among)
        clipped = diversity.clip_score(scores["diversity"], self.args.diversity_clip)
        bonus = diversity.diversity_bonus(
            scores["diversity"], correct, self.args.diversity_coef, self.args.diversity_clip
        )
        weights = diversity.coupling_weights(clipped, correct, group_size, self.args.coupling_temperature)

        # A row every user reward function skipped (None) stays unscorable: TRL then excludes it from the baseline.
        unscorable = torch.isnan(user_rewards).all(dim=1)
        rewards_per_func[:, -1] = bonus.to(rewards_per_func.device).masked_fill(unscorable, float("nan"))

        weighted = rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = weighted.nansum(dim=1)  # TRL's sum, bonus column included
        rewards[unscorable] = torch.nan
        advantages, std_after = diversity.group_advantages(
            rewards, group_size, self.scale_rewards, self.args.advantage_epsilon
        )
        unshaped = weighted[:, :-1].nansum(dim=1).masked_fill(unscorable, float("nan"))
        _, std_before = diversity.group_advantages(unshaped, group_size, "group", self.args.advantage_epsilon)

        pending = dict(advantages=advantages, weights=weights.to(rewards_per_func.device), correct=correct.float())
        self._dsdr_pending = pending | {"process_slice": process_slice}
        self._log_diversity_metrics(mode, scores, scored, correct, clipped, bonus, std_before, std_after, group_size)
        return rewards_per_func

    def _diversity_scores(
        self,
        completions: Sequence,
        scored: torch.Tensor,
        process_slice: slice,
        group_size: int,
        among: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """g_i, S_i and U_i of every row of the gathered batch, identical on every process; 0 outside `scored`.

        Each process embeds and extracts formulas from its own completions only, and only the rows of `scored` groups
        (elsewhere no bonus or weight depends on g). Every row of such a group is needed, incorrect ones included:
        S_i and U_i of a correct row compare it with all other members (with `among`, only with the members it marks).
        The gathers below are collectives, so every process runs them whatever its rows.
        """
        num_rows = scored.shape[0]
        zeros = torch.zeros(num_rows, device=scored.device)
        if not self.args.needs_diversity_scores or group_size < 2:
            return {"diversity": zeros, "semantic": zeros, "formula": zeros}

        local_scored, args = scored[process_slice].tolist(), self.args
        rows = zip(completions, local_scored, strict=True)
        texts = [diversity_text(c, args.diversity_include_reasoning) for c, keep in rows if keep]
        local_embeddings = embed_rows(
            self.diversity_encoder,
            texts,
            local_scored,
            self.accelerator.device,
            args.diversity_encoder_batch_size,
            args.diversity_encoder_max_length,
            args.diversity_encoder_pooling,
        )
        local_formulas = iter(extract_formulas_batch(texts, canonicalize=self.args.formula_canonicalization))
        formulas = [sorted(next(local_formulas)) if keep else [] for keep in local_scored]

        embeddings = gather(local_embeddings)  # (N, D)
        all_formulas = [set(f) for f in gather_object(formulas)]
        among = None if among is None else among.to(embeddings.device)
        semantic = diversity.semantic_diversity(embeddings, group_size, among).to(scored.device)
        formula = diversity.formula_uniqueness(all_formulas, group_size, among).to(scored.device)
        semantic, formula = semantic * scored, formula * scored
        return {"diversity": diversity.diversity_score(semantic, formula), "semantic": semantic, "formula": formula}

    def _log_diversity_metrics(self, mode, scores, scored, correct, clipped, bonus, std_before, std_after, group_size):
        def mean_over(values: torch.Tensor, mask: torch.Tensor) -> float:
            return values[mask].mean().item() if mask.any() else float("nan")

        metrics = self._metrics[mode]
        metrics["dsdr/frac_correct"].append(correct.float().mean().item())
        metrics["dsdr/bonus_mean"].append(bonus.mean().item())
        metrics["dsdr/bonus_max"].append(bonus.max().item())
        if self.args.needs_diversity_scores and group_size > 1:
            metrics["dsdr/semantic_mean"].append(mean_over(scores["semantic"], scored))
            metrics["dsdr/formula_mean"].append(mean_over(scores["formula"], scored))
            metrics["dsdr/diversity_correct_mean"].append(mean_over(clipped, correct))
        zero_std = lambda std: torch.isclose(std, torch.zeros_like(std)).view(-1, group_size)[:, 0]  # noqa: E731
        metrics["dsdr/frac_zero_std_before"].append(zero_std(std_before).float().mean().item())
        metrics["dsdr/frac_zero_std_after"].append(zero_std(std_after).float().mean().item())

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        pending, self._dsdr_pending = self._dsdr_pending, None
        process_slice = pending["process_slice"]
        output["advantages"] = pending["advantages"][process_slice].to(output["advantages"].device)
        # TRL logged its own advantages for the completions table; log the ones that train instead.
        logged = self._logs["advantages"]
        for _ in range(min(pending["advantages"].numel(), len(logged))):  # the deque may hold fewer (maxlen)
            logged.pop()
        logged.extend(pending["advantages"].tolist())
        device = output["advantages"].device
        output["dsdr_weight"] = pending["weights"][process_slice].to(device)
        output["dsdr_correct"] = pending["correct"][process_slice].to(device)
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
