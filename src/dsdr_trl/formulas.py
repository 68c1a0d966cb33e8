r"""Formula extraction for the formula-uniqueness score of DSDR (Eq. 7–8): F_i, the set of math expressions of
completion i, as strings that two completions share exactly when they write "the same formula".

Extraction is one linear scan (bounded regex tokens and a small state machine) over `$…$`, `$$…$$`, `\(…\)`, `\[…\]`,
equation-like environments (`equation`, `align`, `gather`, …, starred or not) and `\boxed{…}` anywhere, nested or
not. `\$` is an escape, never a delimiter; an unclosed delimiter makes the rest prose. Single dollars follow pandoc's
rule, since word problems are full of prices ("$5 and $10"): `$` opens only before a non-space and closes only after
a non-space and before a non-digit. Each span is split into rows on top-level `\\` and `&` is dropped; `aligned` and
its kin are transparent, `cases`, matrices and `array` stay one formula.

Normalisation merges spellings that render the same and never does algebra: whitespace (one space kept after a
control word before a letter), `\left`/`\right` and the `\big` family, spacing, style, `\limits` and labels go;
text-like wrappers (`\text`, `\mathrm`, `\operatorname`, `\boxed`, …) become their content; synonyms become one command
(`\dfrac` → `\frac`, `\le` → `\leq`, Unicode `−` `×` `≤` `π` … → commands); `\frac12` and `\sqrt2` get braces; braces
go only where that cannot change the meaning; trailing `.,;:` go; a formula with no letter, digit or command is dropped.

Caps keep hostile text cheap: the first `MAX_TEXT_CHARS` characters, at most `MAX_FORMULAS_PER_TEXT` spans and
formulas, about twice the text's length read in full (past that a span is read with each nested `\boxed` group
condensed); a row over `MAX_SPAN_CHARS` or a formula over `MAX_FORMULA_CHARS` keeps its start plus `#` and a
16-hex-digit BLAKE2b digest of the whole. `canonicalize="sympy"` adds SymPy canonical forms (`dsdr_trl.sympy_forms`).
"""

from __future__ import annotations

import hashlib
import operator
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any

from cachetools import LRUCache

__all__ = ["DEFAULT_SYMPY_SECONDS", "MAX_FORMULAS_PER_TEXT", "MAX_FORMULA_CHARS"]
__all__ += ["MAX_SPAN_CHARS", "MAX_TEXT_CHARS", "extract_formulas", "extract_formulas_batch"]

# A worked solution is a few thousand characters; anything past this is degenerate generation, not reasoning.
MAX_TEXT_CHARS = 100_000
MAX_FORMULAS_PER_TEXT = 256
MAX_SPAN_CHARS = 10_000
MAX_FORMULA_CHARS = 512
# Typical formulas parse in a few milliseconds; the limit only has to stop the pathological ones.
DEFAULT_SYMPY_SECONDS = 1.0

# Longer texts are not cached (one degenerate generation would push out thousands of ordinary ones). The cache is
# capped in bytes, since a hostile entry takes up to ~170 KB against a few KB for an ordinary one.
_CACHE_MAX_TEXT_CHARS = 8_192
_CACHE_MAX_BYTES = 64 * 2**20
_CACHE_ENTRY_OVERHEAD_BYTES = 400
_DIGEST_CHARS = 16
# Characters read in full per text: twice its length plus this slack; past it, at most this many per `\boxed` group.
_BUDGET_SLACK_CHARS = 1_000
_STAND_IN_CHARS = 64

_EQUATION_ENVS = frozenset(
    name + star
    for name in "equation align aligned alignat alignedat gather gathered multline eqnarray flalign split".split()
    + ["displaymath", "math", "dmath"]
    for star in ("", "*")
)

# Every alternative is a bounded token, so `finditer` stays linear in the text length.
_SCAN_TOKEN = re.compile(
    r"\\begin\{([^{}\\]{1,32})\}"  # 1: environment name
    r"|\\end\{([^{}\\]{1,32})\}"  # 2: environment name
    r"|(\\boxed)[ \t]*\{"  # 3
    r"|\\[^A-Za-z]"  # escape pair or control symbol: \$ \( \) \[ \] \{ \} \\
    r"|\$\$?"
    r"|[{}]"
    r"|\n[ \t\r]*\n",
    re.DOTALL,
)
# The closing token of each delimiter mode; an environment closes at its own `\end`.
_CLOSERS = {"$$": "$$", "\\(": "\\)", "\\[": "\\]"}
# `\begin{alignat}{2}` takes the number of columns as an argument that is not part of any formula.
_ENV_ARGUMENT = re.compile(r"[ \t]*\{\d{1,3}\}")

