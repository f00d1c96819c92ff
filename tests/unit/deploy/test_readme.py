"""The README stays an entrance: short, with every setting in its configuration table, and no
link in it or in docs/ that leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

from worker.settings import ApiSettings, Settings

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
MAX_README_LINES = 260

# A row of the configuration table: its first cell is one variable name in backticks.
ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", re.MULTILINE)
# [text](target) — images too; the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def section(text: str, title: str) -> str:
    """The body of the `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text,
                      re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def configuration_rows() -> list[str]:
    return ROW.findall(section(README.read_text(), "Configuration"))


def test_every_setting_has_a_row_in_the_configuration_table() -> None:
    rows = set(configuration_rows())
    missing = [name for name in Settings.model_fields if name not in rows]
    assert missing == [], f"settings missing from the README's configuration table: {missing}"


def test_every_row_names_a_real_setting_once() -> None:
    rows = configuration_rows()
    known = set(Settings.model_fields) | set(ApiSettings.model_fields)
    assert [name for name in rows if name not in known] == []
    assert sorted({name for name in rows if rows.count(name) > 1}) == []


def test_the_readme_is_an_entrance_not_a_manual() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, \
        f"README.md has {len(lines)} lines; move detail into docs/ (limit {MAX_README_LINES})"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text,
                                                     re.MULTILINE)}


def broken_links(path: Path) -> list[str]:
    broken = []
    text = FENCE.sub("", path.read_text())
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no such heading)")
    return broken


def documents() -> list[Path]:
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def test_every_relative_link_leads_to_an_existing_file_and_heading() -> None:
    assert len(documents()) > 1
    broken = {str(p.relative_to(REPO)): b for p in documents() if (b := broken_links(p))}
    assert broken == {}


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A title\n\n[ok](a.md#a-title) [gone](b.md) "
                                   "[bad anchor](a.md#nope) [web](https://example.com)\n"
                                   "```\n[in a code block](c.md)\n```\n")
    assert broken_links(tmp_path / "a.md") == ["b.md (no such file)",
                                               "a.md#nope (no such heading)"]
