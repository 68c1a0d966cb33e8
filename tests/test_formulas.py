"""Tests for formula extraction (the F_i of Eq. 7–8): delimiters, normalisation, caps, hostile input and the SymPy
mode under its hard time limit."""

import re
import sys
import time

import pytest
from cachetools import LRUCache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsdr_trl import formulas, sympy_forms
from dsdr_trl._time_limit import Outcome
from dsdr_trl.formulas import (
    MAX_FORMULA_CHARS,
    MAX_FORMULAS_PER_TEXT,
    MAX_TEXT_CHARS,
    extract_formulas,
    extract_formulas_batch,
)

DIGEST_KEY = re.compile(r"#[0-9a-f]{16}$")


# ---------------------------------------------------------------------------------------------------------------------
# Delimiters


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $x+1$ holds", {"x+1"}),
        ("two: $a$ and $b$.", {"a", "b"}),
        ("display $$y = 2$$ here", {"y=2"}),
        ("multi-line display $$\ny = 2\n$$ here", {"y=2"}),
        (r"paren \(z^2\) math", {"z^2"}),
        (r"bracket \[ \frac{a}{b} \] math", {r"\frac{a}{b}"}),
        (r"adjacent $a$$b$", {"a", "b"}),
        (r"mixed $a$, $$b$$, \(c\), \[d\]", {"a", "b", "c", "d"}),
        (r"\begin{equation} E = mc^2 \end{equation}", {"E=mc^2"}),
        (r"\begin{equation*} E = mc^2 \end{equation*}", {"E=mc^2"}),
        (r"\begin{displaymath} E = mc^2 \end{displaymath}", {"E=mc^2"}),
    ],
)
def test_math_delimiters(text, expected):
    assert extract_formulas(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"\begin{align} a &= b + c \\ &= d \end{align}", {"a=b+c", "=d"}),
        (r"\begin{align*} a &= 1 \\[4pt] b &= 2 \nonumber \\ c &= 3 \end{align*}", {"a=1", "b=2", "c=3"}),
        (r"\begin{gather} x = 1 \\ y = 2 \end{gather}", {"x=1", "y=2"}),
        (r"\begin{gather*} x = 1 \\ y = 2 \end{gather*}", {"x=1", "y=2"}),
        (r"\begin{multline} p + q \\ + r \end{multline}", {"p+q", "+r"}),
        (r"\begin{eqnarray} u &=& v \\ w &=& t \end{eqnarray}", {"u=v", "w=t"}),
        (r"\begin{alignat}{2} x &= 1 \\ y &= 2 \end{alignat}", {"x=1", "y=2"}),
        # `aligned` inside display math is unwrapped and split too.
        (r"$$\begin{aligned} f(x) &= (x+1)^2 \\ &= x^2 + 2x + 1. \end{aligned}$$", {"f(x)=(x+1)^2", "=x^2+2x+1"}),
        (r"\[ \begin{split} a &= b \\ &= c \end{split} \]", {"a=b", "=c"}),
        # Rows inside plain display math without an environment are separate formulas as well.
        (r"\[ a = 1 \\ b = 2 \]", {"a=1", "b=2"}),
    ],
)
def test_equation_environments_split_into_rows(text, expected):
    assert extract_formulas(text) == expected


def test_matrices_and_cases_stay_one_formula():
    text = (
        r"$$M = \begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}$$ and "
        r"$|x| = \begin{cases} x & x \ge 0 \\ -x & x < 0 \end{cases}$"
    )
    assert extract_formulas(text) == {
        r"M=\begin{pmatrix}1&2\\3&4\end{pmatrix}",
        r"|x|=\begin{cases}x&x\geq0\\-x&x<0\end{cases}",
    }