_SPLIT_TOKEN = re.compile(
    r"\\begin\{([^{}\\]{1,32})\}(?:\{\d{1,3}\})?"  # 1
    r"|\\end\{([^{}\\]{1,32})\}"  # 2
    r"|(\\\\\*?)(?:[ \t]*\[[ \t]*[-+]?[\d.]{1,12}[ \t]*[a-z]{2}[ \t]*\])?"  # 3: row break with optional spacing
    r"|\\[^A-Za-z]"
    r"|[{}&]",
    re.DOTALL,
)

_SIZING_WORDS = frozenset(
    ["left", "right", "middle"]
    + [size + suffix for size in ("big", "Big", "bigg", "Bigg") for suffix in ("", "l", "r", "m")]
)
_WORD_REWRITES = {
    # Spacing, style, limits and equation numbering: removed.
    **dict.fromkeys(
        "quad qquad enspace enskip thinspace medspace thickspace negthinspace negmedspace negthickspace hfill".split()
        + "displaystyle textstyle scriptstyle scriptscriptstyle limits nolimits nonumber notag".split(),
        " ",
    ),
    **dict.fromkeys(("dfrac", "tfrac", "cfrac"), "\\frac"),
    **dict.fromkeys(("dbinom", "tbinom"), "\\binom"),
    **dict.fromkeys(("le", "leqslant"), "\\leq"),
    **dict.fromkeys(("ge", "geqslant"), "\\geq"),
    "ne": "\\neq",
    "to": "\\rightarrow",
    "gets": "\\leftarrow",
    **dict.fromkeys(("lvert", "rvert", "vert"), "|"),
    **dict.fromkeys(("lVert", "rVert", "Vert"), "\\|"),
    "lbrace": "\\{",
    "rbrace": "\\}",
    "land": "\\wedge",
    "lor": "\\vee",
    "lnot": "\\neg",
    **dict.fromkeys(("ldots", "cdots", "dotsc", "dotsb"), "\\dots"),
}
# Control symbols that only space or delimit: `\,` `\;` `\:` `\!` `\>` `\ ` and stray `\(` `\)` `\[` `\]`.
_BLANK_SYMBOLS = frozenset(",;:!> \t\r\n()[]")
_UNICODE_MAP = str.maketrans(
    {"\u2212": "-", "\u2013": "-", "\x00": None}
    | {
        char: f" \\{word} "
        for char, word in zip("×·⋅÷≤≥≠π∞", "times cdot cdot div leq geq neq pi infty".split(), strict=True)
    }
)

_ARGUMENT_COMMANDS = re.compile(r"(\\[^A-Za-z])|\\(?:label|tag\*?|[hv]space\*?|[hv]?phantom)\{[^{}]*\}")
# Without one of these words the substitution above would only copy every control symbol back.
_ARGUMENT_WORD = re.compile(r"\\(?:label|tag|[hv]space|[hv]?phantom)")
# Group 2 lets `\left.` and `\right.` lose their null delimiter; other commands get the dot back.
_CONTROL = re.compile(r"\\(?:([A-Za-z]+)([ \t]*\.)?|(.))|[$~]", re.DOTALL)
_WRAPPERS = (
    "text|textrm|textnormal|textup|textit|textbf|textsf|texttt|mbox|mathrm|mathit|mathnormal|operatorname|boxed|fbox"
)
_WRAPPER_OPEN = re.compile(rf"\\(?:{_WRAPPERS})(?![A-Za-z])\*?[ \t]*\{{")
_WRAPPER_TOKEN = re.compile(rf"(\\(?:{_WRAPPERS})(?![A-Za-z])\*?[ \t]*\{{)|\\[^A-Za-z]|[{{}}]", re.DOTALL)
_DIGIT_SHORTHAND = re.compile(r"(\\[^A-Za-z])|\\frac[ \t]*(\d)[ \t]*(\d)|\\sqrt[ \t]*(\d)", re.DOTALL)
_SPACE_AFTER_WORD = re.compile(r"(\\[^A-Za-z])|(\\[A-Za-z]+) (?=[A-Za-z])", re.DOTALL)
_SCRIPT_BRACES = re.compile(r"(\\[^A-Za-z])|([\^_])\{([^{}\\])\}|([\^_])\{(\\[A-Za-z]+)\}(?![A-Za-z])", re.DOTALL)
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
_MEANINGFUL = re.compile(r"[^\W_]|\\[A-Za-z]")
_TRAILING_PUNCTUATION = ".,;:"


