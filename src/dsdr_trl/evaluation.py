"""Evaluation of a policy the way the DSDR paper reports it: pass@k, avg@N and the diversity of correct solutions.

The pieces compose and each can be used alone:

    samples = generate_samples(model, tokenizer, prompts, num_samples=16, temperature=0.7, top_p=0.9, ...)
    correct = score_samples(samples, solutions)                    # one verifier call for every sample
    diversity = diversity_of_samples(samples, correct, encoder)    # per problem, optional
    result = summarize(samples, correct, ks=[1, 2, 4, 8, 16], diversity=diversity)
    print(result.to_markdown()); json.dump(result.to_dict(), f)

`evaluate_policy` runs the four steps. pass@k uses the unbiased estimator of Chen et al. (2021), averaged over
problems; avg@N is the mean accuracy of all N samples (the paper's Avg@16). The diversity numbers mirror the two
scales DSDR regularises: the mean pairwise semantic distance `(1 - cos) / 2` among the correct samples of a problem
(Eq. 5), and how many distinct formulas, answers and correct solution formula sets the samples contain (Eq. 7).

Nothing here imports the trainer at module level: the sentence encoder is passed in (see
[`~dsdr_trl.encoder.load_diversity_encoder`]) and vLLM is imported only when asked for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .rewards import number_text

__all__ = [
    "DIVERSITY_METRICS",
    "SCORING_CHUNK",
    "EvaluationResult",
    "diversity_of_samples",
    "evaluate_policy",
    "generate_samples",
    "parse_ks",
    "pass_at_k",
    "score_samples",
    "summarize",
    "vllm_model_args",
]

# Samples per reward-function call in `score_samples`: the verifier's worker is long-lived, so a chunk costs only its
# items, and the progress bar moves every chunk.
SCORING_CHUNK = 512

# Per-problem diversity numbers, in the order tables show them.
DIVERSITY_METRICS = ("semantic_distance", "formula_unique_ratio", "distinct_answers", "distinct_correct")


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    r"""
    Unbiased estimate of pass@k from `num_samples` samples of which `num_correct` are correct (Chen et al., 2021).

    The estimator is `1 - C(n - c, k) / C(n, k)`: the probability that k samples drawn without replacement from the n
    contain a correct one. It is computed as `1 - Π_{i=n-c+1}^{n} (1 - k / i)`, which never forms the (huge) binomial
    coefficients.

    Args:
        num_samples (`int`):
            n, the number of samples drawn for the problem.
        num_correct (`int`):
            c, how many of them are correct.
        k (`int`):
            The k of pass@k, `1 <= k <= n`.

    Returns:
        `float`: The estimate, in [0, 1].

    Raises:
        `ValueError`: If `k < 1`, `k > n`, `c < 0` or `c > n`.

    Example:

    ```python
    >>> pass_at_k(4, 1, 2)  # 1 - C(3, 2) / C(4, 2) = 1 - 3/6
    0.5
    ```
    """
    n, c = int(num_samples), int(num_correct)
    if k < 1:
        raise ValueError(f"k must be at least 1, got k={k}.")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}; raise num_samples or lower k.")
    if not 0 <= c <= n:
        raise ValueError(f"num_correct must lie in [0, num_samples={n}], got {c}.")
    if n - c < k:
        return 1.0  # every draw of k samples contains a correct one
    failure = 1.0
    for i in range(n - c + 1, n + 1):
        failure *= 1.0 - k / i
    return 1.0 - failure


def parse_ks(ks: str | int | Sequence[int]) -> list[int]:
    """Parses `"1,2,4"` (or an int, or a sequence of ints) into a sorted list of distinct positive ints.

    Raises:
        `ValueError`: On a value that is not a positive integer.
    """
    if isinstance(ks, int):
        items: list[Any] = [ks]
    elif isinstance(ks, str):
        items = [item for item in ks.replace(" ", "").split(",") if item]
    else:
        items = list(ks)
    values = []
    for item in items:
        try:
            value = int(item)
        except (TypeError, ValueError):
            raise ValueError(
                f"k must be a comma-separated list of positive integers such as '1,2,4', got {ks!r}."
            ) from None
        if value < 1:
            raise ValueError(f"Every k must be at least 1, got {value}.")
        values.append(value)
    if not values:
        raise ValueError("Give at least one k, e.g. '1'.")
    return sorted(set(values))


def score_samples(
    samples: Sequence[Sequence[str]],
    solutions: Sequence[str],
    reward_func: Callable[..., list[float | None]] | None = None,
    threshold: float = 0.5,
    show_progress: bool = False,
) -> list[list[bool]]:
    """
    Marks each sample correct or not with a TRL-style reward function, called on chunks of [`SCORING_CHUNK`] samples.

    Args:
        samples (`Sequence[Sequence[str]]`):
            `samples[p]` are the completions of problem p.
        solutions (`Sequence[str]`):
            The reference answer of each problem.
        reward_func (`Callable`, *optional*):
            A function `(completions, solution, **kwargs) -> list[float | None]`; defaults to
            [`~dsdr_trl.rewards.accuracy_reward`].
        threshold (`float`, *optional*, defaults to `0.5`):
            A sample is correct when its reward is above this value; `None` counts as incorrect, as in training.
        show_progress (`bool`, *optional*, defaults to `False`):
            Show a tqdm progress bar over the samples.

    Returns:
        `list[list[bool]]`: Same shape as `samples`.
    """
    if len(samples) != len(solutions):
        raise ValueError(f"Got {len(samples)} problems' samples but {len(solutions)} solutions.")
    if reward_func is None:
        from .rewards import accuracy_reward as reward_func
    from tqdm.auto import tqdm

    flat = [text for group in samples for text in group]
    repeated = [solution for group, solution in zip(samples, solutions, strict=True) for _ in group]
    rewards: list[float | None] = []
    with tqdm(total=len(flat), desc="Scoring", unit="sample", disable=not show_progress) as progress:
        for start in range(0, len(flat), SCORING_CHUNK):
            chunk = slice(start, start + SCORING_CHUNK)
            rewards += reward_func(completions=flat[chunk], solution=repeated[chunk])
            progress.update(len(flat[chunk]))
    flags = [reward is not None and not math.isnan(reward) and reward > threshold for reward in rewards]
    out, start = [], 0
    for group in samples:
        out.append(flags[start : start + len(group)])
        start += len(group)
    return out


def diversity_of_samples(
    samples: Sequence[Sequence[str]],
    correct: Sequence[Sequence[bool]],
    encoder: Any | None = None,
    canonicalize: str = "none",
    batch_size: int = 64,
) -> list[dict[str, float | int | None]]:
    r"""
    Diversity of each problem's samples, at DSDR's two scales.

    Per problem, with `F_i` the formula set of sample i (see [`~dsdr_trl.formulas.extract_formulas`]):

    - `semantic_distance`: mean over pairs of correct samples of `(1 - cos(e_i, e_j)) / 2` (Eq. 5); `None` with fewer
      than 2 correct samples or without an encoder;
    - `formula_unique_ratio`: `|∪_i F_i| / Σ_i |F_i|` over all samples, 1.0 when no formula repeats; `None` when the
      samples contain no formula;
    - `distinct_answers`: number of distinct final answers ([`~dsdr_trl.rewards.extract_answer`]) over all samples;
    - `distinct_correct`: number of distinct formula sets among the correct samples (0 when none is correct).

    Args:
        samples (`Sequence[Sequence[str]]`):
            `samples[p]` are the completions of problem p.
        correct (`Sequence[Sequence[bool]]`):
            The matching flags, e.g. from [`score_samples`].
        encoder (`SentenceTransformer`, *optional*):
            A sentence encoder with `encode`; e.g.
            `dsdr_trl.encoder.load_diversity_encoder()`, which
            loads the bundled copy offline. Without one, `semantic_distance` is `None`.
        canonicalize (`str`, *optional*, defaults to `"none"`):
            Formula comparison, as `DSDRConfig.formula_canonicalization`.
        batch_size (`int`, *optional*, defaults to `64`):
            Encoder batch size.

    Returns:
        `list[dict]`: One dict per problem with the four keys above.
    """
    from .diversity import pairwise_distance
    from .encoder import embed
    from .formulas import extract_formulas_batch
    from .rewards import extract_answer

    if len(samples) != len(correct):
        raise ValueError(f"Got {len(samples)} problems' samples but {len(correct)} rows of correctness flags.")
    flat = [text for group in samples for text in group]
    formula_sets = extract_formulas_batch(flat, canonicalize=canonicalize)

    # Only correct samples of problems with at least two of them are embedded, in one encoder call.
    to_embed = [
        text
        for group, flags in zip(samples, correct, strict=True)
        if sum(map(bool, flags)) >= 2
        for text, ok in zip(group, flags, strict=True)
        if ok
    ]
    embeddings = embed(encoder, to_embed, batch_size) if encoder is not None and to_embed else None

    results, start, embedded = [], 0, 0
    for group, flags in zip(samples, correct, strict=True):
        if len(group) != len(flags):
            raise ValueError(f"A problem has {len(group)} samples but {len(flags)} correctness flags.")
        sets = formula_sets[start : start + len(group)]
        start += len(group)
        total = sum(len(formulas) for formulas in sets)
        answers = {answer for answer in map(extract_answer, group) if answer is not None}
        num_correct = sum(map(bool, flags))

        semantic = None
        if num_correct >= 2:
            if embeddings is not None:
                distance = pairwise_distance(embeddings[embedded : embedded + num_correct])  # (C, C)
                semantic = float(distance.sum() / (num_correct * (num_correct - 1)))  # the diagonal is 0
            embedded += num_correct
        results.append(
            {
                "semantic_distance": semantic,
                "formula_unique_ratio": len(set().union(*sets)) / total if total else None,
                "distinct_answers": len(answers),
                "distinct_correct": len({frozenset(f) for f, ok in zip(sets, flags, strict=True) if ok}),
            }
        )
    return results


def _mean(values: Sequence[float | int | None]) -> float | None:
    defined = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(defined) / len(defined) if defined else None


@dataclass
class EvaluationResult:
    """
    The outcome of an evaluation: aggregate numbers plus one record per problem.

    Args:
        ks (`list[int]`):
            The k values of the reported pass@k.
        per_problem (`list[dict]`):
            One dict per problem with at least `num_samples` and `num_correct`, plus the diversity numbers when they
            were computed (see [`diversity_of_samples`]) and any extra fields (e.g. `problem`, `solution`).
        metadata (`dict`, *optional*):
            How the samples were produced (model, dataset, temperature, ...); copied into `to_dict()["config"]`.
    """

    ks: list[int]
    per_problem: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        """Samples per problem (the smallest, if problems differ)."""
        return min((p["num_samples"] for p in self.per_problem), default=0)

    @property
    def pass_at_k(self) -> dict[int, float]:
        """pass@k for each k, averaged over problems."""
        n = len(self.per_problem)
        return {
            k: sum(pass_at_k(p["num_samples"], p["num_correct"], k) for p in self.per_problem) / n if n else 0.0
            for k in self.ks
        }

    @property
    def avg_accuracy(self) -> float:
        """Mean accuracy of all samples (avg@N)."""
        total = sum(p["num_samples"] for p in self.per_problem)
        return sum(p["num_correct"] for p in self.per_problem) / total if total else 0.0

    @property
    def diversity(self) -> dict[str, float | None]:
        """Means over problems of each diversity number, skipping problems where it is undefined."""
        return {
            name: _mean([p.get(name) for p in self.per_problem])
            for name in DIVERSITY_METRICS
            if any(name in p for p in self.per_problem)
        }

    def metrics(self) -> dict[str, float]:
        """The aggregate numbers as a flat `name -> float` mapping (undefined ones left out), for loggers."""
        out = {f"pass@{k}": value for k, value in self.pass_at_k.items()}
        out[f"avg@{self.num_samples}"] = self.avg_accuracy
        out.update({name: value for name, value in self.diversity.items() if value is not None})
        return out

    @property
    def standard_errors(self) -> dict[str, float | None]:
        """Standard error over problems of each pass@k and of avg@N (problems as the sampling unit; `None` below 2).

        pass@k's is `std(pass@k_i) / sqrt(P)` over the P per-problem estimates; avg@N's the same over the per-problem
        accuracies `c_i / n_i` (it ignores the sampling noise within a problem, as the usual benchmark error bars do).
        """

        def stderr(values: list[float]) -> float | None:
            if len(values) < 2:
                return None
            mean = sum(values) / len(values)
            return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))

        out = {
            f"pass@{k}": stderr([pass_at_k(p["num_samples"], p["num_correct"], k) for p in self.per_problem])
            for k in self.ks
        }
        out[f"avg@{self.num_samples}"] = stderr([p["num_correct"] / p["num_samples"] for p in self.per_problem])
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: aggregates, their standard errors, `config` and `per_problem` (undefined: `null`)."""
        return {
            "num_problems": len(self.per_problem),
            "num_samples": self.num_samples,
            "pass@k": {str(k): value for k, value in self.pass_at_k.items()},
            f"avg@{self.num_samples}": self.avg_accuracy,
            "stderr": self.standard_errors,
            "diversity": self.diversity,
            "config": dict(self.metadata),
            "per_problem": [dict(p) for p in self.per_problem],
        }

    def to_markdown(self) -> str:
        """A one-row markdown table of the aggregate numbers, in percent except the counts."""
        columns = [(f"pass@{k}", 100 * v) for k, v in self.pass_at_k.items()]
        columns.append((f"avg@{self.num_samples}", 100 * self.avg_accuracy))
        for name, value in self.diversity.items():
            scale = 100 if name in ("semantic_distance", "formula_unique_ratio") else 1
            columns.append((name, None if value is None else scale * value))
        header = "| problems | " + " | ".join(name for name, _ in columns) + " |"
        rule = "|---:|" + "---:|" * len(columns)
        cells = ["–" if value is None else f"{value:.2f}" for _, value in columns]
        row = f"| {len(self.per_problem)} | " + " | ".join(cells) + " |"
        return "\n".join([header, rule, row])


