"""DSDRGRPOTrainer end to end on a tiny model built in code: parity with GRPO, the bonus, the local term, metrics."""

import warnings

import pytest
import torch
from datasets import Dataset
from helpers import build_tiny_model, even_length_reward, tiny_settings
from trl import GRPOConfig, GRPOTrainer

from dsdr_trl import DSDRConfig, DSDRGRPOTrainer

pytestmark = pytest.mark.slow

# 4 prompts x G=4 per generation batch, over two accumulation steps.
COMMON = tiny_settings(per_device_train_batch_size=4, gradient_accumulation_steps=2, seed=7)


def always_correct(completions, **kwargs):
    return [1.0] * len(completions)


def train(trainer_cls, config, model, tokenizer, dataset, reward_funcs):
    trainer = trainer_cls(
        model=model, reward_funcs=reward_funcs, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    steps = [log for log in trainer.state.log_history if "loss" in log]
    return trainer, steps


def test_zero_coefficients_reproduce_grpo_step_for_step(tmp_path, tiny_tokenizer, dataset):
    grpo_config = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), max_steps=3, epsilon_high=0.28, beta=0.0, loss_type="grpo", **COMMON
    )
    dsdr_config = DSDRConfig(
        output_dir=str(tmp_path / "dsdr"),
        max_steps=3,
        diversity_coef=0.0,
        local_entropy_coef=0.0,
        advantage_epsilon=1e-4,  # TRL's hard-coded constant
        **COMMON,
    )
    rewards = [even_length_reward]
    grpo, grpo_steps = train(
        GRPOTrainer, grpo_config, build_tiny_model(tiny_tokenizer), tiny_tokenizer, dataset, rewards
    )
    dsdr, dsdr_steps = train(
        DSDRGRPOTrainer, dsdr_config, build_tiny_model(tiny_tokenizer), tiny_tokenizer, dataset, rewards
    )

    assert len(grpo_steps) == len(dsdr_steps) == 3
    for grpo_log, dsdr_log in zip(grpo_steps, dsdr_steps, strict=True):
        for key in ("loss", "grad_norm", "reward", "reward_std", "entropy", "frac_reward_zero_std"):
            assert dsdr_log[key] == grpo_log[key], (key, dsdr_log[key], grpo_log[key])
    assert any(log["grad_norm"] > 0 for log in grpo_steps)  # the comparison covers real updates
    for (name, p_grpo), p_dsdr in zip(grpo.model.named_parameters(), dsdr.model.parameters(), strict=True):
        assert torch.equal(p_grpo, p_dsdr), name
    assert dsdr.diversity_encoder is None  # nothing DSDR-specific was even loaded


class RecordingTrainer(DSDRGRPOTrainer):
    """Keeps what each micro-batch's loss saw, to check the per-row DSDR tensors stayed with their rows."""

    def _compute_loss(self, model, inputs):
        self.seen = getattr(self, "seen", [])
        keys = ("prompt_ids", "completion_ids", "completion_mask", "dsdr_weight", "dsdr_correct")
        self.seen.append({key: inputs[key].detach().clone() for key in keys})
        return super()._compute_loss(model, inputs)


