"""`dsdr-trl train`: train a policy with DSDR (or a GRPO/DAPO baseline) from a YAML recipe.

    dsdr-trl train --config configs/qwen3-1.7b/dsdr.yaml [--any_field value ...]
    dsdr-trl train --config qwen3-1.7b/dsdr --accelerate_config zero2 --num_processes 8   # a shipped recipe
    accelerate launch --config_file configs/accelerate/zero2.yaml -m dsdr_trl.scripts.train --config ...

The shape of TRL's `trl/scripts/grpo.py`: parse → validate → load → build the trainer → train → save. `--config`
takes a file or a shipped recipe's name (`dsdr-trl recipes`). `--accelerate_config` (`ddp`, `zero2`, `zero3`, TRL's
names, or a file) and `--num_processes`, as flags or as recipe keys, launch the processes with accelerate's
`launch_command` in this process, after the arguments are validated here (see [`~dsdr_trl.scripts.launch.launch`]).

Arguments come from three dataclasses, all settable in the YAML file or as flags (flags win):
[`DSDRScriptArguments`] (data, rewards, the pass@k callback, `--dry_run`), [`~dsdr_trl.DSDRConfig`] (every
`GRPOConfig` field plus the DSDR coefficients) and TRL's `ModelConfig` (`model_name_or_path`, `dtype`,
`--use_peft --lora_r ...`). An unknown key or flag, or a value of the wrong type or range, is an error. `--dry_run`
also loads the data and the tokenizer (no weights), checks that every prompt fits the model's context, and prints the
plan. `--resume_from_checkpoint auto` resumes from the last checkpoint in output_dir, if any. A run holds a lock on its
output_dir and writes its arguments to `output_dir/dsdr_config.json`, from which `dsdr-trl eval` takes
`chat_template_kwargs` and `system_prompt`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import PromptArguments, hub_dataset_id
from .common import (
    UsageError,
    check_output_path,
    check_remote_code,
    check_row_limits,
    flag_value,
    parse,
    pop_config,
    run_command,
    save_run_config,
    user_input,
)
from .common import make_parser as make_trl_parser


@dataclass
class DSDRScriptArguments(PromptArguments):
    """Data, reward and pass@k-callback arguments of `dsdr-trl train` (each field's help is in `--help`)."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Training data: a named adapter (dapo-math-17k, math500, aime24, aime25, minerva, olympiadbench, "
            "gsm8k), a local .jsonl/.json/.parquet/.csv file, or a Hub dataset id."
        },
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Hub config of the dataset (e.g. 'en', 'cn' or 'all' for dapo-math-17k)."}
    )
    dataset_train_split: str | None = field(
        default=None, metadata={"help": "Training split; defaults to the adapter's split, else 'train'."}
    )
    dataset_test_split: str | None = field(
        default=None, metadata={"help": "Split used as TRL's eval_dataset (with eval_strategy); none by default."}
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy"],
        metadata={
            "help": "Reward functions: names from dsdr_trl.rewards.REWARD_FUNCS ('accuracy', or TRL's "
            "'accuracy_reward', 'reasoning_accuracy_reward', 'think_format_reward', 'get_soft_overlong_punishment') or "
            "dotted import paths, resolved from the working directory (e.g. my_rewards.format_reward). DSDRConfig.correctness_reward picks the correctness one by function name (e.g. "
            "'accuracy_reward'); default: the first."
        },
    )
    answer_extraction: str = field(
        default="lenient",
        metadata={"help": "How 'accuracy' finds answers: 'lenient', or 'strict' (\\boxed{} only, as TRL)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N eval rows."})
    passk_eval_dataset: str | None = field(
        default=None,
        metadata={
            "help": "Dataset (same forms as dataset_name, with its adapter's or the default columns and template) "
            "on which pass@k, avg@N and the diversity of correct samples are measured every passk_eval_steps "
            "(default: eval_steps) and logged as eval/*."
        },
    )
    passk_eval_split: str | None = field(default=None, metadata={"help": "Split of passk_eval_dataset."})
    passk_eval_limit: int | None = field(default=None, metadata={"help": "Evaluate on the first N problems only."})
    passk_eval_num_samples: int = field(default=4, metadata={"help": "Samples per problem for the pass@k callback."})
    passk_eval_k: str = field(default="1", metadata={"help": "Comma-separated k of pass@k, each <= num_samples."})
    passk_eval_temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the callback."})
    passk_eval_top_p: float = field(default=0.9, metadata={"help": "Top-p of the callback (the paper's 0.9)."})
    passk_eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Completion cap of the callback; default: max_completion_length."}
    )
    passk_eval_steps: int | None = field(
        default=None, metadata={"help": "Run the pass@k callback every N steps; default: eval_steps."}
    )
    passk_eval_prefix: str = field(
        default="eval/",
        metadata={
            "help": "Prefix of the callback's metric names. 'eval_' (TRL's convention for eval_reward) puts them in "
            "the eval/ section of Weights & Biases and Trackio, which file 'eval/...' keys under train/."
        },
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "Check arguments, reward names and dataset columns, print the plan, load no weights."},
    )


