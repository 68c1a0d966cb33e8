"""DSDR (Dual-Scale Diversity Regularization, arXiv 2602.19895) for TRL's `GRPOTrainer`.

    from dsdr_trl import DSDRConfig, DSDRGRPOTrainer, accuracy_reward

The public names load lazily, so `import dsdr_trl` (and the CLI's `--help`) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_PUBLIC = {
    "DSDRConfig": ".config",
    "DSDRGRPOTrainer": ".trainer",
    "accuracy_reward": ".rewards",
    "get_reward_func": ".rewards",
    "REWARD_FUNCS": ".rewards",
    "extract_formulas": ".formulas",
}

__all__ = [
    "DSDRConfig",
    "DSDRGRPOTrainer",
    "REWARD_FUNCS",
    "__version__",
    "accuracy_reward",
    "extract_formulas",
    "get_reward_func",
]

if TYPE_CHECKING:
    from .config import DSDRConfig
    from .formulas import extract_formulas
    from .rewards import REWARD_FUNCS, accuracy_reward, get_reward_func
    from .trainer import DSDRGRPOTrainer


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module 'dsdr_trl' has no attribute {name!r}")
