#!/usr/bin/env bash
# GPU checks for dsdr_trl on a one-GPU machine, in under 8 minutes; prints one summary table at the end.
#
#   make install TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"   # a CUDA build of torch first
#   bash scripts/gpu_check.sh
#
# 1. the GPU-marked tests: bf16 DSDR and GRPO steps with a small random policy, the encoder in fp16 on the GPU,
#    DeepSpeed ZeRO-2 in a single process;
# 2. the benchmark on the GPU (step time and CUDA peak memory, DSDR over GRPO, including the "policy" config: a
#    24M-parameter policy with 256-token completions, G = 8), scoring over encoder, encoder throughput, verifier.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
OUT=outputs/gpu_check
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

if ! "$BIN/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device; install a CUDA build of torch (see the Makefile) on a GPU machine."
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

start=$(date +%s)
timeout 240 "$BIN/python" -m pytest tests/test_gpu.py -m gpu -q -rs --junitxml="$OUT/gpu_tests.xml" \
    > "$OUT/gpu_tests.log" 2>&1
tests_status=$?
tail -n 3 "$OUT/gpu_tests.log"

timeout 300 "$BIN/python" benchmarks/run.py --out-dir "$OUT" --step-configs tiny:2,long:2,policy:2 \
    --scoring-repetitions 5 > "$OUT/bench.log" 2>&1
bench_status=$?

"$BIN/python" - "$OUT" "$tests_status" "$bench_status" "$(( $(date +%s) - start ))" <<'PY'
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, tests_status, bench_status, seconds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = [("GPU", (out / "gpu.txt").read_text().strip())]
try:
    root = ET.parse(out / "gpu_tests.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: suite.get(key) for key in ("tests", "failures", "errors", "skipped")}
    rows.append(("GPU tests", f"exit {tests_status}: {counts}"))
except (OSError, ET.ParseError):
    rows.append(("GPU tests", f"exit {tests_status}, no report (see {out}/gpu_tests.log)"))
try:
    report = json.loads((out / "bench.json").read_text())
    for name, r in report["step_time"].items():
        rows.append((f"step_time_ratio [{name}]", f"{r['step_time_ratio']:.3f} ({r['grpo_step_seconds']:.3f} s GRPO)"))
        rows.append((f"peak_memory_ratio [{name}]", f"{r['peak_memory_ratio']:.3f} ({r['peak_memory_kind']})"))
    for name, r in report["scoring"].items():
        rows.append((f"scoring_over_encoder [{name}]", f"{r['scoring_over_encoder']:.3f}"))
        rows.append((f"encoder texts/s [{name}]", f"{r['encoder_texts_per_second']:.0f}"))
    v = report["verifier"]
    rows.append(("verifier", f"{v['completions_per_second']:.0f} completions/s, worst {v['worst_case_seconds']:.2f} s"))
except (OSError, KeyError, json.JSONDecodeError):
    rows.append(("benchmark", f"exit {bench_status}, no report (see {out}/bench.log)"))
rows.append(("wall time", f"{seconds} s"))
width = max(len(key) for key, _ in rows)
print("\n" + "\n".join(f"{key:<{width}}  {value}" for key, value in rows))
sys.exit(1 if tests_status or bench_status else 0)
PY
