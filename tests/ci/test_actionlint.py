"""actionlint (ACTIONLINT_VERSION, scripts/setup-ci.sh) passes on every workflow and composite
action, ShellCheck included; and it does fail on the faults it is here to catch."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ci.workflows import REPO
from tests.support.versions import pinned_versions

BIN = Path(os.environ.get("BEYONDFIT_CACHE", "/var/cache/beyondfit")) / "bin"


def actionlint(cwd: Path, *files: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / "actionlint"
    if not exe.exists():
        pytest.fail("actionlint is not installed: run scripts/setup-ci.sh", pytrace=False)
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is not on PATH: run scripts/setup-ci.sh", pytrace=False)
    return subprocess.run(
        [str(exe), "-no-color", *files], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_actionlint_is_the_pinned_version() -> None:
    out = subprocess.run(
        [str(BIN / "actionlint"), "-version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[0] == pinned_versions()["ACTIONLINT_VERSION"]


def test_every_workflow_passes() -> None:
    proc = actionlint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    """The repository's .github in a scratch git repository, with one change in ci.yml."""
    shutil.copytree(REPO / ".github", tmp_path / ".github")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    ci = tmp_path / ".github/workflows/ci.yml"
    text = ci.read_text()
    assert old in text
    ci.write_text(text.replace(old, new, 1))
    return ci


def test_the_scratch_copy_passes_unchanged(tmp_path: Path) -> None:
    broken_copy(tmp_path, "make lint", "make lint")
    proc = actionlint(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_runs_on_run_steps(tmp_path: Path) -> None:
    broken_copy(tmp_path, "run: scripts/ci.sh make lint", "run: scripts/ci.sh make $TARGETS")
    proc = actionlint(tmp_path)
    assert proc.returncode == 1
    assert "shellcheck reported issue" in proc.stdout, proc.stdout
    assert "SC2086" in proc.stdout, proc.stdout


def test_bad_expressions_fail(tmp_path: Path) -> None:
    broken_copy(
        tmp_path,
        "group: ci-${{ github.event.pull_request.number || github.run_id }}",
        "group: ci-${{ github.evnt.pull_request.number || github.run_id }}",
    )
    proc = actionlint(tmp_path)
    assert proc.returncode == 1
    assert "evnt" in proc.stdout, proc.stdout
