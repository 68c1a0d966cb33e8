import math
import os
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dsdr_trl import _time_limit, rewards
from dsdr_trl.rewards import REWARD_FUNCS, accuracy_reward, extract_answer, get_reward_func, make_accuracy_reward

# Hang guard for a single reward call on hostile text: time limit (lowered below) plus a worker restart, with slack
# for a loaded CI machine.
MAX_CALL_SECONDS = 5.0


@pytest.fixture
def short_time_limit(monkeypatch):
    monkeypatch.setattr(rewards, "VERIFY_TIME_LIMIT_SECONDS", 0.5)


@pytest.fixture(autouse=True)
def nothing_remembered(monkeypatch):
    # Each test starts with no remembered overrun, so that it sees the items it sends.
    monkeypatch.setattr(rewards, "_overran", type(rewards._overran)(maxsize=4_096))


def score(completion, gold):
    (reward,) = accuracy_reward([completion], solution=[gold])
    return reward


# --- extraction ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so the answer is \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\frac{\sqrt{3}}{2}} and more text", r"\frac{\sqrt{3}}{2}"),
        (r"first \boxed{1}, then \boxed{7}", "7"),
        (r"\fbox{5}", "5"),
        (r"\boxed {5}", "5"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{\boxed{3}}", r"\boxed{3}"),
        (r"\boxed{4} but then \boxed{5", "4"),
        ("The sum is 30 + 4.\nAnswer: 34", "34"),
        ("Answer: 1\nwait, no.\nAnswer: $\\frac{3}{4}$.", "$\\frac{3}{4}$"),
        ("**Answer:** 42.", "42"),
        ("**Answer:**\n\n  17\n", "17"),
        ("so $x = 5$", "x = 5"),
        ("first $x$ and finally $$y = 3$$ done", "y = 3"),
        ("we get $x=5$, so the total is 12 apples", "12"),
        (r"then \(a + 1\) is it", "a + 1"),
        ("it costs \\$5 or so", "5"),
        ("about 1,000 people", "1,000"),
        ("no answer here", None),
        ("", None),
        ("   \n\t", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_ignores_non_strings():
    assert extract_answer(None) is None
    assert extract_answer(b"\\boxed{1}") is None


# --- scoring ---------------------------------------------------------------------------------------------------------


def test_boxed_correct_and_incorrect():
    completions = [r"Thus \boxed{34}.", r"Thus \boxed{35}.", "I give up."]
    assert accuracy_reward(completions, solution=["34"] * 3) == [1.0, 0.0, 0.0]


def test_last_boxed_wins():
    assert score(r"First guess \boxed{1}, corrected: \boxed{\frac{1}{2}}", "0.5") == 1.0
    assert score(r"First guess \boxed{\frac{1}{2}}, corrected: \boxed{1}", "0.5") == 0.0


def test_answer_line_fallback():
    assert score("Lots of reasoning.\nAnswer: 42", "42") == 1.0
    assert score("Lots of reasoning.\nAnswer: $\\frac{1}{2}$", "0.5") == 1.0
    assert score("Lots of reasoning.\nAnswer: 41", "42") == 0.0


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("0.5", r"\frac{1}{2}"),
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac12", "$0.5$"),
        (r"\frac{\sqrt3}{2}", r"\frac{\sqrt{3}}{2}"),
        (r"\frac{1}{\sqrt{2}}", r"\sqrt{2}/2"),
        (r"\pi \cdot 2", r"2\pi"),
        ("(x+1)^2", "x^2+2x+1"),
        (r"\{2,1\}", r"\{1,2\}"),
        ("x = 34", r"\boxed{34}"),
        ("1,000", "1000"),
    ],
)
def test_equivalent_forms_score_one(answer, gold):
    assert score(f"The answer is \\boxed{{{answer}}}", gold) == 1.0


@pytest.mark.parametrize(("answer", "gold"), [("0.33", r"\frac{1}{3}"), (r"\sqrt{3}", "3"), ("(1, 3)", "(1, 2)")])
def test_different_values_score_zero(answer, gold):
    assert score(f"\\boxed{{{answer}}}", gold) == 0.0


def test_gold_formats_and_types():
    assert accuracy_reward([r"\boxed{34}"] * 4, solution=["34", "$34$", r"\boxed{34}", 34]) == [1.0] * 4


def test_float_references_are_the_numbers_they_stand_for():
    # `str(1e20)` is "1e+20", which math-verify reads as e + 20: the right answer scored 0 and "e+20" scored 1.
    completions = [r"\boxed{100000000000000000000}", r"\boxed{e+20}", r"\boxed{0.00001}", r"\boxed{e-5}"]
    assert accuracy_reward(completions, solution=[1e20, 1e20, 1e-05, 1e-05]) == [1.0, 0.0, 1.0, 0.0]


