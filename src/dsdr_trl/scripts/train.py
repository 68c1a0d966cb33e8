"""`dsdr-trl train`: train a policy with DSDR (or a GRPO/DAPO baseline) from a YAML recipe; [`USAGE`] shows how.

The shape of TRL's `trl/scripts/grpo.py`: parse → validate → load → build the trainer → train → save. Every field of
[`DSDRScriptArguments`], [`~dsdr_trl.callbacks.PassAtKArguments`], [`~dsdr_trl.DSDRConfig`], TRL's `ModelConfig` and
[`~dsdr_trl.scripts.launch.LaunchArguments`] is a flag or a key of the `--config` YAML (flags win); a launch setting
starts the processes through accelerate's `launch_command` in this process, after the validation (`accelerate launch
-m dsdr_trl.scripts.train --config ...` works too). `--dry_run` also loads the data and the tokenizer (no weights),
checks that every prompt fits the model's context, and prints the plan.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import DATA_HELP, PromptArguments
from .arguments import (
    accelerate_option_hints,
    check_model,
    check_output_path,
    check_row_limits,
    flag_value,
    model_unavailable,
    parse,
    pop_config,
)
from .common import RUN_CONFIG_NAME, UsageError, run_command, user_input, write_json
from .launch import LaunchArguments


@dataclass
class DSDRScriptArguments(PromptArguments):
    """Data and reward arguments of `dsdr-trl train` (each field's help is in `--help`)."""

    dataset_name: str | None = field(default=None, metadata={"help": f"Training data: {DATA_HELP}."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub config (dapo-math-17k: en, cn, all)."})
    dataset_train_split: str | None = field(default=None, metadata={"help": "Default: the adapter's, else 'train'."})
    dataset_test_split: str | None = field(default=None, metadata={"help": "Split for TRL's eval_dataset; none."})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy"],
        metadata={
            "help": "Keys of dsdr_trl.rewards.REWARD_FUNCS (accuracy, TRL's accuracy_reward, ...) or dotted "
            "import paths from the working directory (my_rewards.format_reward); correctness_reward picks one."
        },
    )
    answer_extraction: str = field(
        default="lenient",
        metadata={"help": "How 'accuracy' finds answers: 'lenient', or 'strict' (\\boxed{} only, as TRL)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N eval rows."})
    dry_run: bool = field(
        default=False, metadata={"help": "Check arguments, rewards and data, print the plan, load no weights."}
    )


def make_parser():
    from trl import ModelConfig

    from ..callbacks import PassAtKArguments
    from ..config import DSDRConfig
    from .arguments import make_parser as make_trl_parser

    arguments = (DSDRScriptArguments, PassAtKArguments, DSDRConfig, ModelConfig, LaunchArguments)
    return make_trl_parser(arguments, "dsdr-trl train")


def _say(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[dsdr-trl train] {message}", flush=True)


def resolve_checkpoint(value: str | None, output_dir: str) -> str | None:
    """The checkpoint to resume from: `auto` or `true` is the last one in `output_dir` (none: start fresh). Every
    file of it must load (JSON parses, safetensors and torch archives open); a damaged one is named in one line."""
    import zipfile

    from safetensors import safe_open
    from transformers.trainer_utils import get_last_checkpoint

    if value is not None and value.lower() in ("auto", "true"):
        value = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        _say(f"resuming from {value}" if value else f"no checkpoint in {output_dir}: starting fresh")
    if value is not None and not Path(value).is_dir():
        raise UsageError(f"--resume_from_checkpoint '{value}' is not a folder; pass a checkpoint-N folder or auto.")
    opens = {".json": lambda f: json.loads(f.read_text()), ".safetensors": lambda f: safe_open(str(f), "pt").keys()}
    opens.update(dict.fromkeys((".pt", ".pth", ".bin"), lambda f: zipfile.ZipFile(f).close()))
    for file in sorted(Path(value).iterdir()) if value else ():
        try:
            opens.get(file.suffix, bool)(file)
        except Exception as error:
            raise UsageError(
                f"checkpoint file '{file}' is damaged ({str(error).splitlines()[0][:120]}); resume from another "
                "checkpoint or remove this one."
            ) from error
    return value


def validate(script_args: DSDRScriptArguments, passk_args: Any, args: Any, model_args: Any) -> tuple[list, list[int]]:
    """Every check of the arguments alone, run by the dry run, the real run and before a launch; nothing is created.
    Returns the reward functions and the k of the pass@k callback."""
    from ..metrics import parse_ks
    from ..rewards import load_reward_funcs, verifier_workers

    s, p = script_args, passk_args
    if not s.dataset_name:
        raise UsageError("no training data: set dataset_name in the recipe or pass --dataset_name NAME_OR_FILE.")
    if not model_args.model_name_or_path:
        raise UsageError("no model: set model_name_or_path in the recipe or pass --model_name_or_path.")
    check_row_limits(max_train_samples=s.max_train_samples, max_eval_samples=s.max_eval_samples)
    check_row_limits(passk_eval_limit=p.passk_eval_limit)
    check_output_path(args.output_dir, "output_dir", directory=True)
    for name, temperature, top_p in [
        ("", args.temperature, args.top_p),
        ("passk_eval_", p.passk_eval_temperature, p.passk_eval_top_p),
    ]:
        if not temperature > 0 or not 0 < top_p <= 1:
            raise UsageError(
                f"{name}temperature must be > 0 and 0 < {name}top_p <= 1, got {temperature} and {top_p}; sampling "
                "needs them (the paper: temperature 1.0 in training, 0.7 in evaluation, top_p 0.9)."
            )
    verifier_workers()
    num_samples = p.passk_eval_num_samples if p.passk_eval_dataset else None
    ks = parse_ks(p.passk_eval_k, num_samples, "passk_eval_num_samples")
    # A dotted path names a module of the user's project, as with `trl grpo` (a console script's sys.path[0] is bin/).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    rewards = load_reward_funcs(
        s.reward_funcs, args.max_completion_length, s.answer_extraction, args.correctness_reward
    )
    args.resume_from_checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    return rewards, ks


def _load(script_args: DSDRScriptArguments, name: str | None, split: str | None, limit: int | None):
    """The dataset (`None` for none), or `None` in a dry run when a Hub dataset is out of reach. The column, config and
    template flags describe the training dataset; the pass@k dataset keeps its adapter's (or the default) format."""
    from ..data import DatasetUnavailableError, load_math_dataset, looks_local

    if not name:
        return None
    prompts = {key: getattr(script_args, key) for key in PromptArguments.__dataclass_fields__}
    own = name == script_args.dataset_name
    prompts.update({} if own else dict.fromkeys(("prompt_column", "solution_column", "prompt_template")))
    try:
        config = script_args.dataset_config if own else None
        return load_math_dataset(name, config=config, split=split, limit=limit, **prompts)
    except DatasetUnavailableError as error:
        if not script_args.dry_run or looks_local(name):
            raise
        _say(f"dataset '{name}': columns not checked: {str(error).split('. Download')[0]}. A real run needs it.")


def _check_model_and_prompts(model_args: Any, args: Any, datasets: list[tuple[str, Any]], dry_run: bool) -> str:
    """Loads the model's config and tokenizer (no weights) and returns the plan's model line. A model out of reach
    fails here in one line, in seconds (a dry run notes it for a Hub id), and so does a prompt that leaves no room in
    the model's context."""
    from transformers import AutoConfig, AutoProcessor

    from ..data import longest_prompt, looks_local

    name = model_args.model_name_or_path
    options = {"revision": model_args.model_revision, "trust_remote_code": args.trust_remote_code}
    try:
        if reason := check_model(name, args.trust_remote_code, "pass --trust_remote_code true if you trust it"):
            raise ConnectionError(reason)
        config, processor = AutoConfig.from_pretrained(name, **options), AutoProcessor.from_pretrained(name, **options)
    except OSError as error:
        unavailable = model_unavailable(name, error, "--model_name_or_path")
        if dry_run and not looks_local(name):  # as for a Hub dataset
            return f"model: {name}: not checked: {unavailable}"
        raise unavailable from error
    context = getattr(config.get_text_config(), "max_position_embeddings", None)
    if not context:
        return f"model: {name}"
    longest = longest_prompt(datasets, processor, context, **(args.chat_template_kwargs or {}))
    return f"model: {name} (context {context} tokens; longest prompt {longest})"


def _plan(s: DSDRScriptArguments, p: Any, args: Any, processes: int, rewards: list, ks: list[int]) -> list[str]:
    """What the run will do, for the plan the dry run (and the real run) prints after the model line."""
    from trl.trainer.utils import get_callable_name

    names = [get_callable_name(func) for func in rewards]
    dsdr = ("diversity_coef", "local_entropy_coef", "coupling_temperature", "epsilon", "epsilon_high")
    prompts, per_step = args.generation_batch_size // args.num_generations, args.per_device_train_batch_size
    plan = [
        f"rewards: {names}; correctness: {args.correctness_reward or names[0]}",
        "DSDR: " + " ".join(f"{key}={getattr(args, key)}" for key in (*dsdr, "advantage_epsilon")),
        f"batch on {processes} process(es): {prompts} prompts x {args.num_generations} generations = "
        f"{args.generation_batch_size} completions per generation batch; "
        f"{per_step * args.gradient_accumulation_steps * processes} completions per optimizer step",
    ]
    if p.passk_eval_dataset:
        every = p.passk_eval_steps or args.eval_steps
        plan.append(
            f"pass@k callback: {p.passk_eval_dataset}, k={ks}, {p.passk_eval_num_samples} samples, every {every} steps"
        )
    if s.dry_run and (misalignment := args.checkpoint_misalignment(processes)) is not None:
        plan.append(f"WARNING: {misalignment}")
    if s.dry_run and args.use_vllm:
        try:
            import vllm  # noqa: F401  (a dry run checks what the real run will import)

            plan.append(f"vLLM: imports; {args.vllm_mode} mode")
        except Exception as error:  # missing, or built for another torch/CUDA
            plan.append(
                f"WARNING: use_vllm is set but vllm does not import here ({type(error).__name__}: {error}); install "
                "it (pip install 'trl[vllm]') or pass --use_vllm false to generate with transformers."
            )
    return plan


def run(script_args: DSDRScriptArguments, passk_args: Any, args: Any, model_args: Any, processes: int) -> int:
    """Validates, loads the data, checks the prompts against the model's context and prints the plan for `processes`;
    then, unless a dry run, trains and saves the model."""
    s, p = script_args, passk_args
    with user_input():
        reward_funcs, ks = validate(s, p, args, model_args)
        train = _load(s, s.dataset_name, s.dataset_train_split, s.max_train_samples)
        test_split = s.dataset_test_split if args.eval_strategy != "no" else None
        test = _load(s, test_split and s.dataset_name, test_split, s.max_eval_samples)
        passk = _load(s, p.passk_eval_dataset, p.passk_eval_split, p.passk_eval_limit)
        labels = (s.dataset_name, f"{s.dataset_name}, split {test_split}", p.passk_eval_dataset)
        datasets = list(zip(labels, (train, test, passk), strict=True))
        model_line = _check_model_and_prompts(model_args, args, datasets, s.dry_run)
    data_line = f"data: {s.dataset_name}" + (f" ({len(train)} rows, columns {train.column_names})" if train else "")
    for line in [model_line, data_line, *_plan(s, p, args, processes, reward_funcs, ks)]:
        _say(line)
    if s.dry_run:
        _say("dry run: arguments valid; no weights loaded")
        return 0

    from trl import get_peft_config, get_quantization_config

    from ..data import hub_dataset_id
    from ..trainer import DSDRGRPOTrainer
    from .launch import hold_output_dir

    init = {"revision": model_args.model_revision, "trust_remote_code": args.trust_remote_code}
    init.update(attn_implementation=model_args.attn_implementation, dtype=model_args.dtype)
    args.model_init_kwargs = {**init, **(args.model_init_kwargs or {})}  # as TRL's grpo script builds them
    with hold_output_dir(args.output_dir):
        trainer = DSDRGRPOTrainer(
            model_args.model_name_or_path,
            reward_funcs,
            args,
            train_dataset=train,
            eval_dataset=test,
            peft_config=get_peft_config(model_args),
            quantization_config=get_quantization_config(model_args),
        )
        if passk is not None:
            trainer.add_callback(p.passk_callback(trainer, passk))
        if trainer.is_world_process_zero():  # `dsdr-trl eval` reads chat_template_kwargs and system_prompt back
            saved = {"script_args": asdict(s), "passk_args": asdict(p), "model_args": asdict(model_args)}
            saved["training_args"] = args.to_dict()
            write_json(Path(args.output_dir) / RUN_CONFIG_NAME, json.loads(json.dumps(saved, default=str)))
        trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        trainer.save_model(args.output_dir)
        _say(f"saved the model to {args.output_dir}")
        if args.push_to_hub:
            trainer.push_to_hub(dataset_name=hub_dataset_id(s.dataset_name))
        if hasattr(trainer, "end"):  # transformers >= 5.18 closes trackers and background pushes here
            trainer.end()
    return 0


USAGE = """usage: dsdr-trl train --config RECIPE [--field value ...] [--accelerate_config NAME --num_processes N]

  dsdr-trl train --config qwen3-1.7b/dsdr --dry_run     check a shipped recipe (`dsdr-trl recipes` lists them)
  dsdr-trl train --config my.yaml --learning_rate 2e-6   a YAML file; flags override its values
  dsdr-trl train --config qwen3-1.7b/dsdr --accelerate_config zero2 --num_processes 4   launch 4 processes

Run `dsdr-trl train --help` for every field."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dsdr-trl train`; returns the exit status. See the module docstring."""
    from .recipes import prepare_recipe, resolve_recipe

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if "-h" in argv or "--help" in argv:
        make_parser().parse_args_into_dataclasses(["--help"])  # prints the help and exits
    script_argv = list(argv)  # what the launched processes get
    recipe, path = pop_config(argv, resolve_recipe)  # before the heavy imports: a bad file fails at once
    if path:
        prepare_recipe(recipe, path)
    import torch

    from .launch import hold_output_dir, launch, launch_settings

    given = flag_value(argv, "--dry_run")
    dry_run = given not in (None, "false", "False", "0", "no") or "--dry_run" in argv[-1:]
    dry_run = dry_run or (given is None and recipe.get("dry_run") is True)
    # Recipes written for GPUs set bf16, which TrainingArguments refuses without CUDA; a dry run loads no weights, so
    # it validates them as CPU runs there.
    if dry_run and not torch.cuda.is_available() and "--use_cpu" not in argv:
        argv += ["--use_cpu", "true"]
    with warnings.catch_warnings():
        if dry_run:  # the plan judges the checkpoints for the launch's process count instead
            warnings.filterwarnings("ignore", message="save_steps=")
        hints = accelerate_option_hints(LaunchArguments.__dataclass_fields__)
        *arguments, launch_args = parse(make_parser(), argv, recipe, "train", hints)
    if "LOCAL_RANK" in os.environ:  # a launched process
        # The launcher passes a SIGINT on to its processes; ending at once, as on SIGTERM, stops them all in seconds
        # (a KeyboardInterrupt unwinding through the process group can wait for the launcher's kill, 30 s later).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        return run(*arguments, int(os.environ.get("WORLD_SIZE", "1")))
    flags, processes = launch_settings(launch_args)
    if not flags or dry_run:
        return run(*arguments, processes)
    with user_input():
        validate(*arguments)
    with hold_output_dir(arguments[2].output_dir):
        return launch(flags, script_argv, arguments[2].output_dir)


if __name__ == "__main__":
    sys.exit(run_command("train", main))
