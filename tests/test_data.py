"""Dataset adapters and local files of `dsdr_trl.data`, on the small sample files under tests/data/."""

import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsdr_trl import data
from dsdr_trl.data import (
    DATASETS,
    PROMPT_TEMPLATES,
    DatasetUnavailableError,
    gsm8k_answer,
    load_math_dataset,
    looks_local,
    resolve_prompt_template,
)
from dsdr_trl.rewards import number_text

DATA = Path(__file__).parent / "data"

# Each named adapter, with a local sample file in the layout of its Hub copy and the answers expected from it.
ADAPTER_SAMPLES = {
    "dapo-math-17k": ("dapo_sample.jsonl", ["14", "5", "6"]),
    "math500": ("math500_sample.jsonl", ["14", "5", "6"]),
    "aime24": ("aime_sample.jsonl", ["24", "20"]),
    "aime25": ("aime_sample.jsonl", ["24", "20"]),
    "minerva": ("minerva_sample.parquet", ["\\frac{3}{4}", "49"]),
    "olympiadbench": ("olympiadbench_sample.json", ["$13$", "$5$"]),
    "gsm8k": ("gsm8k_sample.csv", ["1234", "10"]),
}


def test_every_adapter_has_a_sample():
    assert set(ADAPTER_SAMPLES) == set(DATASETS)


@pytest.mark.parametrize("name", sorted(ADAPTER_SAMPLES))
def test_adapter_maps_its_schema(name, monkeypatch):
    file, answers = ADAPTER_SAMPLES[name]
    requested = {}

    def fake_hub(path, config, split):
        requested.update(path=path, config=config, split=split)
        return data._load_local(str(DATA / file), split)

    monkeypatch.setattr(data, "_load_hub", fake_hub)
    dataset = load_math_dataset(name)
    spec = DATASETS[name]
    assert requested == {"path": spec.path, "config": spec.config, "split": spec.split}
    assert dataset.column_names[:3] == ["prompt", "solution", "problem"]
    assert dataset["solution"] == answers
    first = dataset[0]
    assert first["prompt"][0]["role"] == "user"
    assert first["problem"] in first["prompt"][0]["content"]
    if spec.template == "answer-line":
        assert first["prompt"][0]["content"].rstrip().endswith('after "Answer:".')


def test_dapo_prompts_are_used_as_they_are(monkeypatch):
    monkeypatch.setattr(
        data,
        "_load_hub",
        lambda path, config, split: data._load_local(str(DATA / ADAPTER_SAMPLES["dapo-math-17k"][0]), split),
    )
    row = load_math_dataset("dapo-math-17k")[0]
    # The DAPO prompt already asks for an `Answer:` line; the adapter must not wrap it in a second instruction.
    assert row["prompt"][0]["content"] == row["problem"]
    assert row["prompt"][0]["content"].count("Answer:") == 2


def test_local_file_with_column_flags_and_template():
    dataset = load_math_dataset(
        str(DATA / "math500_sample.jsonl"), prompt_template="boxed", conversational=False, system_prompt="ignored"
    )
    assert dataset["solution"] == ["14", "5", "6"]  # `answer` wins over the worked `solution`
    assert dataset[0]["prompt"].endswith("within \\boxed{}.")
    worked = load_math_dataset(str(DATA / "math500_sample.jsonl"), solution_column="solution", limit=1)
    assert len(worked) == 1 and "\\boxed{14}" in worked[0]["solution"]


def test_system_prompt_and_custom_template():
    dataset = load_math_dataset(
        str(DATA / "gsm8k_sample.csv"), prompt_template="Q: {problem}\nA:", system_prompt="Be brief."
    )
    prompt = dataset[1]["prompt"]
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert prompt[1]["content"] == "Q: A pen costs $2. How much do 5 pens cost?\nA:"


def test_missing_column_names_the_columns_and_the_flag():
    with pytest.raises(ValueError, match=r"no solution column.*\['question', 'explanation'\].*--solution_column"):
        load_math_dataset(str(DATA / "no_solution.jsonl"))
    with pytest.raises(ValueError, match="no prompt column 'problem'"):
        load_math_dataset(str(DATA / "no_solution.jsonl"), prompt_column="problem", solution_column="explanation")


def test_missing_file():
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        load_math_dataset(str(DATA / "nope.jsonl"))


