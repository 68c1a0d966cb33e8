"""pass@k, aggregation and diversity numbers of `dsdr_trl.metrics` on hand-made samples; sampling of `generation`."""

import json
import math

import pytest
import torch

from dsdr_trl.generation import evaluate_policy, generate_samples, prompt_texts, vllm_model_args
from dsdr_trl.metrics import (
    SCORING_CHUNK,
    EvaluationResult,
    diversity_of_samples,
    parse_ks,
    pass_at_k,
    score_samples,
    summarize,
)


def closed_form(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(1, 0, 1), (1, 1, 1), (4, 1, 2), (10, 3, 4), (16, 0, 16), (16, 16, 16), (16, 5, 16), (64, 1, 1), (64, 7, 32)],
)
def test_pass_at_k_matches_closed_form(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), abs=1e-12)


def test_pass_at_k_edge_values():
    assert pass_at_k(8, 0, 3) == 0.0  # c = 0: no draw can succeed
    assert pass_at_k(8, 8, 3) == 1.0  # c = n: every draw succeeds
    assert pass_at_k(8, 2, 1) == pytest.approx(2 / 8)  # pass@1 is the plain accuracy


@pytest.mark.parametrize(("n", "c", "k"), [(4, 1, 5), (4, 1, 0), (4, 5, 2), (4, -1, 2)])
def test_pass_at_k_rejects_bad_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_parse_ks():
    assert parse_ks("4, 1,2,2") == [1, 2, 4]
    assert parse_ks(8) == [8]
    with pytest.raises(ValueError, match="positive integers"):
        parse_ks("1,x")
    with pytest.raises(ValueError, match="at least 1"):
        parse_ks("0,1")
    # The one check of k against the samples per problem, used by the callback, `evaluate_policy` and `summarize`.
    assert parse_ks("1,4", num_samples=4) == [1, 4]
    with pytest.raises(ValueError, match="pass@8 needs at least 8 samples per problem, but num_samples is 4"):
        parse_ks("1,8", num_samples=4)


def test_summarize_aggregates_hand_made_counts():
    samples = [["a"] * 4, ["b"] * 4, ["c"] * 4]
    correct = [[True, False, False, False], [True, True, True, True], [False] * 4]
    result = summarize(samples, correct, ks=[1, 2, 4])
    expected = {k: (closed_form(4, 1, k) + 1.0 + 0.0) / 3 for k in (1, 2, 4)}
    assert result.pass_at_k == pytest.approx(expected)
    assert result.avg_accuracy == pytest.approx(5 / 12)
    data = json.loads(json.dumps(result.to_dict()))  # JSON-ready
    assert data["avg@4"] == pytest.approx(5 / 12)
    assert data["pass@k"]["2"] == pytest.approx(expected[2])
    assert [(p["num_samples"], p["num_correct"]) for p in data["per_problem"]] == [(4, 1), (4, 4), (4, 0)]
    table = result.to_markdown()
    assert "pass@4" in table and "avg@4" in table and f"{100 * expected[2]:.2f}" in table


def test_summarize_refuses_k_above_num_samples():
    with pytest.raises(ValueError, match="pass@8 needs at least 8 samples"):
        summarize([["a", "b"]], [[True, False]], ks=[1, 8])


def test_score_samples_one_batched_call():
    calls = []

    def reward(completions, solution, **kwargs):
        calls.append(len(completions))
        return [
            1.0 if text == gold else (None if gold == "?" else 0.0)
            for text, gold in zip(completions, solution, strict=True)
        ]

    flags = score_samples([["4", "5"], ["x", "y", "z"]], ["4", "?"], reward_func=reward)
    assert flags == [[True, False], [False, False, False]]  # None counts as incorrect
    assert calls == [5]


def test_score_samples_with_accuracy_reward():
    flags = score_samples([["so \\boxed{4}", "Answer: 5"]], ["4"])
    assert flags == [[True, False]]


class FixedEncoder:
    """Maps each known text to a fixed unit vector, so distances are known exactly."""

    vectors = {"A": [1.0, 0.0], "B": [0.0, 1.0], "C": [-1.0, 0.0]}

    def encode(self, texts, **kwargs):
        return torch.tensor([self.vectors[text.split("|")[0]] for text in texts])


