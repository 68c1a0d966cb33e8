"""Math datasets for training and evaluation, mapped to `prompt`, `solution` and `problem` columns.

A dataset is a named adapter of [`DATASETS`] (Hub id, config, split, columns, answer format), a local file
(`.jsonl`, `.json`, `.parquet`, `.csv`) or `save_to_disk` directory, or any other Hub id. Every other column stays,
since TRL hands each one to the reward functions. Rows without a usable reference are dropped with a logged warning.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from huggingface_hub import is_offline_mode

__all__ = ["DATASETS", "LOCAL_SUFFIXES", "PROMPT_TEMPLATES", "DatasetSpec", "DatasetUnavailableError", "looks_local"]
__all__ += ["hub_dataset_id", "hub_unreachable_reason", "load_math_dataset", "longest_prompt", "prompt_lengths"]
__all__ += ["resolve_prompt_template"]

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}

# `{problem}` is replaced by the problem text. "answer-line" is the instruction DAPO-Math-17k's prompts carry, so
# evaluating with it matches the training distribution; "boxed" is the Qwen-Math convention.
PROMPT_TEMPLATES = {
    "answer-line": (
        "Solve the following math problem step by step. The last line of your response should be of the form "
        "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{problem}\n\n"
        'Remember to put your answer on its own line after "Answer:".'
    ),
    "boxed": "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}.",
    "plain": "{problem}",
}

_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


class DatasetUnavailableError(FileNotFoundError):
    """A dataset that cannot be read: a missing local file, or a Hub dataset out of reach."""


def gsm8k_answer(answer: str) -> str:
    """The final number of a GSM8K answer (the text after `####`), thousands separators removed."""
    match = _GSM8K_ANSWER.search(answer)
    return (match.group(1) if match else answer).replace(",", "").strip()


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark's Hub `path`, `config` and `split`, candidate problem and answer columns (the first present is
    used), and its [`PROMPT_TEMPLATES`] name or template."""

    path: str
    split: str
    prompt_columns: tuple[str, ...]
    solution_columns: tuple[str, ...]
    config: str | None = None
    template: str = "answer-line"


DATASETS: dict[str, DatasetSpec] = {
    # DSDR's training set, deduplicated (configs all/en/cn). Its prompts already carry DAPO's "Answer: ..." line.
    "dapo-math-17k": DatasetSpec(
        "open-r1/DAPO-Math-17k-Processed", "train", ("prompt",), ("solution",), config="en", template="plain"
    ),
    "math500": DatasetSpec("HuggingFaceH4/MATH-500", "test", ("problem",), ("answer",)),  # 500 problems
    "aime24": DatasetSpec("HuggingFaceH4/aime_2024", "train", ("problem",), ("answer",)),  # 30 problems
    "aime25": DatasetSpec("yentinglin/aime_2025", "train", ("problem", "question"), ("answer",)),  # 30 problems
    "minerva": DatasetSpec("math-ai/minervamath", "test", ("question", "problem"), ("answer",)),  # 272 problems
    # English math, open-ended, text-only: 675 problems.
    "olympiadbench": DatasetSpec("math-ai/olympiadbench", "test", ("question", "problem"), ("answer", "final_answer")),
    # 1319 test problems; the reference is the number after ####.
    "gsm8k": DatasetSpec("openai/gsm8k", "test", ("question",), ("answer",), config="main"),
}
# Any other dataset. `answer` first: MATH-500 and AIME copies also carry a worked `solution`, DAPO-Math has only that.
_ANY_DATASET = DatasetSpec(
    "", "train", ("prompt", "problem", "question"), ("answer", "solution", "final_answer"), template="plain"
)

# What a dataset argument takes, in the commands' `--help`.
DATA_HELP = f"a named adapter ({', '.join(DATASETS)}), a local {'/'.join(LOCAL_SUFFIXES)} file, or a Hub dataset id"


def resolve_prompt_template(template: str | None, default: str = "plain") -> str:
    """The template text for a [`PROMPT_TEMPLATES`] name or a custom template containing `{problem}`."""
    template = default if template is None else template
    if template in PROMPT_TEMPLATES:
        return PROMPT_TEMPLATES[template]
    if "{problem}" not in template:
        raise ValueError(
            f"prompt_template must be one of {sorted(PROMPT_TEMPLATES)} or a text containing '{{problem}}', "
            f"got {template!r}."
        )
    return template