def test_end_to_end_with_real_encoder_logs_every_dsdr_metric(tmp_path, tiny_tokenizer, tiny_model, dataset):
    config = DSDRConfig(output_dir=str(tmp_path), max_steps=2, **COMMON)
    trainer, steps = train(RecordingTrainer, config, tiny_model, tiny_tokenizer, dataset, [even_length_reward])

    # TRL shuffled and split each generation batch into 2 micro-batches: every row still carries its own
    # correctness, and ω sums to 1 over the correct rows of each prompt.
    assert len(trainer.seen) == 4
    for generation_batch in (trainer.seen[:2], trainer.seen[2:]):
        weight_per_prompt, correct_per_prompt = {}, {}
        for seen in generation_batch:
            texts = tiny_tokenizer.batch_decode(
                seen["completion_ids"] * seen["completion_mask"], skip_special_tokens=True
            )
            assert seen["dsdr_correct"].tolist() == even_length_reward(texts)
            rows = zip(seen["prompt_ids"].tolist(), seen["dsdr_weight"], seen["dsdr_correct"], strict=True)
            for prompt, weight, correct in rows:
                key = tuple(prompt)
                weight_per_prompt[key] = weight_per_prompt.get(key, 0.0) + weight.item()
                correct_per_prompt[key] = correct_per_prompt.get(key, 0.0) + correct.item()
        for key, total in weight_per_prompt.items():
            assert total == pytest.approx(1.0 if correct_per_prompt[key] else 0.0, abs=1e-5)

    from sentence_transformers import SentenceTransformer

    assert isinstance(trainer.diversity_encoder, SentenceTransformer)
    assert not trainer.diversity_encoder.training
    assert not any(p.requires_grad for p in trainer.diversity_encoder.parameters())
    expected = {
        "dsdr/frac_correct",
        "dsdr/bonus_mean",
        "dsdr/bonus_max",
        "dsdr/semantic_mean",
        "dsdr/formula_mean",
        "dsdr/diversity_correct_mean",
        "dsdr/frac_zero_std_before",
        "dsdr/frac_zero_std_after",
        "dsdr/local_entropy",
        "dsdr/entropy_correct",
        "rewards/dsdr_diversity/mean",
    }
    for log in steps:
        assert expected <= set(log), expected - set(log)
    logged = {key: [log[key] for log in steps if log[key] is not None] for key in expected}
    assert all(0 < v < 1 for v in logged["dsdr/frac_correct"])
    assert all(0 < v <= 1 for v in logged["dsdr/semantic_mean"])
    assert all(0 < v <= config.diversity_coef * config.diversity_clip for v in logged["dsdr/bonus_max"])
    assert all(v > 0 for v in logged["dsdr/local_entropy"])
    # The logged shaped reward is the verifier reward plus the mean bonus.
    for log in steps:
        expected_reward = log["rewards/even_length_reward/mean"] + log["rewards/dsdr_diversity/mean"]
        assert log["reward"] == pytest.approx(expected_reward, abs=1e-6)

    # The completions table (TRL's `_logs`, which its console and trackers print) has DSDR's columns per row.
    extra = {name: list(values) for name, values in trainer._logs["extra"].items()}
    columns = ("dsdr_semantic", "dsdr_formula", "dsdr_score", "dsdr_omega", "dsdr_bonus")
    assert set(columns) <= set(extra)
    correct = [reward > config.correctness_threshold for reward in trainer._logs["rewards"]["even_length_reward"]]
    assert all(len(extra[name]) == len(correct) == len(trainer._logs["prompt"]) == 8 for name in columns)
    group_size = config.num_generations
    for start in range(0, len(correct), group_size):
        rows = range(start, start + group_size)
        omega = [extra["dsdr_omega"][i] for i in rows]
        if any(correct[i] for i in rows):
            assert sum(w for w, i in zip(omega, rows, strict=True) if correct[i]) == pytest.approx(1.0, abs=1e-6)
        assert all(w == 0.0 for w, i in zip(omega, rows, strict=True) if not correct[i])
    for i, ok in enumerate(correct):
        semantic, formula, score = (extra[name][i] for name in columns[:3])
        if semantic is None:  # a group without a correct row: g was not computed, and nothing depends on it
            assert formula is None and score is None and extra["dsdr_bonus"][i] == 0.0
            continue
        assert score == pytest.approx(min((semantic + formula) / 2, config.diversity_clip))
        assert extra["dsdr_bonus"][i] == pytest.approx(config.diversity_coef * score if ok else 0.0)
    assert trainer._logs["rewards"]["dsdr_diversity"] == pytest.approx(extra["dsdr_bonus"])


def test_all_correct_groups_are_revived(tmp_path, tiny_tokenizer, dataset):
    """Every completion correct: GRPO has zero advantages and no gradient; DSDR ranks them by diversity."""

    def run(**dsdr):
        config = DSDRConfig(
            output_dir=str(tmp_path / str(dsdr)), max_steps=1, local_entropy_coef=0.0, **dsdr, **COMMON
        )
        return train(
            DSDRGRPOTrainer, config, build_tiny_model(tiny_tokenizer), tiny_tokenizer, dataset, [always_correct]
        )

    grpo, (grpo_log,) = run(diversity_coef=0.0, advantage_epsilon=1e-4)
    dsdr, (dsdr_log,) = run()
    assert grpo_log["grad_norm"] == 0.0 and grpo_log["frac_reward_zero_std"] == 1.0
    assert dsdr_log["dsdr/frac_zero_std_before"] == 1.0
    assert dsdr_log["dsdr/frac_zero_std_after"] == 0.0
    assert dsdr_log["grad_norm"] > 0
    # With ε = 1e-6 << λ_d·std(ĝ), the advantages of a revived group are close to a full z-score (unit std).
    advantages = torch.tensor(list(dsdr._logs["advantages"])).view(-1, 4)
    assert torch.all(advantages.std(dim=1) > 0.5)
    assert torch.all(torch.tensor(list(grpo._logs["advantages"])) == 0)