def test_diversity_of_samples_hand_made():
    samples = [
        ["A| $x=1$ \\boxed{2}", "B| $y=2$ \\boxed{2}", "C| $x=1$ \\boxed{3}", "A| \\boxed{2}"],
        ["A| no math, answer 7", "B| nothing"],
    ]
    correct = [[True, True, False, True], [True, False]]
    problem, single = diversity_of_samples(samples, correct, FixedEncoder())
    # Correct texts A, B, A: distances (1-0)/2, (1-1)/2, (1-0)/2 -> mean over the 3 pairs = 1/3.
    assert problem["semantic_distance"] == pytest.approx(1 / 3)
    # Formula sets {x=1, 2}, {y=2, 2}, {x=1, 3}, {2}: 4 distinct of 7 in total.
    assert problem["formula_unique_ratio"] == pytest.approx(4 / 7)
    assert problem["distinct_answers"] == 2  # "2" and "3"
    assert problem["distinct_correct"] == 3  # {x=1, 2}, {y=2, 2}, {2}
    assert single["semantic_distance"] is None  # fewer than 2 correct samples
    assert single["formula_unique_ratio"] is None  # no formulas at all
    assert single["distinct_correct"] == 1


def test_diversity_aggregates_skip_undefined():
    samples = [["A| \\boxed{1}", "C| \\boxed{1}"], ["A| \\boxed{1}", "B| \\boxed{2}"]]
    correct = [[True, True], [False, True]]
    result = summarize(samples, correct, [1], diversity=diversity_of_samples(samples, correct, FixedEncoder()))
    assert result.diversity["semantic_distance"] == pytest.approx(1.0)  # only the first problem is defined
    assert result.metrics()["semantic_distance"] == pytest.approx(1.0)
    assert result.to_dict()["per_problem"][1]["semantic_distance"] is None


def test_diversity_with_real_encoder():
    from dsdr_trl.encoder import load_diversity_encoder

    encoder = load_diversity_encoder()
    same = "Add the two numbers to get 4."
    other = "The derivative of a cubic polynomial is a quadratic."
    (identical,) = diversity_of_samples([[same, same]], [[True, True]], encoder)
    (different,) = diversity_of_samples([[same, other]], [[True, True]], encoder)
    assert identical["semantic_distance"] == pytest.approx(0.0, abs=1e-5)
    assert different["semantic_distance"] > 0.2


def test_generate_samples_shapes_and_seed(tiny_model, tiny_tokenizer):
    prompts = ["Solve 2x = 4.", [{"role": "user", "content": "What is 2 + 2?"}]]
    # 3 samples of 6 tokens in batches of 4: batches cross problem boundaries, which must not mix samples up.
    kwargs = dict(num_samples=3, temperature=1.0, top_p=0.9, max_new_tokens=6, batch_size=4, show_progress=False)
    first = generate_samples(tiny_model, tiny_tokenizer, prompts, seed=1, **kwargs)
    again = generate_samples(tiny_model, tiny_tokenizer, prompts, seed=1, **kwargs)
    assert [len(group) for group in first] == [3, 3]
    assert first == again
    assert tiny_tokenizer.padding_side == "left"


def test_evaluate_policy_refuses_k_before_generating(tiny_model, tiny_tokenizer):
    with pytest.raises(ValueError, match="num_samples"):
        evaluate_policy(tiny_model, tiny_tokenizer, ["2+2?"], ["4"], ks="1,4", num_samples=2)


def test_evaluate_policy_records_numeric_references_positionally(tiny_model, tiny_tokenizer):
    import numpy as np

    result = evaluate_policy(
        tiny_model,
        tiny_tokenizer,
        ["2+2?", "3+4?"],
        [1e20, np.int64(7)],
        ks="1",
        num_samples=1,
        max_new_tokens=2,
        show_progress=False,
    )
    assert [record["solution"] for record in result.per_problem] == ["100000000000000000000", "7"]


@pytest.mark.slow
def test_pass_at_k_callback_logs_next_to_trl_metrics(tiny_model, tiny_tokenizer, tmp_path):
    from helpers import TINY_CPU, even_length_reward, prompt_dataset
    from trl import GRPOConfig, GRPOTrainer

    from dsdr_trl.callbacks import PassAtKCallback

    config = GRPOConfig(
        output_dir=str(tmp_path),
        **TINY_CPU,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=4,  # the callback is under test, not the policy
        max_steps=2,
    )
    dataset = prompt_dataset(2)
    trainer = GRPOTrainer(
        tiny_model, even_length_reward, args=config, train_dataset=dataset, processing_class=tiny_tokenizer
    )
    callback = PassAtKCallback(
        trainer,
        dataset["prompt"],
        dataset["solution"],
        ks="1,2",
        num_samples=2,
        eval_steps=2,
        max_new_tokens=4,
        encoder=None,
    )
    trainer.add_callback(callback)
    trainer.train()

    assert [step for step, _ in callback.history] == [0, 2]  # the baseline before the first update, then step 2
    trainer.state.save_to_json(str(tmp_path / "trainer_state.json"))
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "eval/pass@2" in entry]
    assert [entry["step"] for entry in logged] == [0, 2]
    for entry in logged:
        assert 0.0 <= entry["eval/pass@1"] <= entry["eval/pass@2"] <= 1.0
        assert "eval/avg@2" in entry and "eval/distinct_answers" in entry
        assert "reward" not in entry  # its own entry: TRL's metrics of the step stay on the training log line
    assert all("reward" in entry for entry in history if "loss" in entry)


