"""DSDRConfig: the paper's defaults, help strings that cite the paper, and refusals that say how to fix them."""

import dataclasses

import pytest
from trl import GRPOConfig

from dsdr_trl import DSDRConfig

DSDR_FIELDS = [
    "diversity_coef",
    "diversity_clip",
    "diversity_encoder",
    "diversity_encoder_batch_size",
    "diversity_encoder_max_length",
    "formula_canonicalization",
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
        ({"diversity_encoder_batch_size": 0}, "positive integer"),
        ({"num_generations": 1, "per_device_train_batch_size": 2}, "at least 2 generations"),
    ],
)
def test_invalid_values_are_refused_with_a_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_formula_canonicalization_choices_are_the_extractors_modes():
    from dsdr_trl.config import FORMULA_CANONICALIZATIONS
    from dsdr_trl.formulas import CANONICALIZE_MODES

    assert FORMULA_CANONICALIZATIONS == CANONICALIZE_MODES
    for mode in CANONICALIZE_MODES:
        assert make(formula_canonicalization=mode).formula_canonicalization == mode
