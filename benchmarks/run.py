"""DSDR's cost on top of GRPO, as ratios measured side by side: `make bench` (or `python benchmarks/run.py`).

Writes `outputs/bench/bench.json` and `outputs/bench/bench.md`. Every figure is a ratio of two measurements taken in
the same run, in interleaved repetitions (the order alternates), summarised by the median, so that a busy machine
slows both sides alike. The machine it ran on is recorded with the figures.

- `step_time_ratio`: DSDR over GRPO wall time per optimizer step (same model, data, seed and generation length; every
  completion is forced to the full length), at the test suite's tiny config and at 256-token completions with G = 8.
  Each run is a fresh process (`benchmarks/step_worker.py`); its first step is a warm-up and is not counted. On a GPU,
  `--step-configs qwen2-0.5b-1k:1:2,qwen2-0.5b-4k:1:1` measures a 0.63B-parameter policy generating 1K and 4K tokens
  (`scripts/gpu_check.sh`); those configs warm up with a short run of their own instead of a first step.
- `peak_memory_ratio`: DSDR over GRPO peak memory of those same processes (RSS on CPU, max allocated on CUDA).
- `scoring_over_encoder`: the whole DSDR scoring of one generation batch (everything `_calculate_rewards` adds to
  TRL's: gathering, formula extraction, embedding, group math, metrics) over the bare `SentenceTransformer.encode` of
  exactly the texts the math needs, with a fresh batch of texts per repetition so no cache is warm. With
  `diversity_encoder_pooling="windows"` the denominator is the encoder's own forward pass over the same windows
  (already tokenized), so the figure also charges the windows' tokenization and pooling to DSDR.
- `formulas_nested_over_ordinary`: formula extraction of 256 nested `\boxed` groups in 8 KB (the worst of a few
  shapes) over that of an ordinary 8 KB completion, uncached.
- `verifier`: completions per second of `accuracy_reward` on ordinary completions with one worker and with the
  default number (every usable core), on the same completions, as a ratio (`scaling_over_one_worker`); the wall time
  one hostile completion costs, alone in its call (so the latency includes killing an overrunning worker) and in place
  of an ordinary completion in a batch of 128 (over the median ordinary batch); and 8 identical hostile completions in
  one call. `--only verifier` runs only this part (about two minutes).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent

STEP_CONFIGS = {"tiny": 5, "long": 3}  # config -> repetitions per method on CPU (each one a fresh process)

# One generation batch per repetition; `chars` of math-like text per completion (about 4.3 characters per policy
# token). The 4K rows are 4 prompts x G = 2 (the first group all wrong, so skipped): enough rows to time, few enough
# windows (about 23 per completion) for a CPU.
SCORING_CONFIGS = {
    "tiny": {"prompts": 4, "group": 4, "chars": 200},
    "long": {"prompts": 8, "group": 8, "chars": 1_100},  # about 256 policy tokens per completion
    "4k-truncate": {"prompts": 4, "group": 2, "chars": 17_600, "pooling": "truncate"},  # about 4,096 policy tokens
    "4k-windows": {"prompts": 4, "group": 2, "chars": 17_600, "pooling": "windows"},
}

HOSTILE_COMPLETIONS = {
    "power_tower": r"\boxed{9^{9^{9^{9}}}}",
    "huge_power": r"\boxed{10^{10^{10}}}",
    "huge_power_answer_line": "Answer: 10^{10^{10}}",
    "huge_factorial": r"\boxed{(10^{9})!}",
    "huge_binomial": r"\boxed{\binom{100000000}{50000000}}",
    "open_braces": "{" * 100_000,
    "repeated_boxed": "\\boxed{" * 10_000,
    "dollars": "$" * 100_000,
    "digits": "7" * 100_000,
    "one_megabyte": "We have $x=1$. " * 70_000 + r"\boxed{34}",
    "lone_surrogates": "\udcff\udcfe \\boxed{\udcff}",
    "empty": "",
}


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "load_average_at_start": os.getloadavg(),
    }
    for package in ("trl", "transformers", "sentence-transformers", "math-verify", "deepspeed"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    return info


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


# ---------------------------------------------------------------------------------------------------------------------
# Step time and peak memory


def run_worker(method: str, config: str, steps: int, out_dir: Path, tag: str, worker_args: list[str]) -> dict:
    out = out_dir / f"{config}-{method}-{tag}.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "step_worker.py")]
    command += ["--method", method, "--config", config, "--steps", str(steps), "--out", str(out), *worker_args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{config} {method} failed:\n{done.stdout[-3000:]}{done.stderr[-5000:]}")
    return json.loads(out.read_text())


def bench_steps(
    configs: dict[str, tuple[int, int]], out_dir: Path, worker_args: list[str] | None = None, on_result=None
) -> dict:
    """Step time and peak memory of each config, `{name: (repetitions, steps)}`; `worker_args` go to every worker.

    `on_result(results)` is called after each config, so that a run cut short keeps what it measured.
    """
    results = {}
    for config, (repetitions, steps) in configs.items():
        runs: dict[str, list[dict]] = {"grpo": [], "dsdr": []}
        for repetition in range(repetitions):
            order = ("grpo", "dsdr") if repetition % 2 == 0 else ("dsdr", "grpo")
            for method in order:
                runs[method].append(run_worker(method, config, steps, out_dir, str(repetition), worker_args or []))
                print(f"  {config} {method} #{repetition}: {runs[method][-1]['step_times']}", flush=True)
        # Per repetition: the median of its timed steps (the warm-up, a first step or a run of its own, is not timed).
        per_run = {m: [statistics.median(r["timed_step_times"]) for r in rs] for m, rs in runs.items()}
        memory_key = "peak_cuda_bytes" if runs["dsdr"][0]["peak_cuda_bytes"] is not None else "peak_rss_bytes"
        memory = {m: [r[memory_key] for r in rs] for m, rs in runs.items()}
        results[config] = {
            "step_time_ratio": median_ratio(per_run["dsdr"], per_run["grpo"]),
            "grpo_step_seconds": statistics.median(per_run["grpo"]),
            "dsdr_step_seconds": statistics.median(per_run["dsdr"]),
            "peak_memory_ratio": median_ratio(memory["dsdr"], memory["grpo"]),
            "peak_memory_kind": "cuda_max_allocated" if memory_key == "peak_cuda_bytes" else "rss",
            "grpo_peak_memory_mb": statistics.median(memory["grpo"]) / 1024**2,
            "dsdr_peak_memory_mb": statistics.median(memory["dsdr"]) / 1024**2,
            "policy_parameters": runs["grpo"][0]["policy_parameters"],
            "policy_layers": runs["grpo"][0]["policy_layers"],
            "policy_vocab": runs["grpo"][0]["policy_vocab"],
            "rows_per_step": runs["grpo"][0]["rows_per_step"],
            "completion_tokens": runs["grpo"][0]["completion_tokens"],
            "repetitions": repetitions,
            "timed_steps_per_run": len(runs["grpo"][0]["timed_step_times"]),
            "warmup": runs["grpo"][0]["warmup"],
        }
        if on_result:
            on_result(results)
    return results


# ---------------------------------------------------------------------------------------------------------------------
# Scoring over encoder

_WORDS = "so we find that hence the value of then since gives therefore thus substituting back checking".split()


def synthetic_completion(rng: random.Random, target_chars: int, answer: str) -> str:
    """A math-like completion: prose with inline and display formulas, ending in a boxed answer."""
    parts: list[str] = []
    length = 0
    while length < target_chars:
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
        choice = rng.random()
        if choice < 0.4:
            piece = f"{' '.join(rng.choices(_WORDS, k=rng.randint(4, 12)))} $x_{{{c}}} = {a} + {b}k$."
        elif choice < 0.7:
            piece = f"Then $$\\frac{{{a}}}{{{b}}} \\cdot {c} = \\frac{{{a * c}}}{{{b}}}$$ as required."
        else:
            piece = f"{' '.join(rng.choices(_WORDS, k=rng.randint(6, 16)))}, which is {a * b}."
        parts.append(piece)
        length += len(piece) + 1
    parts.append(f"Answer: \\boxed{{{answer}}}")
    return " ".join(parts)


def scoring_batch(seed: int, prompts: int, group: int, chars: int) -> tuple[list[dict], list[str], list[bool]]:
    """One generation batch: per group, a correctness pattern among all-wrong, mixed and all-correct."""
    rng = random.Random(seed)
    inputs, completions, correct = [], [], []
    for prompt in range(prompts):
        pattern = ("none", "mixed", "mixed", "all")[prompt % 4]
        for _ in range(group):
            is_correct = pattern == "all" or (pattern == "mixed" and rng.random() < 0.5)
            completions.append(synthetic_completion(rng, chars, "34" if is_correct else str(rng.randint(35, 99))))
            inputs.append({"prompt": f"Problem {prompt}", "flag": float(is_correct)})
            correct.append(is_correct)
    return inputs, completions, correct


def flag_reward(completions, flag, **kwargs):
    """The batch's own correctness labels, so that the verifier's cost stays out of the scoring figure."""
    return list(flag)


def _time(fn, *args, **kwargs) -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _scoring_repetition(trainer, batch: tuple, group: int, reverse: bool) -> dict[str, float]:
    """Times, on one fresh batch: DSDR's `_calculate_rewards`, TRL's alone, and the encoder's bare pass over the needed
    texts (`encode` of the truncated texts, or the forward pass over their windows)."""
    from trl import GRPOTrainer

    from dsdr_trl import formulas
    from dsdr_trl.encoder import diversity_text, encode_windows, encoder_text, text_windows
    from dsdr_trl.formulas import extract_formulas_batch

    inputs, completions, correct = batch
    prompts = [x["prompt"] for x in inputs]
    ids = [[0]] * len(completions)
    group_has_correct = [any(correct[i : i + group]) for i in range(0, len(correct), group)]
    args = trainer.args
    kept = [c for i, c in enumerate(completions) if group_has_correct[i // group]]
    texts = [diversity_text(c, args.diversity_include_reasoning) for c in kept]
    if args.diversity_encoder_pooling == "windows":
        windows = [
            w
            for text in text_windows(trainer.diversity_encoder, texts, args.diversity_encoder_max_length)
            for w in text
        ]
        encode_call = (encode_windows, (trainer.diversity_encoder, windows, args.diversity_encoder_batch_size), {})
    else:
        windows = [encoder_text(text, args.diversity_encoder_max_length) for text in texts]
        encode_kwargs = dict(
            batch_size=args.diversity_encoder_batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        encode_call = (trainer.diversity_encoder.encode, (windows,), encode_kwargs)
    calls = [
        ("dsdr", trainer._calculate_rewards, (inputs, prompts, completions, ids), {}),
        ("grpo", GRPOTrainer._calculate_rewards, (trainer, inputs, prompts, completions, ids), {}),
        ("encode", *encode_call),
    ]
    times = {}
    for key, fn, fn_args, kwargs in reversed(calls) if reverse else calls:
        formulas._cache.clear()  # a new generation batch: no completion was seen before
        times[key] = _time(fn, *fn_args, **kwargs)
    formulas._cache.clear()
    times["extract"] = _time(extract_formulas_batch, texts)
    times["rows_embedded"] = len(texts)
    times["windows_embedded"] = len(windows)
    trainer._dsdr_pending = None
    trainer._metrics["train"].clear()
    return times


def bench_scoring(configs: dict[str, dict], repetitions: int, out_dir: Path, encoder: str | None = None) -> dict:
    import torch
    from datasets import Dataset

    from dsdr_trl import DSDRConfig, DSDRGRPOTrainer
    from dsdr_trl.toy.models import build_model as build_tiny_model
    from dsdr_trl.toy.models import build_tiny_tokenizer

    cuda = torch.cuda.is_available()
    results = {}
    for name, spec in configs.items():
        tokenizer = build_tiny_tokenizer()
        config = DSDRConfig(
            output_dir=str(out_dir / f"scoring-{name}"),
            use_cpu=not cuda,
            bf16=cuda,
            activation_checkpointing=False,
            per_device_train_batch_size=spec["group"],
            num_generations=spec["group"],
            diversity_encoder_pooling=spec.get("pooling", "truncate"),
            report_to="none",
            save_strategy="no",
            **({"diversity_encoder": encoder} if encoder else {}),
        )
        trainer = DSDRGRPOTrainer(
            model=build_tiny_model(tokenizer),
            reward_funcs=flag_reward,
            args=config,
            train_dataset=Dataset.from_dict({"prompt": ["p"], "flag": [1.0]}),
            processing_class=tokenizer,
        )
        trainer.model.train()
        keys = ("dsdr", "grpo", "encode", "extract", "rows_embedded", "windows_embedded")
        samples: dict[str, list[float]] = {key: [] for key in keys}
        # Repetition 0 is untimed: it loads every lazy piece (encoder kernels, regexes, the formulas module).
        for repetition in range(repetitions + 1):
            batch = scoring_batch(repetition, spec["prompts"], spec["group"], spec["chars"])
            times = _scoring_repetition(trainer, batch, spec["group"], reverse=repetition % 2 == 1)
            if repetition > 0:
                for key, value in times.items():
                    samples[key].append(value)
        scoring = [d - g for d, g in zip(samples["dsdr"], samples["grpo"], strict=True)]
        results[name] = {
            "scoring_over_encoder": median_ratio(scoring, samples["encode"]),
            "scoring_seconds": statistics.median(scoring),
            "encode_seconds": statistics.median(samples["encode"]),
            "encoder_texts_per_second": statistics.median(
                n / t for n, t in zip(samples["rows_embedded"], samples["encode"], strict=True)
            ),
            "formula_extraction_seconds": statistics.median(samples["extract"]),
            "trl_rewards_seconds": statistics.median(samples["grpo"]),
            "rows": spec["prompts"] * spec["group"],
            "rows_embedded": statistics.median(samples["rows_embedded"]),
            "windows_embedded": statistics.median(samples["windows_embedded"]),
            "pooling": config.diversity_encoder_pooling,
            "group_size": spec["group"],
            "completion_chars": spec["chars"],
            "repetitions": repetitions,
        }
        print(f"  scoring {name}: {results[name]}", flush=True)
    return results


# ---------------------------------------------------------------------------------------------------------------------
# Verifier


def _verifier_answer(rng: random.Random) -> str:
    a, b = rng.randint(1, 999), rng.randint(2, 99)
    return rng.choice((str(a), f"\\frac{{{a}}}{{{b}}}", f"{a}.{b}", f"{a}\\sqrt{{{b}}}", f"x^2+{a}x+{b}"))


def ordinary_verifier_batch(seed: int, size: int) -> tuple[list[str], list[str]]:
    """`size` completions of about 600 characters, 8 per reference, half of them correct; fresh answers per seed."""
    rng = random.Random(seed)
    solutions = [gold for gold in [_verifier_answer(rng) for _ in range(size // 8)] for _ in range(8)]
    completions = [
        synthetic_completion(rng, 600, gold if rng.random() < 0.5 else _verifier_answer(rng)) for gold in solutions
    ]
    return completions, solutions


def bench_verifier(ordinary: int, repetitions: int) -> dict:
    """Throughput of `accuracy_reward` with one worker and with the default number (all usable cores), on the same
    ordinary completions, in interleaved repetitions; then the wall time that one hostile completion costs, alone, in a
    batch of `ordinary` otherwise ordinary completions, and eight identical ones in one call."""
    from dsdr_trl import _time_limit, rewards
    from dsdr_trl.formulas import extract_formulas

    load_at_start = os.getloadavg()
    default_workers = _time_limit.verifier_workers()

    def call(completions: list[str], solutions: list[str]) -> float:
        start = time.perf_counter()
        rewards.accuracy_reward(completions, solution=solutions)
        return time.perf_counter() - start

    def use_workers(workers: int) -> None:
        # A new pool of `workers` workers, each warmed by a few items, outside the timed calls.
        _time_limit.shutdown_pool()
        _time_limit.WORKERS = workers
        call(*ordinary_verifier_batch(-1 - workers, 16 * workers))

    # Seeds 0..repetitions-1: one fresh batch per repetition, scored by both pools, each freshly started (cold caches).
    seconds: dict[int, list[float]] = {1: [], default_workers: []}
    for repetition in range(repetitions):
        batch = ordinary_verifier_batch(repetition, ordinary)
        for workers in (1, default_workers) if repetition % 2 == 0 else (default_workers, 1):
            use_workers(workers)
            seconds[workers].append(call(*batch))
            print(f"  {ordinary} ordinary, {workers} worker(s): {seconds[workers][-1]:.3f} s", flush=True)
    distinct_pairs = len({(gold, rewards.extract_answer(text)) for text, gold in zip(*batch, strict=True)})

    # Hostile completions, each measured on a full default pool (an overrun kills a worker, and its replacement would
    # still be starting at the next measurement); a reference no earlier call has seen, so that no gold is cached.
    alone, in_batch, parser_latency, timeouts = {}, {}, {}, 0
    for index, (name, text) in enumerate(HOSTILE_COMPLETIONS.items()):
        use_workers(default_workers)
        logged: list[tuple[str, float]] = []
        start = time.perf_counter()
        reward = rewards.accuracy_reward(
            [text], solution=[str(1000 + index)], log_metric=lambda *metric, logged=logged: logged.append(metric)
        )
        alone[name] = time.perf_counter() - start
        timeouts += int(dict(logged)["dsdr/verifier_timeouts"])
        completions, solutions = ordinary_verifier_batch(1000 + index, ordinary)
        completions[ordinary // 2] = text
        use_workers(default_workers)
        in_batch[name] = call(completions, solutions)
        start = time.perf_counter()
        extract_formulas(text)
        parser_latency[name] = time.perf_counter() - start
        print(f"  hostile {name}: reward {reward}, alone {alone[name]:.3f} s, in a batch {in_batch[name]:.3f} s")
    ordinary_batch_seconds = statistics.median(seconds[default_workers])
    worst = max(alone, key=alone.get)
    use_workers(default_workers)
    identical_seconds = call([HOSTILE_COMPLETIONS[worst]] * 8, ["2000"] * 8)
    _time_limit.WORKERS = None
    return {
        "workers": default_workers,
        "completions_per_second": ordinary / ordinary_batch_seconds,
        "completions_per_second_one_worker": ordinary / statistics.median(seconds[1]),
        "scaling_over_one_worker": median_ratio(seconds[1], seconds[default_workers]),
        "ordinary_completions": ordinary,
        "distinct_pairs_per_call": distinct_pairs,
        "time_limit_seconds": rewards.VERIFY_TIME_LIMIT_SECONDS,
        "worst_case_seconds": alone[worst],
        "worst_case_input": worst,
        "hostile_latency_seconds": alone,
        # A batch with one hostile completion in place of an ordinary one, over the median ordinary batch.
        "worst_case_in_batch_seconds": max(in_batch.values()) - ordinary_batch_seconds,
        "hostile_in_batch_seconds": in_batch,
        "eight_identical_hostile_seconds": identical_seconds,
        "hostile_timeouts": timeouts,
        "formula_parser_worst_case_seconds": max(parser_latency.values()),
        "load_average": [load_at_start, os.getloadavg()],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Formula extraction on nested groups


def nested_boxes(opener: str, body: str, closer: str = "}", depth: int = 256, size: int = 8_192) -> str:
    """`depth` nested groups opened by `opener` (`{i}` is the level), filled with `body` up to `size` characters."""
    head = "".join(opener.replace("{i}", str(level)) for level in range(depth))
    return head + body * ((size - len(head) - depth * len(closer)) // len(body)) + closer * depth


def bench_formulas(repetitions: int) -> dict:
    from dsdr_trl import formulas

    nested = {
        "around thin spaces": nested_boxes("\\boxed{", "\\,x"),
        "around rows": nested_boxes("\\boxed{", "a&=b\\\\"),
        "a distinct root per level": nested_boxes("\\boxed{\\sqrt{{i}}\\cdot", "\\,"),
    }
    ordinary = synthetic_completion(random.Random(0), 8_192, "34")
    seconds: dict[str, list[float]] = {name: [] for name in ["ordinary", *nested]}
    for repetition in range(repetitions):
        texts = {"ordinary": ordinary, **nested}
        for name in reversed(texts) if repetition % 2 else texts:
            formulas._cache.clear()
            seconds[name].append(_time(formulas.extract_formulas, texts[name]))
    worst = max(nested, key=lambda name: statistics.median(seconds[name]))
    return {
        "ordinary_seconds": statistics.median(seconds["ordinary"]),
        "nested_seconds": {name: statistics.median(seconds[name]) for name in nested},
        "worst_nested_input": worst,
        "nested_over_ordinary": median_ratio(seconds[worst], seconds["ordinary"]),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Report


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# DSDR over GRPO: benchmark",
        "",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores, {m['memory_gb']} GB), device `{m['device']}`, torch "
        f"{m['torch']}, trl {m['trl']}; load average at start {m['load_average_at_start'][0]:.1f}. "
        f"Wall time {report['wall_seconds']:.0f} s. Ratios are medians of interleaved repetitions.",
        "",
    ]
    if report["step_time"]:
        lines += [
            "| config | policy params | rows × tokens | GRPO s/step | DSDR s/step | step_time_ratio | GRPO peak MB | "
            "peak_memory_ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for name, r in report["step_time"].items():
        lines.append(
            f"| {name} | {r['policy_parameters'] / 1e6:.2f}M | {r['rows_per_step']} × {r['completion_tokens']} | "
            f"{r['grpo_step_seconds']:.3f} | {r['dsdr_step_seconds']:.3f} | {r['step_time_ratio']:.3f} | "
            f"{r['grpo_peak_memory_mb']:.0f} | {r['peak_memory_ratio']:.3f} ({r['peak_memory_kind']}) |"
        )
    if report["scoring"]:
        lines += [
            "",
            "| scoring config | pooling | rows (embedded, windows) | chars | DSDR scoring s | encoder s | formulas s | "
            "scoring_over_encoder |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for name, r in report["scoring"].items():
        lines.append(
            f"| {name} | {r['pooling']} | {r['rows']} ({r['rows_embedded']:g}, {r['windows_embedded']:g}) | "
            f"{r['completion_chars']} | {r['scoring_seconds']:.4f} | {r['encode_seconds']:.4f} | "
            f"{r['formula_extraction_seconds']:.4f} | {r['scoring_over_encoder']:.3f} |"
        )
    if "formulas" in report:
        f = report["formulas"]
        lines += [
            "",
            f"Formula extraction: 256 nested `\\boxed` in 8 KB {f['nested_seconds'][f['worst_nested_input']] * 1000:.1f} "
            f"ms (`{f['worst_nested_input']}`), an ordinary 8 KB completion {f['ordinary_seconds'] * 1000:.1f} ms: "
            f"formulas_nested_over_ordinary {f['nested_over_ordinary']:.1f}.",
        ]
    if "verifier" not in report:
        return "\n".join([*lines, ""])
    v = report["verifier"]
    load = ", ".join(f"{loads[0]:.1f}" for loads in v["load_average"])
    lines += [
        "",
        f"Verifier ({v['ordinary_completions']} ordinary completions per call, {v['distinct_pairs_per_call']} "
        f"distinct answer/reference pairs; load average {load} at its start and end): "
        f"{v['completions_per_second_one_worker']:.0f} completions/s with 1 worker, "
        f"{v['completions_per_second']:.0f} with {v['workers']} (scaling_over_one_worker "
        f"{v['scaling_over_one_worker']:.2f}). Per hostile completion ({len(v['hostile_latency_seconds'])} inputs, "
        f"per-item limit {v['time_limit_seconds']} s, {v['hostile_timeouts']} timeouts): worst case alone "
        f"{v['worst_case_seconds']:.2f} s (`{v['worst_case_input']}`), in a batch of {v['ordinary_completions']} "
        f"{v['worst_case_in_batch_seconds']:.2f} s over the ordinary batch; 8 identical in one call "
        f"{v['eight_identical_hostile_seconds']:.2f} s. Formula parser worst case "
        f"{v['formula_parser_worst_case_seconds'] * 1000:.1f} ms.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark DSDR against GRPO; writes outputs/bench/bench.json.")
    parser.add_argument("--out-dir", default=str(ROOT / "outputs" / "bench"))
    parser.add_argument(
        "--step-configs",
        default=",".join(f"{name}:{reps}" for name, reps in STEP_CONFIGS.items()),
        help="comma-separated config:repetitions[:steps] (configs in benchmarks/step_worker.py: tiny, long, policy, "
        "qwen2-0.5b-1k, qwen2-0.5b-4k); empty for none",
    )
    parser.add_argument(
        "--steps", type=int, default=3, help="optimizer steps per run where a config names none (see step_worker.py)"
    )
    parser.add_argument("--layers", type=int, help="the policy's layers in every step config (a smoke run)")
    parser.add_argument("--tokens", type=int, help="completion tokens in every step config (a smoke run)")
    parser.add_argument("--vocab", type=int, help="the policy's vocabulary in every Qwen2 step config (a smoke run)")
    parser.add_argument("--diversity-encoder", help="DSDR's encoder, a local sentence-transformers directory")
    parser.add_argument("--scoring-repetitions", type=int, default=7)
    parser.add_argument(
        "--scoring-configs",
        default=",".join(SCORING_CONFIGS),
        help=f"comma-separated scoring configs to run (of {', '.join(SCORING_CONFIGS)}); empty for none",
    )
    parser.add_argument("--skip-verifier", action="store_true", help="leave out the verifier figures")
    parser.add_argument("--verifier-repetitions", type=int, default=5)
    parser.add_argument(
        "--only",
        choices=("verifier",),
        help="run only this part; it writes bench-<part>.json and .md instead of bench.json and bench.md",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run")
    args = parser.parse_args()

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    step_configs = {}
    for item in filter(None, args.step_configs.split(",")):
        name, reps, *steps = item.split(":")
        step_configs[name] = (int(reps), int(steps[0]) if steps else args.steps)
    worker_options = {"--layers": args.layers, "--tokens": args.tokens, "--vocab": args.vocab}
    worker_options["--diversity-encoder"] = args.diversity_encoder
    worker_args = [f"{flag}={value}" for flag, value in worker_options.items() if value is not None]
    scoring_configs = {name: SCORING_CONFIGS[name] for name in args.scoring_configs.split(",") if name}
    scoring_repetitions = args.scoring_repetitions
    if args.quick:
        step_configs = {name: (1, steps) for name, (_, steps) in step_configs.items()}
        scoring_repetitions = 2
    if args.only == "verifier":
        step_configs, scoring_configs = {}, {}

    start = time.perf_counter()
    report = {"machine": machine(), "step_time": {}, "scoring": {}}

    def save(**sections) -> None:
        """Writes the report as it stands, so that a run cut short keeps every section it finished."""
        report.update(sections)
        report["wall_seconds"] = time.perf_counter() - start
        report["figures"] = {
            "step_time_ratio": {name: r["step_time_ratio"] for name, r in report["step_time"].items()},
            "peak_memory_ratio": {name: r["peak_memory_ratio"] for name, r in report["step_time"].items()},
            "scoring_over_encoder": {name: r["scoring_over_encoder"] for name, r in report["scoring"].items()},
        }
        if "formulas" in report:
            report["figures"]["formulas_nested_over_ordinary"] = report["formulas"]["nested_over_ordinary"]
        if "verifier" in report:
            v = report["verifier"]
            report["figures"]["verifier_completions_per_second"] = v["completions_per_second"]
            report["figures"]["verifier_scaling_over_one_worker"] = v["scaling_over_one_worker"]
            report["figures"]["verifier_worst_case_seconds"] = v["worst_case_seconds"]
            report["figures"]["verifier_worst_case_in_batch_seconds"] = v["worst_case_in_batch_seconds"]
            report["figures"]["verifier_eight_identical_hostile_seconds"] = v["eight_identical_hostile_seconds"]
        name = f"bench-{args.only}" if args.only else "bench"
        (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2))
        (out_dir / f"{name}.md").write_text(markdown(report))

    print("step time and peak memory", flush=True)
    save(step_time=bench_steps(step_configs, out_dir / "runs", worker_args, lambda r: save(step_time=r)))
    print("scoring over encoder", flush=True)
    save(scoring=bench_scoring(scoring_configs, scoring_repetitions, out_dir / "runs", args.diversity_encoder))
    if args.only is None:
        print("formula extraction", flush=True)
        save(formulas=bench_formulas(repetitions=9))
    if not args.skip_verifier:
        print("verifier", flush=True)
        save(verifier=bench_verifier(ordinary=128, repetitions=2 if args.quick else args.verifier_repetitions))
    print(markdown(report))


if __name__ == "__main__":
    main()