def make_parser():
    from trl import ModelConfig

    from ..config import DSDRConfig

    return make_trl_parser((DSDRScriptArguments, DSDRConfig, ModelConfig), "dsdr-trl train")


def _say(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[dsdr-trl train] {message}", flush=True)


def _resolve_rewards(
    names: list[str], correctness: str | None, max_completion_length: int | None, answer_extraction: str
) -> list:
    from trl.trainer.utils import get_callable_name

    from ..rewards import get_reward_func, make_accuracy_reward

    accuracy = make_accuracy_reward(answer_extraction)  # an unknown value is a ValueError naming the choices

    if not names:
        raise ValueError("reward_funcs is empty; give at least one, e.g. --reward_funcs accuracy.")
    # A dotted path names a module of the user's project, as with `trl grpo`: the console script's sys.path[0] is its
    # own bin/ directory, so the working directory goes first (under `python -m` it is there already).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    funcs = [accuracy if name == "accuracy" else get_reward_func(name, max_completion_length) for name in names]
    func_names = [get_callable_name(func) for func in funcs]
    if len(set(func_names)) < len(func_names):
        raise ValueError(
            f"reward_funcs {names} give functions with the same name ({func_names}); their metrics and the "
            "correctness_reward lookup would collide. Keep one of them (e.g. 'accuracy' or TRL's 'accuracy_reward')."
        )
    if correctness is not None and correctness not in func_names:
        raise ValueError(
            f"correctness_reward={correctness!r} is not one of the reward functions {func_names} (it names a "
            "function by its __name__, e.g. 'accuracy_reward' for --reward_funcs accuracy)."
        )
    return [_checked(func, name) for func, name in zip(funcs, func_names, strict=True)]


def _checked(func, name: str):
    """`func`, failing with its name when it returns anything but a number or `None` per completion (TRL would fail
    later, in its own code, without naming it)."""
    import functools
    import inspect
    import numbers

    if inspect.iscoroutinefunction(func):
        return func

    @functools.wraps(func)
    def reward(*args, **kwargs):
        values = func(*args, **kwargs)
        for value in values:
            if not (value is None or isinstance(value, numbers.Real)):
                raise TypeError(
                    f"reward function {name!r} returned {type(value).__name__} {str(value)[:40]!r}; a reward function "
                    "returns a number or None per completion."
                )
        return values

    reward.__name__ = name
    return reward


def _load(script_args: DSDRScriptArguments, name: str, split: str | None, limit: int | None, dry_run: bool):
    """The dataset, or `None` in a dry run when a Hub dataset is out of reach (it cannot be checked offline).

    The column, config and template flags describe the training dataset; the pass@k dataset uses its adapter's (or
    the default column names), so a benchmark keeps its own prompt format.
    """
    from ..data import DatasetUnavailableError, load_math_dataset, looks_local

    own = name == script_args.dataset_name
    try:
        return load_math_dataset(
            name,
            config=script_args.dataset_config if own else None,
            split=split,
            prompt_column=script_args.prompt_column if own else None,
            solution_column=script_args.solution_column if own else None,
            prompt_template=script_args.prompt_template if own else None,
            conversational=script_args.conversational,
            system_prompt=script_args.system_prompt,
            limit=limit,
        )
    except DatasetUnavailableError as error:
        if dry_run and not looks_local(name):
            reason = str(error).split(". Download")[0]
            _say(f"dataset '{name}': columns not checked: {reason}. A real run needs it (or a local file).")
            return None
        raise


def _check_model_and_prompts(
    model_args: Any, training_args: Any, datasets: list[tuple[str | None, Any]], dry_run: bool
) -> str:
    """Loads the model's config and tokenizer (no weights) and returns the plan's model line.

    A model out of reach fails here in one line, in seconds (a dry run only notes it for a Hub id), and so does a
    prompt of `datasets` (`(name, dataset or None)` pairs) that leaves no room in the model's context: TRL's
    `GRPOTrainer` does not truncate prompts, and positions past `max_position_embeddings` were never trained.
    """
    from huggingface_hub import is_offline_mode
    from transformers import AutoConfig, AutoProcessor

    from ..data import hub_unreachable_reason, looks_local, prompt_lengths

    name = model_args.model_name_or_path
    check_remote_code(name, training_args.trust_remote_code, "pass --trust_remote_code true if you trust it")
    options = {"revision": model_args.model_revision, "trust_remote_code": training_args.trust_remote_code}
    try:
        if not looks_local(name) and not is_offline_mode() and (reason := hub_unreachable_reason()) is not None:
            raise OSError(reason)
        config = AutoConfig.from_pretrained(name, **options)
        processor = AutoProcessor.from_pretrained(name, **options)
    except OSError as error:
        reason = (
            "HF_HUB_OFFLINE is set and it is not in the local cache"
            if is_offline_mode()
            else str(error).split("\n")[0]
        )
        if dry_run and not looks_local(name):
            return f"model: {name}: not checked: {reason}. A real run needs it (or a local directory)."
        raise FileNotFoundError(
            f"Could not load the model '{name}' ({reason}). Pass a local directory with --model_name_or_path."
        ) from error
    context = getattr(config.get_text_config(), "max_position_embeddings", None)
    if context is None:
        return f"model: {name}"
    longest = 0
    for label, dataset in datasets:
        if dataset is None:
            continue
        lengths = prompt_lengths(dataset["prompt"], processor, **(training_args.chat_template_kwargs or {}))
        over = [index for index, length in enumerate(lengths) if length >= context]
        if over:
            raise ValueError(
                f"{len(over)} prompt(s) of dataset '{label}' leave no room in the model's context of {context} tokens "
                f"(max_position_embeddings): row {over[0]} has {lengths[over[0]]} tokens. Shorten or drop those rows "
                "(prompts are not truncated), or use a model with a longer context."
            )
        longest = max(longest, *lengths)
    return f"model: {name} (context {context} tokens; longest prompt {longest})"


def resolve_checkpoint(value: str | None, output_dir: str) -> str | None:
    """The checkpoint to resume from: `auto` or `true` is the last one in `output_dir` (none: start fresh). Every
    file it holds must load (JSON parses, safetensors and torch archives open); a damaged one is named in one line."""
    import json
    import zipfile

    from safetensors import safe_open
    from transformers.trainer_utils import get_last_checkpoint

    if value is not None and value.lower() in ("auto", "true"):
        value = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        _say(f"resuming from {value}" if value else f"no checkpoint in {output_dir}: starting fresh")
    if value is None:
        return None
    if not Path(value).is_dir():
        raise UsageError(f"--resume_from_checkpoint '{value}' is not a folder; pass a checkpoint-N folder or auto.")
    for file in sorted(Path(value).iterdir()):
        try:
            if file.suffix == ".json":
                json.loads(file.read_text())
            elif file.suffix == ".safetensors":
                safe_open(str(file), "pt").keys()
            elif file.suffix in (".pt", ".pth", ".bin"):
                zipfile.ZipFile(file).close()
        except Exception as error:
            raise UsageError(
                f"checkpoint file '{file}' is damaged ({str(error).splitlines()[0][:120]}); resume from another "
                "checkpoint or remove this one."
            ) from error
    return value


def validate(script_args: DSDRScriptArguments, training_args: Any, model_args: Any) -> tuple[list, list[int]]:
    """Every check of the arguments alone, run by the dry run, the real run and before a launch; nothing is created.
    Returns the reward functions and the k of the pass@k callback."""
    from ..metrics import parse_ks

    if not script_args.dataset_name:
        raise UsageError("no training data: set dataset_name in the recipe or pass --dataset_name NAME_OR_FILE.")
    if not model_args.model_name_or_path:
        raise UsageError("no model: set model_name_or_path in the recipe or pass --model_name_or_path.")
    check_row_limits(
        max_train_samples=script_args.max_train_samples,
        max_eval_samples=script_args.max_eval_samples,
        passk_eval_limit=script_args.passk_eval_limit,
    )
    check_output_path(training_args.output_dir, "output_dir", directory=True)
    for name, temperature, top_p in [
        ("", training_args.temperature, training_args.top_p),
        ("passk_eval_", script_args.passk_eval_temperature, script_args.passk_eval_top_p),
    ]:
        if not temperature > 0 or not 0 < top_p <= 1:
            raise UsageError(
                f"{name}temperature must be > 0 and 0 < {name}top_p <= 1, got {temperature} and {top_p}; sampling "
                "needs them (the paper: temperature 1.0 in training, 0.7 in evaluation, top_p 0.9)."
            )
    from ..rewards import verifier_workers

    try:
        verifier_workers()
        num_samples = script_args.passk_eval_num_samples if script_args.passk_eval_dataset else None
        ks = parse_ks(script_args.passk_eval_k, num_samples)
    except ValueError as error:  # parse_ks names the fields without their flag's prefix
        raise UsageError(str(error).replace("num_samples", "passk_eval_num_samples")) from error
    rewards = _resolve_rewards(
        script_args.reward_funcs,
        training_args.correctness_reward,
        training_args.max_completion_length,
        script_args.answer_extraction,
    )
    training_args.resume_from_checkpoint = resolve_checkpoint(
        training_args.resume_from_checkpoint, training_args.output_dir
    )
    return rewards, ks


def run(script_args: DSDRScriptArguments, training_args: Any, model_args: Any, processes: int | None = None) -> int:
    """Validates the arguments and loads the data, then (unless `dry_run`) trains, saves the model and closes the
    trainer. `processes` is the process count the batch plan is reported for (default: this run's `WORLD_SIZE`)."""
    from ..data import looks_local

    dry_run = script_args.dry_run
    with user_input():
        reward_funcs, ks = validate(script_args, training_args, model_args)
        train_dataset = _load(
            script_args,
            script_args.dataset_name,
            script_args.dataset_train_split,
            script_args.max_train_samples,
            dry_run,
        )
        eval_dataset = passk_dataset = None
        if script_args.dataset_test_split and training_args.eval_strategy != "no":
            eval_dataset = _load(
                script_args,
                script_args.dataset_name,
                script_args.dataset_test_split,
                script_args.max_eval_samples,
                dry_run,
            )
        if script_args.passk_eval_dataset:
            passk_dataset = _load(
                script_args,
                script_args.passk_eval_dataset,
                script_args.passk_eval_split,
                script_args.passk_eval_limit,
                dry_run,
            )
        model_name = model_args.model_name_or_path
        if looks_local(model_name) and not Path(model_name).expanduser().exists():
            raise UsageError(f"Model directory '{model_name}' does not exist.")
        model_line = _check_model_and_prompts(
            model_args,
            training_args,
            [
                (script_args.dataset_name, train_dataset),
                (f"{script_args.dataset_name}, split {script_args.dataset_test_split}", eval_dataset),
                (script_args.passk_eval_dataset, passk_dataset),
            ],
            dry_run,
        )

    from trl.trainer.utils import get_callable_name

    reward_names = [get_callable_name(func) for func in reward_funcs]
    world = processes or int(os.environ.get("WORLD_SIZE", "1"))
    plan = [
        model_line,
        f"data: {script_args.dataset_name}"
        + ("" if train_dataset is None else f" ({len(train_dataset)} rows, columns {train_dataset.column_names})"),
        f"rewards: {reward_names}; correctness: {training_args.correctness_reward or reward_names[0]}",
        f"DSDR: diversity_coef={training_args.diversity_coef} local_entropy_coef={training_args.local_entropy_coef} "
        f"coupling_temperature={training_args.coupling_temperature} epsilon={training_args.epsilon} "
        f"epsilon_high={training_args.epsilon_high} advantage_epsilon={training_args.advantage_epsilon}",
        f"batch on {world} process(es): {training_args.generation_batch_size // training_args.num_generations} "
        f"prompts x {training_args.num_generations} generations = {training_args.generation_batch_size} completions "
        f"per generation batch; "
        f"{training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world} "
        "completions per optimizer step",
    ]
    if script_args.passk_eval_dataset:
        plan.append(
            f"pass@k callback: {script_args.passk_eval_dataset}, k={ks}, {script_args.passk_eval_num_samples} "
            f"samples, every {script_args.passk_eval_steps or training_args.eval_steps} steps"
        )
    if dry_run and (misalignment := training_args.checkpoint_misalignment(world)) is not None:
        plan.append(f"WARNING: {misalignment}")
    if training_args.use_vllm and dry_run:
        try:
            import vllm  # noqa: F401  (a dry run checks what the real run will import)

            plan.append(f"vLLM: imports; {training_args.vllm_mode} mode")
        except Exception as error:  # missing, or built for another torch/CUDA
            plan.append(
                f"WARNING: use_vllm is set but vllm does not import here ({type(error).__name__}: {error}); install "
                "it (pip install 'trl[vllm]') or pass --use_vllm false to generate with transformers."
            )
    for line in plan:
        _say(line)
    if dry_run:
        _say("dry run: arguments valid; no weights loaded")
        return 0

    from trl import get_peft_config, get_quantization_config

    from ..trainer import DSDRGRPOTrainer
    from .launch import hold_output_dir

    if training_args.model_init_kwargs is None:
        init_kwargs: dict[str, Any] = {"revision": model_args.model_revision}
        if model_args.dtype not in (None, "auto"):
            init_kwargs["dtype"] = model_args.dtype
        if model_args.attn_implementation is not None:
            init_kwargs["attn_implementation"] = model_args.attn_implementation
        if (quantization := get_quantization_config(model_args)) is not None:
            from trl import get_kbit_device_map

            init_kwargs.update(quantization_config=quantization, device_map=get_kbit_device_map())
        training_args.model_init_kwargs = init_kwargs

    with hold_output_dir(training_args.output_dir):
        trainer = DSDRGRPOTrainer(
            model=model_name,
            reward_funcs=reward_funcs,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            peft_config=get_peft_config(model_args),
        )
        if passk_dataset is not None:
            from ..callbacks import PassAtKCallback

            trainer.add_callback(
                PassAtKCallback(
                    trainer,
                    passk_dataset["prompt"],
                    passk_dataset["solution"],
                    ks=ks,
                    num_samples=script_args.passk_eval_num_samples,
                    eval_steps=script_args.passk_eval_steps,
                    temperature=script_args.passk_eval_temperature,
                    top_p=script_args.passk_eval_top_p,
                    max_new_tokens=script_args.passk_eval_max_new_tokens or training_args.max_completion_length,
                    batch_size=training_args.per_device_eval_batch_size,
                    seed=training_args.seed,
                    prefix=script_args.passk_eval_prefix,
                )
            )
        if trainer.is_world_process_zero():  # `dsdr-trl eval` reads chat_template_kwargs and system_prompt back
            sections = {"script_args": asdict(script_args), "model_args": asdict(model_args)}
            save_run_config(training_args.output_dir, {**sections, "training_args": training_args.to_dict()})
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model(training_args.output_dir)
        _say(f"saved the model to {training_args.output_dir}")
        if training_args.push_to_hub:
            trainer.push_to_hub(dataset_name=hub_dataset_id(script_args.dataset_name))
        if hasattr(trainer, "end"):  # transformers >= 5.18 closes trackers and background pushes here
            trainer.end()
    return 0


USAGE = """usage: dsdr-trl train --config RECIPE [--field value ...] [--accelerate_config NAME --num_processes N]

  dsdr-trl train --config qwen3-1.7b/dsdr --dry_run     check a shipped recipe (`dsdr-trl recipes` lists them)
  dsdr-trl train --config my.yaml --learning_rate 2e-6   a YAML file; flags override its values
  dsdr-trl train --config qwen3-1.7b/dsdr --accelerate_config zero2 --num_processes 4   launch 4 processes

Run `dsdr-trl train --help` for every field."""


def _processes(launch_args: list[str]) -> int:
    """The process count a launch would start: `--num_processes`, else the accelerate config's, else this run's."""
    from accelerate.commands.config.config_args import load_config_from_file

    if (count := flag_value(launch_args, "--num_processes")) is not None:
        return int(count)
    if (config_file := flag_value(launch_args, "--config_file")) is not None:
        config = load_config_from_file(config_file)
        return int(config.num_processes or 1) * int(config.num_machines or 1)
    return int(os.environ.get("WORLD_SIZE", "1"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dsdr-trl train`; returns the exit status. See the module docstring."""
    import warnings

    from .launch import accelerate_option_hints, hold_output_dir, launch, split_launch_args
    from .recipes import prepare_recipe, resolve_recipe

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if "-h" in argv or "--help" in argv:
        make_parser().parse_args_into_dataclasses(["--help"])  # prints the help and exits
    script_argv = list(argv)
    recipe, path = pop_config(argv, resolve_recipe)  # before the heavy imports: a bad file fails at once
    parser = make_parser()
    recipe_launch = prepare_recipe(recipe, path) if path else []
    cli_launch, argv = split_launch_args(argv)
    # A flag overrides the recipe's key; inside a launched process (LOCAL_RANK is set) the launch is done.
    launch_args = [] if "LOCAL_RANK" in os.environ else _merge(split_launch_args(recipe_launch)[0], cli_launch)
    if "LOCAL_RANK" in os.environ:
        import signal

        # The launcher passes a SIGINT on to its processes; ending at once, as on SIGTERM, stops them all in seconds
        # (a KeyboardInterrupt unwinding through the process group can wait for the launcher's kill, 30 s later).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    dry_run = flag_value(argv, "--dry_run") not in (None, "false", "False", "0", "no") or "--dry_run" in argv[-1:]
    dry_run = dry_run or (flag_value(argv, "--dry_run") is None and recipe.get("dry_run") is True)
    import torch

    # Recipes written for GPUs set bf16, which TrainingArguments refuses on a CPU-only machine; a dry run loads no
    # weights, so it validates them as CPU runs there.
    if dry_run and not torch.cuda.is_available() and "--use_cpu" not in argv:
        argv += ["--use_cpu", "true"]
    with warnings.catch_warnings():
        if dry_run:  # the plan judges the checkpoints for the launch's process count instead
            warnings.filterwarnings("ignore", message="save_steps=")
        script_args, training_args, model_args = parse(parser, argv, recipe, "train", accelerate_option_hints())
    if launch_args and not dry_run:
        with user_input():
            validate(script_args, training_args, model_args)
        with hold_output_dir(training_args.output_dir):
            script_argv = split_launch_args(script_argv)[1]
            return launch(launch_args, script_argv, training_args.output_dir)
    return run(script_args, training_args, model_args, processes=_processes(launch_args))


def _merge(recipe: list[str], cli: list[str]) -> list[str]:
    merged = dict(zip(recipe[::2], recipe[1::2], strict=True))
    merged.update(zip(cli[::2], cli[1::2], strict=True))
    return [item for pair in merged.items() for item in pair]


if __name__ == "__main__":
    sys.exit(run_command("train", main))
