"""DSDRConfig: the paper's defaults, help strings that cite the paper, and refusals that say how to fix them."""

import dataclasses
import warnings

import pytest
from trl import GRPOConfig

from dsdr_trl import DSDRConfig
from dsdr_trl.config import DSDRSettingWarning

DSDR_FIELDS = [
    "diversity_coef",
    "diversity_clip",
    "diversity_encoder",
    "diversity_encoder_batch_size",
    "diversity_encoder_max_length",
    "diversity_encoder_pooling",
    "diversity_include_reasoning",
    "formula_canonicalization",
    "formula_weight",
    "diversity_fn",
    "coupling_temperature",
    "local_entropy_coef",
    "entropy_estimator",
    "correctness_reward",
    "correctness_threshold",
    "advantage_epsilon",
]


def make(**kwargs) -> DSDRConfig:
    return DSDRConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none", **kwargs)


def test_paper_defaults():
    config = make()
    assert isinstance(config, GRPOConfig)
    assert (config.diversity_coef, config.local_entropy_coef) == (0.001, 0.001)  # Table 2
    assert (config.coupling_temperature, config.diversity_clip, config.advantage_epsilon) == (5.0, 1.0, 1e-6)
    assert (config.epsilon, config.epsilon_high, config.beta, config.loss_type) == (0.2, 0.28, 0.0, "grpo")
    assert config.entropy_estimator == "sampled"
    assert (config.diversity_encoder_pooling, config.diversity_include_reasoning) == ("truncate", True)
    assert config.correctness_reward is None
    assert config.diversity_encoder == "sentence-transformers/all-MiniLM-L6-v2"
    assert config.dsdr_enabled and config.needs_diversity_scores


def test_every_dsdr_field_has_help_citing_the_paper():
    fields = {f.name: f for f in dataclasses.fields(DSDRConfig)}
    for name in DSDR_FIELDS:
        help_text = fields[name].metadata.get("help", "")
        assert help_text, name
        if name not in ("diversity_encoder_batch_size", "correctness_threshold"):
            assert "Eq." in help_text or "Prop." in help_text, f"{name}: {help_text}"
    # And the class docstring documents each field.
    for name in DSDR_FIELDS:
        assert f"{name} (`" in DSDRConfig.__doc__, name


def test_zero_coefficients_turn_dsdr_off():
    config = make(diversity_coef=0.0, local_entropy_coef=0.0)
    assert not config.dsdr_enabled and not config.needs_diversity_scores
    # Uniform coupling needs no diversity scores when the bonus is off.
    assert not make(diversity_coef=0.0, coupling_temperature=0.0).needs_diversity_scores
    assert make(diversity_coef=0.0).needs_diversity_scores


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"diversity_coef": -0.1}, "diversity_coef must be >= 0"),
        ({"local_entropy_coef": -1e-3}, "local_entropy_coef must be >= 0"),
        ({"coupling_temperature": -1.0}, "Use 0 for uniform weights"),
        ({"diversity_clip": 0.0}, "diversity_clip must be > 0"),
        ({"advantage_epsilon": 0.0}, "advantage_epsilon must be > 0"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "must be 'sum_then_normalize'"),
        ({"entropy_estimator": "exact"}, "entropy_estimator must be one of"),
        ({"formula_canonicalization": "latex"}, "formula_canonicalization must be one of"),
        ({"diversity_reference": "wrong"}, "diversity_reference must be one of"),
        ({"diversity_encoder_batch_size": 0}, "positive integer"),
        ({"diversity_encoder_pooling": "mean"}, "'windows' the whole of it"),
        ({"diversity_encoder_pooling": "windows", "diversity_encoder_max_length": 2}, "max_length >= 3"),
        ({"num_generations": 1, "per_device_train_batch_size": 2}, "at least 2 generations"),
    ],
)
def test_invalid_values_are_refused_with_a_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def dsdr_warnings(**kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make(**kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, DSDRSettingWarning)]


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        ({"scale_rewards": "batch"}, "Set scale_rewards='group'"),
        ({"scale_rewards": "none"}, "Set scale_rewards='group'"),
        ({"local_entropy_coef": 0.02}, "Use at most 0.01"),
        ({"entropy_coef": 0.01}, "Set entropy_coef=0"),
        ({"use_adaptive_entropy": True}, "Set entropy_coef=0"),
        ({"advantage_epsilon": 1e-4}, "Set advantage_epsilon=1e-6"),  # TRL's constant against λ_d = 1e-3
    ],
)
def test_settings_that_switch_dsdr_off_warn_once_with_the_fix(kwargs, fix):
    (message,) = dsdr_warnings(**kwargs)
    assert fix in message and "\n" not in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"local_entropy_coef": 0.01},  # the top of the paper's sweep
        {"scale_rewards": "batch", "diversity_coef": 0.0},  # no bonus whose signal could be lost
        {"entropy_coef": 0.01, "local_entropy_coef": 0.0},  # TRL's entropy bonus alone
        {"advantage_epsilon": 1e-4, "diversity_coef": 0.0},  # GRPO's constant with no bonus to swallow
        {"advantage_epsilon": 1e-4, "diversity_coef": 1.0},  # ε = 1e-4 · λ_d
    ],
)
def test_settings_inside_the_papers_regime_do_not_warn(kwargs):
    assert dsdr_warnings(**kwargs) == []


