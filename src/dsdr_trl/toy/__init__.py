r"""The embedded toy task, its policy and the `dsdr-trl demo` that trains GRPO and DSDR on it, offline on a CPU.

    from dsdr_trl.toy import load_policy, rl_dataset, split_problems

- `task`: two-digit × one-digit multiplication with three correct strategies, its variants, the splits, the datasets.
- `models`: the tokenizers and the one Qwen3 builder (the toy policy and the tiny test model).
- `warmstart`: SFT of the policy on the strategies; `load_policy` loads the shipped weights.
- `demo` and `report`: `dsdr-trl demo`.

Nothing in the DSDR core imports this package.
"""

from .task import Problem, rl_dataset, solution_strategy, split_problems, worked_solution
from .warmstart import WARMSTART_DIR, load_policy

__all__ = ["WARMSTART_DIR", "Problem", "load_policy", "rl_dataset", "solution_strategy", "split_problems"]
__all__ += ["worked_solution"]
