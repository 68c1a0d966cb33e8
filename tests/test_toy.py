"""The toy task: every worked solution is correct for the package's own verifier, strategies differ by formula set,
the held-out split is disjoint, and the tokenizer round-trips."""

import pytest

from dsdr_trl.formulas import extract_formulas
from dsdr_trl.rewards import accuracy_reward
from dsdr_trl.toy import WARMSTART_DIR, load_policy
from dsdr_trl.toy.models import build_policy, build_task_tokenizer
from dsdr_trl.toy.task import (
    STRATEGIES,
    Problem,
    all_problems,
    sft_dataset,
    solution_strategy,
    split_problems,
    worked_solution,
)


def test_every_worked_solution_is_correct_and_classified():
    problems = all_problems()
    assert len(problems) == 648
    texts = [worked_solution(p, s) for p in problems for s in STRATEGIES]
    rewards = accuracy_reward(texts, solution=[p.answer for p in problems for _ in STRATEGIES])
    assert rewards == [1.0] * len(texts)
    assert [solution_strategy(t) for t in texts] == list(STRATEGIES) * len(problems)


def test_strategies_have_distinct_formula_sets():
    problem = Problem(47, 6)
    assert worked_solution(problem, "carry") == r"$7*6=42$ $4*6+4=28$ \boxed{282}"
    sets = [frozenset(extract_formulas(worked_solution(problem, s))) for s in STRATEGIES]
    assert len(set(sets)) == len(STRATEGIES)
    # A wrong or unstructured answer is classified as no strategy.
    assert solution_strategy(r"\boxed{282}") is None
    with pytest.raises(ValueError, match="Unknown strategy"):
        worked_solution(problem, "guess")


def test_split_is_disjoint_and_seeded():
    splits = split_problems(seed=0)
    sft, rl, held_out = set(splits.sft), set(splits.rl), set(splits.held_out)
    assert (len(sft), len(rl), len(held_out)) == (352, 200, 96)
    assert sft | rl | held_out == set(all_problems())  # disjoint, since the sizes add up to 648
    assert split_problems(seed=0) == splits
    assert split_problems(seed=1).held_out != splits.held_out
    dataset = sft_dataset(splits.sft[:5])
    assert len(dataset) == 5 * len(STRATEGIES)
    assert {solution_strategy(c) for c in dataset["completion"]} == set(STRATEGIES)


def test_tokenizer_round_trips_and_model_is_small():
    tokenizer = build_task_tokenizer()
    text = worked_solution(Problem(99, 9), "round")
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text)  # `\boxed{` is a single token
    assert tokenizer.unk_token_id not in ids
    model = build_policy(tokenizer)
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 1.5e6


def test_shipped_warmstart_loads_and_solves_a_training_problem():
    assert (WARMSTART_DIR / "model.safetensors").stat().st_size < 10 * 2**20
    model, tokenizer = load_policy()
    train = split_problems().sft
    encoded = tokenizer([p.prompt for p in train[:8]], return_tensors="pt", padding=True)
    generated = model.generate(**encoded, max_new_tokens=48, do_sample=False)
    texts = tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    rewards = accuracy_reward(texts, solution=[p.answer for p in train[:8]])
    # Greedy decoding of problems seen in SFT: the warm start must have learned the format and most of the arithmetic.
    assert sum(rewards) >= 4, texts
    assert all(solution_strategy(t) is not None for t in texts), texts


