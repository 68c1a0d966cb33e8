"""Sampling completions for evaluation, with transformers' `generate` or vLLM (imported only when asked for), and the
whole evaluation in one call ([`evaluate_policy`])."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

from .metrics import EvaluationResult, evaluate_samples, parse_ks

__all__ = ["evaluate_policy", "generate_samples", "generate_with_vllm", "prompt_texts", "vllm_model_args"]


def prompt_texts(
    tokenizer: Any, prompts: Sequence[str | list[dict[str, str]]], chat_template_kwargs: dict[str, Any] | None = None
) -> list[str]:
    """Prompts as model input text: conversations through the chat template with `chat_template_kwargs` (as TRL
    passes `GRPOConfig.chat_template_kwargs`), strings as they are."""
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
    vllm_kwargs: dict[str, Any] | None = None,
) -> list[list[str]]:
    """`num_samples` decoded completions for each prompt (rendered by [`prompt_texts`]), problem by problem.

    With transformers' `generate`, `batch_size` sequences at a time under its own `seed` (the global RNG is restored);
    `temperature=0` is greedy, and every sampling knob is explicit, so a checkpoint's `generation_config` cannot change
    the protocol. With `use_vllm=True`, `model` is a path or Hub id that [`generate_with_vllm`] loads with
    `vllm_kwargs`; a LoRA adapter directory is served as its base model plus the adapter ([`vllm_model_args`]).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    texts = prompt_texts(tokenizer, prompts, chat_template_kwargs)
    if vllm_kwargs and not use_vllm:
        raise ValueError(f"vllm_kwargs {sorted(vllm_kwargs)} apply to vLLM only; pass use_vllm=True or drop them.")
    if use_vllm:
        sampling = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
        return generate_with_vllm(model, texts, num_samples, **sampling, **(vllm_kwargs or {}))

    import torch
    from tqdm.auto import tqdm

    # Sequences are laid out problem-major, so the samples of one problem are contiguous in the output.
    rows = [text for text in texts for _ in range(num_samples)]
    completions: list[str] = []
    pad_token = tokenizer.pad_token
    if pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A checkpoint's generation_config (Qwen's sets top_k=20) must not change the protocol.
    sampling: dict[str, Any] = {"do_sample": temperature > 0, "repetition_penalty": 1.0}
    if temperature > 0:
        sampling.update(temperature=temperature, top_p=top_p, top_k=0)
    was_training = model.training
    model.eval()
    progress = tqdm(total=len(rows), desc="Generating", unit="sample", disable=not show_progress)
    # Evaluation during training must not shift the training RNG streams.
    with torch.random.fork_rng(), progress:
        torch.manual_seed(seed)
        try:
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                # Padded on the left: generation appends on the right, so prompts must end at the same position. No
                # special tokens, as TRL tokenizes prompts for training: a chat template already wrote them.
                encoded = tokenizer(
                    batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
                ).to(model.device)
                with torch.inference_mode():
                    generated = model.generate(
                        **encoded, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
                    )
                new_tokens = generated[:, encoded["input_ids"].shape[1] :]
                completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                progress.update(len(batch))
        finally:
            if pad_token is None:
                tokenizer.pad_token = None
            model.train(was_training)
    return [completions[start : start + num_samples] for start in range(0, len(rows), num_samples)]


def vllm_model_args(model: str) -> tuple[dict[str, Any], tuple[str, int, str] | None]:
    """
    `(vllm.LLM kwargs, LoRARequest args or None)` for `model`. A directory with `adapter_config.json` is served as its
    base model with LoRA enabled and `max_lora_rank` the adapter's `r` raised to the next value of vLLM's
    `MaxLoRARanks`; `ValueError` if it names no base model or its rank is above vLLM's largest.
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
    rank = int(config["r"])
    try:
        from vllm.config.lora import MaxLoRARanks

        accepted = sorted(get_args(MaxLoRARanks))
    except ImportError:  # without vLLM nothing will load the adapter; its rank is what it needs
        accepted = [rank]
    fitting = [value for value in accepted if value >= rank]
    if not fitting:
        raise ValueError(
            f"The adapter in '{model}' has rank {rank}, above vLLM's largest max_lora_rank ({accepted[-1]}); "
            "evaluate it without --use_vllm (the adapter is merged into the model)."
        )
    llm_kwargs = {"model": base, "enable_lora": True, "max_lora_rank": fitting[0]}
    return llm_kwargs, ("adapter", 1, str(adapter_config.parent.resolve()))


def generate_with_vllm(
    model: str,
    texts: list[str],
    num_samples: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 1024,
    seed: int = 0,
    **llm_kwargs: Any,
) -> list[list[str]]:
    """
    `num_samples` completions of each prompt text with one offline `vllm.LLM` in this process (it batches every
    request; a second per process would load the model again), built with `llm_kwargs` such as `tensor_parallel_size`,
    `max_model_len` (prompt plus completion) and `gpu_memory_utilization` (vLLM's share of each GPU).
    """
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as error:
        raise ImportError("use_vllm=True needs vLLM: pip install 'trl[vllm]'.") from error
    if not isinstance(model, str):
        raise ValueError("With use_vllm=True, pass the model as a local path or Hub id, not a loaded model.")
    model_kwargs, lora = vllm_model_args(model)
    llm = LLM(**model_kwargs, seed=seed, **llm_kwargs)
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


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | list[dict[str, str]]],
    solutions: Sequence[str],
    ks: Sequence[int] | str = (1,),
    num_samples: int = 1,
    encoder: Any | None = None,
    reward_func: Callable[..., list[float | None]] | None = None,
    show_progress: bool = True,
    metadata: dict[str, Any] | None = None,
    keep_samples: bool = False,
    **generation_kwargs: Any,
) -> EvaluationResult:
    """
    [`generate_samples`] (given `generation_kwargs`: `temperature`, `top_p`, `max_new_tokens`, `batch_size`, `seed`,
    `use_vllm`, `chat_template_kwargs`, `vllm_kwargs`) → [`~dsdr_trl.metrics.evaluate_samples`]; `ks` is checked before
    anything is generated. `keep_samples=True` keeps each problem's `samples` and `correct` flags.
    """
    ks = parse_ks(ks, num_samples)
    samples = generate_samples(
        model, tokenizer, prompts, num_samples, show_progress=show_progress, **generation_kwargs
    )
    return evaluate_samples(samples, solutions, ks, encoder, reward_func, show_progress, keep_samples, metadata)
