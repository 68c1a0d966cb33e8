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


# The modes of `formula_canonicalization`; `dsdr_trl.formulas.extract_formulas_batch(canonicalize=...)` reads them here.
FORMULA_CANONICALIZATIONS = ("none", "sympy")
# From this share of λ_d up, ε of the group std swallows the bonus differences of an all-correct group (Prop. C.4).
MAX_EPSILON_SHARE_OF_DIVERSITY_COEF = 0.1


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
            Sentence-transformers model that embeds completions for the semantic distance of Eq. 5–6. The default
            loads from the Hub or its local cache, else from the packaged offline copy (the `offline` extra). Any other
            value is a local path or a Hub id given to `SentenceTransformer`.
        diversity_encoder_batch_size (`int`, *optional*, defaults to `64`):
            Encoder batch size.
        diversity_encoder_max_length (`int`, *optional*, defaults to `256`):
            Encoder tokens per embedded text (all-MiniLM-L6-v2 was trained on 256): the truncation length, or the window
            length with `diversity_encoder_pooling="windows"`.
        diversity_encoder_pooling (`str`, *optional*, defaults to `"truncate"`):
            How a completion longer than `diversity_encoder_max_length` is embedded for Eq. 5. The paper's encoder
            maps the full response to a vector (§3.2.1). `"truncate"` is what `SentenceTransformer.encode` does with
            it: it embeds the beginning only (about the first 1,000 characters of a 4–8K-token chain). `"windows"` is
            the literal reading: the whole completion (up to 64 windows, about 16K word pieces) as consecutive windows
            of that length, their embeddings averaged, weighted by each window's token count and re-normalised. Both
            give the same embedding to a completion that fits one window.
        diversity_include_reasoning (`bool`, *optional*, defaults to `True`):
            When TRL parsed a `<think>…</think>` block of a conversational completion into `reasoning_content` (a
            tokenizer with a response template, or tools), the diversity score g (Eq. 5–9) sees the reasoning and the
            answer of every assistant message. `False` scores only the final message's `content`, as the verifier does.
        formula_canonicalization (`str`, *optional*, defaults to `"none"`):
            How extracted formulas are compared for the uniqueness score of Eq. 7–8: `"none"` compares normalised
            LaTeX strings; `"sympy"` also maps each formula to a SymPy form (under a time limit), so that
            algebraically identical spellings count as one formula.
        formula_weight (`float`, *optional*, defaults to `0.5`):
            w in `g_i = (1 − w) · S_i + w · U_i`; the paper's Eq. 9 is `w = 1/2`. `0` scores semantic distance only.
        diversity_fn (`str` or `Callable`, *optional*):
            A measure of diversity that replaces the formula uniqueness U_i, for tasks without `$…$` formulas (code,
            agents, plain text): a callable or the dotted path of one (`"my_module.my_fn"`), called once per group
            as `diversity_fn(completions, prompt=prompt)` with the texts of the group's G completions (what the
            encoder sees) and must return G scores in [0, 1], higher for more distinct. It runs on every process on
            the same inputs, so it must be deterministic. It sees only text and must never execute it. For code,
            e.g. the share of a completion's AST node types that no other member uses:

            ```python
            import ast

            def node_type_uniqueness(completions, **kwargs):
                def node_types(text):
                    try:
                        return {type(node).__name__ for node in ast.walk(ast.parse(text))}
                    except (SyntaxError, ValueError):
                        return set()
                kinds = [node_types(text) for text in completions]
                return [
                    len(own - set().union(*(other for j, other in enumerate(kinds) if j != i))) / len(own) if own else 0.0
                    for i, own in enumerate(kinds)
                ]
            ```

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

        > Correctness and advantages

        correctness_reward (`str`, *optional*):
            Name of the reward function whose value marks a completion correct (c_i of Eq. 10–15). Defaults to the
            first reward function.
        correctness_threshold (`float`, *optional*, defaults to `0.5`):
            A completion is correct when its correctness reward is above this value; `None` rewards count as incorrect.
        advantage_epsilon (`float`, *optional*, defaults to `1e-6`):
            ε in the group advantage `(r̃_i − mean r̃) / (std r̃ + ε)`. In an all-correct group the std is a fraction
            of λ_d, so ε must be much smaller than λ_d for the bonus to rank the group (Prop. C.4): on an all-correct
            group of G = 8 scored with the default encoder (g from 0.11 to 0.41) and λ_d = 1e-3, the reward std is
            1.05e-4 and the advantages' std is 0.99 at ε = 1e-6, 0.51 at 1e-4 (TRL's constant) and 0.095 at 1e-3.
            From `0.1 · diversity_coef` up, a [`DSDRSettingWarning`] says so.

    Defaults that differ from [`~trl.GRPOConfig`], following the paper's backbone: `epsilon_high=0.28` (clip-higher)
    and `loss_type="grpo"` (mean over sequences of the per-sequence token mean, the aggregation of Eq. 3; the paper
    does not name the one it trained with). `beta=0.0` (no KL) is TRL's default too, restated here because the paper
    uses none.

    Settings that are accepted but switch DSDR off or out of the regime the paper tested emit one
    [`DSDRSettingWarning`] each, naming the fix: `scale_rewards` other than `"group"` with the bonus on (an all-correct
    group's bonus differences are then divided by the batch std or not at all, so Prop. C.4's signal is lost);
    `local_entropy_coef` above 0.01; TRL's `entropy_coef` (or adaptive entropy) together with the local term;
    `advantage_epsilon` from `0.1 · diversity_coef` up.
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
        default=0.001, metadata={"help": "λ_d (Eq. 10): weight of the bonus of correct completions; 0 turns it off."}
    )
    diversity_clip: float = field(
        default=1.0, metadata={"help": "σ_d (Eq. 10): upper clip of the diversity score g ∈ [0, 1]; 1.0 is no clip."}
    )
    diversity_encoder: str = field(
        default=DEFAULT_DIVERSITY_ENCODER,
        metadata={
            "help": "Sentence encoder for the semantic distance (Eq. 5–6). The default loads from the Hub or its "
            "local cache, else from the packaged offline copy (the offline extra); other values are local paths or "
            "Hub ids."
        },
    )
    diversity_encoder_batch_size: int = field(default=64, metadata={"help": "Batch size of the sentence encoder."})
    diversity_encoder_max_length: int = field(
        default=256, metadata={"help": "Encoder tokens per embedded text or window (Eq. 5)."}
    )
    diversity_encoder_pooling: str = field(
        default="truncate",
        metadata={
            "help": "Completions longer than the encoder's input (Eq. 5): 'truncate' (the beginning, what "
            "SentenceTransformer.encode does) or 'windows' (the whole, as the mean of consecutive windows).",
            "choices": list(ENCODER_POOLINGS),
        },
    )
    diversity_include_reasoning: bool = field(
        default=True, metadata={"help": "Whether g (Eq. 5–9) also sees a <think> block TRL parsed out of a message."}
    )
    formula_canonicalization: str = field(
        default="none",
        metadata={
            "help": "Formula comparison (Eq. 7–8): 'none' (normalised LaTeX) or 'sympy' (also a SymPy canonical form).",
            "choices": list(FORMULA_CANONICALIZATIONS),
        },
    )
    formula_weight: float = field(
        default=0.5, metadata={"help": "w in g = (1 − w)·S + w·U (Eq. 9 has w = 1/2); 0 scores S only."}
    )
    diversity_fn: str | None = field(
        default=None,
        metadata={
            "help": "Dotted path of a function (completions, **kwargs) -> one score in [0, 1] per completion of a "
            "group, in place of the formula uniqueness U (Eq. 7–8), for tasks without formulas."
        },
    )
    coupling_temperature: float = field(
        default=5.0,
        metadata={"help": "τ (Eq. 11): softmax temperature of ω over the correct completions; 0: uniform."},
    )
    local_entropy_coef: float = field(
        default=0.001,
        metadata={"help": "λ_ℓ (Eq. 16): weight of the local entropy objective (Eq. 15); 0 turns it off."},
    )
    entropy_estimator: str = field(
        default="sampled",
        metadata={
            "help": "Token entropy of H̄ (Eq. 12–14): 'sampled' (the paper's −ρ·log π) or 'full' (exact).",
            "choices": list(ENTROPY_ESTIMATORS),
        },
    )
    correctness_reward: str | None = field(
        default=None, metadata={"help": "Reward function whose value marks c_i (Eq. 10–15); default: the first one."}
    )
    correctness_threshold: float = field(
        default=0.5, metadata={"help": "A completion is correct when its correctness reward is above this value."}
    )
    advantage_epsilon: float = field(
        default=1e-6,
        metadata={
            "help": "ε of (r̃ − mean) / (std + ε); keep it well below diversity_coef (Prop. C.4). TRL's is 1e-4."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        finite = ("diversity_coef", "diversity_clip", "coupling_temperature", "local_entropy_coef")
        for name in (*finite, "correctness_threshold", "advantage_epsilon"):  # NaN passes every comparison below
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}.")
        for name in ("diversity_coef", "local_entropy_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns the term off), got {getattr(self, name)}.")
        if self.coupling_temperature < 0:
            raise ValueError(
                f"coupling_temperature must be >= 0, got {self.coupling_temperature}. Use 0 for uniform weights over "
                "the correct completions, or a positive τ (the paper uses 5)."
            )
        if not 0.0 <= self.formula_weight <= 1.0:
            raise ValueError(
                f"formula_weight must lie in [0, 1], got {self.formula_weight}; Eq. 9 of the paper uses 0.5."
            )
        if self.diversity_fn is not None and not (callable(self.diversity_fn) or "." in str(self.diversity_fn)):
            raise ValueError(
                f"diversity_fn must be a callable or a dotted import path such as 'my_module.my_fn', got "
                f"{self.diversity_fn!r}."
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
        # At or above the share (TRL's 1e-4 against the paper's λ_d = 1e-3 is on it), up to rounding.
        epsilon_limit = MAX_EPSILON_SHARE_OF_DIVERSITY_COEF * self.diversity_coef * (1 - 1e-9)
        if self.diversity_coef > 0 and self.advantage_epsilon >= epsilon_limit:
            warn(
                f"advantage_epsilon={self.advantage_epsilon:g} is not below 0.1 × diversity_coef={self.diversity_coef:g}: "
                "in an all-correct group the reward std is a fraction of λ_d, so ε shrinks the bonus's advantages "
                "towards 0 and the group's signal (Prop. C.4) disappears (G = 8, λ_d = 1e-3: advantages' std 0.99 at "
                "ε = 1e-6, 0.51 at 1e-4, 0.095 at 1e-3). Set advantage_epsilon=1e-6."
            )
        if (message := self.checkpoint_misalignment()) is not None:
            warn(message)

    def checkpoint_misalignment(self, num_processes: int | None = None) -> str | None:
        """Why a checkpoint would fall inside a generation batch, with the fix; `None` when every one ends a batch.

        TRL samples `generation_batch_size` completions at once, uses each `num_iterations` times and keeps them in
        memory, not in the checkpoint: a run resumed inside a generation batch samples its rest afresh, so it does not
        repeat the uninterrupted run. `num_processes` defaults to this process's `world_size`.
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
