"""Helpers for the Ansible tests: ansible-playbook as a user runs it, from the repository
root (where ansible.cfg is), with the project's .venv on PATH, and its PLAY RECAP parsed."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
CACHE = Path(os.environ.get("BEYONDFIT_CACHE", "/var/cache/beyondfit"))
INVENTORIES = ("local", "minikube", "staging", "production")
ROLES = ("cluster", "monitoring", "mlflow", "train", "model_server")


@dataclass(frozen=True)
class Run:
    """One ansible-playbook run: exit code, output, and the PLAY RECAP of localhost."""

    rc: int
    out: str
    recap: dict[str, int]

    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported `changed`, in the order they ran."""
        names, current = [], None
        for line in self.out.splitlines():
            m = re.match(r"TASK \[(.*)\] \*+", line)
            if m:
                current = m.group(1)
            elif line.startswith("changed:") and current and (not names or names[-1] != current):
                names.append(current)
        return names

    def __str__(self) -> str:
        return f"rc={self.rc} recap={self.recap}\n{self.out[-6000:]}"


def ansible_env() -> dict[str, str]:
    path = f"{VENV_BIN}{os.pathsep}{CACHE / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    # ANSIBLE_FORCE_COLOR off and no cowsay: the output is parsed.
    return dict(os.environ, PATH=path, ANSIBLE_NOCOLOR="1", ANSIBLE_NOCOWS="1",
                ANSIBLE_HOME=str(CACHE / "ansible-home"))  # fmt: skip


def playbook(inventory: str, book: str, *args: str, timeout: float = 1800) -> Run:
    """`ansible-playbook -i inventories/<inventory> <book> <args>` from the repository root."""
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", f"inventories/{inventory}", book, *args],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout + proc.stderr
    recap: dict[str, int] = {}
    m = re.search(r"^localhost\s*:\s*(.*)$", out, re.M)
    if m:
        recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
    return Run(proc.returncode, out, recap)


def tool(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """A tool of the .venv (ansible-lint, yamllint, ansible-galaxy ...) from the repository root."""
    return subprocess.run(
        [str(VENV_BIN / name), *args],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
