"""The tiny offline model and tokenizer of `dsdr_trl.tiny`, importable by the scripts tests launch with torchrun."""

from dsdr_trl.tiny import build_tiny_model, build_tiny_tokenizer

__all__ = ["build_tiny_model", "build_tiny_tokenizer"]