def test_shipped_warmstart_is_a_model_directory_with_its_own_tokenizer():
    """`from_pretrained` on the shipped directory (as `dsdr-trl train` and `eval` do) gives the task's tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(WARMSTART_DIR))
    built = build_task_tokenizer()
    text = "47*6=" + worked_solution(Problem(47, 6), "split")
    assert loaded(text)["input_ids"] == built(text)["input_ids"]
    assert (loaded.pad_token, loaded.eos_token, loaded.padding_side) == ("<pad>", "<eos>", "left")
    model = AutoModelForCausalLM.from_pretrained(str(WARMSTART_DIR))
    assert model.config.vocab_size == len(built)


def test_one_builder_makes_the_tiny_test_model_and_the_policy():
    from dsdr_trl.toy.models import build_model, build_tiny_tokenizer

    tiny = build_model(build_tiny_tokenizer())
    policy = build_policy()
    assert type(tiny) is type(policy)
    assert sum(p.numel() for p in tiny.parameters()) < 50_000 < sum(p.numel() for p in policy.parameters())


def test_balanced_strategies_have_three_steps_each_and_are_told_apart():
    from dsdr_trl.toy.task import STRATEGY_SETS

    problems = all_problems()
    balanced = STRATEGY_SETS["balanced"]
    texts = [worked_solution(p, s) for p in problems for s in balanced]
    assert accuracy_reward(texts, solution=[p.answer for p in problems for _ in balanced]) == [1.0] * len(texts)
    assert [solution_strategy(t) for t in texts] == list(balanced) * len(problems)
    assert {text.count("$") for text in texts} == {6}  # three `$…$` steps each
    assert worked_solution(Problem(47, 6), "carry3") == r"$7*6=42$ $4*6=24$ $24+4=28$ \boxed{282}"


def test_hard_family_is_held_out_from_rl_and_mostly_from_sft():
    splits = split_problems(hard_multipliers=(8, 9), hard_sft_fraction=0.2)
    family = [p for p in all_problems() if p.b in (8, 9)]
    assert len(splits.held_out) == 96 and all(p.b in (8, 9) for p in splits.held_out)
    assert not any(p.b in (8, 9) for p in splits.rl)
    seen = [p for p in splits.sft if p.b in (8, 9)]
    assert len(seen) == round(0.2 * (len(family) - 96))
    assert not set(seen) & set(splits.held_out) and not set(splits.sft) & set(splits.rl)
    assert split_problems(hard_multipliers=(8, 9), hard_sft_fraction=0.0).sft == [
        p for p in splits.sft if p.b not in (8, 9)
    ]


def test_minority_rescue_withholds_its_facts_from_every_training_text():
    from dsdr_trl.toy.task import (
        MINORITY_MIX,
        STRATEGY_SETS,
        contains_withheld_fact,
        minority_rescue_splits,
    )

    assert contains_withheld_fact("$7*8=56$") and contains_withheld_fact("$90*7=630$")
    assert not contains_withheld_fact("$17*8=136$") and not contains_withheld_fact("77*8=")
    assert not contains_withheld_fact("$6*8=48$ $80*6=480$")
    splits = minority_rescue_splits()
    balanced = STRATEGY_SETS["balanced"]
    sft = sft_dataset(splits.sft + splits.rl, strategies=balanced, mix=MINORITY_MIX)
    texts = [row["prompt"] + row["completion"] for row in sft] + [p.prompt for p in splits.rl]
    assert not any(contains_withheld_fact(text) for text in texts)
    # Every strategy solves every RL problem without a withheld fact.
    assert not any(contains_withheld_fact(worked_solution(p, s)) for p in splits.rl for s in balanced)
    # Round-up is the minority of the SFT rows, split the majority, about 75 : 20 : 5.
    shares = {s: sum(solution_strategy(c) == s for c in sft["completion"]) / len(sft) for s in balanced}
    assert shares["round"] < 0.06 < 0.15 < shares["carry3"] < 0.25 < 0.7 < shares["split"]
    sets = [set(splits.sft), set(splits.rl), set(splits.held_out), set(splits.guard)]
    assert sum(map(len, sets)) == len(set().union(*sets))  # disjoint
    assert len(splits.rl) == 200 and len(splits.guard) > 80


def test_minority_rescue_family_needs_a_withheld_fact_in_every_majority_strategy_only():
    from dsdr_trl.toy.task import minority_rescue_splits, needs_withheld_fact

    family = minority_rescue_splits().held_out
    assert len(family) == 45
    for problem in family:
        assert needs_withheld_fact(problem, "split") and needs_withheld_fact(problem, "carry3"), problem
        assert not needs_withheld_fact(problem, "round"), problem
    assert worked_solution(Problem(37, 8), "round") == r"$40*8=320$ $3*8=24$ $320-24=296$ \boxed{296}"
