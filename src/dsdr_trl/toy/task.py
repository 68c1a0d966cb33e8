r"""
A toy reasoning task with several correct solution strategies.

The task is two-digit × one-digit multiplication. A prompt is just `47*6=`; a worked solution writes its steps as
formulas in `$…$` and ends with the answer in `\boxed{}`, so the package's own `accuracy_reward` checks it and
`extract_formulas` sees each strategy as a different formula set. Three strategies solve every problem:

    split   $40*6=240$ $7*6=42$ $240+42=282$ \boxed{282}     tens and ones, then add
    round   $50*6=300$ $3*6=18$ $300-18=282$ \boxed{282}     round up to the next ten, then subtract
    carry   $7*6=42$ $4*6+4=28$ \boxed{282}                  column multiplication with a carry

The 648 problems are split by a seed into 352 for SFT, 200 for RL and 96 held out for evaluation. The policy that
knows the three strategies is in `dsdr_trl.toy.warmstart`.

Variants (the named regimes of `dsdr_trl.toy.demo`):

- strategy sets ([`STRATEGY_SETS`]): `"original"` above, whose carry method is one step shorter than the others, and
  `"balanced"`, whose `carry3` writes the carry as a third step, so that all three strategies have three formulas:

      carry3  $7*6=42$ $4*6=24$ $24+4=28$ \boxed{282}

- a hard evaluation family (`split_problems(hard_multipliers=(8, 9))`): the held-out problems are drawn from the
  multipliers 8 and 9, of which SFT sees only a fraction, so that a warm start is far from its pass@16 ceiling there.

- minority rescue ([`minority_rescue_splits`]): only a rare strategy can solve the evaluation problems. Every product
  of two digits from {7, 8, 9}, written `x*y` or `x0*y`, is withheld from SFT and RL; the family `a*b` with `b` and
  the ones digit of `a` in {7, 8, 9} and the tens digit 1–5 (45 problems) then needs one in split and carry3 (`7*8`)
  and none in round-up (`60*8`, `3*8`), which SFT uses least ([`MINORITY_MIX`]).

The task was fixed before GRPO and DSDR were compared on it; nothing here is tuned to favour either.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

STRATEGY_SETS = {"original": ("split", "round", "carry"), "balanced": ("split", "round", "carry3")}
STRATEGIES = STRATEGY_SETS["original"]
WARMSTART_SEED = 0
NUM_EVAL_PROBLEMS = 96
NUM_RL_PROBLEMS = 200

BOXED = "\\boxed{"  # one token of the task tokenizer (dsdr_trl.toy.models)


@dataclass(frozen=True)
class Problem:
    """One multiplication problem `a*b` with `a` in 11…99 (not a multiple of 10) and `b` in 2…9."""

    a: int
    b: int

    @property
    def prompt(self) -> str:
        return f"{self.a}*{self.b}="

    @property
    def answer(self) -> str:
        return str(self.a * self.b)


def all_problems() -> list[Problem]:
    """The 648 problems of the task. Multiples of 10 are left out: every strategy would degenerate to one step."""
    return [Problem(a, b) for a in range(11, 100) if a % 10 for b in range(2, 10)]


@dataclass(frozen=True)
class Splits:
    """Three disjoint sets of problems: for SFT, for RL, and held out for evaluation.

    RL gets problems the warm start never saw: on its own SFT problems the policy is near-perfect, every group would
    be all-correct, and GRPO would have nothing to learn from.
    """

    sft: list[Problem]
    rl: list[Problem]
    held_out: list[Problem]
    guard: list[Problem] = field(default_factory=list)  # a second held-out set (the minority-rescue variant's)


def split_problems(
    seed: int = WARMSTART_SEED,
    num_eval: int = NUM_EVAL_PROBLEMS,
    num_rl: int = NUM_RL_PROBLEMS,
    hard_multipliers: tuple[int, ...] = (),
    hard_sft_fraction: float = 0.2,
) -> Splits:
    """Disjoint SFT, RL and held-out problems, shuffled with `seed`.

    With `hard_multipliers` (e.g. `(8, 9)`), the held-out problems are the first `num_eval` problems `a*b` with `b` in
    that family, SFT keeps only `hard_sft_fraction` of the family's other problems, and RL gets none of them.
    """
    problems = all_problems()
    random.Random(seed).shuffle(problems)
    if not hard_multipliers:
        return Splits(
            sft=problems[num_eval + num_rl :], rl=problems[num_eval : num_eval + num_rl], held_out=problems[:num_eval]
        )
    family = [p for p in problems if p.b in hard_multipliers]
    others = [p for p in problems if p.b not in hard_multipliers]
    if len(family) <= num_eval or len(others) <= num_rl:
        raise ValueError(f"hard_multipliers={hard_multipliers} leaves too few problems for {num_eval} held out.")
    seen = family[num_eval:][: round(hard_sft_fraction * (len(family) - num_eval))]
    return Splits(sft=others[num_rl:] + seen, rl=others[:num_rl], held_out=family[:num_eval])


# The minority-rescue variant: the withheld facts, the strategy mix of its SFT and its evaluation family.
WITHHELD_DIGITS = (7, 8, 9)
_WITHHELD = re.compile(r"(?<!\d)[789]0?\*[789]=")
MINORITY_MIX = {"split": 15, "carry3": 4, "round": 1}  # 75 : 20 : 5 % of SFT rows; round-up is the minority
MINORITY_STRATEGY = "round"


def contains_withheld_fact(text: str) -> bool:
    """Whether `text` (a prompt, a completion or both) writes a withheld fact (`7*8=…` or `70*8=…`)."""
    return bool(_WITHHELD.search(text))


def needs_withheld_fact(problem: Problem, strategy: str) -> bool:
    """Whether the worked solution of `problem` by `strategy` writes a withheld fact."""
    return contains_withheld_fact(worked_solution(problem, strategy))


def minority_rescue_splits(seed: int = WARMSTART_SEED, num_rl: int = NUM_RL_PROBLEMS) -> Splits:
    """The minority-rescue variant's problems: `held_out` is the family only round-up solves without a withheld fact;
    `guard` the standard held-out problems outside it; `rl` problems every balanced strategy solves without one; `sft`
    the RL problems' complement among the problems split (and so carry3, which uses the same facts) solves without
    one. No problem with `b` and the ones digit in {7, 8, 9} is in SFT or RL."""
    family = [
        Problem(10 * tens + ones, b) for tens in range(1, 6) for ones in WITHHELD_DIGITS for b in WITHHELD_DIGITS
    ]
    guard = [p for p in split_problems(seed).held_out if p not in family]
    rest = all_problems()
    random.Random(seed).shuffle(rest)
    rest = [p for p in rest if p not in family and p not in guard]
    rl = [p for p in rest if not any(needs_withheld_fact(p, s) for s in STRATEGY_SETS["balanced"])][:num_rl]
    sft = [p for p in rest if p not in rl and not needs_withheld_fact(p, "split")]
    return Splits(sft=sft, rl=rl, held_out=family, guard=guard)


def worked_solution(problem: Problem, strategy: str) -> str:
    """A worked solution of `problem` with one of the `STRATEGIES`, formulas in `$…$` and the answer boxed."""
    a, b = problem.a, problem.b
    tens, ones = divmod(a, 10)
    up, gap = (tens + 1) * 10, (tens + 1) * 10 - a
    carry = ones * b // 10  # the carry methods write the answer's last digit straight into the box
    strategies = {
        "split": [f"{tens * 10}*{b}={tens * 10 * b}", f"{ones}*{b}={ones * b}", f"{tens * 10 * b}+{ones * b}={a * b}"],
        "round": [f"{up}*{b}={up * b}", f"{gap}*{b}={gap * b}", f"{up * b}-{gap * b}={a * b}"],
        "carry": [f"{ones}*{b}={ones * b}", f"{tens}*{b}+{carry}={tens * b + carry}"],
        "carry3": [f"{ones}*{b}={ones * b}", f"{tens}*{b}={tens * b}", f"{tens * b}+{carry}={tens * b + carry}"],
    }
    if strategy not in strategies:
        raise ValueError(f"Unknown strategy '{strategy}'; choose one of {sorted(strategies)}.")
    return " ".join(f"${step}$" for step in strategies[strategy]) + f" {BOXED}{a * b}}}"


_STRATEGY_PATTERNS = {
    "split": re.compile(r"^\$\d0\*\d=\d+\$ \$\d\*\d=\d+\$ \$\d+\+\d+=\d+\$"),
    "round": re.compile(r"^\$\d+0\*\d=\d+\$ \$\d\*\d=\d+\$ \$\d+-\d+=\d+\$"),
    "carry": re.compile(r"^\$\d\*\d=\d+\$ \$\d\*\d\+\d=\d+\$"),
    "carry3": re.compile(r"^\$\d\*\d=\d+\$ \$\d\*\d=\d+\$ \$\d+\+\d=\d+\$"),
}


def solution_strategy(text: str) -> str | None:
    """The strategy a completion follows (by the shape of its steps), or `None` if it follows none of them."""
    return next((name for name, pattern in _STRATEGY_PATTERNS.items() if pattern.match(text)), None)


def sft_dataset(
    problems: list[Problem],
    seed: int = WARMSTART_SEED,
    strategies: tuple[str, ...] = STRATEGIES,
    mix: dict[str, int] | None = None,
):
    """A prompt–completion `Dataset` with every problem solved once by each strategy, shuffled with `seed`.

    With `mix` (the minority-rescue variant's [`MINORITY_MIX`]), a problem is solved only by the strategies that need
    no withheld fact, each `mix[strategy]` times.
    """
    from datasets import Dataset

    rows = [
        {"prompt": problem.prompt, "completion": worked_solution(problem, strategy)}
        for problem in problems
        for strategy in strategies
        if mix is None or not needs_withheld_fact(problem, strategy)
        for _ in range(1 if mix is None else mix[strategy])
    ]
    random.Random(seed).shuffle(rows)
    return Dataset.from_list(rows)


def rl_dataset(problems: list[Problem]):
    """A `Dataset` with the `prompt` and `solution` columns `GRPOTrainer` and `accuracy_reward` expect."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [p.prompt for p in problems], "solution": [p.answer for p in problems]})