@dataclass
class PromptArguments:
    """How dataset rows become prompts; shared by `dsdr-trl train` and `dsdr-trl eval`."""

    prompt_column: str | None = field(
        default=None, metadata={"help": "Problem column; default: the first of prompt/problem/question."}
    )
    solution_column: str | None = field(
        default=None, metadata={"help": "Reference-answer column; default: the first of answer/solution/final_answer."}
    )
    prompt_template: str | None = field(
        default=None,
        metadata={"help": "'answer-line', 'boxed', 'plain' or a text containing {problem}; default: the adapter's."},
    )
    conversational: bool = field(
        default=True, metadata={"help": "Send prompts as chat messages, rendered by the tokenizer's chat template."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "System message for conversational prompts."})


def looks_local(name: str) -> bool:
    """Whether `name` is meant as a local path rather than a Hub id (`org/name`)."""
    path = Path(name).expanduser()
    if path.suffix.lower() in LOCAL_SUFFIXES or name.startswith((".", "/", "~")) or path.exists():
        return True
    # A Hub id is `name` or `org/name`, and its organisation is not a local directory.
    return name.count("/") > 1 or name.count("/") == 1 and path.parent.is_dir()


def _load_local(path: str, split: str | None):
    from datasets import load_dataset, load_from_disk

    file = Path(path)
    if not file.exists():
        raise DatasetUnavailableError(f"Dataset file '{path}' does not exist.")
    if file.is_dir():
        loaded = load_from_disk(str(file))
        if hasattr(loaded, "keys"):  # a DatasetDict
            if split not in loaded:
                raise ValueError(f"'{path}' has splits {list(loaded.keys())}, not '{split}'; pass one of them.")
            loaded = loaded[split]
        return loaded
    _check_has_rows(file)
    try:
        return load_dataset(LOCAL_SUFFIXES[file.suffix.lower()], data_files=str(file), split="train")
    except Exception as error:  # datasets wraps the parser's error (JSON, CSV, Parquet) in its own types
        raise ValueError(_unreadable_reason(file, error)) from error


def _check_has_rows(file: Path) -> None:
    """Refuses a local file with no rows (empty, blank, or a CSV header alone), which `datasets` would not name."""
    if file.stat().st_size == 0:
        raise ValueError(f"Dataset file '{file}' is empty; it needs one row per problem.")
    if file.suffix.lower() not in (".jsonl", ".json", ".csv"):
        return  # a binary format (parquet, a save_to_disk folder) says itself what is wrong with it
    with file.open(encoding="utf-8", errors="replace") as lines:
        filled = (line for line in lines if line.strip())
        if next(filled, None) is None:
            raise ValueError(f"Dataset file '{file}' is empty; it needs one row per problem.")
        if file.suffix.lower() == ".csv" and next(filled, None) is None:
            raise ValueError(f"Dataset file '{file}' has a header but no rows; it needs one row per problem.")


