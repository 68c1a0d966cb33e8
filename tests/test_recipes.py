"""Every YAML under configs/ parses, every training recipe passes `--dry_run`, and paper recipes carry Table 2."""

from pathlib import Path

import pytest
import yaml

from dsdr_trl import cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_YAML = sorted(CONFIGS.rglob("*.yaml"))
RECIPES = [path for path in ALL_YAML if "accelerate" not in path.parts]
PAPER_MODELS = ("qwen2.5-math-1.5b", "qwen3-1.7b", "qwen3-4b")
METHODS = ("dsdr", "grpo", "dapo", "dsdr-no-global", "dsdr-no-coupling", "dsdr-no-local")
# The paper trains base checkpoints (§4.1); its backbone rows fit these, not the post-trained Qwen3 models.
BASE_CHECKPOINTS = {
    "qwen2.5-math-1.5b": "Qwen/Qwen2.5-Math-1.5B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B-Base",
    "qwen3-4b": "Qwen/Qwen3-4B-Base",
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def relative(path: Path) -> str:
    return str(path.relative_to(CONFIGS.parent))


@pytest.mark.parametrize("path", ALL_YAML, ids=relative)
def test_yaml_parses_to_a_mapping(path):
    assert isinstance(load(path), dict)


@pytest.mark.parametrize("model", PAPER_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_paper_recipes_exist(model, method):
    assert (CONFIGS / model / f"{method}.yaml").is_file()


@pytest.mark.parametrize("path", RECIPES, ids=relative)
def test_recipe_dry_run(path, monkeypatch, capsys):
    monkeypatch.chdir(CONFIGS.parent)  # recipes name local files relative to the repository root
    status = cli.main(["train", "--config", relative(path), "--dry_run"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "dry run: arguments valid; no weights loaded" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize("path", [p for p in RECIPES if p.parent.name in PAPER_MODELS], ids=relative)
def test_paper_recipe_values(path):
    recipe, method = load(path), path.stem.replace("-vllm-server", "")
    assert recipe["model_name_or_path"] == BASE_CHECKPOINTS[path.parent.name]
    assert recipe["dataset_name"] == "dapo-math-17k"
    assert recipe["learning_rate"] == pytest.approx(1e-6)
    assert recipe["num_generations"] == 8
    assert recipe["generation_batch_size"] == 256 * 8
    assert recipe["temperature"] == 1.0
    assert recipe["max_completion_length"] == (4096 if "1.5b" in path.parent.name else 8192)
    processes = 4 if recipe.get("vllm_mode") == "server" else 8
    # 16 prompts (the paper's mini-batch) x 8 rollouts per optimizer step.
    assert recipe["per_device_train_batch_size"] * processes * recipe["gradient_accumulation_steps"] == 16 * 8
    assert recipe["epsilon"] == 0.2
    assert recipe["epsilon_high"] == (0.2 if method == "grpo" else 0.28)
    expected = {
        "dsdr": (0.001, 0.001, 5.0),
        "grpo": (0.0, 0.0, 5.0),
        "dapo": (0.0, 0.0, 5.0),
        "dsdr-no-global": (0.0, 0.001, 5.0),
        "dsdr-no-coupling": (0.001, 0.001, 0.0),  # 'w/o coupling', first reading: τ = 0
        "dsdr-no-local": (0.001, 0.0, 5.0),  # 'w/o coupling', second reading: λ_ℓ = 0
    }[method]
    assert (recipe["diversity_coef"], recipe["local_entropy_coef"], recipe["coupling_temperature"]) == expected


@pytest.mark.parametrize("path", RECIPES, ids=relative)
def test_dsdr_values_carry_a_source_comment(path):
    for line in path.read_text().splitlines():
        if line.startswith(("diversity_coef:", "local_entropy_coef:", "coupling_temperature:")):
            assert "#" in line and ("Eq." in line or "Table" in line or "ablation" in line), line


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3"])
def test_accelerate_configs(name):
    config = load(CONFIGS / "accelerate" / f"{name}.yaml")
    assert config["mixed_precision"] == "bf16"
    assert 2 <= config["num_processes"] <= 8
    if name == "ddp":
        assert config["distributed_type"] == "MULTI_GPU"
    else:
        assert config["distributed_type"] == "DEEPSPEED"
        assert config["deepspeed_config"]["zero_stage"] == int(name[-1])
    if name == "zero3":
        assert config["deepspeed_config"]["zero3_init_flag"] is True


@pytest.mark.parametrize("path", [p for p in RECIPES if p.parent.name in PAPER_MODELS], ids=relative)
def test_paper_recipes_keep_few_checkpoints_and_name_their_launch(path):
    recipe = load(path)
    assert recipe["save_total_limit"] == 2
    server = recipe.get("vllm_mode") == "server"
    assert (recipe["accelerate_config"], recipe["num_processes"]) == (("zero3", 4) if server else ("zero2", 8))


def test_recipes_by_name_from_any_directory(monkeypatch, tmp_path, capsys):
    from dsdr_trl.scripts.launch import list_recipes, resolve_recipe

    assert {"qwen3-1.7b/dsdr", "qwen3-4b/dsdr-vllm-server", "tiny/dsdr"} <= set(list_recipes())
    assert resolve_recipe("qwen3-1.7b/dsdr") == str(CONFIGS / "qwen3-1.7b" / "dsdr.yaml")
    monkeypatch.chdir(tmp_path)  # the tiny recipe's data files are found next to it, not in the working directory
    # Its model is the warm start inside the checkout (a path relative to the repository root), named here in full.
    warmstart = str(CONFIGS.parent / "src" / "dsdr_trl" / "toy" / "assets" / "warmstart")
    status = cli.main(["train", "--config", "tiny/dsdr", "--dry_run", "--model_name_or_path", warmstart])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "(32 rows, columns ['prompt', 'solution', 'problem'])" in out
    status = cli.main(["train", "--config", "qwen3-1.7b/dsdr", "--dry_run", "--num_processes", "4"])
    out, err = capsys.readouterr()
    # The recipe targets 8 processes; the flag overrides it and the plan is reported for 4.
    assert status == 0 and "batch on 4 process(es)" in out and "64 completions per optimizer step" in out
    assert "vllm" in out.lower()  # imported, or a warning saying how to install it


def test_recipes_command_lists_them(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "qwen3-1.7b/dsdr" in out and "zero2" in out and "accelerate/" not in out
