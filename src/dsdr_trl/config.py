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
            author        = {Wan, Zhongwei and Shen, Yun and Dou, Zhihao and Zhou, Donghao and Zhang, Yu and
                             Wang, Xin and Shen, Hui and Xiong, Jing and Tao, Chaofan and Zhong, Zixuan and
                             Huang, Peizhou and Zhang, Mi},
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
    """An accepted setting that switches DSDR off, leaves the paper's regime, or makes a resumed run differ."""


# The modes of `formula_canonicalization`; `dsdr_trl.formulas.extract_formulas_batch(canonicalize=...)` reads them here.
FORMULA_CANONICALIZATIONS = ("none", "sympy")
# From this share of λ_d up, ε of the group std swallows the bonus differences of an all-correct group (Prop. C.4).
MAX_EPSILON_SHARE_OF_DIVERSITY_COEF = 0.1
DIVERSITY_REFERENCES = ("group", "correct")


@dataclass
class DSDRConfig(GRPOConfig):
    r"""
    Configuration class for [`DSDRGRPOTrainer`]: every [`~trl.GRPOConfig`] field, plus the DSDR terms (equation numbers
    are the paper's). With `diversity_coef=0` and `local_entropy_coef=0` the trainer is plain GRPO (with
    `advantage_epsilon` as the std's ε).

    Parameters:
        > Global scale: diversity bonus among correct completions

        diversity_coef (`float`, *optional*, defaults to `0.001`):
            λ_d of Eq. 10: `r̃_i = r_i + λ_d · c_i · clip(g_i, 0, σ_d)`. `0` is the "w/o global diversity" ablation.
        diversity_clip (`float`, *optional*, defaults to `1.0`):
            σ_d of Eq. 10, the upper clip of g_i ∈ [0, 1]; `1.0` leaves g unclipped.
        diversity_encoder (`str`, *optional*, defaults to `"sentence-transformers/all-MiniLM-L6-v2"`):
            Sentence encoder of the semantic distance (Eq. 5–6): the default loads from the Hub or its cache, else from
            the packaged offline copy (the `offline` extra); other values are local paths or Hub ids.
        diversity_encoder_batch_size (`int`, *optional*, defaults to `64`):
            Encoder batch size.
        diversity_encoder_max_length (`int`, *optional*, defaults to `256`):
            Encoder tokens per embedded text, or per window with `"windows"` pooling (MiniLM was trained on 256).
        diversity_encoder_pooling (`str`, *optional*, defaults to `"truncate"`):
            The paper's encoder maps the full response to a vector (§3.2.1). `"truncate"` is what
            `SentenceTransformer.encode` does with it (the first ~1,000 characters); `"windows"` is the literal reading:
            the token-weighted mean of the embeddings of consecutive windows (up to 64). Equal for a text of one window.
        diversity_include_reasoning (`bool`, *optional*, defaults to `True`):
            Whether g (Eq. 5–9) also sees the `<think>` blocks TRL parsed into `reasoning_content`; `False` scores the
            final message's `content` only, as the verifier does.
        formula_canonicalization (`str`, *optional*, defaults to `"none"`):
            Formula comparison for Eq. 7–8: `"none"` (normalised LaTeX strings) or `"sympy"` (also a SymPy canonical
            form, under a time limit, so algebraically identical spellings are one formula).
        formula_weight (`float`, *optional*, defaults to `0.5`):
            w in `g_i = (1 − w) · S_i + w · U_i`; Eq. 9 has `w = 1/2`. `0` scores semantic distance only.
        diversity_fn (`str` or `Callable`, *optional*):
            A measure in place of U_i for tasks without formulas: a callable or a dotted path, called per group as
            `diversity_fn(completions, prompt=prompt)` on the G texts the encoder sees; it returns G scores in [0, 1]
            (higher: more distinct), must be deterministic (every process runs it) and must never execute the text.

        > Coupling

        coupling_temperature (`float`, *optional*, defaults to `5.0`):
            τ of Eq. 11: ω = softmax of `τ · ĝ` over the correct completions. `0` (uniform) is "w/o coupling".

        > Local scale: entropy of correct completions

        local_entropy_coef (`float`, *optional*, defaults to `0.001`):
            λ_ℓ of Eq. 16: loss `loss_GRPO(r̃) − λ_ℓ · L_loc`, `L_loc` the mean over prompts of `Σ_i c_i ω_i H̄_i`
            (Eq. 15). The paper reports instability above `0.01`.
        entropy_estimator (`str`, *optional*, defaults to `"sampled"`):
            Token entropy of H̄_i (Eq. 12–14): `"sampled"` is the paper's `−ρ_t · log π_θ(y_t)`; `"full"` the exact
            full-vocabulary entropy (lower variance).

        diversity_reference (`str`, *optional*, defaults to `"group"`):
            Whom S_i and U_i compare a completion with: `"group"`, every other member of its group, wrong ones
            included (the paper's Eq. 6, 8); `"correct"` (our option), only the other correct members, so that a
            correct completion is not rewarded for being unlike its wrong group-mates. In an all-correct group the two
            agree.

        > Correctness and advantages

        correctness_reward (`str`, *optional*):
            Reward function whose value marks c_i (Eq. 10–15); defaults to the first.
        correctness_threshold (`float`, *optional*, defaults to `0.5`):
            Correct means a correctness reward above this; `None` rewards are incorrect.
        advantage_epsilon (`float`, *optional*, defaults to `1e-6`):
            ε in `(r̃_i − mean r̃) / (std r̃ + ε)`. An all-correct group's std is a fraction of λ_d, so ε must be far
            below λ_d (Prop. C.4): at λ_d = 1e-3 (G = 8) the advantages' std is 0.99 at ε = 1e-6, 0.51 at TRL's 1e-4
            and 0.095 at 1e-3. From `0.1 · diversity_coef` up, a [`DSDRSettingWarning`] says so.

    Defaults that differ from [`~trl.GRPOConfig`], after the paper's backbone: `epsilon_high=0.28` (clip-higher) and
    `loss_type="grpo"` (the per-sequence token mean of Eq. 3; the paper names none). `beta=0.0` (no KL) is restated.

    A [`DSDRSettingWarning`], naming the fix, for each accepted setting that switches DSDR off or out of the paper's
    regime: `scale_rewards` other than `"group"` with the bonus on; `local_entropy_coef` above 0.01; TRL's entropy
    bonus with the local term; `advantage_epsilon` from `0.1 · diversity_coef` up; checkpoints inside a generation batch.
    """

    # Paper backbone (Sec. 4): GRPO with clip-higher, no KL, per-sequence token mean.
    epsilon_high: float | None = field(
        default=0.28, metadata={"help": "Upper clipping ε; DSDR's clip-higher (0.2, 0.28)."}
    )
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; the paper uses none (no reference model)."})
    loss_type: str = field(
        default="grpo", metadata={"help": "Loss aggregation; 'grpo' averages per-sequence means (Eq. 3)."}
    )

    diversity_coef: float = field(
        default=0.001, metadata={"help": "λ_d (Eq. 10): weight of the bonus of correct completions; 0 turns it off."}
    )
    diversity_clip: float = field(
        default=1.0, metadata={"help": "σ_d (Eq. 10): upper clip of the diversity score g ∈ [0, 1]; 1.0 is no clip."}
    )
    diversity_encoder: str = field(
        default=DEFAULT_DIVERSITY_ENCODER,
        metadata={"help": "Sentence encoder of the semantic distance (Eq. 5–6): a Hub id or a local path."},
    )
    diversity_encoder_batch_size: int = field(default=64, metadata={"help": "Batch size of the sentence encoder."})
    diversity_encoder_max_length: int = field(
        default=256, metadata={"help": "Encoder tokens per text or window (Eq. 5)."}
    )
    diversity_encoder_pooling: str = field(
        default="truncate",
        metadata={
            "help": "Long completions (Eq. 5): 'truncate' embeds the beginning (as SentenceTransformer.encode), "
            "'windows' the whole of it.",
            "choices": list(ENCODER_POOLINGS),
        },
    )
    diversity_include_reasoning: bool = field(
        default=True, metadata={"help": "Whether g (Eq. 5–9) also sees a <think> block TRL parsed out of a message."}
    )
    formula_canonicalization: str = field(
        default="none",
        metadata={
            "help": "Formula comparison (Eq. 7–8): 'none' or 'sympy'.",
            "choices": list(FORMULA_CANONICALIZATIONS),
        },
    )
    formula_weight: float = field(default=0.5, metadata={"help": "w in g = (1 − w)·S + w·U (Eq. 9: w = 1/2)."})
    diversity_fn: str | None = field(
        default=None,
        metadata={
            "help": "Dotted path of a function scoring a group's completions in [0, 1], in place of U (Eq. 7–8)."
        },
    )
    coupling_temperature: float = field(
        default=5.0, metadata={"help": "τ (Eq. 11): softmax temperature of ω over correct completions; 0: uniform."}
    )
    local_entropy_coef: float = field(
        default=0.001, metadata={"help": "λ_ℓ (Eq. 16): weight of the local entropy objective (Eq. 15); 0: off."}
    )
    entropy_estimator: str = field(
        default="sampled",
        metadata={
            "help": "Token entropy (Eq. 12–14): 'sampled' (the paper's) or 'full'.",
            "choices": list(ENTROPY_ESTIMATORS),
        },
    )
    diversity_reference: str = field(
        default="group",
        metadata={
            "help": "S_i, U_i over 'group' (the paper's) or 'correct' members",
            "choices": list(DIVERSITY_REFERENCES),
        },
    )
    correctness_reward: str | None = field(
        default=None, metadata={"help": "Reward function whose value marks c_i (Eq. 10–15); default: the first one."}
    )
    correctness_threshold: float = field(
        default=0.5, metadata={"help": "A completion is correct when its correctness reward is above this value."}
    )
    advantage_epsilon: float = field(
        default=1e-6, metadata={"help": "ε of (r̃ − mean) / (std + ε) (Prop. C.4): keep it well below diversity_coef."}
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
        for name in DSDRConfig.__annotations__:  # GRPOConfig checks the choices of its own fields
            metadata = self.__dataclass_fields__[name].metadata
            if "choices" in metadata and getattr(self, name) not in metadata["choices"]:
                raise ValueError(
                    f"{name} must be one of {tuple(metadata['choices'])}, got '{getattr(self, name)}' ({metadata['help']})"
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
            # Attributed to the calling line below, so Python's default filter shows each message once per process.
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
        """Why a checkpoint would fall inside a generation batch (whose rest a resumed run samples afresh, as TRL keeps
        it in memory only), with the fix; `None` when every one ends a batch. `num_processes` defaults to `world_size`.
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
