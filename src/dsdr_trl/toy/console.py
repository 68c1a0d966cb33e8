"""What `dsdr-trl demo` shows on the console, and where the rest goes.

Without `--verbose`, each training run is one [`TrainingBar`] with a few live figures; TRL's full per-step metrics go
to the run's files instead of the terminal (`metrics.jsonl`, one JSON line per logged step, and `trainer_state.json`),
and the libraries' notices that a reader of the demo cannot act on are silenced ([`quiet_run`]). `--verbose`
keeps TRL's console (its bar and a dictionary of metrics per step) and every notice.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import ProgressCallback, TrainerCallback

METRICS_FILE = "metrics.jsonl"

# Logged steps averaged into the bar's figures: a single step of 8 groups moves them by an eighth.
WINDOW = 10


class MetricsFile(TrainerCallback):
    """Appends every log entry of the Trainer to `path` as one JSON line, with its `step` (main process only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a") as file:
                file.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class TrainingBar(ProgressCallback):
    """transformers' bar over the training steps, with the reward, dead groups before → after shaping and the leading
    strategy's share (trailing means over the last [`WINDOW`] logged steps) as its postfix, instead of a dictionary
    of metrics printed under it at every step."""

    def __init__(self, description: str):
        super().__init__()
        self.description = description
        self.recent: deque[dict[str, float]] = deque(maxlen=WINDOW)

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.description)
            self.training_bar.unit = "step"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "reward" in logs:
            self.recent.append({k: v for k, v in logs.items() if isinstance(v, int | float)})
            self.training_bar.set_postfix_str(self.figures())

    def figures(self) -> str:
        """`reward 0.41 · dead groups 0.38 → 0.25 · carry3 72 %` from the recent log entries."""

        def mean(key: str) -> float | None:
            values = [entry[key] for entry in self.recent if key in entry]
            return sum(values) / len(values) if values else None

        parts = [f"reward {mean('reward'):.2f}"]
        before, after = mean("dsdr/frac_zero_std_before"), mean("dsdr/frac_zero_std_after")
        if before is not None and after is not None:
            parts.append(f"dead groups {before:.2f} → {after:.2f}")
        shares = {key.removeprefix("toy/share_"): mean(key) for key in self.recent[-1] if key.startswith("toy/share_")}
        if shares:
            leader = max(shares, key=lambda name: shares[name])
            parts.append(f"{leader} {100 * shares[leader]:.0f} %")
        return " · ".join(parts)


def quiet_run(run: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates `run(settings, ...)` so that it runs without plots (said in one line) when matplotlib (the `demo`
    extra) is missing, and, unless `settings.verbose`, quietly: transformers logs errors only and draws no loading
    bars, transformers' and TRL's deprecation warnings are hidden, and DeepSpeed is told it runs on CPU when no GPU is
    there (which it would otherwise announce as a warning). Everything is restored afterwards."""

    @functools.wraps(run)
    def wrapper(settings: Any, *args: Any, **kwargs: Any) -> Any:
        import torch
        from transformers.utils import logging as hf_logging

        if settings.plots and importlib.util.find_spec("matplotlib") is None:
            print('[demo] matplotlib is not installed, so no plots are drawn: pip install "dsdr-trl[demo]"')
            settings = dataclasses.replace(settings, plots=False)
        if settings.verbose:
            return run(settings, *args, **kwargs)
        print(
            f"[demo] TRL's per-step metrics go to {settings.output_dir}/runs/*/{METRICS_FILE} and trainer_state.json "
            "(--verbose prints them)"
        )
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        set_accelerator = "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if set_accelerator:
            os.environ["DS_ACCELERATOR"] = "cpu"  # what DeepSpeed would choose itself here, without saying so
        try:
            with warnings.catch_warnings():
                for category in (FutureWarning, DeprecationWarning):
                    warnings.filterwarnings("ignore", category=category, module="(transformers|trl)")
                return run(settings, *args, **kwargs)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
            if set_accelerator:
                os.environ.pop("DS_ACCELERATOR", None)

    return wrapper