def message_text(content: Any) -> str | None:
    """Text of a message's `content`: a string or the joined text parts of a multimodal list; `None` if none."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if texts and all(isinstance(text, str) for text in texts):
            return "".join(texts)
    return None


def completion_text(completion: Any) -> str | None:
    """Text of a TRL completion: a string, or the last message of a conversation; `None` if it has no text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return message_text(completion[-1].get("content"))
    return None


def _coerce_text(text: Any) -> str:
    if isinstance(text, str):
        return str.__str__(text)  # a plain string, whatever a subclass does to hashing or slicing
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8", errors="replace")
    raise TypeError(f"extract_formulas expects str (or None or bytes), got {type(text).__name__}.")


def _scan_spans(text: str) -> list[tuple[int, int, bool]]:
    r"""`(start, end, is_box)` of the contents of the math spans and `\boxed{…}` groups of `text`, in order of their
    end."""
    spans: list[tuple[int, int, bool]] = []
    mode: str | None = None  # "$", "$$", "\\(", "\\[" or an environment name
    start = 0
    depth = 0
    boxes: list[tuple[int, int]] = []  # (brace depth of the box's "{", index where its content starts)
    size = len(text)
    for m in _SCAN_TOKEN.finditer(text):
        if len(spans) >= MAX_FORMULAS_PER_TEXT:
            break
        token = m.group()
        first = token[0]
        if first == "{":
            depth += 1
            continue
        if first == "}":
            if boxes and boxes[-1][0] == depth:
                spans.append((boxes.pop()[1], m.start(), True))
            if depth:
                depth -= 1
            continue
        if m.lastindex == 3:
            depth += 1
            boxes.append((depth, m.end()))
            continue

        if mode == "$":
            if first == "$":
                if text[m.start() - 1].isspace():
                    # "$5 and $x$": the first `$` was a price; this one may open the real math.
                    if token == "$$":
                        mode, start = "$$", m.end()
                    elif m.end() < size and not text[m.end()].isspace():
                        start = m.end()
                    continue
                if token == "$" and m.end() < size and text[m.end()] in "0123456789":
                    continue
                spans.append((start, m.start(), False))
                mode = None
                # In "$a$$b$" the second dollar of "$$" opens the next inline formula.
                if token == "$$" and m.end() < size and not text[m.end()].isspace():
                    mode, start = "$", m.end()
                continue
            if token not in ("\\(", "\\[") and first != "\n":
                continue
            mode = None  # neither a blank line nor another math opener can occur inside inline math
        elif mode is not None:
            if token == _CLOSERS.get(mode) or (m.lastindex == 2 and m.group(2) == mode):
                spans.append((start, m.start(), False))
                mode = None
            continue

        # Prose: look for an opener.
        if token == "$$":
            mode, start = "$$", m.end()
        elif token == "$":
            if m.end() < size and not text[m.end()].isspace():
                mode, start = "$", m.end()
        elif token == "\\(" or token == "\\[":
            mode, start = token, m.end()
        elif m.lastindex == 1 and m.group(1) in _EQUATION_ENVS:
            mode, start = m.group(1), m.end()
            argument = _ENV_ARGUMENT.match(text, start) if mode.startswith(("alignat", "alignedat")) else None
            if argument is not None:
                start = argument.end()
    return spans


def _split_rows(span: str) -> list[str]:
    r"""Splits a span into rows at top-level `\\`, unwrapping equation-like environments and dropping top-level `&`."""
    if "\\\\" not in span and "&" not in span and "\\begin" not in span:
        return [span]
    rows: list[str] = []
    parts: list[str] = []
    last = depth = 0
    for m in _SPLIT_TOKEN.finditer(span):
        token, kind = m.group(), m.lastindex
        if depth == 0 and (token == "&" or (kind in (1, 2) and m.group(kind) in _EQUATION_ENVS)):
            parts += (span[last : m.start()], " ")
            last = m.end()
        elif kind == 1 or token == "{":
            depth += 1
        elif kind == 2 or token == "}":
            depth = max(depth - 1, 0)
        elif kind == 3 and depth == 0:
            rows.append("".join(parts) + span[last : m.start()])
            parts, last = [], m.end()
    rows.append("".join(parts) + span[last:])
    return rows


