"""`dsdr-trl eval`: sample N completions per problem and report pass@k, avg@N and the diversity of correct samples.

    dsdr-trl eval --model outputs/qwen3-1.7b-dsdr --dataset aime24 --preset paper-avg16 --output aime24.json
    dsdr-trl eval --model PATH --dataset problems.jsonl --num_samples 8 --k 1,2,4,8 --temperature 0.7 --top_p 0.9

Writes a JSON file (aggregate `pass@k`, `avg@N`, diversity means, the settings, and per problem `num_samples`,
`num_correct` and the diversity numbers) and prints a markdown table. The presets follow the paper's evaluation
protocol: `paper-pass1` is one sample at temperature 0.1, `paper-avg16` 16 samples at 0.7, `paper-passk`
64 samples for k = 1…64 (the paper does not give that temperature; 0.7 is assumed), all with top-p 0.9. A flag given
next to a preset overrides it. Arguments can also come from a YAML file with `--config`.

Prompts are rendered as in training: when `--model` is a `dsdr-trl train` output directory (or one of its
`checkpoint-N` folders), its `dsdr_config.json` supplies `chat_template_kwargs` (e.g. `{"enable_thinking": false}`)
and `system_prompt`; `--chat_template_kwargs '{...}'` and `--system_prompt` override them (`'{}'` and `""` for none).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import PromptArguments
from .common import (
    RUN_CONFIG_NAME,
    UsageError,
    check_output_path,
    check_remote_code,
    check_row_limits,
    make_parser,
    parse,
    pop_config,
    run_command,
    user_input,
    write_json,
)

PRESETS: dict[str, dict[str, Any]] = {
    "paper-pass1": {"num_samples": 1, "k": "1", "temperature": 0.1, "top_p": 0.9},
    "paper-avg16": {"num_samples": 16, "k": "1,2,4,8,16", "temperature": 0.7, "top_p": 0.9},
    "paper-passk": {"num_samples": 64, "k": "1,2,4,8,16,32,64", "temperature": 0.7, "top_p": 0.9},
}


@dataclass
class EvalArguments(PromptArguments):
    """Arguments of `dsdr-trl eval`; see the module docstring."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "Model to evaluate: a local directory (a full model or a LoRA adapter saved by dsdr-trl train), "
            "or a Hub id."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Problems: a named adapter (math500, aime24, aime25, minerva, olympiadbench, gsm8k, "
            "dapo-math-17k), a local .jsonl/.json/.parquet/.csv file, or a Hub dataset id."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub config of the dataset."})
    split: str | None = field(default=None, metadata={"help": "Split; default: the adapter's, else 'train'."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate the first N problems only."})
    preset: str | None = field(
        default=None,
        metadata={
            "help": "The paper's protocol: paper-pass1 (1 sample, T=0.1), paper-avg16 (16 samples, T=0.7), "
            "paper-passk (64 samples, k=1..64, T=0.7); all top-p 0.9. Explicit flags override it.",
            "choices": list(PRESETS),
        },
    )
    num_samples: int = field(default=1, metadata={"help": "Samples per problem (N)."})
    k: str = field(default="1", metadata={"help": "Comma-separated k of pass@k, e.g. 1,2,4,8; each <= num_samples."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature; 0 decodes greedily."})
    top_p: float = field(default=0.9, metadata={"help": "Top-p (nucleus) sampling threshold."})
    max_new_tokens: int = field(
        default=4096, metadata={"help": "Completion length cap (the paper trains with 4096 or 8192)."}
    )
    batch_size: int = field(default=16, metadata={"help": "Sequences per generate call."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    chat_template_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Extra arguments of the chat template as JSON, as GRPOConfig's, e.g. '{\"enable_thinking\": false}'; "
            "default: the training run's (from its dsdr_config.json), else none."
        },
    )
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto, bfloat16, float16 or float32."})
    device: str | None = field(default=None, metadata={"help": "Device; default: cuda if available, else cpu."})
    use_vllm: bool = field(default=False, metadata={"help": "Generate with vLLM (must be installed)."})
    vllm_tensor_parallel_size: int = field(
        default=1, metadata={"help": "With --use_vllm: GPUs the model is split over."}
    )
    vllm_max_model_length: int | None = field(
        default=None,
        metadata={"help": "With --use_vllm: prompt plus completion tokens; default: the model's context."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "With --use_vllm: share of each GPU's memory vLLM may take."}
    )
    answer_extraction: str = field(
        default="lenient", metadata={"help": "How answers are found: 'lenient', or 'strict' (\\boxed{} only, as TRL)."}
    )
    diversity_encoder: str | None = field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        metadata={
            "help": "Sentence encoder for the semantic distance among correct samples (the default is bundled and "
            "loads offline); 'none' skips it."
        },
    )
    output: str | None = field(default=None, metadata={"help": "Write the results to this JSON file."})
    save_samples: bool = field(
        default=False, metadata={"help": "Also store every sample and its verdict in the JSON."}
    )


# Keys of a training recipe or an open-r1 YAML that `dsdr-trl eval` does not take, and what to do instead.
CONFIG_KEY_HINTS = {
    "torch_dtype": "this command calls it dtype",
    "model_name_or_path": "this command calls it model",
    "dataset_name": "this command calls it dataset",
    **{
        key: "a launch setting of dsdr-trl train; eval runs in one process"
        for key in ("accelerate_config", "num_processes", "num_machines", "machine_rank", "main_process_ip")
    },
}


def read_run_config(model_dir: str) -> dict[str, Any] | None:
    """The settings of the training run that produced `model_dir` (its `dsdr_config.json`, or that of the run
    directory holding a `checkpoint-N` folder), or `None` when there is none."""
    directory = Path(model_dir).expanduser()
    candidates = [directory / RUN_CONFIG_NAME]
    if directory.name.startswith("checkpoint-"):
        candidates.append(directory.parent / RUN_CONFIG_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def _apply_run_config(args: EvalArguments) -> None:
    """Fills `chat_template_kwargs` and `system_prompt`, where not given, from the training run of `args.model`, then
    parses `chat_template_kwargs` into a dict."""
    run_config = read_run_config(args.model)
    if run_config is not None:
        taken = []
        saved_kwargs = run_config.get("training_args", {}).get("chat_template_kwargs")
        if args.chat_template_kwargs is None and saved_kwargs:
            args.chat_template_kwargs, taken = saved_kwargs, [f"chat_template_kwargs={json.dumps(saved_kwargs)}"]
        saved_prompt = run_config.get("script_args", {}).get("system_prompt")
        if args.system_prompt is None and saved_prompt:
            args.system_prompt, taken = saved_prompt, [*taken, f"system_prompt={saved_prompt!r}"]
        if taken:
            print(f"[dsdr-trl eval] from the training run's {RUN_CONFIG_NAME}: {', '.join(taken)}")
    value = args.chat_template_kwargs
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise UsageError(
                f"--chat_template_kwargs must be a JSON object such as '{{\"enable_thinking\": false}}', got "
                f"{args.chat_template_kwargs!r}."
            )
    args.chat_template_kwargs = value or {}


def parse_args(argv: list[str]) -> EvalArguments:
    """Parses `argv` (and its `--config` YAML), applying a `--preset` first so that explicit flags win over it."""
    argv = list(argv)
    config, _ = pop_config(argv)
    parser = make_parser((EvalArguments,), "dsdr-trl eval")
    (args,) = parse(parser, argv, config, "eval", CONFIG_KEY_HINTS, ("--preset", lambda name: PRESETS.get(name, {})))
    return args


def _load_model(args: EvalArguments, device: str):
    import torch
    from huggingface_hub import is_offline_mode
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..data import looks_local

    path = args.model
    local = Path(path).expanduser()
    if looks_local(path) and not local.exists():
        raise FileNotFoundError(f"Model directory '{args.model}' does not exist.")
    check_remote_code(path, False, "dsdr-trl eval loads standard architectures only")
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    try:
        if (local / "adapter_config.json").exists():  # a LoRA run saves only the adapter
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(str(local), dtype=dtype).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as error:
        reason = (
            "HF_HUB_OFFLINE is set and it is not in the local cache"
            if is_offline_mode()
            else str(error).split("\n")[0]
        )
        raise FileNotFoundError(
            f"Could not load the model '{args.model}' ({reason}). Pass a local directory with --model."
        ) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def run(args: EvalArguments) -> int:
    """Evaluates `args.model` on `args.dataset`; writes `args.output` and prints the table. Returns 0."""
    from huggingface_hub import is_offline_mode

    from ..data import hub_unreachable_reason, load_math_dataset, looks_local
    from ..generation import evaluate_policy
    from ..metrics import parse_ks

    with user_input():  # until generation starts, an error comes from the arguments, files or model given
        if not args.model:
            raise UsageError("--model is required (a local model directory or a Hub id).")
        if not args.dataset:
            raise UsageError("--dataset is required (a named benchmark such as math500, or a local file).")
        ks = parse_ks(args.k)
        if max(ks) > args.num_samples:
            raise ValueError(
                f"pass@{max(ks)} needs at least {max(ks)} samples per problem, but --num_samples is {args.num_samples}. "
                f"Lower --k or raise --num_samples to at least {max(ks)}."
            )
        if args.num_samples < 1 or args.batch_size < 1 or args.max_new_tokens < 1:
            raise ValueError("--num_samples, --batch_size and --max_new_tokens must be positive.")
        if args.temperature < 0 or not 0 < args.top_p <= 1:
            raise UsageError(
                f"--temperature must be >= 0 (0 decodes greedily) and 0 < --top_p <= 1, got {args.temperature} and "
                f"{args.top_p}."
            )
        from ..rewards import make_accuracy_reward

        reward_func = make_accuracy_reward(args.answer_extraction)
        _apply_run_config(args)
        check_row_limits(limit=args.limit)
        if args.output is not None:
            check_output_path(args.output, "--output", directory=False)
        if not looks_local(args.model) and not is_offline_mode() and (reason := hub_unreachable_reason()) is not None:
            # In seconds, where the Hub client would retry for about a minute.
            raise FileNotFoundError(
                f"Could not load the model '{args.model}' ({reason}). Pass a local directory with --model."
            )

        dataset = load_math_dataset(
            args.dataset,
            config=args.dataset_config,
            split=args.split,
            prompt_column=args.prompt_column,
            solution_column=args.solution_column,
            prompt_template=args.prompt_template,
            conversational=args.conversational,
            system_prompt=args.system_prompt,
            limit=args.limit,
        )

        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if args.use_vllm:  # vLLM loads the weights itself; only the tokenizer is needed here, for the chat template
            from transformers import AutoTokenizer

            model = args.model
            tokenizer = AutoTokenizer.from_pretrained(model)
        else:
            model, tokenizer = _load_model(args, device)
        encoder = None
        if args.diversity_encoder and args.diversity_encoder.lower() != "none":
            from ..encoder import load_diversity_encoder

            encoder = load_diversity_encoder(args.diversity_encoder, device, 256)

    result = evaluate_policy(
        model,
        tokenizer,
        dataset["prompt"],
        dataset["solution"],
        ks=ks,
        num_samples=args.num_samples,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        encoder=encoder,
        reward_func=reward_func,
        use_vllm=args.use_vllm,
        vllm_kwargs={
            "tensor_parallel_size": args.vllm_tensor_parallel_size,
            "max_model_len": args.vllm_max_model_length,
            "gpu_memory_utilization": args.vllm_gpu_memory_utilization,
        }
        if args.use_vllm
        else None,
        chat_template_kwargs=args.chat_template_kwargs,
        metadata={key: value for key, value in asdict(args).items() if key != "output"},
        keep_samples=args.save_samples,
    )
    for record, problem in zip(result.per_problem, dataset["problem"], strict=True):
        record["problem"] = problem
    print(f"\n{args.model} on {args.dataset} ({len(dataset)} problems, {args.num_samples} samples each)\n")
    print(result.to_markdown())
    if args.output:
        write_json(args.output, {**result.to_dict(), **_provenance()})
        print(f"\nWrote {args.output}")
    return 0


def _provenance() -> dict[str, Any]:
    """When the numbers were made and with which packages, for the result file."""
    from datetime import datetime, timezone
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("dsdr-trl", "trl", "transformers", "torch", "accelerate", "math-verify", "vllm"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dsdr-trl eval`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        make_parser((EvalArguments,), "dsdr-trl eval").parse_args_into_dataclasses(["--help"])
    args = parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(run_command("eval", main))