def test_offline_hub_fails_fast_naming_the_local_alternative(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # huggingface_hub's own offline flag
    with pytest.raises(DatasetUnavailableError, match="HF_HUB_OFFLINE.*pass that local file"):
        load_math_dataset("some-org/not-a-dataset")
    with pytest.raises(DatasetUnavailableError, match="HuggingFaceH4/MATH-500"):
        load_math_dataset("math500")


def test_unreachable_hub_is_checked_before_datasets_retries(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # `.invalid` never resolves (RFC 2606)

    def must_not_run(*args, **kwargs):
        raise AssertionError("load_dataset should not be reached")

    monkeypatch.setattr("datasets.load_dataset", must_not_run)
    with pytest.raises(DatasetUnavailableError, match="hub.invalid cannot be reached"):
        load_math_dataset("some-org/not-a-dataset")


def test_prompt_templates():
    assert resolve_prompt_template("plain") == "{problem}"
    assert resolve_prompt_template(None, "boxed") == PROMPT_TEMPLATES["boxed"]
    with pytest.raises(ValueError, match="containing '\\{problem\\}'"):
        resolve_prompt_template("no placeholder")


def test_gsm8k_answer_and_local_detection(tmp_path):
    assert gsm8k_answer("so 3 + 4 = 7\n#### 1,007") == "1007"
    assert looks_local("data/file.jsonl") and looks_local("./dir") and looks_local(str(tmp_path))
    assert not looks_local("openai/gsm8k") and not looks_local("math500")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e20, "100000000000000000000"),
        (1e23, "100000000000000000000000"),  # the digits written, not int(1e23) = 99999999999999991611392
        (1e-05, "0.00001"),
        (-1.5e-10, "-0.00000000015"),
        (2.5, "2.5"),
        (3.0, "3"),
        (-0.0, "0"),
        (np.float32(0.1), "0.1"),  # float32's own shortest digits, not float(0.1f) = 0.10000000149011612
        (np.float16(1e-3), "0.001"),
        (np.float64(1e20), "100000000000000000000"),
        (np.int64(-7), "-7"),
        (np.uint64(2**64 - 1), "18446744073709551615"),
        # Past Python's 4,300-digit limit of `str(int)`.
        pytest.param(10**5000, "1" + "0" * 5000, id="int-of-5001-digits"),
        pytest.param(Fraction(-(10**5000), 3), "-1" + "0" * 5000 + "/3", id="fraction-of-5001-digits"),
        (Decimal("1E+20"), "100000000000000000000"),
        (Decimal("1.50"), "1.5"),
        (Fraction(1, 3), "1/3"),
        (math.nan, None),
        (np.float64("inf"), None),
        (Decimal("NaN"), None),
        (True, None),
        (np.bool_(False), None),
        ("12", None),
        (None, None),
        (1 + 2j, None),
    ],
)
def test_number_text_is_positional(value, text):
    assert number_text(value) == text


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_float_solution_columns_load_as_positional_numbers(tmp_path, suffix):
    from dsdr_trl.rewards import accuracy_reward

    problems = ["Big?", "Small?", "Half?", "Whole?"]
    answers = [1e20, 1e-05, 2.5, 3.0]
    path = tmp_path / f"floats{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({"problem": problems, "answer": pa.array(answers, pa.float64())}), path)
    else:
        # json.dumps writes the floats as 1e+20 and 1e-05, as any JSON writer may.
        path.write_text(
            "".join(json.dumps({"problem": p, "answer": a}) + "\n" for p, a in zip(problems, answers, strict=True))
        )
    solution = load_math_dataset(str(path))["solution"]
    assert solution == ["100000000000000000000", "0.00001", "2.5", "3"]
    completions = [r"\boxed{100000000000000000000}", r"\boxed{e+20}", r"\boxed{0.00001}", r"\boxed{3}"]
    golds = [solution[0], solution[0], solution[1], solution[3]]
    assert accuracy_reward(completions, solution=golds) == [1.0, 0.0, 1.0, 1.0]


def test_every_other_column_is_kept_for_the_reward_functions():
    dataset = load_math_dataset(str(DATA / "math500_sample.jsonl"))
    assert dataset.column_names == ["prompt", "solution", "problem", "answer", "subject", "level", "unique_id"]
    assert dataset["solution"] == ["14", "5", "6"] and dataset["answer"] == ["14", "5", "6"]
    assert dataset[0]["level"] == 1 and dataset[0]["unique_id"] == "test/algebra/0.json"
    gsm8k = load_math_dataset(str(DATA / "gsm8k_sample.csv"))
    # The problem text moved to `problem`; the worked GSM8K answer stays next to the extracted number.
    assert "question" not in gsm8k.column_names and "#### " in gsm8k[0]["answer"]


def test_conversational_prompts_are_kept_with_their_messages():
    # The layout of TRL's conversational prompt-only math datasets (e.g. trl-lib/DeepMath-103K), plus extra columns.
    dataset = load_math_dataset(
        str(DATA / "deepmath_conversational_sample.jsonl"), prompt_template="boxed", system_prompt="Be brief."
    )
    assert dataset.column_names == ["prompt", "solution", "problem", "difficulty", "topic"]
    first, second = dataset[0]["prompt"], dataset[1]["prompt"]
    assert first == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROMPT_TEMPLATES["boxed"].replace("{problem}", "What is $3 \\cdot 4 + 2$?")},
    ]
    assert [m["role"] for m in second] == ["system", "user"] and second[0]["content"] == "Think first."
    assert dataset[1]["problem"] == "Find the sum of the roots of $x^2 - 5x + 6 = 0$."
    assert dataset["difficulty"] == [2.5, 3.0]
    with pytest.raises(ValueError, match="holds conversations.*drop --conversational false"):
        load_math_dataset(str(DATA / "deepmath_conversational_sample.jsonl"), conversational=False)


