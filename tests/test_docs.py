"""The docs and the shipped files agree: every path a page names exists, nothing ships unused.

These guard issue 27's repository findings: a results page that grew into a lab notebook, links
to files a clone does not have, and checkpoints that no code or README uses.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKPOINT_READMES = sorted((ROOT / "checkpoints").glob("*/README.md"))


def _expand_braces(text: str) -> list[str]:
    """`a_{x,y}.json` -> [`a_x.json`, `a_y.json`] (shell brace expansion, as the docs write it)."""
    parts = re.split(r"\{([^{}]*)\}", text)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def _run_files_named(text: str) -> set[str]:
    names: set[str] = set()
    for m in re.finditer(r"docs/runs/([\w.,{}*\-]+)", text):
        for name in _expand_braces(m.group(1).rstrip(".,")):
            names.add(name)
    return names


def _all_doc_text() -> str:
    return "\n".join(p.read_text() for p in [*PAGES, *CHECKPOINT_READMES])


def test_every_raw_result_a_page_names_exists_and_every_one_is_named():
    patterns = _run_files_named(_all_doc_text())  # names, or globs such as `x*.json`
    present = {p.name for p in (ROOT / "docs" / "runs").iterdir()}
    missing = sorted(n for n in patterns if not fnmatch.filter(present, n))
    assert not missing, f"docs name raw results that do not exist: {missing}"
    named = {name for n in patterns for name in fnmatch.filter(present, n)}
    unnamed = sorted(present - named)
    assert not unnamed, f"docs/runs holds files no page names (history lives in git): {unnamed}"


def test_results_page_is_the_current_state_one_table_per_area():
    text = (ROOT / "docs" / "results.md").read_text()
    assert len(text.splitlines()) <= 250, "docs/results.md is a summary, not a lab notebook"
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert len(sections) >= 6
    for section in sections:
        title = section.splitlines()[0]
        if "no longer in the tree" in title:
            continue
        first_table = section.find("\n|")
        assert first_table > 0, f"section {title!r} has no table"
        assert "```bash" in section[:first_table], f"section {title!r}: no command above its table"
    assert not re.search(r"^#{3} \d{4}-\d\d-\d\d", text, flags=re.M), "dated lab-notebook entries"


def test_shipped_checkpoints_are_exactly_what_code_or_readme_uses():
    used_by = "\n".join(
        p.read_text()
        for p in [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "src").rglob("*.py"))]
    )
    shipped = {p.parent.name for p in (ROOT / "checkpoints").glob("*/*.json")}
    ensembles = {
        Path(m).name
        for p in (ROOT / "checkpoints").glob("*/ensemble.json")
        for m in re.findall(r'"\.\./([\w]+)"', p.read_text())
    }
    unused = sorted(n for n in shipped if n not in used_by and n not in ensembles)
    assert not unused, f"checkpoints/ ships folders nothing uses by default: {unused}"


@pytest.mark.parametrize("page", [*PAGES, ROOT / "Makefile"], ids=lambda p: p.name)
def test_pages_name_only_checkpoints_that_exist(page: Path):
    text = page.read_text()
    missing = sorted(
        {n for n in re.findall(r"(?<!--out )checkpoints/([a-z0-9_]+)", text) if not (ROOT / "checkpoints" / n).is_dir()}
    )
    assert not missing, f"{page.name} names checkpoints that are not shipped: {missing}"


def test_pages_do_not_link_outside_the_repository():
    for page in PAGES:
        assert "../shared" not in page.read_text(), f"{page.name} points at ../shared, which a clone lacks"
