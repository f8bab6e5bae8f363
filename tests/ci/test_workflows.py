"""The workflows' gating, read from the YAML: what runs when, with which rights, after what.

A deploy that could run after a failed test, for a fork, without an environment, with more
rights than it needs, or through an action that can change under us, fails here."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci.workflows import (
    PINNED,
    REPO,
    VERSION_COMMENT,
    Workflow,
    all_steps,
    composite_actions,
    git_modes,
    layer_target,
    layers,
    make_targets,
    needs,
    needs_closure,
    run_command,
    uses_lines,
    workflows,
)
from tests.support.versions import pinned_versions

# Layers that need what a hosted runner cannot give, with the reason (the README says the same).
WORKSTATION_ONLY = {
    "cluster": "builds Kubernetes from source and runs it on the host; CI uses kind instead",
    "ansible": "site.yml from nothing on the local cluster and its monitoring built from source",
}
# The only rights above `contents: read` any job holds, and why.
WRITE_RIGHTS = {
    ("release.yml", "images"): {
        "packages": "write",  # push to GHCR
        "id-token": "write",  # sign the attestations (Sigstore)
        "attestations": "write",  # store them
        "contents": "read",
    },
}
DEPLOY_JOBS = {("release.yml", "staging"): "staging", ("release.yml", "production"): "production"}
# A job condition with one of these runs after a failed or cancelled dependency.
OVERRIDES = re.compile(r"\b(always|failure|cancelled)\s*\(")


def wf(name: str) -> Workflow:
    assert name in workflows(), f".github/workflows/{name} is missing"
    return workflows()[name]


def test_the_workflows_exist() -> None:
    assert {"ci.yml", "release.yml", "promote.yml"} <= set(workflows())


@pytest.mark.parametrize("name", sorted(workflows()))
def test_no_rights_by_default(name: str) -> None:
    assert wf(name).data.get("permissions") == {}, f"{name}: top-level `permissions: {{}}`"


@pytest.mark.parametrize("name", sorted(workflows()))
def test_every_job_names_its_rights_and_a_timeout(name: str) -> None:
    for job_id, job in wf(name).jobs.items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{name} {job_id}: no job-level permissions"
        allowed = WRITE_RIGHTS.get((name, job_id), {"contents": "read"})
        assert perms == allowed or (perms.items() <= allowed.items()), (
            f"{name} {job_id}: permissions {perms}, allowed {allowed}"
        )
        if "uses" in job:  # a reusable workflow: its own jobs carry the timeouts
            continue
        minutes = job.get("timeout-minutes")
        assert isinstance(minutes, int), f"{name} {job_id}: no timeout-minutes"
        assert 0 < minutes <= 60, f"{name} {job_id}: timeout {minutes}"


def test_called_workflows_jobs_have_timeouts_too() -> None:
    for job_id, job in wf("ci.yml").jobs.items():
        assert isinstance(job.get("timeout-minutes"), int), f"ci.yml {job_id}: no timeout"


def test_every_third_party_action_is_pinned_by_commit_with_its_version() -> None:
    seen: dict[str, str] = {}
    lines = uses_lines()
    assert lines
    for where, value in lines:
        ref = value.partition("#")[0].strip()
        if ref.startswith("./"):
            assert (REPO / ref).exists(), f"{where}: local action {ref} is missing"
            continue
        assert PINNED.match(ref), f"{where}: {ref} is not pinned by a full commit sha"
        assert VERSION_COMMENT.search(value), f"{where}: {ref} has no `# vX.Y.Z` comment"
        action, sha = ref.split("@")
        assert seen.setdefault(action, sha) == sha, f"{action} pinned to two commits"


@pytest.mark.parametrize("name", sorted(workflows()))
def test_concurrency(name: str) -> None:
    conc = wf(name).data.get("concurrency")
    assert isinstance(conc, dict), f"{name}: no concurrency"
    assert "${{" in conc["group"], f"{name}: a fixed concurrency group"
    if name == "ci.yml":
        # superseded pull-request runs are cancelled
        assert conc["cancel-in-progress"] is True
        assert "pull_request.number" in conc["group"]
    else:
        # a release or a promotion is never cut off half-way
        assert conc["cancel-in-progress"] is False


def test_no_trigger_runs_untrusted_code_with_secrets() -> None:
    for name, w in workflows().items():
        assert not {"pull_request_target", "workflow_run"} & set(w.on), name
    assert set(wf("ci.yml").on) <= {"pull_request", "workflow_call", "workflow_dispatch", "push"}
    assert set(wf("release.yml").on) == {"push"}
    assert set(wf("promote.yml").on) == {"workflow_dispatch"}


def test_ci_uses_no_secret_and_release_passes_it_none() -> None:
    assert "secrets." not in wf("ci.yml").text
    tests_job = wf("release.yml").jobs["tests"]
    assert tests_job["uses"] == "./.github/workflows/ci.yml"
    assert "secrets" not in tests_job


def test_secrets_only_in_jobs_behind_an_environment() -> None:
    for name, w in workflows().items():
        for job_id, job in w.jobs.items():
            used = set(re.findall(r"secrets\.(\w+)", yaml.safe_dump(job)))
            if (name, job_id) == ("release.yml", "images"):
                assert used <= {"GITHUB_TOKEN"}, used
            elif used:
                assert job.get("environment"), f"{name} {job_id} uses {used} without environment"


def test_every_layer_is_a_ci_job_or_documented_as_workstation_only() -> None:
    ci = wf("ci.yml")
    commands = {
        job_id: [run_command(s) for s in job["steps"] if "run" in s]
        for job_id, job in ci.jobs.items()
    }
    for layer in layers():
        if layer in WORKSTATION_ONLY:
            continue
        target = layer_target(layer)
        jobs = [j for j, cmds in commands.items() if ["scripts/ci.sh", "make", target] in cmds]
        assert len(jobs) == 1, f"layer {layer} (make {target}): ci.yml jobs {jobs}"
    lint = [j for j, cmds in commands.items() if ["scripts/ci.sh", "make", "lint"] in cmds]
    assert lint, "no ci.yml job runs `make lint`"
    readme = (REPO / "README.md").read_text()
    for layer in WORKSTATION_ONLY:
        if layer in layers():
            assert f"tests/{layer}" in readme, f"README does not say where tests/{layer} runs"


def test_no_test_job_can_be_skipped_or_ignored() -> None:
    """A reusable workflow succeeds with skipped jobs: a conditional test job, or one allowed
    to fail, would let release.yml go on without it."""
    for job_id, job in wf("ci.yml").jobs.items():
        assert "if" not in job, f"ci.yml {job_id} is conditional"
        assert not job.get("continue-on-error"), f"ci.yml {job_id} may fail"
        for step in job["steps"]:
            assert "if" not in step, f"ci.yml {job_id}: conditional step {step}"
            assert not step.get("continue-on-error"), f"ci.yml {job_id}: {step} may fail"


def test_images_are_published_only_after_every_test() -> None:
    rel = wf("release.yml")
    assert needs(rel.jobs["images"]) == ["tests"]
    for job_id, job in rel.jobs.items():
        condition = str(job.get("if", ""))
        assert not OVERRIDES.search(condition), f"release.yml {job_id}: if: {condition}"
        assert not job.get("continue-on-error"), job_id
        for step in job.get("steps", []):
            assert not step.get("continue-on-error"), f"release.yml {job_id}: {step}"
            assert not OVERRIDES.search(str(step.get("if", ""))), f"release.yml {job_id}: {step}"


@pytest.mark.parametrize(("workflow", "job_id"), sorted(DEPLOY_JOBS))
def test_deploys_follow_tests_and_images_on_main_behind_their_environment(
    workflow: str, job_id: str
) -> None:
    w = wf(workflow)
    job = w.jobs[job_id]
    assert {"tests", "images"} <= set(needs(job)), f"{job_id} needs {needs(job)}"
    env = job["environment"]
    assert (env["name"] if isinstance(env, dict) else env) == DEPLOY_JOBS[(workflow, job_id)]
    condition = job["if"]
    assert "github.event_name == 'push'" in condition
    assert "github.ref == 'refs/heads/main'" in condition
    assert job["concurrency"]["cancel-in-progress"] is False
    deploys = [run_command(s) for s in job["steps"] if "run" in s and "deploy.sh" in s["run"]]
    assert deploys == [
        ["scripts/ci.sh", "scripts/deploy.sh", DEPLOY_JOBS[(workflow, job_id)], "$IMAGE", "$TAG"]
    ]


def test_production_waits_for_staging() -> None:
    rel = wf("release.yml")
    assert "staging" in needs_closure(rel, "production")
    assert {"tests", "images"} <= needs_closure(rel, "staging")


def test_promotion_is_manual_from_main_behind_the_chosen_environment() -> None:
    promote = wf("promote.yml")
    inputs = promote.on["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == ["staging", "production"]
    (job,) = promote.jobs.values()
    assert job["environment"]["name"] == "${{ inputs.environment }}"
    assert job["if"] == "github.ref == 'refs/heads/main'"
    (train,) = [run_command(s) for s in job["steps"] if "run" in s and "promote.sh" in s["run"]]
    assert train[:2] == ["scripts/ci.sh", "scripts/promote.sh"]


def test_inputs_reach_run_steps_only_through_the_environment() -> None:
    """`${{ }}` inside `run:` is pasted into the shell before it runs (script injection)."""
    for where, step in all_steps():
        if "run" in step:
            assert "${{" not in str(step["run"]), f"{where}: expression inside run:"


def test_every_run_step_is_a_repository_command() -> None:
    """No logic lives only in the YAML: each step is `scripts/ci.sh` followed by a Makefile
    target or a script of this repository, so running the same command locally is the check."""
    targets = make_targets()
    modes = git_modes()
    steps = [(where, run_command(step)) for where, step in all_steps() if "run" in step]
    assert steps
    for where, words in steps:
        assert words[0] == "scripts/ci.sh", f"{where}: {words}"
        command = words[1]
        if command == "make":
            assert len(words) == 3, f"{where}: {words}"
            assert words[2] in targets, f"{where}: no make target {words[2]}"
            continue
        path = REPO / command
        assert path.is_file(), f"{where}: {command} is not in the repository"
        assert os.access(path, os.X_OK), f"{where}: {command} is not executable"
        assert modes.get(command, "100755") == "100755", (
            f"{where}: git has {command} not executable"
        )


def test_checkouts_keep_no_credentials() -> None:
    for where, step in all_steps():
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, where


def test_python_and_go_of_the_runners_are_the_pins(tmp_path: Path) -> None:
    steps = composite_actions()["setup"].data["runs"]["steps"]
    (pins,) = [s for s in steps if s.get("id") == "pins"]
    assert run_command(pins) == ["scripts/ci.sh", "scripts/ci-versions.sh"]
    assert steps.index(pins) == 0, "the pins come before the steps that read them"
    with_of = {str(s.get("uses", "")).split("@")[0]: s.get("with", {}) for s in steps}
    assert (
        with_of["actions/setup-python"]["python-version"] == "${{ steps.pins.outputs.PYTHON_MIN }}"
    )
    assert with_of["actions/setup-go"]["go-version"] == "${{ steps.pins.outputs.GO_VERSION }}"
    # what the step writes
    out = tmp_path / "github_output"
    subprocess.run(
        [str(REPO / "scripts/ci-versions.sh")], env={"GITHUB_OUTPUT": str(out)}, check=True
    )
    written = dict(line.split("=", 1) for line in out.read_text().splitlines())
    pins_env = pinned_versions()
    assert written["PYTHON_MIN"] == pins_env["PYTHON_MIN"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", written["GO_VERSION"]), written["GO_VERSION"]
    assert written == pins_env


def test_pip_and_go_build_caches() -> None:
    paths = [
        str(s["with"]["path"])
        for s in composite_actions()["setup"].data["runs"]["steps"]
        if str(s.get("uses", "")).startswith("actions/cache@")
    ]
    joined = "\n".join(paths)
    # the places scripts/ci.sh points pip and Go at
    ci_dirs = re.findall(r"\$HOME/[\w./-]+", (REPO / "scripts/ci.sh").read_text())
    for path in ("~/.cache/pip", "~/.cache/go-build", "~/go/pkg/mod", "~/.cache/beyondfit/bin"):
        assert path in joined, f"{path} is not cached"
        home_path = path.replace("~", "$HOME")
        assert any(home_path.startswith(d) for d in ci_dirs), f"scripts/ci.sh does not use {path}"


def dependabot() -> dict[str, Any]:
    data = yaml.safe_load((REPO / ".github/dependabot.yml").read_text())
    assert data["version"] == 2
    return {u["package-ecosystem"]: u for u in data["updates"]}


def covered(directory: str, update: dict[str, Any]) -> bool:
    patterns = update.get("directories") or [update["directory"]]
    return any(fnmatch.fnmatch(directory, p) for p in patterns)


def test_dependabot_covers_every_manifest() -> None:
    updates = dependabot()
    assert set(updates) == {"pip", "github-actions", "docker", "gomod"}
    tracked = list(git_modes())
    for path in tracked:
        d = "/" + os.path.dirname(path) if os.path.dirname(path) else "/"
        name = os.path.basename(path)
        if name == "go.mod":
            assert covered(d, updates["gomod"]), f"{path} not covered by Dependabot"
        if name == "Dockerfile" or name.endswith(".Dockerfile"):
            assert covered(d, updates["docker"]), f"{path} not covered by Dependabot"
    assert covered("/requirements", updates["pip"])
    assert (REPO / "requirements/constraints.txt").exists()
    for action in composite_actions():
        assert covered(f"/.github/actions/{action}", updates["github-actions"])
    assert covered("/", updates["github-actions"])
