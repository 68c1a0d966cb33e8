"""The GPU check's pieces, on a CPU, so that a GPU session finds no first bug there (`scripts/gpu_check.sh`).

The encoder copy it carries (`scripts/encoder_copy.py`) and the benchmark's 0.63B-parameter policy configuration
(`benchmarks/step_worker.py`, run through `benchmarks/run.py` as on the GPU, shrunk in depth, vocabulary and length).
"""

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def encoder_copy():
    return load(ROOT / "scripts" / "encoder_copy.py", "encoder_copy")


@pytest.fixture(scope="module")
def step_worker():
    return load(ROOT / "benchmarks" / "step_worker.py", "step_worker")


def test_packed_encoder_embeds_like_the_bundled_one(tmp_path, encoder_copy, diversity_encoder):
    from dsdr_trl.encoder import embed, load_diversity_encoder

    packed = encoder_copy.pack(encoder_copy.bundled_encoder_path(), tmp_path / "packed")
    bundled_bytes = (encoder_copy.bundled_encoder_path() / "model.safetensors").stat().st_size
    packed_bytes = sum(f.stat().st_size for f in packed.rglob("*") if f.is_file())
    assert packed_bytes < 0.4 * bundled_bytes  # float32 -> float16, and the word-embedding table in int8

    copy = load_diversity_encoder(str(encoder_copy.unpack(packed, tmp_path / "encoder")))
    assert next(copy.parameters()).dtype == torch.float16
    texts = [
        "We have $x = 1$, so $2x + 3 = 5$. Answer: \\boxed{5}",
        "Let $a^2 + b^2 = c^2$ with $a = 3$ and $b = 4$; then $c = 5$.",
        "so we find that hence the value of then since gives therefore thus " * 12,
        "qux zap blorf",
        "",
    ]
    cosine = (embed(copy, texts) * embed(diversity_encoder, texts)).sum(dim=-1)
    assert cosine.min() >= 0.999, cosine


def test_qwen2_policy_config_has_half_a_billion_parameters(step_worker):
    spec = step_worker.CONFIGS["qwen2-0.5b-4k"]
    model, tokenizer = step_worker.build_policy(spec, "meta")  # the full shape, without allocating it
    assert sum(p.numel() for p in model.parameters()) >= 0.5e9
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (896, 24, 4864)
    assert (config.num_attention_heads, config.num_key_value_heads) == (14, 2)
    assert config.vocab_size == len(tokenizer) == 151_936 and not config.tie_word_embeddings
    assert spec["tokens"] == 4096 and spec["group"] == 8
    ids = random.Random(0).choices(range(len(tokenizer)), k=64)
    words = tokenizer.decode(ids, skip_special_tokens=True).split()
    assert len(words) >= 60 and all(word.isalpha() and word.islower() for word in words)


@pytest.mark.slow
def test_qwen2_benchmark_config_runs_shrunk_on_cpu(tmp_path):
    # One layer, a 4,096-word vocabulary and 16-token completions instead of 24, 151,936 and 1K, and one scoring
    # repetition on the tiny config: 25 to 90 s on 2 shared cores.
    command = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--out-dir", str(tmp_path)]
    command += ["--step-configs", "qwen2-0.5b-1k:1:1", "--layers", "1", "--vocab", "4096", "--tokens", "16"]
    command += ["--scoring-configs", "tiny", "--scoring-repetitions", "1", "--skip-verifier"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["scoring"]["tiny"]["scoring_over_encoder"] > 0  # the check's scoring figures take the same path
    result = report["step_time"]["qwen2-0.5b-1k"]
    assert (result["policy_layers"], result["policy_vocab"], result["completion_tokens"]) == (1, 4096, 16)
    assert result["rows_per_step"] == 16 and result["timed_steps_per_run"] == 1
    assert result["warmup"] == "a one-step run at 16 tokens"
    assert result["peak_memory_kind"] == "rss" and result["peak_memory_ratio"] > 0
    assert result["step_time_ratio"] > 0 and result["grpo_step_seconds"] > 0
    runs = {path.name: json.loads(path.read_text()) for path in (tmp_path / "runs").glob("*.json")}
    assert set(runs) == {"qwen2-0.5b-1k-grpo-0.json", "qwen2-0.5b-1k-dsdr-0.json"}
    assert all(run["step_times"] == run["timed_step_times"] and len(run["step_times"]) == 1 for run in runs.values())