def test_rows_without_a_reference_answer_are_dropped_and_counted(tmp_path, caplog):
    rows = ['{"problem": "a", "answer": "1"}', '{"problem": "b", "answer": null}', '{"problem": "c", "answer": []}']
    rows += ['{"problem": "d", "answer": "  "}', '{"problem": "e", "answer": ["7"]}']
    (tmp_path / "gaps.jsonl").write_text("\n".join(rows) + "\n")
    dataset = load_math_dataset(str(tmp_path / "gaps.jsonl"), limit=2)
    # The limit counts usable rows; the others are reported with their count and indices.
    assert dataset["problem"] == ["a", "e"] and dataset["solution"] == ["1", "7"]
    (message,) = [record.getMessage() for record in caplog.records if record.name == "dsdr_trl.data"]
    assert "dropped 3 of 5 rows whose solution column 'answer' is empty (rows 1, 2, 3)" in message


def test_references_no_answer_can_match_are_dropped_and_counted(tmp_path, caplog):
    rows = [{"answer": "1"}, {"answer": True}, {"answer": {"value": 2}}, {"answer": [{"value": 3}]}, {"answer": [4]}]
    rows += [{"answer": False}, {"answer": ""}, {"answer": 7}]
    path = tmp_path / "types.jsonl"
    path.write_text("".join(json.dumps({"problem": f"p{i}", **row}) + "\n" for i, row in enumerate(rows)))
    dataset = load_math_dataset(str(path))
    # JSON `true` would otherwise be the reference "True", which `\boxed{eTru}` matches.
    assert dataset["problem"] == ["p0", "p4", "p7"] and dataset["solution"] == ["1", "4", "7"]
    messages = [record.getMessage() for record in caplog.records if record.name == "dsdr_trl.data"]
    assert any("dropped 1 of 8 rows whose solution column 'answer' is empty (rows 6)" in m for m in messages)
    assert any(
        "dropped 4 of 8 rows whose solution column 'answer' holds a boolean, a mapping or a list of neither text nor "
        "numbers (rows 1, 2, 3, 5)" in m
        for m in messages
    )
    (tmp_path / "bools.jsonl").write_text('{"problem": "a", "answer": true}\n{"problem": "b", "answer": ""}\n')
    with pytest.raises(ValueError, match=r"'answer' is empty or of a type no answer matches \(1 of them\) in all 2"):
        load_math_dataset(str(tmp_path / "bools.jsonl"))


def test_solution_column_empty_in_every_row_is_refused(tmp_path):
    (tmp_path / "none.csv").write_text("question,answer\nwhat?,\nwhy?,\n")
    with pytest.raises(ValueError, match="solution column 'answer' is empty in all 2 rows.*--solution_column"):
        load_math_dataset(str(tmp_path / "none.csv"))


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.jsonl", "", "is empty"),
        ("empty.parquet", "", "is empty"),
        ("blank.json", "\n\n", "is empty"),
        ("header.csv", "prompt,answer\n", "has a header but no rows"),
        ("bad.jsonl", '{"prompt": "a", "answer": "1"}\n\n{"prompt": "b", answer: 2}\n', "line 3 is not valid JSON"),
        ("bad.json", '[{"prompt": "a", "answer": "1"},', "cannot be read as json"),
    ],
)
def test_unreadable_local_files_name_the_file_and_the_problem(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match) as error:
        load_math_dataset(str(tmp_path / name))
    assert str(tmp_path / name) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(limit):
    with pytest.raises(ValueError, match="limit must be a positive number of rows"):
        load_math_dataset(str(DATA / "math500_sample.jsonl"), limit=limit)


def test_prompt_lengths_count_what_grpo_trainer_feeds_the_model(tmp_path, tiny_tokenizer):
    from helpers import TINY_CPU, build_tiny_model, even_length_reward, prompt_dataset

    from dsdr_trl import DSDRConfig, DSDRGRPOTrainer

    config = DSDRConfig(output_dir=str(tmp_path), **TINY_CPU, per_device_train_batch_size=4, num_generations=4)
    trainer = DSDRGRPOTrainer(
        model=build_tiny_model(tiny_tokenizer),
        reward_funcs=even_length_reward,
        args=config,
        train_dataset=prompt_dataset(),
        processing_class=tiny_tokenizer,
    )
    plain = ["Solve 2+2.", "Compute 1/2+1/3 and then some more."]
    chats = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}] for text in plain]
    for prompts in (plain, chats):
        expected = [len(ids) for ids in trainer._tokenize_prompts(prompts)[0]]
        assert data.prompt_lengths(prompts, tiny_tokenizer) == expected
    lengths = zip(data.prompt_lengths(chats, tiny_tokenizer), data.prompt_lengths(plain, tiny_tokenizer), strict=True)
    assert all(chat > text for chat, text in lengths)  # the chat template adds its tokens
