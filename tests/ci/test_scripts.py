"""The repository commands the workflows call, run here as the runner runs them:
scripts/ci.sh, scripts/push-images.sh tags, scripts/deploy.sh (the playbook's model_server
step against each environment's inventory)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.ci.workflows import REPO

SHA = "0123456789abcdef0123456789abcdef01234567"


def run(*argv: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BEYONDFIT_"))}
    env.pop("PIP_CACHE_DIR", None)
    env.update(extra)
    return env


def env_of(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, ci.sh runs the command without sudo")
def test_ci_sh_points_the_caches_at_home_under_github_actions(tmp_path: Path) -> None:
    seen = env_of(
        run("scripts/ci.sh", "env", env=clean_env(GITHUB_ACTIONS="true", HOME=str(tmp_path)))
    )
    assert seen["BEYONDFIT_CACHE"] == f"{tmp_path}/.cache/beyondfit"
    assert seen["PIP_CACHE_DIR"] == f"{tmp_path}/.cache/pip"
    assert seen["GOCACHE"] == f"{tmp_path}/.cache/go-build"
    assert seen["GOMODCACHE"] == f"{tmp_path}/go/pkg/mod"
    assert seen["REGISTRY_AUTH_FILE"] == f"{tmp_path}/.docker/config.json"
    assert (seen["GIT_CONFIG_KEY_0"], seen["GIT_CONFIG_VALUE_0"]) == ("safe.directory", str(REPO))


def test_ci_sh_changes_nothing_elsewhere(tmp_path: Path) -> None:
    seen = env_of(run("scripts/ci.sh", "env", env=clean_env(HOME=str(tmp_path))))
    assert not {"BEYONDFIT_CACHE", "PIP_CACHE_DIR", "GIT_CONFIG_COUNT"} & set(seen)


def test_ci_sh_passes_the_exit_status_on() -> None:
    assert run("scripts/ci.sh", "false", env=clean_env()).returncode == 1


@pytest.mark.parametrize(
    ("ref", "tags"),
    [
        ("refs/heads/main", [SHA]),
        ("refs/tags/v1.4.2", [SHA, "1.4.2", "1.4"]),
        ("refs/tags/v10.0.13", [SHA, "10.0.13", "10.0"]),
        ("refs/tags/v1.4.2-rc.1", [SHA]),  # a pre-release moves no X.Y.Z / X.Y tag
        ("refs/tags/1.4.2", [SHA]),
        ("refs/pull/7/merge", [SHA]),
    ],
)
def test_image_tags(ref: str, tags: list[str]) -> None:
    proc = run("scripts/push-images.sh", "tags", env=clean_env(GITHUB_SHA=SHA, GITHUB_REF=ref))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == tags


def test_image_tags_need_a_commit_sha() -> None:
    proc = run("scripts/push-images.sh", "tags", env=clean_env(GITHUB_SHA="main"))
    assert proc.returncode != 0
    assert "not a commit sha" in proc.stderr


def test_deploy_refuses_an_unknown_environment(tmp_path: Path) -> None:
    proc = run(
        "scripts/deploy.sh",
        "nowhere",
        "ghcr.io/o/beyondfit",
        SHA,
        env=clean_env(HOME=str(tmp_path)),
    )
    assert proc.returncode != 0
    assert "no inventory inventories/nowhere" in proc.stderr


ENVIRONMENTS = ["staging", "production"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_deploy_runs_the_model_server_step_of_site_yml(environment: str, tmp_path: Path) -> None:
    """The release workflow's deploy command, with credentials as the environment secrets give
    them, up to the point where it would talk to the cluster: ansible-playbook parses the
    inventory and site.yml and lists the tasks `--tags model_server` selects."""
    if not any((REPO / p).exists() for p in ("site.yml", "playbooks", "inventories")):
        pytest.skip(
            "the Ansible entry point (site.yml, playbooks/, inventories/) is not in this tree"
        )
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = clean_env(
        HOME=str(home),
        TMPDIR=str(tmp),
        BEYONDFIT_KUBECONFIG_DATA="apiVersion: v1\nkind: Config\n",
        ANSIBLE_VAULT_PASSWORD="not-the-vault-password",
    )
    proc = run(
        "scripts/deploy.sh", environment, "ghcr.io/o/beyondfit", SHA, "--list-tasks",
        env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^playbook: site\.yml$", proc.stdout, re.M), proc.stdout
    # "role : task name<TAB>TAGS: [...]"; the roles' argument checks are tagged `always`
    # by Ansible and run with any --tags
    tasks = re.findall(r"^\s+(\w+) : (.+?)\tTAGS: \[(.*)\]$", proc.stdout, re.M)
    selected = [(role, name) for role, name, tags in tasks if "always" not in tags.split(", ")]
    assert {role for role, _ in selected} == {"model_server"}, proc.stdout
    assert any("helm upgrade --install" in name for _, name in selected), proc.stdout
    kubeconfig = home / ".kube" / f"beyondfit-{environment}"
    assert kubeconfig.read_text() == "apiVersion: v1\nkind: Config\n\n"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert list(tmp.iterdir()) == [], "the vault password file was left behind"
