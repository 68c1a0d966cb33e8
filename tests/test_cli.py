"""`dsdr-trl train` and `dsdr-trl eval`: help, clear errors without tracebacks, and the tiny recipe end to end."""

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dsdr_trl import cli

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
TINY = "configs/tiny/dsdr.yaml"
WARMSTART = "src/dsdr_trl/toy/assets/warmstart"  # the toy policy the tiny recipe trains from


@pytest.fixture(autouse=True)
def repository_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name their data files relative to the repository root
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def fails_clearly(capsys, argv: list[str], *fragments: str) -> str:
    status, out, err = run_cli(capsys, *argv)
    assert status == 2, (out, err)
    assert "Traceback" not in out + err
    # `datasets` may print progress bars (carriage-return lines) while it reads a local file for the first time.
    lines = [line for line in err.strip().split("\n") if "\r" not in line and line.strip()]
    assert len(lines) == 1, err  # one line, not a dump
    assert lines[0].startswith(f"dsdr-trl {argv[0]}: error: ")
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_top_level_help(capsys):
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0 and "train" in out and "eval" in out


def test_unknown_command(capsys):
    status, _, err = run_cli(capsys, "fly")
    assert status == 2 and "unknown command 'fly'" in err


def test_train_help_lists_every_field_with_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag, help_text in [
        ("--dataset_name", "named adapter"),
        ("--reward_funcs", "REWARD_FUNCS"),
        ("--diversity_coef", "λ_d (Eq. 10)"),
        ("--coupling_temperature", "τ (Eq. 11)"),
        ("--lora_r", "LoRA"),
        ("--use_vllm", "vLLM"),
        ("--dry_run", "no weights"),
    ]:
        assert flag in out and help_text in out, flag


def test_eval_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in ("--model", "--dataset", "--num_samples", "--k", "--temperature", "--top_p", "--output", "--preset"):
        assert flag in out
    assert "paper-avg16" in out


def test_missing_config_file(capsys):
    fails_clearly(capsys, ["train", "--config", "configs/nope.yaml"], "Config file 'configs/nope.yaml' does not exist")
    fails_clearly(capsys, ["eval", "--config", "nope.yaml"], "does not exist")


