"""`dsdr-trl train`'s multi-process launch, in this process as `trl grpo` does it (so a signal to it stops every
launched process), and the lock on its output_dir."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .common import UsageError
from .recipes import resolve_accelerate_config


@dataclass
class LaunchArguments:
    """`accelerate launch` settings; any of them launches the processes with accelerate's `launch_command`."""

    accelerate_config: str | None = field(
        default=None, metadata={"help": "ddp, zero2, zero3 (ours), TRL's zero1, fsdp1, fsdp2, ..., or a file."}
    )
    num_processes: int | None = field(default=None, metadata={"help": "Processes in all (all machines)."})
    num_machines: int | None = field(default=None, metadata={"help": "Machines of a multi-node launch."})
    machine_rank: int | None = field(default=None, metadata={"help": "This machine's rank."})
    main_process_ip: str | None = field(default=None, metadata={"help": "Address of the machine of rank 0."})
    main_process_port: int | None = field(default=None, metadata={"help": "Port of the machine of rank 0."})
    mixed_precision: str | None = field(default=None, metadata={"help": "no, fp16 or bf16 (accelerate's)."})


def launch_settings(launch_args: LaunchArguments) -> tuple[list[str], int]:
    """The `accelerate launch` flags of `launch_args` (`accelerate_config` resolved to its file; unset ones left out)
    and the number of processes they start (without any, this run's)."""
    from accelerate.commands.config.config_args import load_config_from_file

    settings = {key: value for key, value in asdict(launch_args).items() if value is not None}
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if "accelerate_config" in settings:
        settings["config_file"] = resolve_accelerate_config(settings.pop("accelerate_config"))
        config = load_config_from_file(settings["config_file"])
        processes = int(config.num_processes or 1) * int(config.num_machines or 1)
    flags = [item for key, value in settings.items() for item in (f"--{key}", str(value))]
    return flags, int(settings.get("num_processes", processes))


def launch(launch_args: list[str], script_args: list[str], locked: str) -> int:
    """Runs `accelerate launch [launch_args] -m dsdr_trl.scripts.train [script_args]` in this process; returns the
    exit status of the first process that failed, or 128 + N after signal N. The processes are told that this one
    holds the lock on `locked` (their output_dir). Without CUDA, a multi-GPU config starts torchrun's CPU processes
    (gloo), with mixed precision off unless asked for; the recipe sets `use_cpu: true`."""
    import subprocess

    import torch
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if not torch.cuda.is_available() and "--mixed_precision" not in launch_args:
        launch_args = [*launch_args, "--mixed_precision", "no"]
    command = [*launch_args, "-m", "dsdr_trl.scripts.train", *script_args]
    print(f"[dsdr-trl train] launching with accelerate.commands.launch: {' '.join(command)}", flush=True)
    # The launched processes print their own one-line errors; torch's agent would add a report of each failure.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ["DSDR_TRL_LOCKED"] = locked
    try:
        launch_command(launch_command_parser().parse_args(command))
    except SignalException as error:
        return 128 + int(error.sigval)
    except (ChildFailedError, subprocess.CalledProcessError) as error:  # torchrun's, or accelerate's one-process
        code = error.get_first_failure()[1].exitcode if isinstance(error, ChildFailedError) else error.returncode
        return code if code > 0 else 128 - code
    finally:
        os.environ.pop("DSDR_TRL_LOCKED")
    return 0


@contextlib.contextmanager
def hold_output_dir(output_dir: str):
    """Holds a `filelock` lock on `output_dir` (the system releases it when the process dies, so a killed run leaves
    none behind); a folder another run holds fails in one line. Only the first process of a launch takes it, and none
    where `launch` holds it. A run that fails before writing anything leaves no folder behind."""
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
            shutil.rmtree(output_dir)
