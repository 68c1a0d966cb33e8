"""The notebooks run end to end (with tiny parameters, so they cannot go stale) and are committed without outputs."""

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# Tiny values for each notebook's parameters cell: every code path runs, in seconds rather than minutes.
TINY_PARAMETERS = {
    "01_quickstart.ipynb": "MAX_STEPS = 2\nPROMPTS_PER_STEP = 2\nNUM_GENERATIONS = 4\n",
    "02_dsdr_vs_grpo.ipynb": (
        "SEEDS = [0]\nMAX_STEPS = 1\nPROMPTS_PER_STEP = 2\nNUM_GENERATIONS = 2\nNUM_EVAL_PROBLEMS = 2\nNUM_SAMPLES = 2\n"
    ),
    "03_inside_a_group.ipynb": "NUM_GENERATIONS = 4\n",
    "04_your_own_grpo_script.ipynb": "MAX_STEPS = 2\nMAX_COMPLETION_LENGTH = 8\n",
}


def _parameters_cell(notebook) -> int:
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "each notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


def test_every_notebook_has_tiny_parameters():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TINY_PARAMETERS)


@pytest.mark.parametrize("name", sorted(TINY_PARAMETERS))
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"strip the outputs of {name}"


def _install_cell(notebook) -> int:
    tagged = [i for i, cell in enumerate(notebook.cells) if "install" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "each notebook needs exactly one cell tagged 'install'"
    return tagged[0]


def _run_install_cell(source: str, importable: bool, cwd: Path) -> list[str]:
    """Runs an install cell as IPython would, with `dsdr_trl` importable or not; returns the `%pip` lines it ran."""
    import importlib.util

    from IPython.core.inputtransformer2 import TransformerManager

    ran = []

    class Shell:
        def run_line_magic(self, magic, line, _stack_depth=1):
            ran.append(f"%{magic} {line}")

        def var_expand(self, line, stack_depth=0):
            return line

    code = TransformerManager().transform_cell(source)
    find_spec = importlib.util.find_spec
    cwd_before = os.getcwd()
    try:
        importlib.util.find_spec = lambda name, *args: find_spec(name, *args) if importable else None
        os.chdir(cwd)
        scope = {"get_ipython": Shell}
        exec(compile(code, "install-cell", "exec"), scope)  # noqa: S102 - the notebook's own cell, under test
    finally:
        importlib.util.find_spec = find_spec
        os.chdir(cwd_before)
    return [line.format(**scope) for line in ran]


@pytest.mark.parametrize("name", sorted(TINY_PARAMETERS))
def test_install_cell_installs_only_where_the_package_does_not_import(name, tmp_path):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = _install_cell(notebook)
    assert index < _parameters_cell(notebook)
    source = notebook.cells[index].source
    assert _run_install_cell(source, importable=True, cwd=NOTEBOOKS) == []  # this repository's .venv: nothing to do
    repository = NOTEBOOKS.parent
    assert _run_install_cell(source, importable=False, cwd=NOTEBOOKS) == [f'%pip install -q "{repository}[demo]"']
    assert _run_install_cell(source, importable=False, cwd=tmp_path) == ['%pip install -q "dsdr-trl[demo]"']
    with_torch = source.replace('TORCH = ""', 'TORCH = "torch==2.13.0 --index-url https://example.org/cpu"')
    assert _run_install_cell(with_torch, importable=False, cwd=tmp_path) == [
        "%pip install -q torch==2.13.0 --index-url https://example.org/cpu",
        '%pip install -q "dsdr-trl[demo]"',
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY_PARAMETERS))
def test_notebook_executes(name, tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = _parameters_cell(notebook)
    # The tiny values are appended, so the notebook's own defaults are still executed (and must at least parse).
    notebook.cells[index].source += (
        "\n# Test overrides\n" + TINY_PARAMETERS[name] + f"OUTPUT_DIR = {str(tmp_path)!r}\n"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel must be this interpreter, whose environment has dsdr_trl installed.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    if name == "02_dsdr_vs_grpo.ipynb":
        assert (tmp_path / "report.json").exists() and (tmp_path / "pass_at_k.png").exists()
