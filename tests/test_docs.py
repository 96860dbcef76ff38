"""The README and docs/ stay true: their links lead somewhere, the README stays short, and the
commands they show still run.

A fenced block with the info string ``console`` is a promise that each of its ``$ `` lines runs
as written from the repository root, with no camera, in a few seconds, and writes nothing into
the checkout; this test runs them all and expects exit status 0. Commands that need a camera, a
network, minutes or a trained model's data go in ``sh`` blocks, which are read, never run.
``../shared/`` in a command stands for the shared material (``$GATEKEEPER_SHARED`` when set).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]

#: CI (.ci/run) runs this command; the README must show it exactly.
TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install -e ".[train,dev,web,report]" && .venv/bin/python -m pytest'
)
MAX_README_LINES = 250
#: Enough to notice when a command hangs, generous for a machine under load.
COMMAND_TIMEOUT_S = 120

FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code removed (a link inside code is no link)."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (lower case, punctuation dropped,
    spaces to hyphens, ``-1``, ``-2``... for repeats)."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def relative_links(doc: Path) -> list[str]:
    return [
        t for t in LINK.findall(without_code(doc.read_text(encoding="utf-8"))) if not re.match(r"[a-z][a-z0-9+.-]*:", t)
    ]


def console_commands() -> list[tuple[str, str]]:
    """(where, command) for every ``$ `` line of every ``console`` block in the README and docs/."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            if block.group(1) != "console":
                continue
            first = text.count("\n", 0, block.start(2)) + 1
            for i, line in enumerate(block.group(2).splitlines()):
                if line.startswith("$ "):
                    found.append((f"{doc.relative_to(REPO)}:{first + i}", line[2:].strip()))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(doc: Path) -> None:
    links = relative_links(doc)
    broken = []
    for link in links:
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(f"{link}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading with anchor #{anchor} in {path.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_the_docs_link_to_each_other() -> None:
    """The README maps every document in docs/, so none is an orphan."""
    mapped = {(REPO / link.partition("#")[0]).resolve() for link in relative_links(README)}
    assert set(DOCS[1:]) <= mapped, f"not linked from the README: {sorted(str(p.name) for p in set(DOCS[1:]) - mapped)}"


def test_the_readme_is_short_and_shows_the_ci_test_command() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines, expected at most {MAX_README_LINES}: move detail into docs/"
    )
    assert TEST_COMMAND in lines, "README.md must show the test command CI runs, exactly"


def test_the_runnable_commands_are_found() -> None:
    """The extraction works: the quick commands the README promises are among the ones run."""
    commands = [c for _, c in console_commands()]
    for expected in ("gatekeeper --help", "gatekeeper --check-config --config config.yaml", "gatekeeper events --help"):
        assert expected in commands
    assert any(c.startswith("gatekeeper --video ../shared/videos/") and "--dry-run" in c for c in commands)


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for each distinct command, ``where`` naming every place that shows it:
    a command shown in two places is run once (the same command, the same answer)."""
    places: dict[str, list[str]] = {}
    for where, command in console_commands():
        places.setdefault(command, []).append(where)
    return [(", ".join(where), command) for command, where in places.items()]


def test_each_documented_command_is_run_once_for_all_its_places() -> None:
    commands = [c for _, c in console_commands()]
    assert sorted(c for _, c in documented_commands()) == sorted(set(commands))
    assert sum(len(w.split(", ")) for w, _ in documented_commands()) == len(commands)


@pytest.mark.slow
@pytest.mark.parametrize(("where", "command"), documented_commands(), ids=[w for w, _ in documented_commands()])
def test_a_documented_command_runs(where: str, command: str, shared_dir: Path) -> None:
    argv = [
        arg.replace("../shared/", f"{shared_dir}/", 1) if arg.startswith("../shared/") else arg
        for arg in shlex.split(command)
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    last = (proc.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
    assert proc.returncode == 0, f"{where}: `{command}` exited {proc.returncode}: {last}"
