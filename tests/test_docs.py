"""The README and the docs: their links resolve, and the README's first screen shows how to install and use the trainer."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "configs" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page):
    targets = [target for target in LINK.findall(page.read_text()) if "://" not in target]
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_readme_first_screen_installs_and_builds_the_trainer():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    first = lines[:60]
    assert any(line.startswith("pip install") for line in first)
    assert any("DSDRGRPOTrainer(" in line for line in first)
    assert "<!-- effect -->" in lines and "<!-- /effect -->" in lines


def test_every_dsdr_trl_flag_in_the_readme_is_in_its_commands_help(capsys):
    from dsdr_trl import cli

    # Launch flags are taken off before the parser, as `trl grpo` does; `--config` is read before it too.
    before_the_parser = {"--config", "--accelerate_config", "--num_processes"}
    commands = re.findall(r"^dsdr-trl (train|eval) (.*?)(?<!\\)$", (ROOT / "README.md").read_text(), re.M | re.S)
    assert {command for command, _ in commands} == {"train", "eval"}
    for command, rest in commands:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        help_text = capsys.readouterr().out
        for flag in set(re.findall(r"(--[a-z_]+)", rest)) - before_the_parser:
            assert f"{flag} " in help_text, (command, flag)


def test_readme_cites_the_paper_as_the_model_cards_do():
    import yaml

    from dsdr_trl.config import DSDR_PAPER

    readme = (ROOT / "README.md").read_text()
    assert DSDR_PAPER["citation"] in readme  # one BibTeX entry, with every author
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())["preferred-citation"]
    names = [f"{author['family-names']}, {author['given-names']}" for author in cff["authors"]]
    assert " and ".join(names) == re.sub(r"\s+", " ", re.search(r"author\s*=\s*\{(.*?)\},", readme, re.S)[1])
