"""`dsdr-trl eval`: sample N completions per problem and report pass@k, avg@N and the diversity of correct samples.

    dsdr-trl eval --model outputs/qwen3-1.7b-dsdr --dataset aime24 --preset paper-avg16 --output aime24.json
    dsdr-trl eval --model PATH --dataset problems.jsonl --num_samples 8 --k 1,2,4,8 --temperature 0.7 --top_p 0.9

Writes a JSON file (pass@k, avg@N, diversity, the settings, per-problem numbers) and prints a markdown table. The
presets follow the paper's protocol: `paper-pass1` 1 sample at temperature 0.1, `paper-avg16` 16 at 0.7, `paper-passk`
64 for k = 1…64 (at 0.7, which the paper does not state), all with top-p 0.9; flags given next to a preset win.

Prompts are rendered as in training: when `--model` is a `dsdr-trl train` output directory (or one of its
`checkpoint-N` folders), its `dsdr_config.json` supplies `chat_template_kwargs` (e.g. `{"enable_thinking": false}`)
and `system_prompt`; `--chat_template_kwargs '{...}'` and `--system_prompt` override them (`'{}'` and `""` for none).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import DATA_HELP, PromptArguments
from .arguments import (
    check_model,
    check_output_path,
    check_row_limits,
    make_parser,
    model_unavailable,
    parse,
    pop_config,
)
from .common import RUN_CONFIG_NAME, UsageError, run_command, user_input, write_json
from .launch import LaunchArguments

PRESETS: dict[str, dict[str, Any]] = {
    "paper-pass1": {"num_samples": 1, "k": "1", "temperature": 0.1, "top_p": 0.9},
    "paper-avg16": {"num_samples": 16, "k": "1,2,4,8,16", "temperature": 0.7, "top_p": 0.9},
    "paper-passk": {"num_samples": 64, "k": "1,2,4,8,16,32,64", "temperature": 0.7, "top_p": 0.9},
}


@dataclass
class EvalArguments(PromptArguments):
    """Arguments of `dsdr-trl eval`; see the module docstring."""

    model: str | None = field(default=None, metadata={"help": "A local model or LoRA adapter folder, or a Hub id."})
    dataset: str | None = field(default=None, metadata={"help": f"Problems: {DATA_HELP}."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub config of the dataset."})
    split: str | None = field(default=None, metadata={"help": "Split; default: the adapter's, else 'train'."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate the first N problems only."})
    preset: str | None = field(
        default=None, metadata={"help": "The paper's protocol; flags override it.", "choices": list(PRESETS)}
    )
    num_samples: int = field(default=1, metadata={"help": "Samples per problem (N)."})
    k: str = field(default="1", metadata={"help": "Comma-separated k of pass@k, e.g. 1,2,4,8; each <= num_samples."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature; 0 decodes greedily."})
    top_p: float = field(default=0.9, metadata={"help": "Top-p (nucleus) sampling threshold."})
    max_new_tokens: int = field(default=4096, metadata={"help": "Completion length cap."})
    batch_size: int = field(default=16, metadata={"help": "Sequences per generate call."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    chat_template_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Chat template arguments as JSON; default: the training run's."}
    )
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto, bfloat16, float16 or float32."})
    device: str | None = field(default=None, metadata={"help": "Device; default: cuda if available, else cpu."})
    use_vllm: bool = field(default=False, metadata={"help": "Generate with vLLM (must be installed)."})
    vllm_tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs vLLM splits the model over."})
    vllm_max_model_length: int | None = field(default=None, metadata={"help": "vLLM's context; default: the model's."})
    vllm_gpu_memory_utilization: float = field(default=0.9, metadata={"help": "Share of GPU memory vLLM may take."})
    answer_extraction: str = field(
        default="lenient", metadata={"help": "How answers are found: 'lenient', or 'strict' (\\boxed{} only, as TRL)."}
    )
    diversity_encoder: str | None = field(
        default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Encoder of the diversity; 'none' skips."}
    )
    output: str | None = field(default=None, metadata={"help": "Write the results to this JSON file."})
    save_samples: bool = field(default=False, metadata={"help": "Also store every sample and its verdict."})


# Keys of a training recipe or an open-r1 YAML that `dsdr-trl eval` does not take, and what to do instead.
CONFIG_KEY_HINTS = dict.fromkeys(
    LaunchArguments.__dataclass_fields__, "a launch setting of dsdr-trl train; eval runs in one process"
)
CONFIG_KEY_HINTS |= {
    old: f"this command calls it {new}"
    for old, new in [("torch_dtype", "dtype"), ("model_name_or_path", "model"), ("dataset_name", "dataset")]
}


def _apply_run_config(args: EvalArguments) -> None:
    """Fills `chat_template_kwargs` and `system_prompt`, where not given, from the `dsdr_config.json` of the training
    run of `args.model` (or of the run holding its `checkpoint-N` folder); then parses `chat_template_kwargs`."""
    model = Path(args.model).expanduser()
    files = [
        model / RUN_CONFIG_NAME,
        *([model.parent / RUN_CONFIG_NAME] if model.name.startswith("checkpoint-") else []),
    ]
    saved = next((json.loads(file.read_text()) for file in files if file.is_file()), {})
    taken = []
    for name, section in (("chat_template_kwargs", "training_args"), ("system_prompt", "script_args")):
        if getattr(args, name) is None and (value := saved.get(section, {}).get(name)):
            setattr(args, name, value)
            taken.append(f"{name}={json.dumps(value) if isinstance(value, dict) else repr(value)}")
    if taken:
        print(f"[dsdr-trl eval] from the training run's {RUN_CONFIG_NAME}: {', '.join(taken)}")
    value = args.chat_template_kwargs
    if isinstance(value, str):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
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
    """The model (its name, which vLLM loads itself) and its tokenizer; a failure is one line."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    try:
        if args.use_vllm:
            return args.model, AutoTokenizer.from_pretrained(args.model)
        if (Path(args.model).expanduser() / "adapter_config.json").exists():  # a LoRA run saves only the adapter
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(str(Path(args.model).expanduser()), dtype=dtype)
            model = model.merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except OSError as error:
        raise model_unavailable(args.model, error, "--model") from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def run(args: EvalArguments) -> int:
    """Evaluates `args.model` on `args.dataset`; writes `args.output` and prints the table. Returns 0."""
    import torch

    from ..data import load_math_dataset
    from ..generation import evaluate_policy
    from ..metrics import parse_ks

    with user_input():  # until generation starts, an error comes from the arguments, files or model given
        if not args.model or not args.dataset:
            raise UsageError("--model and --dataset are required (a model directory or Hub id; a benchmark or file).")
        ks = parse_ks(args.k, args.num_samples)
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
        if (reason := check_model(args.model, False, "dsdr-trl eval loads standard architectures only")) is not None:
            raise model_unavailable(args.model, reason, "--model")
        prompts = {name: getattr(args, name) for name in PromptArguments.__dataclass_fields__}
        dataset = load_math_dataset(
            args.dataset, config=args.dataset_config, split=args.split, limit=args.limit, **prompts
        )
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = _load_model(args, device)
        encoder = None
        if args.diversity_encoder and args.diversity_encoder.lower() != "none":
            from ..encoder import load_diversity_encoder

            encoder = load_diversity_encoder(args.diversity_encoder, device, 256)

    vllm_kwargs = {"tensor_parallel_size": args.vllm_tensor_parallel_size, "max_model_len": args.vllm_max_model_length}
    vllm_kwargs["gpu_memory_utilization"] = args.vllm_gpu_memory_utilization
    sampling = ("num_samples", "temperature", "top_p", "max_new_tokens", "batch_size", "seed", "use_vllm")
    result = evaluate_policy(
        model,
        tokenizer,
        dataset["prompt"],
        dataset["solution"],
        ks=ks,
        encoder=encoder,
        reward_func=reward_func,
        vllm_kwargs=vllm_kwargs if args.use_vllm else None,
        chat_template_kwargs=args.chat_template_kwargs,
        metadata={key: value for key, value in asdict(args).items() if key != "output"},
        keep_samples=args.save_samples,
        **{name: getattr(args, name) for name in sampling},
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
    from importlib.metadata import distributions

    installed = {re.sub(r"[-_.]+", "-", dist.name).lower(): dist.version for dist in distributions()}
    packages = ("dsdr-trl", "trl", "transformers", "torch", "accelerate", "math-verify", "vllm")
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {package: installed.get(package) for package in packages},
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dsdr-trl eval`; returns the exit status."""
    return run(parse_args(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(run_command("eval", main))