NUMBER_TYPES = [int, float, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64]
NUMBER_TYPES += [np.float16, np.float32, np.float64, np.longdouble]


def test_every_integer_and_float_type_is_a_reference():
    right = accuracy_reward([r"\boxed{12}"] * len(NUMBER_TYPES), solution=[kind(12) for kind in NUMBER_TYPES])
    wrong = accuracy_reward([r"\boxed{13}"] * len(NUMBER_TYPES), solution=[kind(12) for kind in NUMBER_TYPES])
    assert right == [1.0] * len(NUMBER_TYPES) and wrong == [0.0] * len(NUMBER_TYPES)
    halves = [float, np.float16, np.float32, np.float64, np.longdouble]
    assert accuracy_reward([r"\boxed{\frac{5}{2}}"] * 5, solution=[kind(2.5) for kind in halves]) == [1.0] * 5


def test_booleans_and_non_finite_numbers_are_not_references():
    solution = [True, np.bool_(True), math.nan, np.float32("nan"), math.inf, -np.inf, 1.0]
    assert accuracy_reward([r"\boxed{1}"] * 7, solution=solution) == [None] * 6 + [1.0]


def test_conversational_completions():
    completions = [
        [{"role": "assistant", "content": r"\boxed{\frac{1}{2}}"}],
        [{"role": "assistant", "content": "Answer: 3"}],
        [{"role": "assistant", "content": [{"type": "text", "text": r"so \boxed{0.5}"}]}],
        [{"role": "assistant", "content": None}],
        [],
    ]
    assert accuracy_reward(completions, solution=["0.5", "4", "1/2", "0.5", "0.5"]) == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_unparsable_gold_gives_none():
    completions = [r"\boxed{1}"] * 6
    solution = ["}{", r"\boxed{}", "", "  ", None, "1"]
    assert accuracy_reward(completions, solution=solution) == [None, None, None, None, None, 1.0]


def test_overlong_answer_scores_zero():
    long_sum = "+".join(["1"] * 600)  # 1,199 characters, over MAX_ANSWER_CHARS, although it equals 600
    assert score(f"\\boxed{{{long_sum}}}", "600") == 0.0
    assert score("\\boxed{" + "+".join(["1"] * 6) + "}", "6") == 1.0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="one per completion"):
        accuracy_reward([r"\boxed{1}", r"\boxed{2}"], solution=["1"])


def test_keeps_trainer_metric_name_and_logs_timeouts(short_time_limit):
    assert accuracy_reward.__name__ == "accuracy_reward"
    logged = []
    result = accuracy_reward(
        [r"\boxed{1}", r"\boxed{10^{10^{10}}}"],
        solution=["1", "2"],
        prompts=["p", "p"],
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert result == [1.0, 0.0]
    assert logged == [("dsdr/verifier_timeouts", 1.0), ("dsdr/verifier_failures", 0.0)]


HOSTILE_COMPLETIONS = {
    "open_braces": "{" * 100_000,
    "close_braces": "}" * 100_000,
    "repeated_boxed": "\\boxed{" * 10_000,
    "repeated_boxed_closed": "\\boxed{1}" * 10_000,
    "power_tower": r"\boxed{9^{9^{9^{9}}}}",
    "huge_power": r"\boxed{10^{10^{10}}}",
    "huge_power_answer_line": "Answer: 10^{10^{10}}",
    "huge_factorial": r"\boxed{(10^{9})!}",
    "dollars": "$" * 100_000,
    "answer_labels": "Answer:" * 20_000,
    "digits": "7" * 100_000,
    "lone_surrogates": "\udcff\udcfe \\boxed{\udcff}",
    "control_and_bidi": "\x00\u202e\\boxed{\u00bd}\ufeff",
    "empty": "",
    "whitespace": " \n\t" * 1_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_COMPLETIONS))
def test_hostile_completion_is_bounded_and_scores_zero(name, short_time_limit):
    start = time.monotonic()
    reward = score(HOSTILE_COMPLETIONS[name], "34")
    assert time.monotonic() - start < MAX_CALL_SECONDS
    assert reward == 0.0