def test_formula_weight_and_diversity_fn_are_checked():
    assert make().formula_weight == 0.5 and make().diversity_fn is None  # Eq. 9 by default
    with pytest.raises(ValueError, match="formula_weight must lie in"):
        make(formula_weight=1.5)
    with pytest.raises(ValueError, match="dotted import path"):
        make(diversity_fn="no_module_part")
    assert make(diversity_fn="my_module.my_fn").diversity_fn == "my_module.my_fn"  # imported by the trainer


def test_a_setting_warning_is_shown_once_per_process():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            make(local_entropy_coef=0.03)
    assert sum(issubclass(w.category, DSDRSettingWarning) for w in caught) == 1


# 8 rows per micro-batch, 2 micro-batches per optimizer step, one generation batch of 32 completions: a generation
# batch ends every 2 optimizer steps.
SPANNING = dict(
    per_device_train_batch_size=8, gradient_accumulation_steps=2, steps_per_generation=4, num_generations=8
)


@pytest.mark.parametrize(
    ("kwargs", "boundary"),
    [
        (SPANNING | {"save_strategy": "steps", "save_steps": 3}, 2),
        (SPANNING | {"save_strategy": "steps", "save_steps": 6, "num_iterations": 2}, 4),  # each batch used twice
        (
            {
                "save_strategy": "steps",
                "save_steps": 10,
                "generation_batch_size": 24,
                "per_device_train_batch_size": 8,
                "gradient_accumulation_steps": 2,
                "num_generations": 8,
            },
            3,
        ),  # 24 completions at 16 per step
    ],
)
def test_checkpoints_inside_a_generation_batch_warn_with_the_fix(kwargs, boundary):
    (message,) = dsdr_warnings(**kwargs)
    assert f"Set save_steps to a multiple of {boundary}." in message and "\n" not in message


@pytest.mark.parametrize(
    "kwargs",
    [
        SPANNING | {"save_strategy": "steps", "save_steps": 4},
        SPANNING | {"save_strategy": "steps", "save_steps": 0.25},  # a fraction of the run: resolved by the Trainer
        SPANNING | {"save_strategy": "epoch"},
        {"save_strategy": "steps", "save_steps": 3, "gradient_accumulation_steps": 2},  # one generation per step
    ],
)
def test_checkpoints_at_generation_batch_ends_do_not_warn(kwargs):
    assert dsdr_warnings(**kwargs) == []


def test_checkpoint_alignment_for_another_process_count():
    # The paper recipes: 2048 completions per generation batch, 4 x 4 per process and step, checkpoints every 160
    # steps. On 8 processes a batch ends every 16 steps; in this one process, every 128.
    with pytest.warns(DSDRSettingWarning, match="multiple of 128"):
        config = make(
            save_strategy="steps",
            save_steps=160,
            generation_batch_size=2048,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=4,
            num_generations=8,
        )
    assert config.checkpoint_misalignment(num_processes=8) is None
    assert "multiple of 128" in config.checkpoint_misalignment(num_processes=1)