def summarize(
    samples: Sequence[Sequence[str]],
    correct: Sequence[Sequence[bool]],
    ks: Sequence[int],
    diversity: Sequence[dict[str, Any]] | None = None,
    extra: Sequence[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> EvaluationResult:
    """
    Builds an [`EvaluationResult`] from scored samples.

    Args:
        samples (`Sequence[Sequence[str]]`):
            `samples[p]` are the completions of problem p.
        correct (`Sequence[Sequence[bool]]`):
            The matching correctness flags.
        ks (`Sequence[int]`):
            The k values to report; each must be at most the number of samples of every problem.
        diversity (`Sequence[dict]`, *optional*):
            Per-problem output of [`diversity_of_samples`], merged into each problem's record.
        extra (`Sequence[dict]`, *optional*):
            Per-problem fields to store as well (e.g. `{"problem": ..., "solution": ...}`).
        metadata (`dict`, *optional*):
            Stored as `EvaluationResult.metadata`.

    Raises:
        `ValueError`: If a k exceeds the samples of a problem, or the per-problem inputs differ in length.
    """
    ks = parse_ks(ks)
    if len(samples) != len(correct):
        raise ValueError(f"Got {len(samples)} problems' samples but {len(correct)} rows of correctness flags.")
    for other, name in ((diversity, "diversity"), (extra, "extra")):
        if other is not None and len(other) != len(samples):
            raise ValueError(f"{name} has {len(other)} entries for {len(samples)} problems.")
    per_problem = []
    for index, flags in enumerate(correct):
        record: dict[str, Any] = dict(extra[index]) if extra is not None else {}
        record["num_samples"] = len(flags)
        record["num_correct"] = int(sum(map(bool, flags)))
        if diversity is not None:
            record.update(diversity[index])
        per_problem.append(record)
    smallest = min((p["num_samples"] for p in per_problem), default=0)
    if per_problem and max(ks) > smallest:
        raise ValueError(
            f"pass@{max(ks)} needs at least {max(ks)} samples per problem, but num_samples is {smallest}. "
            f"Lower k or raise num_samples to at least {max(ks)}."
        )
    return EvaluationResult(ks=ks, per_problem=per_problem, metadata=dict(metadata or {}))


def _prompt_texts(
    tokenizer: Any, prompts: Sequence[str | list[dict[str, str]]], chat_template_kwargs: dict[str, Any] | None = None
) -> list[str]:
    """Prompts as model input text: conversations go through the chat template (with `chat_template_kwargs`, e.g.
    `{"enable_thinking": False}`, as TRL passes `GRPOConfig.chat_template_kwargs`), strings are used as they are."""
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    texts = []
    for prompt in prompts:
        example = {"prompt": prompt}
        if is_conversational(example) and not getattr(tokenizer, "chat_template", None):
            texts.append("\n\n".join(message["content"] for message in prompt))  # a base model without a template
        else:
            texts.append(maybe_apply_chat_template(example, tokenizer, **(chat_template_kwargs or {}))["prompt"])
    return texts


def generate_samples(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | list[dict[str, str]]],
    num_samples: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 1024,
    batch_size: int = 16,
    seed: int = 0,
    use_vllm: bool = False,
    show_progress: bool = True,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> list[list[str]]:
    """
    Samples `num_samples` completions for each prompt.

    By default with transformers' `generate`, batched over `batch_size` sequences with left padding. A prompt that is
    a conversation (a list of `{"role", "content"}` messages) is rendered with the tokenizer's chat template and a
    generation prompt; a string prompt is used as it is. `temperature=0` decodes greedily.

    Args:
        model (`PreTrainedModel` or `str`):
            The policy. With `use_vllm=True`, a local path or Hub id that vLLM loads; a LoRA adapter directory is
            served as its base model plus the adapter (see [`vllm_model_args`]).
        tokenizer (`PreTrainedTokenizerBase`):
            Its tokenizer.
        prompts (`Sequence[str | list[dict]]`):
            One prompt per problem.
        num_samples (`int`, *optional*, defaults to `1`):
            Completions per prompt (N).
        temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature; `0` means greedy.
        top_p (`float`, *optional*, defaults to `1.0`):
            Nucleus sampling threshold.
        max_new_tokens (`int`, *optional*, defaults to `1024`):
            Completion length cap.
        batch_size (`int`, *optional*, defaults to `16`):
            Sequences per `generate` call.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the sampler.
        use_vllm (`bool`, *optional*, defaults to `False`):
            Generate with vLLM (must be installed) instead of transformers.
        show_progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar.
        chat_template_kwargs (`dict`, *optional*):
            Extra arguments of the chat template, as `GRPOConfig.chat_template_kwargs` (e.g.
            `{"enable_thinking": False}` for Qwen3).

    Returns:
        `list[list[str]]`: `num_samples` decoded completions per prompt, special tokens removed.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    texts = _prompt_texts(tokenizer, prompts, chat_template_kwargs)
    if use_vllm:
        return _generate_with_vllm(model, texts, num_samples, temperature, top_p, max_new_tokens, seed)

    import torch
    from tqdm.auto import tqdm

    # Sequences are laid out problem-major, so the samples of one problem are contiguous in the output.
    rows = [index for index in range(len(texts)) for _ in range(num_samples)]
    outputs: list[list[str]] = [[] for _ in texts]
    padding_side, pad_token = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"  # generation appends on the right, so prompts must end at the same position
    if pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Every knob is explicit: a checkpoint's generation_config (Qwen's sets top_k=20, for instance) must not change
    # the sampling protocol behind the numbers.
    sampling: dict[str, Any] = {"do_sample": temperature > 0, "repetition_penalty": 1.0}
    if temperature > 0:
        sampling.update(temperature=temperature, top_p=top_p, top_k=0)
    was_training = model.training
    model.eval()
    # Evaluation during training must not shift the training RNG streams.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            progress = tqdm(total=len(rows), desc="Generating", unit="sample", disable=not show_progress)
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                # No special tokens, as TRL tokenizes prompts for training: a chat template already wrote them.
                encoded = tokenizer(
                    [texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(model.device)
                with torch.inference_mode():
                    generated = model.generate(
                        **encoded, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
                    )
                completions = tokenizer.batch_decode(
                    generated[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
                )
                for index, completion in zip(batch, completions, strict=True):
                    outputs[index].append(completion)
                progress.update(len(batch))
            progress.close()
        finally:
            tokenizer.padding_side = padding_side
            if pad_token is None:
                tokenizer.pad_token = None
            model.train(was_training)
    return outputs


# ---------------------------------------------------------------------------------------------------------------------
# vLLM: only imported when asked for.


# The LoRA ranks vLLM accepts for `max_lora_rank`.
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_model_args(model: str) -> tuple[dict[str, Any], tuple[str, int, str] | None]:
    """
    How vLLM loads `model`: the keyword arguments of `vllm.LLM`, and those of a `LoRARequest` for an adapter.

    A directory with `adapter_config.json` (a LoRA run of `dsdr-trl train` saves only the adapter) is served as its
    base model (`base_model_name_or_path`) with LoRA enabled and a `max_lora_rank` that fits the adapter's rank; the
    adapter is then applied per request with `LoRARequest(name, id, path)`. Anything else is loaded as it is.

    Args:
        model (`str`):
            A local directory or a Hub id.

    Returns:
        `tuple[dict, tuple | None]`: `LLM(**kwargs)` arguments, and `LoRARequest(*args)` arguments or `None`.

    Raises:
        `ValueError`: If the adapter does not name its base model or its rank exceeds what vLLM supports.
    """
    adapter_config = Path(model).expanduser() / "adapter_config.json"
    if not adapter_config.is_file():
        return {"model": model}, None
    config = json.loads(adapter_config.read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"'{adapter_config}' names no base_model_name_or_path; set it to the model the adapter was trained on."
        )
    rank = int(config.get("r") or 8)
    fitting = [value for value in _VLLM_LORA_RANKS if value >= rank]
    if not fitting:
        raise ValueError(
            f"The adapter in '{model}' has rank {rank}, above vLLM's largest max_lora_rank ({_VLLM_LORA_RANKS[-1]}); "
            "evaluate it without --use_vllm (the adapter is merged into the model)."
        )
    llm_kwargs = {"model": base, "enable_lora": True, "max_lora_rank": fitting[0]}
    return llm_kwargs, ("adapter", 1, str(adapter_config.parent.resolve()))


def _generate_with_vllm(
    model: Any, texts: list[str], num_samples: int, temperature: float, top_p: float, max_new_tokens: int, seed: int
) -> list[list[str]]:
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as error:
        raise ImportError("use_vllm=True needs vLLM: pip install 'trl[vllm]'.") from error
    if not isinstance(model, str):
        raise ValueError("With use_vllm=True, pass the model as a local path or Hub id, not a loaded model.")
    llm_kwargs, lora = vllm_model_args(model)
    llm = LLM(**llm_kwargs, seed=seed)
    params = SamplingParams(
        n=num_samples,
        temperature=temperature,
        top_p=top_p if temperature > 0 else 1.0,
        top_k=0,  # all tokens; the checkpoint's generation_config must not change the protocol
        repetition_penalty=1.0,
        max_tokens=max_new_tokens,
        seed=seed,
    )
    lora_request = LoRARequest(*lora) if lora is not None else None
    outputs = llm.generate(texts, params, lora_request=lora_request)
    return [[choice.text for choice in request.outputs] for request in outputs]


# ---------------------------------------------------------------------------------------------------------------------


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | list[dict[str, str]]],
    solutions: Sequence[str],
    ks: Sequence[int] | str = (1,),
    num_samples: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 1024,
    batch_size: int = 16,
    seed: int = 0,
    encoder: Any | None = None,
    reward_func: Callable[..., list[float | None]] | None = None,
    use_vllm: bool = False,
    show_progress: bool = True,
    metadata: dict[str, Any] | None = None,
    keep_samples: bool = False,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> EvaluationResult:
    """
    Generates, scores and summarises in one call: [`generate_samples`] → [`score_samples`] →
    [`diversity_of_samples`] → [`summarize`]. Arguments are those of the four functions; `ks` is checked against
    `num_samples` before anything is generated. With `keep_samples=True` each problem's record also holds its
    `samples` and `correct` flags.
    """
    ks = parse_ks(ks)
    if max(ks) > num_samples:
        raise ValueError(
            f"pass@{max(ks)} needs at least {max(ks)} samples per problem, but num_samples is {num_samples}. "
            f"Lower k or raise num_samples to at least {max(ks)}."
        )
    samples = generate_samples(
        model,
        tokenizer,
        prompts,
        num_samples=num_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        use_vllm=use_vllm,
        show_progress=show_progress,
        chat_template_kwargs=chat_template_kwargs,
    )
    correct = score_samples(samples, solutions, reward_func, show_progress=show_progress)
    diversity = diversity_of_samples(samples, correct, encoder)
    extra = [{"solution": number_text(solution) or str(solution)} for solution in solutions]
    if keep_samples:
        for record, group, flags in zip(extra, samples, correct, strict=True):
            record.update(samples=list(group), correct=list(flags))
    return summarize(samples, correct, ks, diversity=diversity, extra=extra, metadata=metadata)