def test_pass_at_k_callback_generates_with_the_trainers_vllm_engine(tiny_tokenizer):
    from types import SimpleNamespace

    from dsdr_trl.callbacks import PassAtKCallback

    class FakeEngine:
        """Stands in for TRL's VLLMGeneration: records what it is asked, answers '4' to every prompt."""

        temperature, top_p, max_completion_length = 1.0, 1.0, 512

        def __init__(self):
            self.calls, self.syncs = [], 0

        def sync_weights(self):
            self.syncs += 1

        def generate(self, prompts, images, num_generations):
            self.calls.append(
                (len(prompts), num_generations, self.temperature, self.top_p, self.max_completion_length)
            )
            ids = tiny_tokenizer("4", add_special_tokens=False)["input_ids"]
            return prompts, [ids] * len(prompts), None, None

    engine = FakeEngine()
    trainer = SimpleNamespace(
        use_vllm=True,
        vllm_generation=engine,
        processing_class=tiny_tokenizer,
        state=SimpleNamespace(global_step=3),
        _last_loaded_step=1,
    )
    callback = PassAtKCallback(
        trainer,
        ["Solve 2+2.", "Solve 1+3."],
        ["4", "5"],
        ks="1,2",
        num_samples=2,
        encoder=None,
        temperature=0.7,
        top_p=0.9,
        max_new_tokens=16,
    )
    result = callback._evaluate_with_vllm(callback.prompts, callback.solutions)
    # Each prompt repeated num_samples times (TRL's layout), with the callback's sampling settings, then restored.
    assert engine.calls == [(4, 2, 0.7, 0.9, 16)]
    assert (engine.temperature, engine.top_p, engine.max_completion_length) == (1.0, 1.0, 512)
    assert engine.syncs == 1 and trainer._last_loaded_step == 3  # the current weights, synced once
    assert result.metrics()["pass@1"] == 0.5  # '4' is right for the first problem only


def test_standard_errors_over_problems():
    per_problem = [{"num_samples": 2, "num_correct": c} for c in (0, 1, 2)]
    result = EvaluationResult(ks=[1, 2], per_problem=per_problem)
    # pass@1 per problem: 0, 0.5, 1 -> std 0.5, over sqrt(3) problems; pass@2: 0, 1, 1.
    assert result.standard_errors["pass@1"] == pytest.approx(0.5 / math.sqrt(3))
    assert result.standard_errors["avg@2"] == pytest.approx(0.5 / math.sqrt(3))
    assert result.standard_errors["pass@2"] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
    assert result.to_dict()["stderr"]["pass@1"] == result.standard_errors["pass@1"]
    assert EvaluationResult(ks=[1], per_problem=per_problem[:1]).standard_errors["pass@1"] is None


# A chat template that reads a template argument, as Qwen3's reads `enable_thinking`.
THINKING_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    "{% if enable_thinking is defined and enable_thinking is false %}[no-think]{% endif %}"
)


def test_chat_template_kwargs_reach_the_template(tiny_tokenizer):
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = THINKING_TEMPLATE
    conversation = [{"role": "user", "content": "Solve 2+2."}]
    assert prompt_texts(tokenizer, [conversation]) == ["<|user|>Solve 2+2.<eos><|assistant|>"]
    rendered = prompt_texts(tokenizer, [conversation, "plain text"], {"enable_thinking": False})
    assert rendered == ["<|user|>Solve 2+2.<eos><|assistant|>[no-think]", "plain text"]