def local_term_trainer(tmp_path, tokenizer, model, dataset, estimator, accumulation, seed, mask, weight, correct):
    """A trainer with only the local term on (λ_ℓ = 0.5, so its gradient is visible; τ = 0), and a hand-made batch of
    4 rows × 5 completion tokens whose advantages are 0, so the policy term contributes no gradient.

    Returns the trainer, the batch and the generator that drew it (for further random draws)."""
    config = DSDRConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        diversity_coef=0.0,
        coupling_temperature=0.0,
        local_entropy_coef=0.5,
        entropy_estimator=estimator,
        **COMMON,
    )
    trainer = DSDRGRPOTrainer(
        model=model, reward_funcs=even_length_reward, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = accumulation
    generator = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(5, len(tokenizer), (4, 3), generator=generator)
    completion_ids = torch.randint(5, len(tokenizer), (4, 5), generator=generator)
    completion_mask = torch.tensor(mask)
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.zeros(4),
        "num_items_in_batch": completion_mask.sum(),
        "dsdr_weight": torch.tensor(weight),
        "dsdr_correct": torch.tensor(correct),
    }
    return trainer, inputs, generator


def completion_log_probs(model, inputs, temperature):
    """log π_θ over the vocabulary at every completion position, `(B, T, V)`, by a plain forward pass."""
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    prompt_len = inputs["prompt_ids"].shape[1]
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, prompt_len - 1 : -1]
    return torch.log_softmax(logits.float() / temperature, dim=-1)


@pytest.mark.filterwarnings("ignore::dsdr_trl.config.DSDRSettingWarning")  # λ_ℓ = 0.5 (see local_term_trainer)
def test_local_term_gradient_matches_autograd_of_weighted_entropy(tmp_path, tiny_tokenizer, tiny_model, dataset):
    mask = [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]
    trainer, inputs, _ = local_term_trainer(
        tmp_path, tiny_tokenizer, tiny_model, dataset, "full", 2, 0, mask, [0.5, 0.3, 0.0, 0.2], [1.0, 1.0, 0.0, 1.0]
    )
    model, config, group_size = trainer.model, trainer.args, 4
    loss = trainer._compute_loss(model, inputs)
    dsdr_grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)

    log_probs = completion_log_probs(model, inputs, config.temperature)
    token_entropy = -(log_probs.exp() * log_probs).sum(-1)  # (B, T)
    completion_mask = inputs["completion_mask"]
    seq_entropy = (token_entropy * completion_mask).sum(-1) / completion_mask.sum(-1)
    local = group_size * (inputs["dsdr_weight"] * inputs["dsdr_correct"] * seq_entropy).mean()  # mean over prompts
    reference = -config.local_entropy_coef * local / 2  # / gradient-accumulation steps
    reference_grads = torch.autograd.grad(reference, list(model.parameters()), allow_unused=True)

    assert loss.item() == pytest.approx(reference.item(), rel=1e-4)
    compared = 0
    for name_param, g_dsdr, g_ref in zip(model.named_parameters(), dsdr_grads, reference_grads, strict=True):
        if g_ref is None:
            continue
        torch.testing.assert_close(g_dsdr, g_ref, rtol=1e-3, atol=1e-6, msg=name_param[0])
        compared += int(g_ref.abs().sum() > 0)
    assert compared > 5
    assert trainer._metrics["train"]["dsdr/local_entropy"][-1] == pytest.approx(local.item(), rel=1e-4)