def test_non_math_environments_are_prose():
    assert extract_formulas(r"\begin{itemize} \item one \end{itemize}") == set()


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"The answer is \boxed{42}.", {"42"}),
        (r"The answer is \boxed {42}.", {"42"}),
        (r"So $x = \boxed{5}$.", {"x=5", "5"}),
        (r"$$\boxed{\frac{1}{2}}$$", {r"\frac{1}{2}"}),
        (r"\boxed{\{1, 2\}}", {r"\{1,2\}"}),
        (r"\boxed{\boxed{x} + 1}", {"x", "x+1"}),
        (r"\boxed{a^{\boxed{b}}}", {"b", "a^b"}),
        (r"\boxed{\text{(B)}}", {"(B)"}),
        (r"\boxed{$7$}", {"7"}),
        (r"unclosed \boxed{x + {y} and more", set()),
        (r"\boxedx is not a box", set()),
    ],
)
def test_boxed(text, expected):
    assert extract_formulas(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"It costs \$5 and \$7.", set()),
        (r"It costs \$5, and $y$ is math", {"y"}),
        (r"$\$5 + x$", {r"\$5+x"}),
        # `\\` is a line break, so the `$` after it is a real delimiter.
        ("$a\\\\$ b", {"a"}),
    ],
)
def test_escaped_dollars_are_not_delimiters(text, expected):
    assert extract_formulas(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Apples cost $5 and pears $10.", set()),
        ("She paid $5, and then $x + 1$ more.", {"x+1"}),
        ("A closing $ must not be followed by a digit: $x$5 but $y$.", {"y"}),
        ("An opening $ must not be followed by a space: $ 5 $ and $z$", {"z"}),
        ("Inline math does not span paragraphs: $5\n\nthen $w$.", {"w"}),
        (r"Another opener abandons a price: $3 and \(v\).", {"v"}),
    ],
)
def test_prices_are_not_math(text, expected):
    assert extract_formulas(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("unclosed $x + 1", set()),
        ("first $a$ then unclosed $$b", {"a"}),
        (r"first $a$ then \(b", {"a"}),
        (r"first $a$ then \[b", {"a"}),
        (r"first $a$ then \begin{align} b", {"a"}),
        (r"mismatched \begin{align} b \end{equation} $c$", set()),
        ("$", set()),
        ("$$", set()),
        ("\\", set()),
        ("\\boxed{", set()),
        ("}}}$x$", {"x"}),
    ],
)
def test_unclosed_delimiters_ignore_the_rest(text, expected):
    assert extract_formulas(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "Just words, no math at all. 3 + 4 = 7 in plain text is not LaTeX.",
        "Braces {like this} and \\commands outside math are prose.",
        "$ $ and $$ $$ and \\( \\) and \\[ \\] are empty.",
        "Only punctuation: $,$ $.$ $=$ $+$ $()$ $\\{\\}$ $\\,$",
    ],
)
def test_formula_free_text(text):
    assert extract_formulas(text) == set()


# ---------------------------------------------------------------------------------------------------------------------
# Normalisation


@pytest.mark.parametrize(
    "spellings, expected",
    [
        (["x + 1", "x+1", "{x+1}", "{{ x + 1 }}", "x\t+\n1", r"x\,+\;1", "x+1.", "x + 1 ,"], "x+1"),
        ([r"\left(x\right)", "(x)", r"\bigl( x \bigr)", r"\Big(x\Big)"], "(x)"),
        (
            [r"\dfrac{1}{2}", r"\frac{1}{2}", r"\tfrac{1}{2}", r"\frac12", r"\frac 1 2", r"\cfrac{1}{2}"],
            r"\frac{1}{2}",
        ),
        (["x^{2}", "x^2", "x^{ 2 }"], "x^2"),
        (["a_{1}", "a_1"], "a_1"),
        ([r"x^{\prime}", r"x^\prime"], r"x^\prime"),
        ([r"\sqrt2", r"\sqrt{2}", r"\sqrt {2}"], r"\sqrt{2}"),
        ([r"5\text{ cm}", r"5 \mathrm{cm}", r"5\,\textrm{cm}", "5 cm"], "5cm"),
        ([r"\displaystyle\sum_{i=1}^{n} i", r"\sum_{i=1}^n i", r"\sum\limits_{i=1}^{n} i"], r"\sum_{i=1}^ni"),
        ([r"a \le b", r"a \leq b", r"a\leqslant b", "a ≤ b"], r"a\leq b"),
        ([r"x \ne 0", r"x \neq 0", "x≠0"], r"x\neq0"),
        ([r"1 + 2 + \cdots + n", r"1+2+\ldots+n", r"1 + 2 + \dots + n"], r"1+2+\dots+n"),
        ([r"\lvert x \rvert", r"\vert x\vert", "|x|", r"\left| x \right|"], "|x|"),
        ([r"\left.\frac{df}{dx}\right|_{x=0}", r"\frac{df}{dx}\Big|_{x=0}"], r"\frac{df}{dx}|_{x=0}"),
        ([r"2 \times 3", "2×3"], r"2\times3"),
        ([r"x = 1 \quad \text{and} \quad y = 2", r"x=1~\text{and}~y=2"], "x=1andy=2"),
        ([r"a = b \label{eq:1}", r"a = b \tag{1}", r"a = b \nonumber"], "a=b"),
        ([r"\operatorname{lcm}(4, 6)", r"\text{lcm}(4,6)", r"\mathrm{lcm}(4, 6)"], "lcm(4,6)"),
    ],
)
def test_spellings_that_render_the_same_are_one_formula(spellings, expected):
    for spelling in spellings:
        assert extract_formulas(f"${spelling}$") == {expected}, spelling