def test_unknown_yaml_key(capsys, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((ROOT / TINY).read_text() + "\ndiversity_coeff: 0.1\n")  # misspelt
    fails_clearly(capsys, ["train", "--config", str(recipe), "--dry_run"], "diversity_coeff")


def test_unknown_flag(capsys):
    fails_clearly(capsys, ["train", "--config", TINY, "--dry_run", "--lambda_d", "0.1"], "--lambda_d")
    fails_clearly(capsys, ["eval", "--model", "m", "--dataset", "d", "--samples", "4"], "--samples")


def test_unknown_reward_name(capsys):
    fails_clearly(
        capsys, ["train", "--config", TINY, "--dry_run", "--reward_funcs", "accuracy", "vibes"], "'vibes'", "accuracy"
    )


def test_correctness_reward_must_name_a_reward_function(capsys):
    fails_clearly(
        capsys, ["train", "--config", TINY, "--dry_run", "--correctness_reward", "accuracy"], "accuracy_reward"
    )


def test_recipe_selects_strict_answer_extraction_and_an_unknown_one_is_refused(capsys, tmp_path):
    recipe = tmp_path / "strict.yaml"
    data = ["--dataset_name", "configs/tiny/train.jsonl", "--passk_eval_dataset", "configs/tiny/eval.jsonl"]
    recipe.write_text((ROOT / TINY).read_text() + "\nanswer_extraction: strict\n")
    status, out, err = run_cli(capsys, "train", "--config", str(recipe), "--dry_run", *data)
    assert status == 0, err
    fails_clearly(
        capsys, ["train", "--config", TINY, "--dry_run", "--answer_extraction", "loose"], "'loose'", "strict"
    )
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text((ROOT / TINY).read_text() + "\nanswer_extraction: boxed\n")
    fails_clearly(capsys, ["train", "--config", str(unknown), "--dry_run", *data], "'boxed'", "lenient")

    # The `accuracy` reward the run builds reads the answer the way the recipe says.
    from dsdr_trl.scripts.arguments import parse, read_config
    from dsdr_trl.scripts.train import make_parser, validate

    argv = ["--output_dir", str(tmp_path / "out")]
    completions, solutions = ["Answer: 5", "\\boxed{5}"], ["5", "5"]
    for config, scores in ((read_config(recipe), [0.0, 1.0]), (read_config(ROOT / TINY), [1.0, 1.0])):
        *arguments, _launch = parse(make_parser(), list(argv), config, "train")
        (accuracy,), _ = validate(*arguments)
        assert accuracy(completions, solution=solutions) == scores


def test_dataset_without_needed_columns(capsys):
    missing = str(DATA / "no_solution.jsonl")
    fails_clearly(capsys, ["train", "--config", TINY, "--dry_run", "--dataset_name", missing], "--solution_column")
    fails_clearly(capsys, ["eval", "--model", WARMSTART, "--dataset", missing], "'explanation'")


def test_k_above_num_samples(capsys):
    fails_clearly(
        capsys,
        ["eval", "--model", WARMSTART, "--dataset", TINY, "--num_samples", "4", "--k", "1,8"],
        "pass@8 needs at least 8 samples",
    )
    fails_clearly(capsys, ["train", "--config", TINY, "--dry_run", "--passk_eval_k", "1,8"], "passk_eval_num_samples")


def test_unreachable_hub_names_the_local_alternative(capsys):
    fails_clearly(
        capsys, ["train", "--config", TINY, "--dataset_name", "some-org/missing"], "HF_HUB_OFFLINE", "local file"
    )
    fails_clearly(
        capsys,
        ["eval", "--model", WARMSTART, "--dataset", "aime24"],
        "HuggingFaceH4/aime_2024",
        "local file",
    )
    fails_clearly(
        capsys, ["eval", "--model", "some-org/no-model", "--dataset", "configs/tiny/eval.jsonl"], "local directory"
    )


def test_preset_sets_the_paper_protocol_and_flags_override_it():
    from dsdr_trl.scripts.evaluate import parse_args

    args = parse_args(["--model", "m", "--dataset", "d", "--preset", "paper-avg16"])
    assert (args.num_samples, args.temperature, args.top_p) == (16, 0.7, 0.9)
    args = parse_args(["--model", "m", "--dataset", "d", "--preset", "paper-pass1", "--top_p", "1.0"])
    assert (args.num_samples, args.k, args.temperature, args.top_p) == (1, "1", 0.1, 1.0)
    assert parse_args(["--preset", "paper-passk"]).k.endswith(",64")


def test_console_process_prints_no_traceback():
    # The real entry point, in a fresh process: the error path must not depend on pytest's capture.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "dsdr_trl", "train", "--config", "missing.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "missing.yaml" in result.stderr and "Traceback" not in result.stderr


def test_console_process_reports_bad_input_in_one_line(tmp_path):
    # The real entry point: argparse's error and the dropped-rows warning reach a user's terminal as single lines.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    rows = [{"prompt": "2*2=", "solution": "4"}, {"prompt": "3*3=", "solution": ""}]
    data = write_rows(tmp_path / "some_answers.jsonl", rows)
    for extra, status, line in [
        (["--learning_rate", "abc"], 2, "dsdr-trl train: error: --learning_rate expects a number, got 'abc'."),
        (["--dataset_name", data], 0, f"Dataset '{data}' (split 'train'): dropped 1 of 2 rows whose solution"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "dsdr_trl", "train", "--config", TINY, "--dry_run", *extra],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
        )
        assert result.returncode == status, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(line), result.stderr


@pytest.mark.slow
def test_tiny_recipe_trains_then_evaluates(capsys, tmp_path):
    output_dir = tmp_path / "tiny-dsdr"
    # 2 steps instead of the recipe's 4 keep the test short; the pass@k callback still runs once (every 2 steps).
    status, out, err = run_cli(capsys, "train", "--config", TINY, "--output_dir", str(output_dir), "--max_steps", "2")
    assert status == 0, err
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "tokenizer.json").is_file()
    assert "'eval/pass@1'" in out + err  # the callback's numbers were logged with TRL's metrics
    # The recipe starts from the toy warm start, which solves some problems: the bonus, the coupling weights (inside
    # the local term) and the local entropy term all act in its log.
    largest: dict[str, float] = {}
    for key, value in re.findall(r"'(dsdr/[a-z_]+)': '([-0-9.e]+)'", out + err):
        largest[key] = max(largest.get(key, float("-inf")), float(value))
    assert largest["dsdr/bonus_max"] > 0 and largest["dsdr/diversity_correct_mean"] > 0
    assert largest["dsdr/local_entropy"] > 0

    result_file = tmp_path / "eval.json"
    status, out, err = run_cli(
        capsys,
        "eval",
        "--model",
        str(output_dir),
        "--dataset",
        "configs/tiny/eval.jsonl",
        "--num_samples",
        "2",
        "--k",
        "1,2",
        "--conversational",
        "false",
        "--max_new_tokens",
        "48",
        "--limit",
        "3",
        "--output",
        str(result_file),
    )
    assert status == 0, err
    assert "| problems | pass@1 | pass@2 | avg@2 |" in out
    result = json.loads(result_file.read_text())
    assert set(result["pass@k"]) == {"1", "2"} and 0.0 <= result["avg@2"] <= 1.0
    assert result["num_problems"] == 3 and result["config"]["num_samples"] == 2
    assert set(result["stderr"]) == {"pass@1", "pass@2", "avg@2"} and result["timestamp"].startswith("20")
    assert result["versions"]["trl"].startswith("1.16") and "torch" in result["versions"]
    assert [(p["num_samples"], 0 <= p["num_correct"] <= 2) for p in result["per_problem"]] == [(2, True)] * 3
    assert {"distinct_answers", "semantic_distance", "formula_unique_ratio"} <= set(result["per_problem"][0])