@pytest.mark.filterwarnings("ignore::dsdr_trl.config.DSDRSettingWarning")  # λ_ℓ = 0.5 (see local_term_trainer)
@pytest.mark.parametrize("estimator", ["sampled", "full"])
def test_local_term_is_weighted_by_vllm_importance_ratios(tmp_path, tiny_tokenizer, tiny_model, dataset, estimator):
    """TRL's `importance_sampling_ratio` (π_old/π_vLLM, 0 where masked) weights the local term as it does the policy."""
    mask = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]
    trainer, base, generator = local_term_trainer(
        tmp_path,
        tiny_tokenizer,
        tiny_model,
        dataset,
        estimator,
        1,
        1,
        mask,
        [0.4, 0.3, 0.3, 0.0],
        [1.0, 1.0, 1.0, 0.0],
    )
    model, config, group_size = trainer.model, trainer.args, 4
    batch, completion_len = base["completion_ids"].shape
    completion_ids, completion_mask = base["completion_ids"], base["completion_mask"]
    weight, correct = base["dsdr_weight"], base["dsdr_correct"]
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(**extra):
        loss = trainer._compute_loss(model, {**base, **extra})
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    def reference(ratio):
        """−λ_ℓ · G · mean_b(c ω H̄), H̄ the masked token mean of ratio · H_t, built by hand with autograd."""
        log_probs = completion_log_probs(model, base, config.temperature)
        if estimator == "full":
            token_entropy = -(log_probs.exp() * log_probs).sum(-1)
        else:  # −ρ log π(y_t) with ρ = π_θ/π_old and π_old = π_θ (no old log-probs in the batch)
            logps = log_probs.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
            token_entropy = -torch.exp(logps - logps.detach()) * logps
        seq_entropy = (ratio * token_entropy * completion_mask).sum(-1) / completion_mask.sum(-1)
        loss = -config.local_entropy_coef * group_size * (weight * correct * seq_entropy).mean()
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    def assert_same(got, expected):
        assert got[0].item() == pytest.approx(expected[0].item(), rel=1e-5)
        for g_got, g_exp in zip(got[1], expected[1], strict=True):
            if g_exp is not None:
                torch.testing.assert_close(g_got, g_exp, rtol=1e-4, atol=1e-7)

    unweighted = loss_and_grads()
    # All ratios 1, per token or per sequence: the term and its gradient are exactly unchanged.
    for ones in (torch.ones(batch, completion_len), torch.ones(batch, 1)):
        same = loss_and_grads(importance_sampling_ratio=ones)
        assert same[0].item() == unweighted[0].item()
        for g_same, g_plain in zip(same[1], unweighted[1], strict=True):
            assert (g_same is None and g_plain is None) or torch.equal(g_same, g_plain)

    # Token-level ratios, one token masked out by TRL (ratio 0): the weighted term, by hand.
    token_ratio = torch.rand(batch, completion_len, generator=generator) * 2
    token_ratio[0, 2] = 0.0
    weighted = loss_and_grads(importance_sampling_ratio=token_ratio)
    assert_same(weighted, reference(token_ratio))
    assert weighted[0].item() != pytest.approx(unweighted[0].item(), rel=1e-3)

    # Sequence-level masking (TRL's default mode): a masked correct sequence gets no entropy push at all.
    sequence_ratio = torch.tensor([[1.3], [0.0], [0.7], [1.0]])
    assert_same(loss_and_grads(importance_sampling_ratio=sequence_ratio), reference(sequence_ratio))
    without_row = dict(base, dsdr_weight=weight * torch.tensor([1.0, 0.0, 1.0, 1.0]))
    masked = trainer._compute_loss(
        model, {**without_row, "importance_sampling_ratio": torch.tensor([[1.3], [1], [0.7], [1]])}
    )
    torch.testing.assert_close(loss_and_grads(importance_sampling_ratio=sequence_ratio)[0], masked.detach())


def test_diversity_text_includes_parsed_reasoning():
    from dsdr_trl.encoder import diversity_text

    completion = [{"role": "assistant", "reasoning_content": "Try $x=2$ first.", "content": "\\boxed{2}"}]
    assert diversity_text(completion, include_reasoning=True) == "Try $x=2$ first.\n\n\\boxed{2}"
    assert diversity_text(completion, include_reasoning=False) == "\\boxed{2}"
    assert diversity_text("plain completion") == "plain completion"