def test_pass_at_k_callback_renders_prompts_with_the_trainers_chat_template_kwargs(tiny_tokenizer):
    import copy
    from types import SimpleNamespace

    from dsdr_trl.callbacks import PassAtKCallback

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = THINKING_TEMPLATE
    seen = []

    class RecordingEngine:
        """Stands in for TRL's VLLMGeneration: keeps the prompt ids it is given and answers '4'."""

        temperature, top_p, max_completion_length = 1.0, 1.0, 16

        def sync_weights(self):
            pass

        def generate(self, prompts, images, num_generations):
            seen.extend(tokenizer.decode(ids) for ids in prompts)
            answer = tokenizer("4", add_special_tokens=False)["input_ids"]
            return prompts, [answer] * len(prompts), None, None

    trainer = SimpleNamespace(
        use_vllm=True,
        vllm_generation=RecordingEngine(),
        processing_class=tokenizer,
        state=SimpleNamespace(global_step=0),
        _last_loaded_step=0,
        chat_template_kwargs={"enable_thinking": False},  # GRPOTrainer keeps GRPOConfig.chat_template_kwargs here
    )
    conversation = [{"role": "user", "content": "Solve 2+2."}]
    callback = PassAtKCallback(trainer, [conversation], ["4"], encoder=None)
    callback._evaluate_with_vllm(callback.prompts, callback.solutions)
    assert seen == ["<|user|>Solve 2+2.<eos><|assistant|>[no-think]"]


def test_scoring_runs_in_chunks_behind_a_progress_bar(capsys):
    calls = []

    def last_digit_reward(completions, solution, **kwargs):
        calls.append(len(completions))
        return [float(c[-1] == s) for c, s in zip(completions, solution, strict=True)]

    # 5 problems of SCORING_CHUNK // 2 + 1 samples: three chunks, whose borders fall inside problems.
    size, answers = SCORING_CHUNK // 2 + 1, ["3", "7", "9", "0", "3"]
    samples = [[f"answer {i % 10}" for i in range(size)] for _ in answers]
    correct = score_samples(samples, answers, last_digit_reward, show_progress=True)
    total = len(answers) * size
    assert calls == [SCORING_CHUNK, SCORING_CHUNK, total - 2 * SCORING_CHUNK]
    assert [sum(flags) for flags in correct] == [sum(i % 10 == int(a) for i in range(size)) for a in answers]
    assert [flags[3] for flags in correct] == [True, False, False, False, True]
    err = capsys.readouterr().err
    assert "Scoring: 100%" in err and f"{total}/{total}" in err
    score_samples(samples, answers, last_digit_reward)
    assert "Scoring" not in capsys.readouterr().err  # no bar unless asked for


@pytest.mark.parametrize(("rank", "max_lora_rank"), [(4, 8), (16, 16), (24, 32)])
def test_vllm_serves_a_lora_directory_as_its_base_model_plus_the_adapter(
    tiny_model_dir, tmp_path, monkeypatch, rank, max_lora_rank
):
    # vLLM is not needed to check what it would be handed: a real adapter saved by peft, as `dsdr-trl train` saves it,
    # and the ranks vLLM accepts where vLLM declares them (`vllm.config.lora.MaxLoRARanks`, as in vLLM 0.22-0.31).
    import sys
    import types
    from typing import Literal

    lora = types.ModuleType("vllm.config.lora")
    lora.MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]
    for name, module in (("vllm", types.ModuleType("vllm")), ("vllm.config", types.ModuleType("vllm.config"))):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "vllm.config.lora", lora)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapter = get_peft_model(base, LoraConfig(r=rank, target_modules=["q_proj", "v_proj"]))
    adapter.save_pretrained(tmp_path / "run")
    llm_kwargs, lora = vllm_model_args(str(tmp_path / "run"))
    assert llm_kwargs == {"model": tiny_model_dir, "enable_lora": True, "max_lora_rank": max_lora_rank}
    assert lora == ("adapter", 1, str((tmp_path / "run").resolve()))

    assert vllm_model_args("org/full-model") == ({"model": "org/full-model"}, None)
    config = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    (tmp_path / "run" / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": None}))
    with pytest.raises(ValueError, match="base_model_name_or_path"):
        vllm_model_args(str(tmp_path / "run"))
    (tmp_path / "run" / "adapter_config.json").write_text(json.dumps({**config, "r": 1024}))
    with pytest.raises(ValueError, match="without --use_vllm"):
        vllm_model_args(str(tmp_path / "run"))
    # Without vLLM's declaration, the adapter's own rank is what it needs.
    monkeypatch.delitem(sys.modules, "vllm.config.lora")
    monkeypatch.setitem(sys.modules, "vllm.config.lora", None)  # `import` of it now raises ImportError
    (tmp_path / "run" / "adapter_config.json").write_text(json.dumps(config))
    assert vllm_model_args(str(tmp_path / "run"))[0]["max_lora_rank"] == rank