def test_eval_scores_with_strict_or_lenient_answer_extraction(capsys, tmp_path):
    # Greedy samples cut at 12 tokens: the toy policy's formulas, before any \boxed{} (it writes two or three first).
    data = tmp_path / "one.jsonl"
    common = ["--model", WARMSTART, "--conversational", "false", "--temperature", "0", "--max_new_tokens", "12"]
    common += ["--diversity_encoder", "none", "--save_samples", "true", "--dataset", str(data)]

    def evaluate(solution: str, extraction: str) -> dict:
        data.write_text(json.dumps({"prompt": "13*3=", "solution": solution}) + "\n")
        output = tmp_path / f"{extraction}.json"
        status, out, err = run_cli(capsys, "eval", *common, "--answer_extraction", extraction, "--output", str(output))
        assert status == 0, err
        result = json.loads(output.read_text())
        assert result["config"]["answer_extraction"] == extraction
        return result

    (sample,) = evaluate("39", "strict")["per_problem"][0]["samples"]
    assert "\\boxed" not in sample
    from dsdr_trl.rewards import extract_answer

    # The gold is what the lenient reading finds in the sample: lenient scores it 1, strict (no \boxed{}) 0.
    gold = extract_answer(sample, answer_extraction="lenient")
    assert gold is not None
    assert evaluate(gold, "lenient")["pass@k"]["1"] == 1.0
    assert evaluate(gold, "strict")["pass@k"]["1"] == 0.0
    fails_clearly(capsys, ["eval", *common, "--answer_extraction", "loose"], "'loose'", "strict")


USER_REWARDS = '''
import json, os


def hint_reward(completions, hint, **kwargs):
    """Asserts that the extra dataset column and conversational completions arrive, and records each call."""
    assert len(hint) == len(completions) and all(h.startswith("hint-") for h in hint), hint
    assert all(isinstance(c, list) and c[-1]["role"] == "assistant" for c in completions), completions[:1]
    with open(os.path.join(os.path.dirname(__file__), "calls.jsonl"), "a") as log:
        log.write(json.dumps(sorted(set(hint))) + "\\n")
    return [float(len(c[-1]["content"]) % 2 == 0) for c in completions]
'''