def test_model_card_credits_dsdr_and_links_only_hub_datasets(tmp_path, tiny_tokenizer, tiny_model, dataset):
    from dsdr_trl.data import hub_dataset_id

    config = DSDRConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        diversity_coef=0.0,
        local_entropy_coef=0.0,
        **dict(COMMON, save_strategy="steps", save_steps=1),
    )
    trainer = DSDRGRPOTrainer(
        model=tiny_model,
        reward_funcs=even_length_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tiny_tokenizer,
    )
    trainer.train()  # saving the checkpoint writes the model card
    card = (tmp_path / "README.md").read_text()
    assert "trained with DSDR, a method introduced in [DSDR: Dual-Scale Diversity Regularization" in card
    assert "https://huggingface.co/papers/2602.19895" in card
    assert "archivePrefix = {arXiv}" in card and "eprint        = {2602.19895}" in card
    assert "DeepSeekMath" not in card and "2402.03300" not in card

    assert hub_dataset_id("dapo-math-17k") == "open-r1/DAPO-Math-17k-Processed"
    trainer.create_model_card(dataset_name="dapo-math-17k")  # a named adapter links to its Hub dataset
    assert "(https://huggingface.co/datasets/open-r1/DAPO-Math-17k-Processed)" in (tmp_path / "README.md").read_text()
    for not_a_hub_id in ("no-owner-name", "configs/tiny/train.jsonl", str(tmp_path)):
        trainer.create_model_card(dataset_name=not_a_hub_id)
        assert "huggingface.co/datasets" not in (tmp_path / "README.md").read_text(), not_a_hub_id


def test_bad_trainer_arguments_are_refused(tmp_path, tiny_tokenizer, tiny_model, dataset):
    config = DSDRConfig(output_dir=str(tmp_path), correctness_reward="accuracy", **COMMON)
    with pytest.raises(ValueError, match=r"correctness_reward='accuracy'.*\['even_length_reward', 'always_correct'\]"):
        DSDRGRPOTrainer(
            model=tiny_model,
            reward_funcs=[even_length_reward, always_correct],
            args=config,
            train_dataset=dataset,
            processing_class=tiny_tokenizer,
        )
    with pytest.raises(TypeError, match="needs a DSDRConfig"):
        DSDRGRPOTrainer(
            model=tiny_model,
            reward_funcs=even_length_reward,
            args=GRPOConfig(output_dir=str(tmp_path), **COMMON),
            train_dataset=dataset,
            processing_class=tiny_tokenizer,
        )


def weighted_reward(completions, **kwargs):
    return [0.5] * len(completions)


def test_trainers_leave_the_callers_lists_unchanged(tmp_path, tiny_tokenizer, dataset, diversity_encoder):
    """One list of reward functions given to two trainers in a row: each trainer gets one bonus column of its own."""
    reward_funcs = [even_length_reward, weighted_reward]
    reward_processing_classes = [None, None]
    config = DSDRConfig(output_dir=str(tmp_path), reward_weights=[1.0, 0.5], **COMMON)
    trainers = [
        DSDRGRPOTrainer(
            model=build_tiny_model(tiny_tokenizer),
            reward_funcs=reward_funcs,
            args=config,
            train_dataset=dataset,
            processing_class=tiny_tokenizer,
            reward_processing_classes=reward_processing_classes,
            diversity_encoder=diversity_encoder,
        )
        for _ in range(2)
    ]
    assert reward_funcs == [even_length_reward, weighted_reward]
    assert reward_processing_classes == [None, None]
    assert config.reward_weights == [1.0, 0.5]
    for trainer in trainers:
        assert trainer.reward_func_names == ["even_length_reward", "weighted_reward", "dsdr_diversity"]
        assert trainer.reward_funcs is not reward_funcs
        assert len(trainer.reward_processing_classes) == 3
        assert trainer.reward_weights.tolist() == [1.0, 0.5, 1.0]


