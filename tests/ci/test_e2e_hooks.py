"""The hooks that let the e2e job use kind: scripts/setup-e2e.sh takes the cluster from
BEYONDFIT_KUBECONFIG and loads images with BEYONDFIT_LOAD_IMAGE (defaults: the local cluster,
cluster/load-image.sh), and ci.yml's e2e job wires kind to them.

setup-e2e.sh runs for real in a scratch copy of the repository whose tools, image build and
cluster scripts only record that they were called."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.ci.workflows import REPO, run_command, workflows

RECORDER = '#!/usr/bin/env bash\necho "{name} $*" >>"$RECORD"\n'


def scratch(root: Path) -> Path:
    for rel in ("scripts/setup-e2e.sh", "scripts/lib.sh", "scripts/versions.env"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    stubs = {
        "scripts/setup-charts.sh": "setup-charts",
        "scripts/setup-images.sh": "setup-images",
        "scripts/build-images.sh": "build-images",
        "cluster/up.sh": "cluster-up",
        "cluster/load-image.sh": "load-local",
        "tools/kind-load": "load-kind",
    }
    for rel, name in stubs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(RECORDER.format(name=name))
        path.chmod(0o755)
    (root / "charts/beyondfit").mkdir(parents=True)
    (root / "charts/beyondfit/Chart.yaml").write_text('name: beyondfit\nappVersion: "9.9.9"\n')
    return root


def setup_e2e(root: Path, **env: str) -> list[str]:
    record = root / "record"
    full = {k: v for k, v in os.environ.items() if not k.startswith("BEYONDFIT_")}
    full.update(RECORD=str(record), BEYONDFIT_CACHE=str(root / "cache"), **env)
    proc = subprocess.run(
        ["bash", str(root / "scripts/setup-e2e.sh")],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return record.read_text().splitlines()


IMAGES = "localhost/beyondfit:9.9.9 localhost/beyondfit-mlflow:9.9.9"


def test_by_default_the_local_cluster_is_started_and_gets_the_images(tmp_path: Path) -> None:
    calls = setup_e2e(scratch(tmp_path))
    assert calls == [
        "setup-charts ",
        "setup-images ",
        "build-images all",
        "cluster-up ",
        f"load-local {IMAGES}",
    ]


def test_a_given_cluster_is_used_as_it_is_and_loaded_by_the_given_command(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    calls = setup_e2e(
        root, BEYONDFIT_KUBECONFIG="/dev/null", BEYONDFIT_LOAD_IMAGE="tools/kind-load"
    )
    assert calls == ["setup-charts ", "setup-images ", "build-images all", f"load-kind {IMAGES}"]


def test_the_load_command_may_carry_arguments(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    calls = setup_e2e(
        root, BEYONDFIT_KUBECONFIG="/dev/null", BEYONDFIT_LOAD_IMAGE="tools/kind-load --into kind"
    )
    assert calls[-1] == f"load-kind --into kind {IMAGES}"


def subnets(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*(podSubnet|serviceSubnet):\s*\"?([0-9./]+)\"?\s*$", text, re.M))


def test_kind_gets_the_local_clusters_address_ranges() -> None:
    """The tests reach Services and pods by address; kind.sh routes these ranges."""
    kind = subnets((REPO / "cluster/kind.yaml").read_text())
    env_sh = dict(
        re.findall(r"^(POD_CIDR|SERVICE_CIDR)=(\S+)$", (REPO / "cluster/env.sh").read_text(), re.M)
    )
    assert kind == {"podSubnet": env_sh["POD_CIDR"], "serviceSubnet": env_sh["SERVICE_CIDR"]}


def test_the_e2e_job_wires_kind_to_the_hooks() -> None:
    job = workflows()["ci.yml"].jobs["e2e"]
    (kind,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("helm/kind-action@")]
    assert kind["with"]["config"] == "cluster/kind.yaml"
    assert kind["with"]["cluster_name"] == job["env"]["KIND_CLUSTER_NAME"]
    kubeconfig = kind["with"]["kubeconfig"]
    runs = {tuple(run_command(s)): s for s in job["steps"] if "run" in s}
    prepare = runs[("scripts/ci.sh", "cluster/kind.sh", "prepare")]
    e2e = runs[("scripts/ci.sh", "make", "e2e")]
    assert prepare["env"]["BEYONDFIT_KUBECONFIG"] == kubeconfig
    assert e2e["env"]["BEYONDFIT_KUBECONFIG"] == kubeconfig
    assert list(runs).index(tuple(run_command(prepare))) < list(runs).index(tuple(run_command(e2e)))
    load = shlex.split(job["env"]["BEYONDFIT_LOAD_IMAGE"])
    assert load == ["cluster/kind.sh", "load"]
    assert "  load)" in (REPO / "cluster/kind.sh").read_text()


def test_kind_sh_refuses_an_unknown_command() -> None:
    proc = subprocess.run(
        [str(REPO / "cluster/kind.sh"), "nothing"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode != 0
    assert "usage" in proc.stderr
