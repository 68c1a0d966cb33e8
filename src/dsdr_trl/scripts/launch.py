"""`dsdr-trl train`'s multi-process launch and the lock on its output_dir.

An accelerate config is named by its name (`ddp`, `zero2`, `zero3` shipped in `configs/accelerate/`, then TRL's own
`zero1`, `fsdp1`, `fsdp2`, `multi_gpu`, `single_gpu`) or a path.

`dsdr-trl train --accelerate_config zero2 --num_processes 8 --config ...` launches the training module through
accelerate's `launch_command` in its own process, as `trl grpo` does (`trl.cli.accelerate_launcher`): the launch flags
go to accelerate, every other argument to the processes it starts, and a signal to this process stops them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from .common import UsageError, read_config, user_input
from .recipes import LAUNCH_FLAGS, recipes_dir


def accelerate_option_hints() -> dict[str, str]:
    """What to do with a recipe key that is an `accelerate launch` option other than [`LAUNCH_FLAGS`] (`zero_stage`,
    `gpu_ids`, ...): such settings belong in an accelerate config file."""
    from accelerate.commands.launch import launch_command_parser

    options, _ = launch_command_parser().parse_known_args(["script"])
    advice = "an `accelerate launch` option: set it in an accelerate config file and pass --accelerate_config FILE"
    return {name: advice for name in vars(options) if f"--{name}" not in LAUNCH_FLAGS}


def resolve_accelerate_config(name: str) -> str:
    """`--accelerate_config`: a file, one of ours (`ddp`, `zero2`, `zero3`), or one TRL ships (`zero1`, `fsdp2`...),
    read as safe YAML and checked by accelerate's own loader (known keys and values) before anything is launched."""
    from accelerate.commands.config.config_args import load_config_from_file
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    ours = recipes_dir() / "accelerate" / f"{name}.yaml"
    with user_input():
        path = str(ours) if not Path(name).exists() and ours.is_file() else name
        path = resolve_accelerate_config_argument(["--accelerate_config", path])[1]
        read_config(path)
        load_config_from_file(path)
    return path


def split_launch_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Splits `argv` into `accelerate launch` arguments ([`LAUNCH_FLAGS`]) and the training script's arguments."""
    launch_args: list[str] = []
    script_args: list[str] = []
    index = 0
    while index < len(argv):
        flag, _, inline = argv[index].partition("=")
        if flag in LAUNCH_FLAGS:
            if inline:
                value, index = inline, index + 1
            elif index + 1 < len(argv):
                value, index = argv[index + 1], index + 2
            else:
                raise UsageError(f"{flag} needs a value.")
            if flag == "--accelerate_config":
                launch_args += ["--config_file", resolve_accelerate_config(value)]
            else:
                launch_args += [flag, value]
        else:
            script_args.append(argv[index])
            index += 1
    return launch_args, script_args


def launch(launch_args: list[str], script_args: list[str], locked: str, module: str = "dsdr_trl.scripts.train") -> int:
    """Runs `accelerate launch [launch_args] -m module [script_args]` in this process and returns its exit status:
    that of the first process that failed, or 128 + N after signal N, which reaches every launched process. The
    processes are told that this one holds the lock on `locked` (their output_dir).

    On a machine without CUDA, a multi-GPU config is launched with torchrun's CPU processes (gloo): accelerate's own
    `--cpu` starts a single process unless MPI is set up, so it is not used; mixed precision is switched off unless
    asked for, and every process needs `use_cpu: true` (the tiny recipe sets it).
    """
    import subprocess

    import torch
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if not torch.cuda.is_available() and "--mixed_precision" not in launch_args:
        launch_args = [*launch_args, "--mixed_precision", "no"]
    command = [*launch_args, "-m", module, *script_args]
    print(f"[dsdr-trl train] launching with accelerate.commands.launch: {' '.join(command)}", flush=True)
    # The launched processes print their own one-line errors; torch's agent would add a report of each failure.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ["DSDR_TRL_LOCKED"] = locked
    try:
        launch_command(launch_command_parser().parse_args(command))
    except SignalException as error:
        return 128 + int(error.sigval)
    except ChildFailedError as error:
        code = error.get_first_failure()[1].exitcode
        return code if code > 0 else 128 - code
    except subprocess.CalledProcessError as error:  # accelerate's one-process launcher
        return error.returncode if error.returncode > 0 else 128 - error.returncode
    finally:
        os.environ.pop("DSDR_TRL_LOCKED")
    return 0


@contextlib.contextmanager
def hold_output_dir(output_dir: str):
    """Holds a lock on `output_dir` for this run (a `filelock` lock, which the system releases when the process dies,
    so a killed run leaves none behind); a folder another run holds fails in one line. Only the first process of a
    launch takes it, and none where `launch` holds it."""
    from filelock import FileLock, Timeout

    if os.environ.get("DSDR_TRL_LOCKED") == output_dir or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    created = not Path(output_dir).exists()
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    lock = FileLock(Path(output_dir) / ".dsdr-trl.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UsageError(
            f"output_dir '{output_dir}' is in use by another dsdr-trl run; wait for it or pass another --output_dir."
        ) from None
    try:
        yield
    finally:
        lock.release()
        if created and [path.name for path in Path(output_dir).iterdir()] == [".dsdr-trl.lock"]:
            shutil.rmtree(output_dir)  # a run that failed before writing anything leaves nothing behind