def test_hostile_batch_with_default_time_limit_is_bounded():
    completions = [r"\boxed{34}", r"\boxed{9^{9^{9^{9}}}}", None, b"\xff\xfe", r"\boxed{34}"]
    start = time.monotonic()
    result = accuracy_reward(completions, solution=["34"] * len(completions))
    # At most one overrun at the default limit, plus a worker restart.
    assert time.monotonic() - start < rewards.VERIFY_TIME_LIMIT_SECONDS + 3.0
    assert result == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_identical_completions_are_verified_once_and_overrunning_golds_remembered(short_time_limit, monkeypatch):
    sent: list[list] = []
    real = rewards.run_with_time_limit

    def recording(fn, items, seconds):
        sent.append(list(items))
        return real(fn, items, seconds)

    monkeypatch.setattr(rewards, "run_with_time_limit", recording)
    assert accuracy_reward([HOSTILE_COMPLETIONS["huge_power"]] * 8, solution=["34"] * 8) == [0.0] * 8
    assert [item for call in sent for item in call] == [("34", None), ("34", "10^{10^{10}}")]

    sent.clear()
    overrunning_gold = r"\binom{100000000}{50000000}"  # parsing this reference overruns the limit
    logged = []
    with pytest.warns(RuntimeWarning, match=re.escape(repr(overrunning_gold))):
        first = accuracy_reward(
            [r"\boxed{1}"] * 3, solution=[overrunning_gold] * 3, log_metric=lambda *metric: logged.append(metric)
        )
    second = accuracy_reward([r"\boxed{1}"] * 3, solution=[overrunning_gold] * 3)
    assert first == second == [None] * 3
    # Sent once: the second call costs no worker time for it.
    assert [item for call in sent for item in call] == [(overrunning_gold, None)]
    assert ("dsdr/verifier_timeouts", 3.0) in logged

    # An overrunning answer is remembered too: eight more of it in a later call cost nothing.
    sent.clear()
    assert accuracy_reward([HOSTILE_COMPLETIONS["huge_power"]] * 8, solution=["34"] * 8) == [0.0] * 8
    assert [item for call in sent for item in call] == [("34", None)]


def test_a_reference_whose_comparison_overruns_costs_the_limit_once():
    # The reference parses at once, but comparing anything with it makes SymPy evaluate the tower.
    tower, answers = r"9^{9^{9^{9}}}", [f"Answer: {n}" for n in range(8)]
    logged: list[tuple[str, float]] = []
    with pytest.warns(RuntimeWarning, match=r"reference '9\^\{9\^\{9\^\{9\}\}\}' cannot be verified"):
        first = accuracy_reward(answers, solution=[tower] * 8, log_metric=lambda *metric: logged.append(metric))
    start = time.monotonic()
    second = accuracy_reward(answers, solution=[tower] * 8, log_metric=lambda *metric: logged.append(metric))
    seconds = time.monotonic() - start
    # A broken reference is not a wrong answer; the second call sends nothing to a worker, so it takes well under the
    # limit of one item.
    assert first == second == [None] * 8
    assert seconds < min(2.0, rewards.VERIFY_TIME_LIMIT_SECONDS)
    assert logged == [("dsdr/verifier_timeouts", 8.0), ("dsdr/verifier_failures", 0.0)] * 2


def test_references_of_any_size_and_type_never_raise():
    # Python writes no int of more than 4,300 digits with `str`; no answer that is parsed can be that long anyway.
    assert accuracy_reward([r"\boxed{1}", "Answer: 7"], solution=[10**5000, 10**5000 + 7]) == [None, None]
    assert accuracy_reward([r"\boxed{1}"] * 3, solution=[True, {"answer": 1}, [1]]) == [None, None, None]


def test_strict_extraction_reads_boxed_answers_only():
    completions, solution = ["Answer: 5", r"so \boxed{5}.", "it is $5$", r"\boxed{5} then 6"], ["5"] * 4
    strict = make_accuracy_reward("strict")
    assert strict(completions, solution=solution) == [0.0, 1.0, 0.0, 1.0]
    assert accuracy_reward(completions, solution=solution) == [1.0, 1.0, 1.0, 1.0]
    assert make_accuracy_reward("lenient")(completions, solution=solution) == [1.0, 1.0, 1.0, 1.0]
    # TRL names the reward's metric after the function.
    assert strict.__name__ == make_accuracy_reward().__name__ == "accuracy_reward"
    assert extract_answer("Answer: 5", "strict") is None and extract_answer(r"\boxed{ 5 }.", "strict") == "5"
    with pytest.raises(ValueError, match=r"answer_extraction must be one of \('lenient', 'strict'\), got 'loose'"):
        make_accuracy_reward("loose")
    with pytest.raises(ValueError, match="lenient"):
        extract_answer("5", "boxed")


