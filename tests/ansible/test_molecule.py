"""Molecule scenarios of the roles that can run without a cluster (molecule's default driver,
against the controller): train, against a real MLflow server its prepare step starts."""

from __future__ import annotations

import subprocess

import pytest

from tests.ansible.conftest import REPO, VENV_BIN, ansible_env

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("role", ["train"])
def test_molecule_scenario(role: str) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "molecule"), "test"],
        cwd=REPO / "playbooks/roles" / role,
        env=dict(ansible_env(), PY_COLORS="0"),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    for step in ("prepare", "converge", "idempotence", "verify", "cleanup", "destroy"):
        assert f"{step}: Executed: Successful" in out, step