def _rewrite_control(m: re.Match[str]) -> str:
    word = m.group(1)
    if word is not None:
        if word in _SIZING_WORDS:
            return " "
        return _WORD_REWRITES.get(word, "\\" + word) + (m.group(2) or "")
    symbol = m.group(3)  # None for an unescaped `$` or `~`
    return " " if symbol is None or symbol in _BLANK_SYMBOLS else m.group()


def _unwrap_text_commands(s: str) -> str:
    out: list[str] = []
    stack: list[bool] = []  # whether each open brace belongs to a wrapper
    last = 0
    for m in _WRAPPER_TOKEN.finditer(s):
        wrapper = m.lastindex == 1
        if wrapper or m.group() == "{":
            stack.append(wrapper)
        if wrapper or (m.group() == "}" and stack and stack.pop()):
            out += (s[last : m.start()], " ")
            last = m.end()
    out.append(s[last:])
    return "".join(out)


def _expand_digit_shorthand(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        return m.group(1)
    if m.group(2) is not None:
        return f"\\frac{{{m.group(2)}}}{{{m.group(3)}}}"
    return f"\\sqrt{{{m.group(4)}}}"


def _strip_outer_braces(s: str) -> str:
    """Removes every layer of braces that wraps the whole of `s`, with one linear brace match."""
    if not (s.startswith("{") and s.endswith("}")):
        return s
    leading = len(s) - len(s.lstrip("{"))
    closers: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_TOKEN.finditer(s):
        token = m.group()
        if token == "{":
            stack.append(m.start())
        elif token == "}" and stack:
            opener = stack.pop()
            if opener < leading:
                closers[opener] = m.start()
    layers = 0
    while layers < leading and closers.get(layers) == len(s) - 1 - layers:
        layers += 1
    return s[layers : len(s) - layers]


def _normalize(s: str) -> str:
    """String-level normal form of one formula (see the module docstring); `""` when nothing meaningful is left."""
    s = s.translate(_UNICODE_MAP)
    if "\\" in s and _ARGUMENT_WORD.search(s):
        s = _ARGUMENT_COMMANDS.sub(r"\1", s)
    if "\\" in s or "$" in s or "~" in s:
        s = _CONTROL.sub(_rewrite_control, s)
    if "\\" in s:
        if _WRAPPER_OPEN.search(s):
            s = _unwrap_text_commands(s)
        if "\\frac" in s or "\\sqrt" in s:
            s = _DIGIT_SHORTHAND.sub(_expand_digit_shorthand, s)
    s = " ".join(s.split())
    if " " in s:
        # Every space goes but one after a control word before a letter (`\alpha b` is not `\alphab`).
        s = _SPACE_AFTER_WORD.sub(lambda m: m.group(1) or m.group(2) + "\x00", s).replace(" ", "").replace("\x00", " ")
    if "{" in s and ("^" in s or "_" in s):
        s = _SCRIPT_BRACES.sub(r"\1\2\3\4\5", s)  # each match fills one alternative's groups
    # Twice, for "{x+1}." and "{x.}".
    for _ in range(2):
        s = _strip_outer_braces(s.rstrip(_TRAILING_PUNCTUATION))
    return s if _MEANINGFUL.search(s) else ""


def _digest_key(prefix: str, whole: str) -> str:
    digest = hashlib.blake2b(whole.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_CHARS // 2).hexdigest()
    return f"{prefix[: MAX_FORMULA_CHARS - _DIGEST_CHARS - 1]}#{digest}"


def _row_formula(row: str, raw_chars: int) -> str:
    """The formula of one row that stands for `raw_chars` characters of the text; `""` when nothing meaningful is left."""
    if raw_chars > MAX_SPAN_CHARS:
        return _digest_key(_normalize(row[:MAX_FORMULA_CHARS]), row)
    formula = _normalize(row)
    return _digest_key(formula, formula) if len(formula) > MAX_FORMULA_CHARS else formula


def _condensed(text: str, start: int, end: int, groups: list[tuple[int, int, str]]) -> str:
    r"""`text[start:end]` with each `\boxed` group of `groups` (inside it, in order) replaced by its stand-in."""
    parts = []
    for group_start, group_end, stand_in in groups:
        parts += (text[start:group_start], stand_in)
        start = group_end
    parts.append(text[start:end])
    return "".join(parts)


def _stand_in(found: list[str]) -> str:
    r"""A `\boxed` group's content in a condensed span: its one short formula, else a digest of its formulas."""
    if len(found) == 1 and len(found[0]) <= _STAND_IN_CHARS:
        return found[0]
    return _digest_key("", "\n".join(found)) if found else ""


def _extract(text: str) -> frozenset[str]:
    formulas: set[str] = set()
    # Math spans never overlap, so they fit in this budget; only nested `\boxed` groups can exhaust it.
    budget = 2 * len(text) + _BUDGET_SLACK_CHARS
    # Closed `\boxed` groups that no closed group contains, in order: (content start, end, stand-in).
    outermost: list[tuple[int, int, str]] = []
    for start, end, is_box in _scan_spans(text):
        first_inside = len(outermost)
        while first_inside and outermost[first_inside - 1][0] >= start:
            first_inside -= 1
        if end - start <= budget:
            budget -= end - start
            rows = [_row_formula(row, len(row)) for row in _split_rows(text[start:end])]
        else:
            inside = outermost[first_inside:]
            rows = [_row_formula(_condensed(text, start, end, inside), end - start)]
        found = [formula for formula in rows if formula]
        if is_box:
            outermost[first_inside:] = [(start, end, _stand_in(found))]
        for formula in found:
            formulas.add(formula)
            if len(formulas) >= MAX_FORMULAS_PER_TEXT:
                return frozenset(formulas)
    return frozenset(formulas)


# Least recently used entries go first; each value is (formulas, the entry's size in bytes).
_cache: LRUCache[str, tuple[frozenset[str], int]] = LRUCache(_CACHE_MAX_BYTES, getsizeof=operator.itemgetter(1))
_cache_lock = threading.Lock()


def _string_formulas(text: Any) -> frozenset[str]:
    text = _coerce_text(text)[:MAX_TEXT_CHARS]
    if len(text) > _CACHE_MAX_TEXT_CHARS:
        return _extract(text)
    with _cache_lock:
        entry = _cache.get(text)
    if entry is not None:
        return entry[0]
    formulas = _extract(text)
    size = sys.getsizeof(text) + sys.getsizeof(formulas) + sum(map(sys.getsizeof, formulas))
    with _cache_lock:
        _cache[text] = (formulas, size + _CACHE_ENTRY_OVERHEAD_BYTES)
    return formulas


def extract_formulas_batch(
    texts: Sequence[str | None],
    canonicalize: str = "none",
    seconds: float = DEFAULT_SYMPY_SECONDS,
    stats: dict[str, int] | None = None,
) -> list[frozenset[str]]:
    r"""The formula set F_i of each text (Eq. 7–8), with at most one SymPy worker call for the batch.

    `texts`: completions (`None` is empty, `bytes` are decoded as UTF-8, other non-`str` raise `TypeError`).
    `canonicalize`: `"none"` (normalised LaTeX) or `"sympy"` (SymPy canonical forms where a formula parses within
    `seconds`, else kept; if no worker can start, string forms with a logged warning). `stats["timeouts"]` and
    `stats["errors"]` count the conversions that overran or failed.

    ```python
    >>> [sorted(found) for found in extract_formulas_batch(["So $x + 1 = 3$, i.e. $\\boxed{2}$.", "No math."])]
    [['2', 'x+1=3'], []]
    ```
    """
    # Imported here: the config imports TRL and torch, which the verifier's workers (they import this module for
    # `completion_text`) should not load.
    from .config import FORMULA_CANONICALIZATIONS

    if canonicalize not in FORMULA_CANONICALIZATIONS:
        raise ValueError(f"canonicalize must be one of {FORMULA_CANONICALIZATIONS}, got {canonicalize!r}.")
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}.")
    string_sets = [_string_formulas(text) for text in texts]
    if canonicalize == "none":
        return string_sets
    from .sympy_forms import canonical_forms

    canonical = canonical_forms(set().union(*string_sets), seconds, stats)
    # A canonical form longer than a string formula may be is not used: the string form stays.
    canonical = {formula: form for formula, form in canonical.items() if len(form) <= MAX_FORMULA_CHARS}
    return [frozenset(canonical.get(formula, formula) for formula in formulas) for formulas in string_sets]


def extract_formulas(text: str | None, canonicalize: str = "none") -> frozenset[str]:
    r"""The normalised set of math expressions F_i of one completion (Eq. 7–8; rules and caps in the module
    docstring). Never raises on a `str`, linear in its length; cached per text (up to 8,192 characters, 64 MiB per
    process). `canonicalize` as in [`extract_formulas_batch`].

    ```python
    >>> sorted(extract_formulas(r"We get \[ \begin{aligned} y &= x^{2} + 1 \\ &= 5. \end{aligned} \]"))
    ['=5', 'y=x^2+1']
    ```
    """
    return extract_formulas_batch([text], canonicalize=canonicalize)[0]
