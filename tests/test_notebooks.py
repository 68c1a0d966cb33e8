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
