"""The house's import rules: the DSDR core never reaches into the front door (the CLI) or the annex (the toy task and
its model builders), and the config imports nothing of the package."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "dsdr_trl"
MODULES = sorted(PACKAGE.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the `dsdr_trl` modules that `path` imports, at any depth (function-level imports too)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "dsdr_trl" or name.startswith("dsdr_trl.")}


def name_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_the_rules_see_relative_and_function_level_imports():
    imports = imported_modules(PACKAGE / "scripts" / "train.py")
    assert "dsdr_trl.scripts.common" in imports  # a relative import at module level
    assert "dsdr_trl.trainer" in imports  # a relative import inside a function


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_core_and_front_door_never_import_the_annex(path):
    if name_of(path).startswith("dsdr_trl.toy") or name_of(path) == "dsdr_trl.scripts.demo":
        return  # the annex itself, and the front door's entry to it
    assert not {name for name in imported_modules(path) if name.startswith("dsdr_trl.toy")}


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_no_module_imports_the_cli(path):
    if name_of(path) == "dsdr_trl.__main__":
        return  # `python -m dsdr_trl` is the CLI
    assert not {name for name in imported_modules(path) if name.startswith("dsdr_trl.cli")}


def test_config_imports_nothing_of_the_package():
    assert imported_modules(PACKAGE / "config.py") == set()


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_the_annex_never_imports_the_front_door(path):
    if name_of(path).startswith("dsdr_trl.toy"):
        assert not {name for name in imported_modules(path) if name.startswith(("dsdr_trl.scripts", "dsdr_trl.cli"))}