@pytest.mark.parametrize(
    "formula, expected",
    [
        # A space that ends a control word before a letter is meaningful.
        (r"\pi r^2", r"\pi r^2"),
        (r"\pi\,r", r"\pi r"),
        (r"\pi\text{r}", r"\pi r"),
        # Braces stay where removing them would change the meaning or break the LaTeX.
        ("x^{12}", "x^{12}"),
        ("x^{-1}", "x^{-1}"),
        (r"e^{\pi}i", r"e^{\pi}i"),
        ("{a}^{2}", "{a}^2"),
        ("{a}{b}", "{a}{b}"),
        (r"\frac{1}{2}", r"\frac{1}{2}"),
        (r"\mathbb{R}", r"\mathbb{R}"),
        (r"\mathbf{v}", r"\mathbf{v}"),
        (r"\{1, 2\}", r"\{1,2\}"),
        # `n!` is a factorial, not trailing punctuation.
        ("n!", "n!"),
        ("10\\%", "10\\%"),
    ],
)
def test_normalisation_keeps_meaningful_structure(formula, expected):
    assert extract_formulas(f"${formula}$") == {expected}


def test_different_formulas_stay_different():
    assert len(extract_formulas(r"$x^2$ $x^{12}$ $x_2$ $\mathbf{x}$ $X$ $2x$ $x2$")) == 7


# ---------------------------------------------------------------------------------------------------------------------
# Input types, modes, batch API


def test_non_str_input():
    assert extract_formulas(None) == set()
    assert extract_formulas(b"$x+1$ \xff") == {"x+1"}
    assert extract_formulas_batch([None, b"$y$", "$z$"]) == [set(), {"y"}, {"z"}]
    with pytest.raises(TypeError, match="int"):
        extract_formulas(3)


def test_str_subclass():
    class Text(str):
        def __hash__(self):
            raise RuntimeError("not hashable")

    assert extract_formulas(Text("$x$")) == {"x"}


def test_unknown_canonicalization_names_the_valid_values():
    with pytest.raises(ValueError, match=r"'none', 'sympy'.*'latex'"):
        extract_formulas("$x$", canonicalize="latex")
    with pytest.raises(ValueError, match="canonicalize"):
        extract_formulas_batch(["$x$"], canonicalize="SymPy")
    with pytest.raises(ValueError, match="seconds"):
        extract_formulas_batch(["$x$"], canonicalize="sympy", seconds=0)


def test_batch_matches_single_and_returns_frozen_sets():
    texts = [r"$a$ \boxed{b}", "none", r"\[c \\ d\]"]
    batch = extract_formulas_batch(texts)
    assert batch == [extract_formulas(text) for text in texts] == [{"a", "b"}, set(), {"c", "d"}]
    # The cached sets are handed out as they are: frozen, so no caller can change what the next one gets.
    assert all(type(found) is frozenset for found in batch + extract_formulas_batch(texts, canonicalize="sympy"))
    assert extract_formulas_batch([]) == []


# ---------------------------------------------------------------------------------------------------------------------
# Caps


def test_long_formulas_are_truncated_with_a_digest():
    long_a = "$" + "+".join(f"x_{{{i}}}" for i in range(300)) + "$"
    long_b = long_a.replace("x_{299}", "y")
    (key_a,) = extract_formulas(long_a)
    (key_b,) = extract_formulas(long_b)
    assert len(key_a) == MAX_FORMULA_CHARS and DIGEST_KEY.search(key_a)
    assert key_a.startswith("x_0+x_1+")
    assert key_a != key_b
    # The digest is taken after normalisation, so spacing differences still merge.
    assert extract_formulas(long_a.replace("+", " + ")) == {key_a}