def _unreadable_reason(file: Path, error: Exception) -> str:
    """Why `datasets` could not read a local file: the first line that is not JSON, for JSON Lines, else the cause."""
    if file.suffix.lower() == ".jsonl":
        with file.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except ValueError as bad:
                    return (
                        f"Dataset file '{file}': line {number} is not valid JSON ({bad}); correct or remove that line "
                        "(JSON Lines holds one JSON object per line)."
                    )
    cause = error.__cause__ or error
    reason = str(cause).strip().split("\n")[0] or type(cause).__name__
    return (
        f"Dataset file '{file}' cannot be read as {LOCAL_SUFFIXES[file.suffix.lower()]} ({reason}); correct the file."
    )


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be reached, found in at most `timeout` seconds (`datasets` retries for tens of seconds); `None`
    when it may be reachable, or behind a proxy, where a direct connection says nothing."""
    if is_offline_mode():
        return "HF_HUB_OFFLINE is set and it is not in the local cache"
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        return f"{host} cannot be reached: {error}; if it is in your local cache, set HF_HUB_OFFLINE=1"
    return None


def _load_hub(path: str, config: str | None, split: str):
    from datasets import load_dataset

    hint = (
        f"Download it on a machine with network access (e.g. `datasets.load_dataset({path!r}"
        + (f", {config!r}" if config else "")
        + f", split={split!r}).to_json('data.jsonl')`) and pass that local file as the dataset instead, with "
        "--prompt_column/--solution_column if its columns differ."
    )
    if not is_offline_mode() and (reason := hub_unreachable_reason()) is not None:
        raise DatasetUnavailableError(f"Could not load the Hub dataset '{path}' ({reason}). {hint}")
    try:
        return load_dataset(path, config, split=split)
    except Exception as error:  # datasets raises many types here (connection, offline, missing repo or split)
        reason = hub_unreachable_reason() if is_offline_mode() else str(error).split("\n")[0]
        raise DatasetUnavailableError(f"Could not load the Hub dataset '{path}' ({reason}). {hint}") from error


def _pick(columns: Sequence[str], candidates: Sequence[str], given: str | None, role: str, name: str) -> str:
    if given is not None:
        if given not in columns:
            raise ValueError(f"Dataset '{name}' has no {role} column '{given}'; its columns are {list(columns)}.")
        return given
    for candidate in candidates:
        if candidate in columns:
            return candidate
    raise ValueError(
        f"Dataset '{name}' has no {role} column (looked for {list(candidates)}); its columns are {list(columns)}. "
        f"Name it with --{role}_column."
    )


def _answer_text(value: Any) -> str | None:
    """A solution cell as the reference text: `""` when empty, `None` for a type no answer matches (a boolean, a
    mapping). OlympiadBench stores a list of answers, GSM8K a solution ending in `#### N`; both rules apply to all."""
    if isinstance(value, (list, tuple)):
        return _answer_text(value[0]) if value else ""
    if isinstance(value, (numbers.Real, Decimal)) and not isinstance(value, bool):
        from .rewards import number_text  # the verifier imports TRL and SymPy, which `--help` should not wait for

        return number_text(value) or ""  # NaN and infinities are missing answers, as an empty cell is
    if value is None:
        return ""
    if not isinstance(value, str):
        return None
    return (gsm8k_answer(value) if "####" in value else value).strip()


def hub_dataset_id(name_or_path: str | None) -> str | None:
    """The Hub id behind a dataset argument, for the model card: an adapter's id, a Hub id as is, `None` for a file."""
    if name_or_path in DATASETS:
        return DATASETS[name_or_path].path
    return None if name_or_path is None or looks_local(name_or_path) else name_or_path


def load_math_dataset(
    name_or_path: str,
    config: str | None = None,
    split: str | None = None,
    prompt_column: str | None = None,
    solution_column: str | None = None,
    prompt_template: str | None = None,
    conversational: bool = True,
    system_prompt: str | None = None,
    limit: int | None = None,
):
    """A math dataset as `prompt`, `solution` and `problem` columns, then every other column of the source.

    `name_or_path`: a key of [`DATASETS`], a local file or `save_to_disk` directory, or a Hub id. `config`, `split`,
    the columns and `prompt_template` (a [`PROMPT_TEMPLATES`] name or a text with `{problem}`) default to the
    adapter's, else to `"train"`, the first present of `prompt`/`problem`/`question` and of
    `answer`/`solution`/`final_answer`, and `"plain"`. `conversational` makes `prompt` a conversation (with
    `system_prompt` first, and a conversation column keeps its messages, the template applied to its last user
    message). `solution` is the reference as text (a GSM8K answer's number after `####`; the first of a list).
    `limit` keeps the first rows that have a reference. Raises `DatasetUnavailableError` for a missing file or an
    unreachable Hub, `ValueError` for a missing column, an unparsable or empty file, or no usable reference.
    """
    spec = DATASETS.get(name_or_path) or replace(_ANY_DATASET, path=name_or_path)
    split = split or spec.split
    if name_or_path not in DATASETS and looks_local(name_or_path):
        dataset = _load_local(name_or_path, split)
    else:
        dataset = _load_hub(spec.path, config or spec.config, split)
    template = resolve_prompt_template(prompt_template, spec.template)

    columns = dataset.column_names
    problem_col = _pick(columns, spec.prompt_columns, prompt_column, "prompt", name_or_path)
    solution_col = _pick(columns, spec.solution_columns, solution_column, "solution", name_or_path)
    if len(dataset) == 0:
        raise ValueError(f"Dataset '{name_or_path}' (split '{split}') has no rows.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of rows, got {limit}; pass None to keep every row.")
    dataset = _drop_rows_without_answer(dataset, solution_col, name_or_path, split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))

    sample = dataset[0][problem_col]
    is_chat = _is_conversation(sample)
    if not isinstance(sample, str) and not is_chat:
        raise ValueError(
            f"Column '{problem_col}' of '{name_or_path}' holds {type(sample).__name__} values, neither problem text "
            "nor a conversation (a list of {'role', 'content'} messages); point --prompt_column at such a column."
        )
    if is_chat and not conversational:
        raise ValueError(
            f"Column '{problem_col}' of '{name_or_path}' holds conversations, which need a chat template; drop "
            "--conversational false, or point --prompt_column at a text column."
        )

    def to_row(row: dict[str, Any]) -> dict[str, Any]:
        source = row[problem_col]
        prompt: Any = [dict(message) for message in source] if is_chat else [{"role": "user", "content": source}]
        users = [i for i, message in enumerate(prompt) if message.get("role") == "user"]
        if not users:
            raise ValueError(f"A conversation in column '{problem_col}' of '{name_or_path}' has no user message.")
        problem = prompt[users[-1]]["content"]
        prompt[users[-1]]["content"] = template.replace("{problem}", problem)
        if system_prompt and prompt[0].get("role") != "system":
            prompt = [{"role": "system", "content": system_prompt}, *prompt]
        prompt = prompt if conversational else prompt[-1]["content"]  # the text of the one user message
        return {"prompt": prompt, "solution": _answer_text(row[solution_col]), "problem": problem}

    # The new columns replace same-named ones (a worked `solution` next to `answer` becomes the answer); every other
    # column stays for the reward functions. The source prompt column goes when its content now lives in `prompt`.
    drop = [problem_col] if problem_col not in ("prompt", "problem") else []
    mapped = dataset.map(to_row, remove_columns=drop, desc=None)
    first = ["prompt", "solution", "problem"]
    return mapped.select_columns(first + [name for name in mapped.column_names if name not in first])


