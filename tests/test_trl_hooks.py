"""The private GRPOTrainer hooks DSDRGRPOTrainer wraps exist with the signatures it relies on.

TRL is pinned to a minor version because these are not public API; this test fails first when they move.
"""

import inspect

from trl import GRPOTrainer


def parameters(name):
    return list(inspect.signature(getattr(GRPOTrainer, name)).parameters)


def test_hook_signatures():
    assert parameters("_calculate_rewards") == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert parameters("_generate_and_score_completions") == ["self", "inputs"]
    assert parameters("_compute_loss") == ["self", "model", "inputs"]
    logps_params = parameters("_get_per_token_logps_and_entropies")
    assert logps_params[:5] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep"]
    assert "compute_entropy" in logps_params
    # The model card: DSDR overrides `create_model_card` and sets `_paper`, which TRL's card reads.
    assert parameters("create_model_card") == ["self", "model_name", "dataset_name", "tags"]
    assert "self._paper.get(" in inspect.getsource(GRPOTrainer.create_model_card)


def test_policy_loss_weights_by_the_vllm_importance_ratio():
    # DSDR's local term multiplies by the same `importance_sampling_ratio` that TRL's policy term does.
    source = inspect.getsource(GRPOTrainer._compute_loss)
    assert 'per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]' in source


def test_loss_passes_compute_entropy_by_keyword_and_scales_for_accumulation():
    # DSDR reads `compute_entropy` from kwargs and divides its term by the accumulation steps like TRL does.
    source = inspect.getsource(GRPOTrainer._compute_loss)
    assert "compute_entropy=True" in source
    assert GRPOTrainer.loss_is_scaled_for_ga is True


def test_completions_table_hook_dsdr_writes_through():
    # DSDR's per-row columns go through the method TRL hands reward functions as `log_extra`, flushed (gathered) into
    # `_logs["extra"]` after `_calculate_rewards` returns.
    assert parameters("_log_completion_extra") == ["self", "column", "values"]
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert source.index("self._calculate_rewards(") < source.index('self._logs["extra"][column].extend(')


def test_trainer_attributes_dsdr_extends():
    source = inspect.getsource(GRPOTrainer.__init__)
    for attribute in ("self.reward_funcs", "self.reward_func_names", "self.reward_processing_classes"):
        assert attribute in source
    assert "self.reward_weights" in source