@pytest.mark.parametrize("num_generations_eval", [2, 1])
def test_evaluate_scores_eval_groups(tmp_path, tiny_tokenizer, tiny_model, dataset, num_generations_eval):
    config = DSDRConfig(
        output_dir=str(tmp_path), per_device_eval_batch_size=8, num_generations_eval=num_generations_eval, **COMMON
    )
    trainer = DSDRGRPOTrainer(
        model=tiny_model,
        reward_funcs=even_length_reward,
        args=config,
        train_dataset=dataset,
        eval_dataset=dataset,
        processing_class=tiny_tokenizer,
    )
    metrics = trainer.evaluate()
    assert metrics["eval_dsdr/frac_correct"] == pytest.approx(metrics["eval_rewards/even_length_reward/mean"])
    assert metrics["eval_dsdr/local_entropy"] > 0
    if num_generations_eval == 1:
        # A group of one has no diversity to measure: no bonus, and ω = 1 on each correct row.
        assert metrics["eval_dsdr/bonus_max"] == 0.0 and "eval_dsdr/semantic_mean" not in metrics
    else:
        assert 0 < metrics["eval_dsdr/semantic_mean"] <= 1


CODE_COMPLETIONS = [
    "def add(a, b):\n    return a + b",
    "def add(a, b):\n    total = a\n    total += b\n    return total",
    "add = lambda a, b: sum([a, b])",
    "def add(a, b):\n    for _ in range(b):\n        a += 1\n    return a",
]


def node_type_uniqueness(completions, **kwargs):
    """Share of a completion's AST node types that no other member of the group uses (the code is parsed, never run)."""
    import ast

    def node_types(text):
        try:
            return {type(node).__name__ for node in ast.walk(ast.parse(text))}
        except (SyntaxError, ValueError):
            return set()

    kinds = [node_types(text) for text in completions]
    scores = []
    for i, own in enumerate(kinds):
        others = set().union(*(other for j, other in enumerate(kinds) if j != i))
        scores.append(len(own - others) / len(own) if own else 0.0)
    return scores


def test_diversity_fn_replaces_the_formula_half_on_code(tmp_path, tiny_tokenizer, diversity_encoder):
    """On code (no formulas) U_i is 0 and a batch warns once; a diversity_fn gives the formula half a measure."""
    from dsdr_trl.config import DSDRSettingWarning
    from dsdr_trl.diversity import semantic_diversity
    from dsdr_trl.encoder import embed

    def scores(**dsdr):
        config = DSDRConfig(output_dir=str(tmp_path), **tiny_settings(per_device_train_batch_size=4), **dsdr)
        trainer = DSDRGRPOTrainer(
            model=build_tiny_model(tiny_tokenizer),
            reward_funcs=always_correct,
            args=config,
            train_dataset=Dataset.from_dict({"prompt": ["Write add(a, b)."]}),
            processing_class=tiny_tokenizer,
            diversity_encoder=diversity_encoder,
        )
        trainer.model.train()
        inputs = [{"prompt": "Write add(a, b)."}] * 4
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):  # two generation batches
                trainer._calculate_rewards(inputs, ["Write add(a, b)."] * 4, CODE_COMPLETIONS, [[1]] * 4)
        logged = trainer._pending_extra_logs
        warned = [
            w for w in caught if issubclass(w.category, DSDRSettingWarning) and "holds a formula" in str(w.message)
        ]
        return logged["dsdr_formula"][:4], logged["dsdr_score"][:4], len(warned)

    semantic = semantic_diversity(embed(diversity_encoder, CODE_COMPLETIONS), 4).tolist()
    formula, score, warned = scores()
    assert formula == [0.0] * 4 and warned == 1  # no formula in the batch: warned once, not per batch
    assert score == pytest.approx([s / 2 for s in semantic])

    expected = node_type_uniqueness(CODE_COMPLETIONS)
    assert len(set(expected)) > 1 and max(expected) > 0  # the measure tells the completions apart
    for diversity_fn in (node_type_uniqueness, "test_trainer.node_type_uniqueness"):
        formula, score, warned = scores(diversity_fn=diversity_fn)
        assert formula == pytest.approx(expected) and warned == 0
        assert score == pytest.approx([(s + u) / 2 for s, u in zip(semantic, expected, strict=True)])
    formula, score, _ = scores(diversity_fn=node_type_uniqueness, formula_weight=0.25)
    assert score == pytest.approx([0.75 * s + 0.25 * u for s, u in zip(semantic, expected, strict=True)])

    with pytest.raises(ValueError, match="Could not import diversity_fn"):
        scores(diversity_fn="test_trainer.no_such_function")