def _drop_rows_without_answer(dataset, solution_col: str, name: str, split: str):
    """The rows whose reference is text or a number (no other can be scored); none left is an error."""
    texts = [_answer_text(value) for value in dataset[solution_col]]
    empty = [index for index, text in enumerate(texts) if text == ""]
    wrong = [index for index, text in enumerate(texts) if text is None]
    if len(empty) + len(wrong) == len(dataset):
        content = "empty" if not wrong else f"empty or of a type no answer matches ({len(wrong)} of them)"
        raise ValueError(
            f"Dataset '{name}' (split '{split}'): the solution column '{solution_col}' is {content} in all "
            f"{len(dataset)} rows; point --solution_column at the column holding the reference answers."
        )
    for rows, what, fix in (
        (empty, "is empty", "fill in their answers"),
        (wrong, "holds a boolean, a mapping or a list of neither text nor numbers", "write their answers as text"),
    ):
        if rows:
            shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            logger.warning(
                "Dataset '%s' (split '%s'): dropped %d of %d rows whose solution column '%s' %s (rows %s); %s to keep "
                "them.",
                *(name, split, len(rows), len(dataset), solution_col, what, shown, fix),
            )
    return dataset.select([index for index, text in enumerate(texts) if text]) if empty or wrong else dataset


def prompt_lengths(prompts: Sequence[Any], processing_class: Any, **chat_template_kwargs: Any) -> list[int]:
    """Token count of each prompt as `GRPOTrainer` feeds it to the model (conversations through the chat template
    with its generation prompt and `chat_template_kwargs`)."""
    prompts = list(prompts)
    if prompts and _is_conversation(prompts[0]):
        ids = processing_class.apply_chat_template(
            conversation=prompts, add_generation_prompt=True, tokenize=True, return_dict=True, **chat_template_kwargs
        )["input_ids"]
    else:
        ids = processing_class(text=prompts)["input_ids"] if prompts else []
    return [len(row) for row in ids]


def longest_prompt(datasets: Sequence[tuple[str, Any]], processing_class: Any, context: int, **kwargs: Any) -> int:
    """The longest prompt in tokens of `datasets` (pairs of a label and a dataset with a `prompt` column, or `None`);
    `ValueError` naming the first row of a dataset whose prompt leaves no room in a context of `context` tokens
    (`GRPOTrainer` does not truncate prompts, and positions past the context were never trained). `kwargs` go to the
    chat template."""
    longest = 0
    for label, data in datasets:
        counts = prompt_lengths(data["prompt"], processing_class, **kwargs) if data else []
        if over := [row for row, length in enumerate(counts) if length >= context]:
            raise ValueError(
                f"{len(over)} prompt(s) of dataset '{label}' leave no room in the model's context of {context} tokens "
                f"(max_position_embeddings): row {over[0]} has {counts[over[0]]} tokens. Shorten or drop those rows "
                "(prompts are not truncated), or use a model with a longer context."
            )
        longest = max([longest, *counts])
    return longest


def _is_conversation(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(message, dict) and "role" in message and "content" in message for message in value)
    )