def test_formula_count_cap():
    text = " ".join(f"$x_{{{i}}}$" for i in range(3 * MAX_FORMULAS_PER_TEXT))
    found = extract_formulas(text)
    assert len(found) == MAX_FORMULAS_PER_TEXT
    assert {"x_0", "x_{255}"} <= found and "x_{256}" not in found


def test_text_length_cap():
    assert extract_formulas("$a$" + " " * MAX_TEXT_CHARS + "$b$") == {"a"}


HOSTILE = [
    ("dollars", "$" * 1_000_000, set()),
    ("dollar-letter", "$a" * 500_000, {"a"}),
    ("price-like", "$a $" * 250_000, {"a"}),
    ("open braces", "{" * 1_000_000, set()),
    ("repeated boxed", "\\boxed{" * 150_000, set()),
    ("unclosed align", "\\begin{align}" + "x = 1 \\\\ " * 100_000, set()),
    ("deep braces in math", "$" + "{" * 100_000, set()),
    ("balanced deep braces", "$" + "{" * 40_000 + "x" + "}" * 40_000 + "$", None),
    ("nested closed boxes", "\\boxed{" * 5_000 + "x" + "}" * 5_000, {"x"}),
    ("boxes around a long body", "\\boxed{" * 300 + "x" * 40_000 + "}" * 300, None),
    ("many rows", "\\begin{align}" + "a_1 &= b \\\\ " * 6_000 + "\\end{align}", {"a_1=b"}),
    ("line breaks", "\\\\" * 500_000, set()),
    ("backslashes", "\\" * 1_000_001, set()),
    ("sizing", "$" + "\\left" * 1_900 + "$", set()),
    ("long sizing", "$" + "\\left" * 15_000 + "$", None),
    ("unclosed text", "$" + "\\text{" * 10_000 + "x$", None),
    ("deep text", "$" + "\\text{" * 1_000 + "x" + "}" * 1_000 + "$", {"x"}),
    ("many begins", "\\begin{equation}" * 60_000, set()),
    ("whitespace", "$\\pi" + " " * 9_000 + "r$", {"\\pi r"}),
    ("long whitespace", "$\\pi" + " " * 99_000 + "r$", None),
    ("scripts", "$x^{" * 30_000, {"x^{"}),
    ("deep scripts", "$" + "x^{" * 3_000 + "$", None),
]


@pytest.mark.parametrize("name, text, expected", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_inputs_are_fast(name, text, expected):
    start = time.perf_counter()
    found = extract_formulas(text)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{name} took {elapsed:.2f} s"
    assert len(found) <= MAX_FORMULAS_PER_TEXT
    assert all(0 < len(formula) <= MAX_FORMULA_CHARS for formula in found)
    if expected is not None:
        assert found == expected


def test_hostile_nested_boxes_results():
    # Every group is longer than a row may be, so each becomes its own digest key, up to the span cap.
    found = extract_formulas("\\boxed{" * 300 + "x" * 40_000 + "}" * 300)
    assert len(found) == MAX_FORMULAS_PER_TEXT
    assert all(DIGEST_KEY.search(formula) for formula in found)
    assert any(formula.startswith("x" * 400) for formula in found)
    deep = extract_formulas("$" + "{" * 40_000 + "x" + "}" * 40_000 + "$")
    assert len(deep) == 1 and DIGEST_KEY.search(next(iter(deep)))


LATEX_PIECES = [
    "$", "$$", "\\$", "\\(", "\\)", "\\[", "\\]", "{", "}", "\\boxed{", "\\begin{align}", "\\end{align}",
    "\\begin{aligned}", "\\end{aligned}", "\\begin{pmatrix}", "\\end{pmatrix}", "\\\\", "&", "^", "_", "\\frac",
    "\\frac12", "\\left", "\\right.", "\\text{", "\\mathrm{", "\\,", "~", "\\", "x", "2", " ", "\n\n", ".", "'",
    "\\pi", "é", "\x00", "#",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.lists(st.sampled_from(LATEX_PIECES), max_size=80).map("".join)))
def test_extract_formulas_never_raises(text):
    found = extract_formulas(text)
    assert isinstance(found, frozenset)
    assert len(found) <= MAX_FORMULAS_PER_TEXT
    for formula in found:
        assert isinstance(formula, str)
        assert 0 < len(formula) <= MAX_FORMULA_CHARS
        assert formula == formula.strip() and "\x00" not in formula


# ---------------------------------------------------------------------------------------------------------------------
# Nested groups and the cache


