"""Every YAML under configs/ parses, every training recipe passes `--dry_run`, and paper recipes carry Table 2."""

import shutil
from pathlib import Path

import pytest
import yaml

import dsdr_trl
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
    from dsdr_trl.scripts.recipes import list_recipes, resolve_recipe

    assert {"qwen3-1.7b/dsdr", "qwen3-4b/dsdr-vllm-server", "tiny/dsdr"} <= set(list_recipes())
    assert resolve_recipe("qwen3-1.7b/dsdr") == str(CONFIGS / "qwen3-1.7b" / "dsdr.yaml")
    # The tiny recipe's data files are found next to it, and its model (`dsdr_trl/toy/assets/warmstart`) inside the
    # package, not in the working directory.
    monkeypatch.chdir(tmp_path)
    status = cli.main(["train", "--config", "tiny/dsdr", "--dry_run"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "(32 rows, columns ['prompt', 'solution', 'problem'])" in out
    assert str(Path(dsdr_trl.__file__).parent / "toy" / "assets" / "warmstart") in out
    status = cli.main(["train", "--config", "qwen3-1.7b/dsdr", "--dry_run", "--num_processes", "4"])
    out, err = capsys.readouterr()
    # The recipe targets 8 processes; the flag overrides it and the plan is reported for 4.
    assert status == 0 and "batch on 4 process(es)" in out and "64 completions per optimizer step" in out
    assert "vllm" in out.lower()  # imported, or a warning saying how to install it


def test_recipes_command_lists_them(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "qwen3-1.7b/dsdr" in out and "zero2" in out and "accelerate/" not in out
    assert f"sbatch --nodes=N FILE RECIPE): {CONFIGS / 'slurm' / 'dsdr_multinode.slurm'}" in out


SLURM = CONFIGS / "slurm" / "dsdr_multinode.slurm"
# Stand-ins for SLURM's commands, which this machine does not have: `scontrol show hostnames` expands a comma list,
# `srun` records its arguments (NUL-separated, a file per call) instead of starting job steps.
FAKE_SCONTROL = (
    '#!/bin/bash\n[[ $1 == show && $2 == hostnames ]] && tr , "\\n" <<< "$3"\necho "$@" >> "$SRUN_LOG.scontrol"\n'
)
# The training step returns once the server step has recorded itself, as real trainers wait for the server: the
# script stops the server when training ends.
FAKE_SRUN = """#!/bin/bash
printf "%s\\0" "$@" > "$SRUN_LOG/$$"
if [[ " $* " == *" bash -c "* ]]; then
    for _ in $(seq 100); do (( $(ls "$SRUN_LOG" | wc -l) > 1 )) && break; sleep 0.1; done
    exec sleep "${TRAIN_SECONDS:-0}"
fi
"""


def run_slurm_script(tmp_path, *args: str, **env: str):
    import os
    import subprocess
    import sys

    bin_dir, srun_log = tmp_path / "bin", tmp_path / "srun"
    bin_dir.mkdir(exist_ok=True)
    srun_log.mkdir(exist_ok=True)
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(sys.path),
        "PYTHON": sys.executable,
        "SLURM_JOB_NODELIST": "gpu-a,gpu-b,gpu-c",
        "SRUN_LOG": str(srun_log),
        **env,
    }
    return subprocess.run(
        [shutil.which("bash"), str(SLURM), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
    )


def test_slurm_script_parses():
    import subprocess

    result = subprocess.run([shutil.which("bash"), "-n", str(SLURM)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_slurm_script_serves_vllm_on_the_first_node_and_trains_on_the_others(tmp_path):
    import shlex

    extra = ["--gradient_accumulation_steps", "2", "--run_name", "two words"]
    result = run_slurm_script(tmp_path, "qwen3-4b/dsdr-vllm-server", *extra, DRY_RUN="1", GPUS_PER_NODE="4")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert list(lines) == ["gpu-a", "gpu-b", "gpu-c"]
    # The served model is the recipe's, with one data-parallel engine per GPU of its node.
    assert shlex.split(lines["gpu-a"]) == [
        "trl", "vllm-serve", "--model", "Qwen/Qwen3-4B-Base", "--data_parallel_size", "4", "--port", "8000"
    ]  # fmt: skip
    zero3 = str(CONFIGS / "accelerate" / "zero3.yaml")
    for rank, node in enumerate(["gpu-b", "gpu-c"]):
        command = shlex.split(lines[node])
        launch, script = command[: command.index("-m")], command[command.index("-m") :]
        assert launch[:2] == ["accelerate", "launch"]
        flags = dict(zip(launch[2::2], launch[3::2], strict=True))
        assert flags == {
            "--config_file": zero3,
            "--num_machines": "2",
            "--num_processes": "8",  # 2 training nodes x 4 GPUs
            "--main_process_ip": "gpu-b",
            "--main_process_port": "29500",
            "--machine_rank": str(rank),
        }
        assert script == [
            "-m", "dsdr_trl.scripts.train", "--config", "qwen3-4b/dsdr-vllm-server", "--use_vllm", "true",
            "--vllm_mode", "server", "--vllm_server_host", "gpu-a", "--vllm_server_port", "8000",
            "--resume_from_checkpoint", "auto", *extra,
        ]  # fmt: skip

    # Without DRY_RUN the same commands go to srun: the server on gpu-a, one training task on each other node, where
    # SLURM_PROCID becomes the machine rank.
    result = run_slurm_script(tmp_path, "qwen3-4b/dsdr-vllm-server", *extra, GPUS_PER_NODE="4")
    assert result.returncode == 0, result.stderr
    calls = [path.read_text().split("\0")[:-1] for path in (tmp_path / "srun").iterdir()]
    (serve,) = [call for call in calls if "--nodelist=gpu-a" in call]
    (train,) = [call for call in calls if call is not serve]
    assert serve[:3] == ["--nodes=1", "--ntasks=1", "--nodelist=gpu-a"] and serve[3:] == shlex.split(lines["gpu-a"])
    assert train[:4] == ["--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--nodelist=gpu-b,gpu-c"]
    assert train[4:6] == ["bash", "-c"] and "--machine_rank $SLURM_PROCID" in train[6]
    assert shlex.split(train[6].replace("$SLURM_PROCID", "1")) == shlex.split(lines["gpu-c"])


@pytest.mark.parametrize("signum", ["USR1", "TERM"])
def test_slurm_script_requeues_the_job_near_its_time_limit_or_when_preempted(tmp_path, signum):
    import signal
    import threading
    import time

    import psutil

    # The training step lasts 60 s here; SLURM's USR1 (near the time limit) or TERM (preemption) comes while it runs.
    def signal_when_training():
        deadline = time.monotonic() + 60
        while len(list((tmp_path / "srun").glob("*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        for process in psutil.process_iter(["cmdline"]):
            if str(SLURM) in (process.info["cmdline"] or []):
                process.send_signal(getattr(signal, f"SIG{signum}"))

    (tmp_path / "srun").mkdir()
    sender = threading.Thread(target=signal_when_training)
    sender.start()
    started = time.monotonic()
    result = run_slurm_script(tmp_path, "qwen3-4b/dsdr", SLURM_JOB_ID="42", TRAIN_SECONDS="60")
    sender.join()
    assert result.returncode == 0 and time.monotonic() - started < 60, result.stderr
    assert "requeueing job 42" in result.stderr
    assert (tmp_path / "srun.scontrol").read_text().splitlines()[-1] == "requeue 42"


def test_slurm_script_needs_two_nodes(tmp_path):
    result = run_slurm_script(tmp_path, "qwen3-4b/dsdr", DRY_RUN="1", SLURM_JOB_NODELIST="gpu-a")
    assert result.returncode == 2 and "needs at least 2 nodes" in result.stderr
