"""scripts/test.sh all: a failing step does not stop the run; the summary names every failure.

Runs the real script in a scratch copy of the repository whose lint step and first layer
fail, so the layers after them must still run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def scratch_repo(root: Path) -> Path:
    (root / "scripts").mkdir(parents=True)
    for name in ("test.sh", "lib.sh", "versions.env"):
        shutil.copy(REPO / "scripts" / name, root / "scripts" / name)
    (root / "scripts/lint.sh").write_text("echo 'lint: 1 problem' >&2; exit 1\n")
    (root / ".venv").symlink_to(REPO / ".venv")
    for layer, body in {
        "first": "def test_broken():\n    assert 1 == 2\n",
        "second": "def test_fine():\n    assert 1 == 1\n",
    }.items():
        (root / "tests" / layer).mkdir(parents=True)
        (root / "tests" / layer / f"test_{layer}.py").write_text(body)
    # the set-up of a third layer fails: its tests must not be reported as passed
    (root / "tests/third").mkdir()
    (root / "tests/third/test_third.py").write_text("def test_fine():\n    pass\n")
    setup = root / "scripts/setup-third.sh"
    setup.write_text("#!/bin/sh\necho 'cannot install' >&2; exit 3\n")
    setup.chmod(0o755)
    return root


def test_every_layer_runs_and_the_summary_names_each_failure(tmp_path: Path) -> None:
    root = scratch_repo(tmp_path / "repo")
    env = dict(
        os.environ,
        BEYONDFIT_TEST_LAYERS="first second third",
        BEYONDFIT_HOST_LOCK=str(tmp_path / "host.lock"),
        BEYONDFIT_CACHE=str(tmp_path / "cache"),
        NO_COLOR="1",
    )
    env.pop("BEYONDFIT_HOST_LOCK_HELD", None)
    run = subprocess.run(
        ["bash", "scripts/test.sh", "all", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "1 passed" in run.stdout, out  # the layer after the failing one ran
    assert "1 failed" in run.stdout, out
    summary = out.split("summary (whole suite:", 1)[1]
    lines = {line.split()[0]: line.split()[1] for line in summary.splitlines()[1:5]}
    assert lines == {"lint": "FAILED", "first": "FAILED", "second": "passed", "third": "FAILED"}
    assert "failed: lint first third" in out