def pool_workers() -> list[int]:
    """PIDs of this process's verifier workers (pebble names them `pebble_pool_worker`)."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if parent == os.getpid() and b"pebble_pool_worker" in command:
            workers.append(int(stat.parent.name))
    return workers


def test_unusable_pool_gives_none_a_warning_and_the_metric(short_time_limit, monkeypatch):
    if not Path("/proc/self/stat").exists():
        pytest.skip("finding the workers reads /proc")
    # One worker, started, then stopped: the pool takes no item. A short start limit makes the reward give up on it
    # quickly.
    _time_limit.shutdown_pool()  # so that only the new pool's worker is left
    monkeypatch.setattr(_time_limit, "WORKERS", 1)
    assert score(r"\boxed{34}", "34") == 1.0
    (worker,) = pool_workers()
    os.kill(worker, signal.SIGSTOP)
    startup_timeout = _time_limit.STARTUP_TIMEOUT_SECONDS
    monkeypatch.setattr(_time_limit, "STARTUP_TIMEOUT_SECONDS", 1.0)
    logged = []
    completions = [r"\boxed{34}", r"\boxed{35}", "no answer"]
    with pytest.warns(RuntimeWarning, match="could not score 3 of 3 completions"):
        result = accuracy_reward(completions, solution=["34"] * 3, log_metric=lambda *metric: logged.append(metric))
    assert result == [None, None, None]
    assert logged == [("dsdr/verifier_timeouts", 0.0), ("dsdr/verifier_failures", 3.0)]
    # The next call starts a new pool (given the usual start limit: a loaded machine may need more than 1 s); the
    # stopped worker is killed with the old one.
    monkeypatch.setattr(_time_limit, "STARTUP_TIMEOUT_SECONDS", startup_timeout)
    assert accuracy_reward(completions, solution=["34"] * 3) == [1.0, 0.0, 0.0]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and worker in pool_workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker not in pool_workers()


def test_non_main_thread_gives_same_answers():
    completions = [r"\boxed{\frac{1}{2}}", "Answer: 3", r"\boxed{0.25}", "nothing"]
    solution = ["0.5", "3", r"\frac{1}{3}", "1"]
    expected = accuracy_reward(completions, solution=solution)
    outputs = []
    thread = threading.Thread(target=lambda: outputs.append(accuracy_reward(completions, solution=solution)))
    thread.start()
    thread.join(timeout=30)
    assert expected == [1.0, 1.0, 0.0, 0.0]
    assert outputs == [expected]


# --- registry --------------------------------------------------------------------------------------------------------


def test_get_reward_func_by_name_and_dotted_path():
    assert get_reward_func("accuracy") is accuracy_reward
    assert REWARD_FUNCS["accuracy"] is accuracy_reward
    assert get_reward_func("dsdr_trl.rewards.accuracy_reward") is accuracy_reward


@pytest.mark.parametrize("name", ["acuracy", "no_such_module_xyz.reward", "dsdr_trl.rewards.no_such_reward"])
def test_get_reward_func_unknown_name_explains_fix(name):
    with pytest.raises(ValueError, match="accuracy") as error:
        get_reward_func(name)
    assert "dotted import path" in str(error.value)
    assert repr(name) in str(error.value)


def test_get_reward_func_rejects_non_callable():
    with pytest.raises(ValueError, match="not a callable"):
        get_reward_func("dsdr_trl.rewards.MAX_ANSWER_CHARS")


def test_trl_reward_names_resolve_to_trl_functions():
    from trl import rewards as trl_rewards

    assert get_reward_func("accuracy_reward") is trl_rewards.accuracy_reward
    assert get_reward_func("think_format_reward") is trl_rewards.think_format_reward
    assert get_reward_func("reasoning_accuracy_reward") is trl_rewards.reasoning_accuracy_reward
    default = get_reward_func("get_soft_overlong_punishment")
    assert (default.max_completion_len, default.soft_punish_cache) == (1280, 256)  # as `trl grpo` builds it
    scaled = get_reward_func("get_soft_overlong_punishment", max_completion_length=100)
    assert (scaled.max_completion_len, scaled.soft_punish_cache) == (100, 20)
    # 90 tokens lie 10 into the last 20 of a 100-token cap: half the full penalty.
    assert scaled(completion_ids=[[0] * 50, [0] * 90]) == [0.0, -0.5]


def test_accuracy_reward_logs_the_extracted_answer_and_the_reference():
    logged = {}
    rewards = accuracy_reward(
        [r"so \boxed{4}", "Answer: 5", "no answer here"],
        solution=["4", "4", "4"],
        log_extra=lambda column, values: logged.__setitem__(column, list(values)),
    )
    assert rewards == [1.0, 0.0, 0.0]
    assert logged == {"answer": ["4", "5", None], "reference": ["4", "4", "4"]}
