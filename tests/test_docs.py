"""README.md and docs/*.md point at things that exist: every relative link and image is a file (and every
#anchor a heading of it), and every `python -m X` names a runnable module. Modules are found without being
imported (importlib's path finder), so the check needs neither torch nor Gradio to start."""
from __future__ import annotations

import re
import sys
from collections import Counter
from importlib.machinery import PathFinder
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); the text may span lines. An optional "title" after the target.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
PYTHON_M = re.compile(r"\bpython3? -m ([A-Za-z_][\w.]*)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
MAX_IMAGE_BYTES = 300_000  # the README's screenshot is committed: kept small


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where links are not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if re.match(r"#{1,6} ", line):
            base = slug(line.lstrip("#"))
            found.add(f"{base}-{seen[base]}" if seen[base] else base)
            seen[base] += 1
    return found


def broken(page: Path) -> list[str]:
    """The relative links of a page whose file, or #anchor in it, does not exist."""
    wrong = []
    for target in links(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            wrong.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            wrong.append(f"{target}: no heading #{anchor} in {file.name}")
    return wrong


def runnable(module: str) -> bool:
    """`python -m module` would find it: a module, or a package with a __main__ (found, not imported)."""
    spec, path = None, [str(ROOT), *sys.path]
    for depth, part in enumerate(module.split(".")):
        name = ".".join(module.split(".")[:depth + 1])
        spec = PathFinder.find_spec(name, path)
        if spec is None:
            return False
        path = spec.submodule_search_locations or []
    return spec.submodule_search_locations is None or PathFinder.find_spec(f"{module}.__main__", path) is not None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_resolve(page):
    assert links(page.read_text()), f"{page.name} links to nothing"
    assert not broken(page), f"{page.relative_to(ROOT)}:\n" + "\n".join(broken(page))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_m_modules_exist(page):
    modules = sorted(set(PYTHON_M.findall(page.read_text())))
    missing = [m for m in modules if not runnable(m)]
    assert not missing, f"{page.relative_to(ROOT)} names modules that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme_and_images_are_small():
    readme = links((ROOT / "README.md").read_text())
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"
    for target in readme:
        if target.endswith((".png", ".jpg", ".gif", ".webp")):
            size = (ROOT / target).stat().st_size
            assert size < MAX_IMAGE_BYTES, f"{target} is {size:,} bytes"


def test_readme_is_also_the_space_card():
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    card = yaml.safe_load(text.split("---\n")[1])
    assert card["sdk"] == "gradio" and (ROOT / card["app_file"]).is_file()


def test_the_checks_catch_what_they_are_for(tmp_path):
    (tmp_path / "there.md").write_text("# A page: with `code`, and more\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-page-with-code-and-more) [second](there.md#twice-1) [web](https://x.org/y)\n"
                    "![a picture,\non two lines](gone.png) [bad anchor](there.md#nowhere) [self](#top)\n"
                    "# Top\n```\n[in code](not-a-link.md)\n```\n`[inline](nor-this.md)`\n")
    assert broken(page) == ["gone.png: no such file", "there.md#nowhere: no heading #nowhere in there.md"]
    assert runnable("train") and runnable("train.evaluate") and runnable("pytest")
    assert not runnable("model") and not runnable("train.no_such_module") and not runnable("no_such_package")
