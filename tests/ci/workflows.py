"""The GitHub Actions files of the repository, read once: workflows, composite actions,
Dependabot, and the repository facts they must agree with (Makefile targets, test layers)."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
ACTIONS = REPO / ".github" / "actions"

# `owner/repo[/path]@<40 hex> # v<version>`: a third-party action pinned by commit.
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+){0,2}\s*$")


@dataclass(frozen=True)
class Workflow:
    path: Path
    text: str
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def on(self) -> dict[str, Any]:
        # YAML 1.1 reads the key `on` as the boolean True.
        raw = self.data.get("on", self.data.get(True))
        if isinstance(raw, str):
            return {raw: None}
        if isinstance(raw, list):
            return dict.fromkeys(raw)
        assert isinstance(raw, dict), f"{self.name}: no triggers"
        return raw

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        jobs: dict[str, dict[str, Any]] = self.data["jobs"]
        return jobs


def load(path: Path) -> Workflow:
    text = path.read_text()
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"{path}: not a mapping"
    return Workflow(path, text, data)


@cache
def workflows() -> dict[str, Workflow]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    return {p.name: load(p) for p in files}


@cache
def composite_actions() -> dict[str, Workflow]:
    return {p.parent.name: load(p) for p in sorted(ACTIONS.glob("*/action.y*ml"))}


def all_steps() -> list[tuple[str, dict[str, Any]]]:
    """(where, step) for every step of every job and every composite action."""
    out = []
    for wf in workflows().values():
        for job_id, job in wf.jobs.items():
            for i, step in enumerate(job.get("steps", [])):
                out.append((f"{wf.name} job {job_id} step {i}", step))
    for name, action in composite_actions().items():
        for i, step in enumerate(action.data["runs"]["steps"]):
            out.append((f"action {name} step {i}", step))
    return out


def uses_lines() -> list[tuple[str, str]]:
    """(file, line) for every `uses:` line of the workflows and composite actions, as written
    (the version comment is only in the text)."""
    out = []
    for wf in [*workflows().values(), *composite_actions().values()]:
        for line in wf.text.splitlines():
            m = re.match(r"^\s*(-\s+)?uses:\s*(.+)$", line)
            if m:
                out.append((str(wf.path.relative_to(REPO)), m.group(2).strip()))
    return out


def needs(job: dict[str, Any]) -> list[str]:
    raw = job.get("needs", [])
    return [raw] if isinstance(raw, str) else list(raw)


def needs_closure(wf: Workflow, job_id: str) -> set[str]:
    """Every job that must succeed before `job_id` starts."""
    seen: set[str] = set()
    todo = needs(wf.jobs[job_id])
    while todo:
        j = todo.pop()
        if j not in seen:
            seen.add(j)
            todo.extend(needs(wf.jobs[j]))
    return seen


@cache
def make_targets() -> dict[str, str]:
    """Makefile target -> its recipe (the lines after the rule)."""
    targets: dict[str, str] = {}
    current = None
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"^([a-z][a-z0-9-]*):", line)
        if m:
            current = m.group(1)
            targets[current] = ""
        elif line.startswith("\t") and current:
            targets[current] += line.strip() + "\n"
        elif line.strip() and not line.startswith("#"):
            current = None
    return targets


def layers() -> list[str]:
    """The test layers of `make test` (the default of LAYERS in scripts/test.sh)."""
    text = (REPO / "scripts" / "test.sh").read_text()
    m = re.search(r"^LAYERS=\((?:\$\{BEYONDFIT_TEST_LAYERS:-)?([a-z0-9 ]+)\}?\)", text, re.M)
    assert m, "no LAYERS=(...) in scripts/test.sh"
    return m.group(1).split()


def layer_target(layer: str) -> str:
    """The make target whose recipe is `scripts/test.sh <layer>`."""
    found = [
        t
        for t, recipe in make_targets().items()
        if re.search(rf"scripts/test\.sh {layer}\b", recipe)
    ]
    assert len(found) == 1, f"layer {layer}: make targets {found}"
    return found[0]


def run_command(step: dict[str, Any]) -> list[str]:
    """The words of a `run:` step (folded lines joined)."""
    return shlex.split(" ".join(str(step["run"]).split()))


@cache
def git_modes() -> dict[str, str]:
    """Path -> the mode git records (100755: a fresh checkout can run it)."""
    out = subprocess.run(
        ["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return {line.split("\t", 1)[1]: line.split()[0] for line in out.splitlines()}