@pytest.fixture
def empty_formula_cache(monkeypatch):
    cache = type(formulas._cache)(formulas._CACHE_MAX_BYTES, getsizeof=formulas._cache.getsizeof)
    monkeypatch.setattr(formulas, "_cache", cache)
    return cache


def nested_boxes(opener: str, body: str, closer: str = "}", depth: int = 256, size: int = 8_192) -> str:
    """`depth` nested groups opened by `opener` (`{i}` is the level), filled with `body` up to `size` characters."""
    head = "".join(opener.replace("{i}", str(level)) for level in range(depth))
    tail = closer * depth
    return head + body * ((size - len(head) - len(tail)) // len(body)) + tail


# 256 nested `\boxed` groups in 8 KB, each shape a different cost per character of normalisation.
NESTED = {
    "around prose": nested_boxes("\\boxed{", " x"),
    "around thin spaces": nested_boxes("\\boxed{", "\\,x"),
    "around text commands": nested_boxes("\\boxed{", "\\text{a}"),
    "around rows": nested_boxes("\\boxed{", "a&=b\\\\"),
    "a fraction per level": nested_boxes("\\boxed{\\frac{a}{b}+", "x"),
    "a distinct root per level": nested_boxes("\\boxed{\\sqrt{{i}}\\cdot", "\\,"),
    "math inside each level": nested_boxes("\\boxed{$", "x", closer="$}"),
}


@pytest.mark.parametrize("name", NESTED)
def test_nested_boxes_are_read_a_bounded_number_of_times(name, empty_formula_cache, monkeypatch):
    # Reading every group in full read these texts 87 to 247 times over.
    text = NESTED[name]
    read = []
    for helper in ("_normalize", "_split_rows"):
        original = getattr(formulas, helper)
        monkeypatch.setattr(formulas, helper, lambda s, original=original: read.append(len(s)) or original(s))
    extract_formulas(text)
    assert 0 < sum(read) <= 8 * len(text)


def test_256_nested_boxes_in_8_kb_extract_within_20_ms(empty_formula_cache):
    # The fault table's bound; reading every group in full took 0.2 to 0.5 s. Measured in CPU time, so that other
    # processes on a busy machine do not count, and the best of five runs is kept: 2 to 7 ms measured here.
    for name, text in NESTED.items():
        times = []
        for _ in range(5):
            empty_formula_cache.clear()
            start = time.process_time()
            extract_formulas(text)
            times.append(time.process_time() - start)
        assert min(times) <= 0.020, f"{name}: {min(times) * 1000:.1f} ms"


def test_nested_groups_past_the_budget_still_give_their_formulas():
    chain = "\\boxed{" * 200 + "x" + "}" * 200  # reads 100 times its length if every group is read in full
    long = "+".join(f"a_{i}" for i in range(40))
    found = extract_formulas(
        chain + f" then \\boxed{{\\boxed{{y}}+1}}, $z = \\boxed{{y}}+1$ and \\boxed{{\\boxed{{{long}}}+1}}."
    )
    # A group's short formula stands in for it; a long one is replaced by a digest.
    assert {"x", "y", "y+1", "z=y+1", long} <= found
    (with_long,) = found - {"x", "y", "y+1", "z=y+1", long}
    assert re.fullmatch(r"#[0-9a-f]{16}\+1", with_long)


def test_the_cache_stays_under_its_byte_cap(empty_formula_cache):
    def hostile(i: int) -> str:
        # As large as a cached text may be, 4 bytes per character, with 16 distinct formulas: 10,000 of them would
        # hold 330 MB.
        math = "".join(f"$x_{{{i}}}^{{{j}}}$" for j in range(16))
        return math + "\U0001f600" * (formulas._CACHE_MAX_TEXT_CHARS - len(math))

    for i in range(10_000):
        extract_formulas(hostile(i))
    held = sum(
        sys.getsizeof(text) + sys.getsizeof(found) + sum(map(sys.getsizeof, found))
        for text, (found, _) in empty_formula_cache.items()
    )
    assert held <= formulas._CACHE_MAX_BYTES
    # The cap, not the number of texts, limited it: the cache is full and the oldest texts were dropped.
    assert held >= formulas._CACHE_MAX_BYTES // 2 and len(empty_formula_cache) < 10_000
    assert hostile(9_999) in empty_formula_cache and hostile(0) not in empty_formula_cache


# ---------------------------------------------------------------------------------------------------------------------
# SymPy canonical forms


@pytest.fixture
def empty_sympy_cache(monkeypatch):
    monkeypatch.setattr(sympy_forms, "_sympy_cache", LRUCache(maxsize=1_024))


def test_sympy_unifies_equivalent_spellings(empty_sympy_cache):
    texts = [
        r"$2x$ and $\frac{1}{2}$ and $x^2 + 1$ and $x = y$",
        r"$2 x$ and $0.5$ and $1 + x^{2}$ and $y = x$",
        r"$x \cdot 2$ and $\tfrac12$ and $1+x^2$ and $y=x$",
        r"$2\cdot x$",
    ]
    first, second, third, fourth = extract_formulas_batch(texts, canonicalize="sympy")
    assert first == second == third == {"Mul(2,x)", "1/2", "Add(1,Pow(x,2))", "Equality(x,y)"}
    assert fourth == {"Mul(2,x)"}
    # No algebra beyond parsing: an expansion is a different formula.
    expanded, factored = extract_formulas_batch(["$(x+1)^2$", "$x^2+2x+1$"], canonicalize="sympy")
    assert expanded != factored


def test_sympy_falls_back_to_the_string_form(empty_sympy_cache):
    stats: dict[str, int] = {}
    found = extract_formulas_batch([r"$a \star\star b$ and $f'(x)$ and $2x$"], canonicalize="sympy", stats=stats)[0]
    # `\star\star` does not parse; primes are never sent to SymPy since it would drop them.
    assert found == {r"a\star\star b", "f'(x)", "Mul(2,x)"}
    assert stats == {"timeouts": 0, "errors": 1}
    long_formula = "+".join(f"x_{{{i}}}" for i in range(60))
    assert len(next(iter(extract_formulas(f"${long_formula}$")))) > sympy_forms.SYMPY_MAX_FORMULA_CHARS
    assert extract_formulas(f"${long_formula}$", canonicalize="sympy") == extract_formulas(f"${long_formula}$")


def test_sympy_batch_makes_one_worker_call_and_caches(empty_sympy_cache, monkeypatch):
    calls: list[list[str]] = []
    real = sympy_forms.run_with_time_limit

    def counting(fn, items, seconds):
        calls.append(list(items))
        return real(fn, items, seconds)

    monkeypatch.setattr(sympy_forms, "run_with_time_limit", counting)
    texts = [f"$x + {i}$ and $y = {i % 3}$" for i in range(30)]
    first = extract_formulas_batch(texts, canonicalize="sympy")
    assert len(calls) == 1 and len(calls[0]) == 33
    assert first[4] == {"Add(4,x)", "Equality(1,y)"}
    assert extract_formulas_batch(texts, canonicalize="sympy") == first
    assert len(calls) == 1


def test_sympy_hostile_formula_is_cut_off(empty_sympy_cache):
    # Exact binomial of this size keeps SymPy busy in C code for far longer than the limit.
    hostile = r"\binom{100000000}{50000000}"
    extract_formulas_batch(["$z$"], canonicalize="sympy")  # start the worker outside the timed section
    stats: dict[str, int] = {}
    start = time.perf_counter()
    found = extract_formulas_batch([f"$x+1$ and ${hostile}$"], canonicalize="sympy", seconds=0.5, stats=stats)[0]
    elapsed = time.perf_counter() - start
    assert found == {"Add(1,x)", hostile}
    assert stats["timeouts"] == 1
    assert elapsed < 5.0
    # The timeout is cached: the same formula is not sent to the worker again.
    again: dict[str, int] = {}
    assert extract_formulas_batch([f"${hostile}$"], canonicalize="sympy", stats=again) == [{hostile}]
    assert again.get("timeouts", 0) == 0


def test_sympy_worker_failure_keeps_string_forms(empty_sympy_cache, monkeypatch, caplog):
    def broken(fn, items, seconds):
        return [Outcome("unavailable", "no worker")] * len(items)

    monkeypatch.setattr(sympy_forms, "run_with_time_limit", broken)
    with caplog.at_level("WARNING", logger="dsdr_trl.sympy_forms"):
        assert extract_formulas_batch(["$2 x$ and $y^{2}$"], canonicalize="sympy") == [{"2x", "y^2"}]
    assert "no worker" in caplog.text
    assert len(sympy_forms._sympy_cache) == 0
