#!/usr/bin/env bash
# Fills .whl/ with what `scripts/gpu_check.sh` needs on an offline GPU machine, beyond what its image has.
#
#   bash scripts/prepare_gpu_wheels.sh        # where pip reaches a package registry; PYTHON=... for another env
#
# The GPU machine runs CPython 3.12 on manylinux x86-64 with torch (CUDA), transformers 5.17, accelerate, peft,
# sentence-transformers, huggingface_hub, tokenizers, safetensors, numpy, pandas, pyarrow, sympy and pytest, and no
# registry. Carried here, at the versions this environment runs (one version each, never torch):
# - wheels: transformers (the package needs >= 5.18), trl, datasets and its dill and multiprocess, math-verify,
#   latex2sympy2_extended and antlr4, cachetools, pebble and loky with its cloudpickle (the verifier's pool), DeepSpeed
#   (built here from its source release; pure Python, ops compiled on first use) with hjson and pydantic;
# - encoder/: the diversity encoder packed by scripts/encoder_copy.py (float16, word embeddings in int8; 33 MiB, where
#   the bundled package is 88 MB).
# dsdr_trl itself is not carried: the working tree travels, and the check runs it from src/.
# Everything that travels (the working tree and .whl/) must stay under 64 MiB; .whl/ under 60 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-${VENV:-.venv}/bin/python}  # the environment whose versions are carried (`make install` makes it)
[ -x "$PYTHON" ] || { echo "prepare_gpu_wheels: no Python at $PYTHON; run make install, or set PYTHON." >&2; exit 1; }
DEST=.whl
LIMIT_MIB=60
TRAVEL_LIMIT_MIB=64

# The GPU image's versions are adequate for everything else these need (see docs/gpu.md).
CARRIED=(transformers trl datasets dill multiprocess math-verify latex2sympy2_extended antlr4-python3-runtime cachetools
    pebble loky cloudpickle deepspeed hjson pydantic pydantic_core annotated-types typing-inspection)

pin() {  # name==version as installed in $PYTHON's environment
    "$PYTHON" - "$1" <<'PY'
import importlib.metadata
import sys

print(f"{sys.argv[1]}=={importlib.metadata.version(sys.argv[1])}")
PY
}

rm -rf "$DEST"
mkdir -p "$DEST"
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
for name in "${CARRIED[@]}"; do
    spec=$(pin "$name")
    if [ "$name" = deepspeed ]; then
        # DeepSpeed publishes only a source release; with no op prebuilt its wheel is pure Python.
        "$PYTHON" -m pip wheel -q --no-deps --no-binary deepspeed -w "$DEST" "$spec"
    else
        "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            "${platforms[@]}" -d "$DEST" "$spec"
    fi
done
log=$(mktemp)
if ! HF_HUB_OFFLINE=1 "$PYTHON" scripts/encoder_copy.py pack "$DEST/encoder" > "$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
rm -f "$log"

duplicates=$(find "$DEST" -maxdepth 1 -type f -name '*.whl' -printf '%f\n' | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [ -n "$duplicates" ]; then
    echo "prepare_gpu_wheels: more than one wheel of: $duplicates" >&2
    exit 1
fi
find "$DEST" -maxdepth 1 -type f -name '*.whl' -printf '%10s  %f\n' | sort -k2
printf '%10s  %s\n' "$(du -sb "$DEST/encoder" | cut -f1)" "encoder/ (scripts/encoder_copy.py pack)"
carried=$(du -sb "$DEST" | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "carried: $(mib "$carried") MiB in $DEST (limit $LIMIT_MIB MiB); with the working tree ($(mib "$tree") MiB):" \
    "$(mib $((carried + tree))) MiB (limit $TRAVEL_LIMIT_MIB MiB)"
if [ "$carried" -gt $((LIMIT_MIB * 1048576)) ] || [ $((carried + tree)) -gt $((TRAVEL_LIMIT_MIB * 1048576)) ]; then
    echo "prepare_gpu_wheels: over the limit; carry less" >&2
    exit 1
fi
