#!/usr/bin/env bash
# The GPU check: one command of under 10 minutes on an offline one-GPU machine whose Python has torch (CUDA),
# transformers, accelerate, peft and sentence-transformers but no registry. Prints one table at the end.
#
#   bash scripts/prepare_gpu_wheels.sh     # first, where pip works: fills .whl/ (wheels and the packed encoder)
#   bash scripts/gpu_check.sh              # there, with .whl/ carried beside the working tree
#
# 1. installs the carried wheels with --no-index into /tmp/site (the machine's torch is never touched) and unpacks
#    the float16 encoder copy; dsdr_trl runs from src/;
# 2. the GPU-marked tests (tests/test_gpu.py): bf16 DSDR and GRPO steps, the encoder in float16 on the GPU, DeepSpeed
#    ZeRO-2 in a single process;
# 3. the benchmark: a randomly initialised 0.63B-parameter policy of Qwen2-0.5B's shape, G = 8, completions of 1K and
#    4K tokens, step_time_ratio and CUDA peak_memory_ratio DSDR over GRPO side by side; then DSDR's scoring over the
#    bare encoder on the GPU.
# Logs, bench.json, bench.md and summary.txt go to $OUT (outputs/gpu_check by default).
set -uo pipefail
cd "$(dirname "$0")/.."
if ! nvidia-smi -L > /dev/null 2>&1; then
    echo "gpu_check: no CUDA device found (nvidia-smi lists none); run it on a GPU machine, see docs/gpu.md."
    exit 2
fi
start=$(date +%s)
BUDGET=${GPU_CHECK_SECONDS:-570}  # the whole check, install included: keep it under the runner's limit (often 600 s)
PYTHON=${PYTHON:-python3}
OUT=${OUT:-outputs/gpu_check}
SITE=/tmp/site
ENCODER=/tmp/dsdr-encoder
BENCH=/tmp/dsdr-bench
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
left() { local s=$((BUDGET - ($(date +%s) - start))); echo $((s > 30 ? s : 30)); }

if ! compgen -G ".whl/*.whl" > /dev/null || [ ! -f .whl/encoder/packed.safetensors ]; then
    echo "gpu_check: .whl/ is missing or incomplete; run scripts/prepare_gpu_wheels.sh where pip works and carry .whl."
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
{
    "$PYTHON" -m pip install --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl &&
        "$PYTHON" scripts/encoder_copy.py unpack .whl/encoder "$ENCODER"
} > "$OUT/install.log" 2>&1
install_status=$?
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
if [ "$install_status" -eq 0 ]; then
    "$PYTHON" - >> "$OUT/install.log" 2>&1 <<'PY'
import importlib.metadata

import torch

import dsdr_trl  # noqa: F401  (from src/, with trl, datasets and math-verify from the carried wheels)

assert torch.cuda.is_available(), "torch sees no CUDA device"
names = ("torch", "transformers", "trl", "datasets", "accelerate", "peft", "sentence-transformers", "deepspeed")
print("versions:", ", ".join(f"{name} {importlib.metadata.version(name)}" for name in names))
PY
    install_status=$?
    "$PYTHON" -m pip check >> "$OUT/install.log" 2>&1  # a report only: --no-deps installs leave it to us to read
fi
if [ "$install_status" -ne 0 ]; then
    tail -n 20 "$OUT/install.log"
    echo "gpu_check: installing the carried wheels or importing dsdr_trl failed (see $OUT/install.log)."
    exit 1
fi
grep '^versions:' "$OUT/install.log"

DSDR_TEST_ENCODER=$ENCODER timeout 170 "$PYTHON" -m pytest tests/test_gpu.py -m gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/gpu_tests.xml" > "$OUT/gpu_tests.log" 2>&1
tests_status=$?
tail -n 3 "$OUT/gpu_tests.log"

# The 1K rows first: each config's figures are written as soon as it finishes, so a cut-short run keeps them.
timeout "$(left)" "$PYTHON" benchmarks/run.py --out-dir "$BENCH" --diversity-encoder "$ENCODER" \
    --step-configs qwen2-0.5b-1k:1:2,qwen2-0.5b-4k:1:1 --scoring-configs long,4k-truncate,4k-windows \
    --scoring-repetitions 3 --skip-verifier > "$OUT/bench.log" 2>&1
bench_status=$?
cp "$BENCH"/bench.json "$BENCH"/bench.md "$OUT"/ 2> /dev/null

"$PYTHON" - "$OUT" "$tests_status" "$bench_status" "$(($(date +%s) - start))" <<'PY' | tee "$OUT/summary.txt"
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, tests_status, bench_status, seconds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
versions = re.search(r"^versions: (.*)$", (out / "install.log").read_text(), re.M)
rows = [("GPU", (out / "gpu.txt").read_text().strip()), ("packages", versions.group(1) if versions else "?")]
try:
    root = ET.parse(out / "gpu_tests.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = ", ".join(f"{key} {suite.get(key)}" for key in ("tests", "failures", "errors", "skipped"))
    rows.append(("GPU tests", f"exit {tests_status}: {counts}"))
except (OSError, ET.ParseError, AttributeError):
    rows.append(("GPU tests", f"exit {tests_status}, no report (timed out?); see gpu_tests.log"))
try:
    report = json.loads((out / "bench.json").read_text())
except (OSError, json.JSONDecodeError):
    report = {"step_time": {}, "scoring": {}}
for name, r in report["scoring"].items():
    rows.append((f"scoring {name}", f"scoring_over_encoder {r['scoring_over_encoder']:.3f}"))
if bench_status:
    rows.append(("benchmark", f"exit {bench_status} (124: cut at the time budget); see bench.log"))
rows.append(("wall time", f"{seconds} s"))
width = max(len(key) for key, _ in rows)
print("\n" + "\n".join(f"{key:<{width}}  {value}" for key, value in rows) + "\n")
print("| config | policy | rows × tokens | GRPO s/step | DSDR s/step | step_time_ratio | GRPO → DSDR peak GiB | peak_memory_ratio |")
print("|---|---|---|---|---|---|---|---|")
for name, r in report["step_time"].items():
    print(
        f"| {name} | {r['policy_parameters'] / 1e9:.2f}B | {r['rows_per_step']} × {r['completion_tokens']} | "
        f"{r['grpo_step_seconds']:.2f} | {r['dsdr_step_seconds']:.2f} | {r['step_time_ratio']:.4f} | "
        f"{r['grpo_peak_memory_mb'] / 1024:.1f} → {r['dsdr_peak_memory_mb'] / 1024:.1f} | {r['peak_memory_ratio']:.4f} |"
    )
PY
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