@pytest.mark.slow
def test_conversational_file_with_extra_column_reaches_a_user_reward_module(
    capsys, tmp_path, monkeypatch, tiny_model_dir
):
    # A project folder, as a user has it: the data file and a reward module next to each other, and the command run
    # from there. The console script's sys.path[0] is its bin/ directory, not the working directory: mimic that.
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_rewards.py").write_text(USER_REWARDS)
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i}+{i}?"}], "solution": str(2 * i), "hint": f"hint-{i}"}
        for i in range(4)
    ]
    (project / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(project))])
    monkeypatch.delitem(sys.modules, "my_rewards", raising=False)
    # 2 steps of 2 prompts x 4 generations with 8 new tokens: enough for the reward to be called every step.
    argv = ["train", "--model_name_or_path", tiny_model_dir, "--dataset_name", "train.jsonl"]
    argv += ["--reward_funcs", "my_rewards.hint_reward", "accuracy_reward", "think_format_reward"]
    argv += ["--correctness_reward", "hint_reward", "--output_dir", str(tmp_path / "out"), "--max_steps", "2"]
    argv += ["--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "8"]
    argv += ["--use_cpu", "true", "--bf16", "false", "--activation_checkpointing", "false", "--report_to", "none"]
    argv += ["--save_strategy", "no", "--logging_steps", "1"]
    status, out, err = run_cli(capsys, *argv)
    assert status == 0, err
    calls = [json.loads(line) for line in (project / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 2 and all(set(call) <= {f"hint-{i}" for i in range(4)} for call in calls)
    assert "'rewards/hint_reward/mean'" in out + err and "'rewards/think_format_reward/mean'" in out + err
    # The run's settings, readable by `dsdr-trl eval` and by people (TRL's training_args.bin is a pickle).
    saved = json.loads((tmp_path / "out" / "dsdr_config.json").read_text())
    assert saved["script_args"]["reward_funcs"] == ["my_rewards.hint_reward", "accuracy_reward", "think_format_reward"]
    assert saved["training_args"]["max_steps"] == 2 and saved["model_args"]["model_name_or_path"] == tiny_model_dir


def test_train_without_arguments_prints_a_short_usage(capsys):
    status, out, err = run_cli(capsys, "train")
    assert status == 2 and err.startswith("usage: dsdr-trl train --config RECIPE") and len(err.splitlines()) < 12


def test_accelerate_config_names_resolve_to_files():
    from dsdr_trl.scripts.recipes import resolve_accelerate_config

    assert resolve_accelerate_config("zero2").endswith("accelerate/zero2.yaml")  # ours
    assert resolve_accelerate_config("fsdp2").endswith("trl/accelerate_configs/fsdp2.yaml")  # TRL's
    with pytest.raises(ValueError, match="neither a file nor a valid config"):
        resolve_accelerate_config("zero9")


@pytest.mark.slow
@pytest.mark.distributed
def test_accelerate_launch_runs_two_processes_on_cpu(tmp_path):
    # The console command in a fresh process, as a user runs it: it re-launches itself through `accelerate launch`.
    # One step of 2 prompts x 4 generations per process and no pass@k callback keep two CPU processes short.
    argv = ["train", "--config", TINY, "--accelerate_config", "ddp", "--num_processes", "2", "--max_steps", "1"]
    argv += ["--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "16"]
    argv += ["--passk_eval_dataset", "", "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-m", "dsdr_trl", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accelerate.commands.launch" in result.stdout and "batch on 2 process(es)" in result.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bad", "line"),
    [
        (["--learning_rate", "abc"], "--learning_rate expects a number, got 'abc'."),
        (["--max_train_samples", "0"], "--max_train_samples must be a positive number of rows, got 0"),
    ],
)
def test_bad_input_to_a_multi_process_launch_is_one_line_before_anything_starts(tmp_path, bad, line):
    # Checked by a dry run in this process before `accelerate launch` starts two: one line, not two lines followed by
    # the launcher's traceback; nothing launched, nothing written.
    argv = ["train", "--config", TINY, "--accelerate_config", "ddp", "--num_processes", "2", *bad]
    argv += ["--output_dir", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-m", "dsdr_trl", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("dsdr-trl train: error: ") and line in lines[0]
    assert "launching" not in result.stdout
    assert not (tmp_path / "out").exists()


def test_eval_takes_chat_template_kwargs_and_system_prompt_from_the_training_run(capsys, tmp_path):
    import shutil

    # A training output directory as `dsdr-trl train` leaves it: the settings at its top, the weights in a checkpoint.
    run = tmp_path / "run"
    shutil.copytree(ROOT / WARMSTART, run / "checkpoint-2")
    saved = {"script_args": {"system_prompt": "Multiply."}, "training_args": {"chat_template_kwargs": {"x": False}}}
    (run / "dsdr_config.json").write_text(json.dumps(saved))
    # One greedy sample of 4 tokens on one problem: only the settings are under test.
    argv = ["eval", "--model", str(run / "checkpoint-2"), "--dataset", "configs/tiny/eval.jsonl", "--limit", "1"]
    argv += ["--max_new_tokens", "4", "--temperature", "0", "--diversity_encoder", "none"]

    status, out, err = run_cli(capsys, *argv, "--output", str(tmp_path / "a.json"))
    assert status == 0, err
    assert (
        "from the training run's dsdr_config.json: chat_template_kwargs={\"x\": false}, system_prompt='Multiply.'"
        in out
    )
    config = json.loads((tmp_path / "a.json").read_text())["config"]
    assert config["chat_template_kwargs"] == {"x": False} and config["system_prompt"] == "Multiply."

    overrides = ["--chat_template_kwargs", '{"enable_thinking": false}', "--system_prompt", ""]
    status, out, err = run_cli(capsys, *argv, *overrides, "--output", str(tmp_path / "b.json"))
    assert status == 0, err
    assert "from the training run's" not in out
    config = json.loads((tmp_path / "b.json").read_text())["config"]
    assert config["chat_template_kwargs"] == {"enable_thinking": False} and config["system_prompt"] == ""

    fails_clearly(capsys, [*argv, "--chat_template_kwargs", "enable_thinking=false"], "must be a JSON object")


def test_unknown_yaml_keys_say_what_a_command_line_user_can_do(capsys, tmp_path):
    # Keys from an open-r1 recipe: torch_dtype (renamed) and num_processes (a launch key) are taken; the others are
    # named, each with what to do instead.
    recipe = tmp_path / "open-r1.yaml"
    extra = "torch_dtype: float32\nnum_processes: 1\nwandb_project: r1\nzero_stage: 2\nenv:\n  WANDB_MODE: offline\n"
    recipe.write_text((ROOT / TINY).read_text() + "\n" + extra)
    err = fails_clearly(
        capsys,
        ["train", "--config", str(recipe), "--dry_run"],
        "'wandb_project' (set WANDB_PROJECT under the YAML's env: mapping instead)",
        "'zero_stage' (an `accelerate launch` option: set it in an accelerate config file and pass --accelerate_config",
        "remove them from the YAML",
    )
    assert "torch_dtype" not in err and "num_processes" not in err and "fail_with_unknown_args" not in err
    recipe.write_text((ROOT / TINY).read_text() + "\n" + "torch_dtype: float32\nnum_processes: 1\n")
    data = ["--dataset_name", "configs/tiny/train.jsonl", "--passk_eval_dataset", "configs/tiny/eval.jsonl"]
    status, out, err = run_cli(capsys, "train", "--config", str(recipe), "--dry_run", *data)
    assert status == 0 and "batch on 1 process(es)" in out, err

    eval_config = tmp_path / "eval.yaml"
    eval_config.write_text("model: m\ndataset: d\ntorch_dtype: bfloat16\nnum_processes: 8\n")
    fails_clearly(
        capsys,
        ["eval", "--config", str(eval_config)],
        "'torch_dtype' (this command calls it dtype)",
        "'num_processes' (a launch setting of dsdr-trl train; eval runs in one process)",
    )


# Bad input, as a hostile or careless user gives it: each case is one error line with exit status 2, and nothing is
# written where the run would have put its output.


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def refused_without_output(capsys, tmp_path, argv: list[str], *fragments: str) -> str:
    """`fails_clearly`, and the run's output location (`tmp_path / "out"`) was not created."""
    output = tmp_path / "out"
    flag = "--output_dir" if argv[0] == "train" else "--output"
    err = fails_clearly(
        capsys, [*argv, flag, str(output / "results.json" if argv[0] == "eval" else output)], *fragments
    )
    assert not output.exists()
    return err


def test_all_empty_solution_column_is_refused_at_load(capsys, tmp_path):
    data = write_rows(tmp_path / "empty_answers.jsonl", [{"prompt": "1+1=", "solution": ""}, {"prompt": "2*2="}])
    for dry_run in (["--dry_run"], []):
        refused_without_output(
            capsys, tmp_path, ["train", "--config", TINY, "--dataset_name", data, *dry_run], "empty in all 2 rows"
        )
    refused_without_output(capsys, tmp_path, ["eval", "--model", WARMSTART, "--dataset", data], "--solution_column")


def test_partly_empty_solution_column_reports_the_dropped_rows(capsys, caplog, tmp_path):
    rows = [{"prompt": f"{i}*2=", "solution": str(2 * i) if i % 2 else " "} for i in range(6)]
    data = write_rows(tmp_path / "some_answers.jsonl", rows)
    status, out, err = run_cli(capsys, "train", "--config", TINY, "--dry_run", "--dataset_name", data)
    assert status == 0, err
    (warning,) = [record for record in caplog.records if record.name == "dsdr_trl.data"]
    assert warning.levelname == "WARNING"
    assert "dropped 3 of 6 rows whose solution column 'solution' is empty (rows 0, 2, 4)" in warning.getMessage()
    assert "(3 rows, columns" in out


def test_malformed_yaml_config(capsys, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_name_or_path: m\n  learning_rate: [1\n")
    for command in ("train", "eval"):
        fails_clearly(capsys, [command, "--config", str(broken)], "not valid YAML", "line 2, column 16")
    argv = ["train", "--config", TINY, "--dry_run", "--accelerate_config", str(broken)]
    fails_clearly(capsys, argv, f"Config file '{broken}' is not valid YAML")
    listed = tmp_path / "list.yaml"
    listed.write_text("- learning_rate: 1\n")
    fails_clearly(capsys, ["train", "--config", str(listed)], "holds a YAML list, not a mapping")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.jsonl", "", "is empty"),
        ("blank.jsonl", "\n  \n", "is empty"),
        ("bad_line.jsonl", '{"prompt": "1+1=", "solution": "2"}\n{"prompt": "2+2=", "solution": \n', "line 2 is not"),
        ("header_only.csv", "prompt,solution\n", "has a header but no rows"),
    ],
)
def test_empty_or_malformed_data_file(capsys, tmp_path, name, content, fragment):
    (tmp_path / name).write_text(content)
    data = str(tmp_path / name)
    refused_without_output(
        capsys, tmp_path, ["train", "--config", TINY, "--dry_run", "--dataset_name", data], fragment
    )
    refused_without_output(capsys, tmp_path, ["eval", "--model", WARMSTART, "--dataset", data], fragment)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_row_limits_must_be_positive(capsys, tmp_path, value):
    for flag in ("--max_train_samples", "--passk_eval_limit"):
        refused_without_output(
            capsys, tmp_path, ["train", "--config", TINY, flag, value], f"{flag} must be a positive number of rows"
        )
    argv = ["eval", "--model", WARMSTART, "--dataset", "configs/tiny/eval.jsonl", "--limit", value]
    refused_without_output(capsys, tmp_path, argv, "--limit must be a positive number of rows")


def test_unreachable_hub_model_fails_fast(capsys, tmp_path, monkeypatch):
    argv = ["train", "--config", TINY, "--model_name_or_path", "some-org/no-model"]
    refused_without_output(capsys, tmp_path, argv, "Could not load the model 'some-org/no-model'", "HF_HUB_OFFLINE")
    # A dry run notes it, as it does for a Hub dataset: offline, a recipe's Hub model cannot be checked.
    status, out, err = run_cli(capsys, *argv, "--dry_run")
    assert status == 0 and "model: some-org/no-model: not checked" in out, err
    # Online with no network, the Hub is found out of reach in one connection attempt, not after retries.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # `.invalid` never resolves (RFC 2606)
    refused_without_output(capsys, tmp_path, argv, "hub.invalid cannot be reached", "local directory")
    argv = ["eval", "--model", "some-org/no-model", "--dataset", "configs/tiny/eval.jsonl"]
    refused_without_output(capsys, tmp_path, argv, "hub.invalid cannot be reached", "--model")


def test_output_dir_that_is_a_file(capsys, tmp_path):
    existing = tmp_path / "model"
    existing.write_text("keep me")
    for dry_run in (["--dry_run"], []):
        argv = ["train", "--config", TINY, "--output_dir", str(existing), *dry_run]
        fails_clearly(capsys, argv, "is an existing file, not a directory")
    assert existing.read_text() == "keep me"


def test_eval_output_is_checked_before_evaluating(capsys, tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("evaluate_policy should not be reached")

    monkeypatch.setattr("dsdr_trl.generation.evaluate_policy", must_not_run)
    argv = ["eval", "--model", WARMSTART, "--dataset", "configs/tiny/eval.jsonl", "--conversational", "false"]
    fails_clearly(capsys, [*argv, "--output", str(tmp_path)], "is a directory; pass a file path")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    fails_clearly(capsys, [*argv, "--output", str(blocker / "results.json")], "which is a file")
    # A missing folder is created only when the results are written: a failure before leaves nothing behind.
    fails_clearly(capsys, [*argv, "--output", str(tmp_path / "new" / "results.json"), "--limit", "0"], "--limit")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["train", "--config", TINY, "--learning_rate", "abc"], "--learning_rate expects a number, got 'abc'."),
        (["train", "--config", TINY, "--max_steps", "1.5"], "--max_steps expects an integer, got '1.5'."),
        (["train", "--config", TINY, "--use_cpu", "maybe"], "--use_cpu expects true or false, got maybe."),
        (["train", "--config", TINY, "--learning_rate"], "--learning_rate: expected one argument"),
        (["eval", "--model", WARMSTART, "--preset", "paper"], "--preset: invalid choice: 'paper'"),
    ],
)
def test_wrongly_typed_value_is_one_line(capsys, argv, line):
    err = fails_clearly(capsys, argv, line)
    assert "usage:" not in err


def test_wrongly_typed_value_in_the_config_file_is_one_line(capsys, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((ROOT / TINY).read_text().replace("learning_rate: 2.0e-4", "learning_rate: fast"))
    fails_clearly(capsys, ["train", "--config", str(recipe), "--dry_run"], "--learning_rate expects a number")


def test_prompt_longer_than_the_models_context_is_refused(capsys, tmp_path):
    # The warm start has 96 positions and a character-level tokenizer: a 120-character problem cannot fit.
    rows = [{"prompt": "12*3=", "solution": "36"}, {"prompt": "1" * 115 + "*2=", "solution": "2"}]
    data = write_rows(tmp_path / "long.jsonl", rows)
    for dry_run in (["--dry_run"], []):
        argv = ["train", "--config", TINY, "--dataset_name", data, *dry_run]
        refused_without_output(capsys, tmp_path, argv, "context of 96 tokens", "row 1 has 118 tokens")
    status, out, err = run_cli(capsys, "train", "--config", TINY, "--dry_run")
    assert status == 0 and "context 96 tokens; longest prompt" in out, err


def test_dry_run_judges_checkpoints_for_the_launchs_process_count(capsys):
    # The paper recipe checkpoints every 160 steps: on its 8 processes a generation batch ends every 16 steps, on 2
    # every 64. The dry run itself is one process; it reports for the launch it plans.
    for processes, expected in [("8", None), ("2", "Set save_steps to a multiple of 64.")]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status, out, err = run_cli(
                capsys, "train", "--config", "qwen3-1.7b/dsdr", "--dry_run", "--num_processes", processes
            )
        assert status == 0, err
        assert not [w for w in caught if "save_steps" in str(w.message)]  # the config's one-process judgement
        lines = [line for line in out.splitlines() if "save_steps" in line]
        assert len(lines) == (expected is not None) and all(expected in line for line in lines), lines


# One validation, run by the dry run, the real run and before a launch: values the real run would crash on or silently
# ignore are refused in one line before anything is loaded or created.

# Nine levels of nine aliases: 9⁹ strings once expanded, a few hundred bytes as YAML.
ALIAS_BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def recipe_with(tmp_path: Path, lines: str) -> str:
    """The tiny recipe with `lines` in place of its keys of the same names."""
    keys = {line.split(":")[0] for line in lines.splitlines()}
    kept = [line for line in (ROOT / TINY).read_text().splitlines(True) if line.split(":")[0] not in keys]
    (tmp_path / "recipe.yaml").write_text("".join(kept) + lines + "\n")
    return str(tmp_path / "recipe.yaml")


@pytest.mark.parametrize(
    ("lines", "env", "fragment"),
    [
        ("diversity_coef: .nan", {}, "'diversity_coef' in the --config YAML expects a number, got nan"),
        ("correctness_threshold: .nan", {}, "'correctness_threshold' in the --config YAML expects a number"),
        ("learning_rate: [1, 2]", {}, "'learning_rate' in the --config YAML expects a number, got a list"),
        ("seed: 1.5", {}, "'seed' in the --config YAML expects an integer, got 1.5"),
        ("system_prompt: [a, b]", {}, "'system_prompt' in the --config YAML expects text, got a list"),
        ("temperature: 0", {}, "temperature must be > 0"),
        ("top_p: 0", {}, "0 < top_p <= 1"),
        ("passk_eval_top_p: 1.5", {}, "0 < passk_eval_top_p <= 1"),
        ("env:\n  A: [1, 2]", {}, "'env' in the --config YAML expects a mapping of plain values"),
        ("", {"DSDR_VERIFIER_WORKERS": "abc"}, "DSDR_VERIFIER_WORKERS must be a positive integer, got 'abc'"),
        ("", {"DSDR_VERIFIER_WORKERS": "0"}, "DSDR_VERIFIER_WORKERS must be a positive integer, got '0'"),
    ],
)
def test_dry_run_refuses_values_the_run_would_crash_on_or_ignore(capsys, tmp_path, monkeypatch, lines, env, fragment):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    recipe = recipe_with(tmp_path, lines)
    for dry_run in (["--dry_run"], []):
        refused_without_output(capsys, tmp_path, ["train", "--config", recipe, *dry_run], fragment)


def test_empty_output_dir_is_refused(capsys, tmp_path):
    for dry_run in (["--dry_run"], []):
        fails_clearly(
            capsys, ["train", "--config", recipe_with(tmp_path, "output_dir: ''"), *dry_run], "output_dir is empty"
        )
        fails_clearly(capsys, ["train", "--config", TINY, "--output_dir", "", *dry_run], "output_dir is empty")


def test_non_finite_numbers_are_refused_as_flags_and_by_the_config():
    from dsdr_trl import DSDRConfig

    for name in ("diversity_coef", "correctness_threshold", "local_entropy_coef", "coupling_temperature"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number"):
            DSDRConfig(output_dir="unused", use_cpu=True, **{name: float("nan")})


def test_flag_nan_is_one_line(capsys):
    fails_clearly(capsys, ["train", "--config", TINY, "--dry_run", "--diversity_coef", "nan"], "expects a finite")


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    # The console command: refused before torch is imported, in a fraction of the memory the expansion would take.
    import resource

    def at_most_500_mb():  # of address space: the expansion would need gigabytes
        resource.setrlimit(resource.RLIMIT_AS, (500 * 2**20, 500 * 2**20))

    recipe = recipe_with(tmp_path, ALIAS_BOMB + "system_prompt: *i")
    result = subprocess.run(
        [sys.executable, "-m", "dsdr_trl", "train", "--config", recipe, "--dry_run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        preexec_fn=at_most_500_mb,  # noqa: PLW1509 (no threads in this test process need it)
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "expands to more than 100000 values or 1 MB of text" in result.stderr


def test_config_that_is_a_folder_or_a_fifo_says_so(capsys, tmp_path):
    fails_clearly(capsys, ["train", "--config", str(tmp_path)], f"Config file '{tmp_path}' is a folder")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for command in ("train", "eval"):
        fails_clearly(capsys, [command, "--config", str(fifo)], "is not a regular file")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("distributed_type: MULTI_GPU\nnum_processes: [1\n", "is not valid YAML"),
        (
            "distributed_type: !!python/object/apply:os.system [echo hacked]\n",
            "is not valid YAML (could not determine",
        ),
        ("distributed_type: MULTI_GPU\nzero_stages: 2\n", "unknown keys (['zero_stages'])"),
    ],
)
def test_accelerate_config_file_is_checked_before_launching(capsys, tmp_path, content, fragment):
    config = tmp_path / "accelerate.yaml"
    config.write_text(content)
    argv = ["train", "--config", TINY, "--accelerate_config", str(config), "--num_processes", "2"]
    refused_without_output(capsys, tmp_path, argv, fragment)
    assert "launching" not in capsys.readouterr().out


def test_eval_sampling_settings_are_checked(capsys):
    argv = ["eval", "--model", WARMSTART, "--dataset", "configs/tiny/eval.jsonl"]
    fails_clearly(capsys, [*argv, "--temperature", "-1"], "--temperature must be >= 0")
    fails_clearly(capsys, [*argv, "--top_p", "0"], "0 < --top_p <= 1")


def test_eval_output_to_a_device_or_a_dangling_link_is_refused_before_generating(capsys, tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("evaluate_policy should not be reached")

    monkeypatch.setattr("dsdr_trl.generation.evaluate_policy", must_not_run)
    argv = ["eval", "--model", WARMSTART, "--dataset", "configs/tiny/eval.jsonl", "--conversational", "false"]
    fails_clearly(capsys, [*argv, "--output", "/dev/full"], "'/dev/full' is not a regular file")
    link = tmp_path / "results.json"
    link.symlink_to(tmp_path / "gone" / "results.json")
    fails_clearly(capsys, [*argv, "--output", str(link)], "is a link to", "which does not exist")
    fails_clearly(capsys, [*argv, "--output", ""], "--output is empty")


def test_a_failed_write_leaves_earlier_results_unchanged(tmp_path):
    from dsdr_trl.scripts.common import write_json

    results = tmp_path / "results.json"
    write_json(results, {"pass@k": {"1": 0.5}})
    before = results.read_text()
    with pytest.raises(TypeError):  # a value JSON cannot hold, met halfway through the file
        write_json(results, {"pass@k": {"1": 0.7}, "later": object()})
    assert results.read_text() == before and json.loads(before) == {"pass@k": {"1": 0.5}}
    assert [path.name for path in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


def test_model_with_its_own_code_is_refused_without_trust(capsys, tmp_path):
    import shutil

    model = tmp_path / "custom"
    shutil.copytree(ROOT / WARMSTART, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "custom.Config"}}))
    err = fails_clearly(
        capsys, ["train", "--config", TINY, "--dry_run", "--model_name_or_path", str(model)], "--trust_remote_code"
    )
    assert "hf.co" not in err
    err = fails_clearly(capsys, ["eval", "--model", str(model), "--dataset", "configs/tiny/eval.jsonl"], "auto_map")
    assert "hf.co" not in err


@pytest.mark.slow
def test_a_folder_in_use_is_refused_until_its_run_is_killed(capsys, tmp_path):
    import time

    output_dir = tmp_path / "run"
    # 16-token completions and no pass@k callback: the first run trains until it is killed, the last one for a step.
    argv = ["train", "--config", TINY, "--output_dir", str(output_dir), "--passk_eval_dataset", ""]
    argv += ["--max_completion_length", "16"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "dsdr_trl", *argv, "--max_steps", "100000"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not (output_dir / ".dsdr-trl.lock").exists():  # taken after validation, before the model is built
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        fails_clearly(capsys, [*argv, "--max_steps", "1"], "is in use by another dsdr-trl run")
    finally:
        first.kill()  # SIGKILL: the lock file stays, the system releases its lock
        first.wait()
    status, _, err = run_cli(capsys, *argv, "--max_steps", "1")
    assert status == 0, err
    assert (output_dir / "model.safetensors").is_file()


FAILING_REWARDS = """
def text_reward(completions, **kwargs):
    return ["good" for _ in completions]


def broken_reward(completions, **kwargs):
    raise ValueError("the hint column is missing")
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reward", "line"),
    [
        ("text_reward", "reward function 'text_reward' returned str 'good'"),
        ("broken_reward", "ValueError in my_rewards.py:7 (broken_reward): the hint column is missing"),
    ],
)
def test_an_error_inside_a_run_says_where_it_comes_from(capsys, tmp_path, monkeypatch, tiny_model_dir, reward, line):
    # Not a usage error (exit 1), but one line naming the function, with the traceback behind DSDR_TRL_DEBUG.
    (tmp_path / "my_rewards.py").write_text(FAILING_REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_rewards", raising=False)
    # One step of 2 prompts x 4 generations of 8 tokens: the reward is called at once.
    argv = ["train", "--model_name_or_path", tiny_model_dir, "--dataset_name", "configs/tiny/train.jsonl"]
    argv += ["--reward_funcs", f"my_rewards.{reward}", "--output_dir", str(tmp_path / "out"), "--max_steps", "1"]
    argv += ["--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "8"]
    argv += ["--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--save_strategy", "no"]
    argv += ["--conversational", "false"]
    status, out, err = run_cli(capsys, *argv)
    # The trainer's progress bar draws on stderr too, without a newline before the error line.
    reported = [text[text.index("dsdr-trl train: error: ") :] for text in err.splitlines() if "error: " in text]
    assert status == 1 and "Traceback" not in err and len(reported) == 1, err
    assert line in reported[0] and reported[0].endswith("(DSDR_TRL_DEBUG=1 shows the traceback)"), reported[0]


@pytest.mark.slow
@pytest.mark.distributed
def test_bad_data_given_to_a_multi_process_launch_is_one_line(tmp_path):
    # Found by the launched processes (the launcher loads no data): the first one's line, exit 2, nothing left.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    data = write_rows(tmp_path / "empty_answers.jsonl", [{"prompt": "1+1=", "solution": ""}, {"prompt": "2*2="}])
    argv = [
        "train",
        "--config",
        TINY,
        "--accelerate_config",
        "ddp",
        "--num_processes",
        "2",
        "--main_process_port",
        port,
    ]
    argv += ["--dataset_name", data, "--output_dir", str(tmp_path / "out")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "dsdr_trl", *argv], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    lines = [line for line in result.stderr.splitlines() if line.strip() and "\r" not in line]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("dsdr-trl train: error: ") and "empty in all 2 rows" in lines[0]
    assert not (tmp_path / "out").exists()
