"""The documentation's shell blocks name only things that exist: make targets, files and
scripts, Python modules that import and answer --help, the images the build makes, the ports
the charts give; and they can be pasted (no bare `python`, no `...`). `make help` lists every
target. The commands that need servers run in tests/integration/test_doc_examples.py and
tests/e2e/test_documented_deploy.py."""

from __future__ import annotations

import glob
import re
import shlex
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.support.docs import REPO, Block, blocks, documents, shell_blocks, strip_comment

BLOCKS = shell_blocks()
COMMANDS = [(b, c) for b in BLOCKS for c in b.commands()]
PATH_PREFIXES = ("scripts/", "cluster/", "bench/", "loadtest/", "charts/", "docs/", "tests/",
                 "monitoring/", "training/", "app/", "requirements/")  # fmt: skip
#: the ports the project's processes listen on locally: make demo (MLflow, the service,
#: Prometheus), as DESIGN.md and scripts/demo.sh give them
LOCAL_PORTS = {5000, 8000, 9090}


def ids(pairs: list[tuple[Block, str]]) -> list[str]:
    return [f"{b.where}:{c[:40]}" for b, c in pairs]


@cache
def make_targets() -> dict[str, str]:
    """target -> its `## ` description, for every rule of the Makefile."""
    targets = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+):(?!=)([^#]*)(?:## (.*))?$", line)
        if m and not m.group(1).startswith("."):
            targets[m.group(1)] = m.group(3) or ""
    return targets


@cache
def chart_service_ports() -> dict[str, int]:
    """Service name (the release name the docs use) -> the chart's Service port."""
    ports = {}
    for chart in ("beyondfit", "mlflow"):
        values = yaml.safe_load((REPO / "charts" / chart / "values.yaml").read_text())
        ports[chart] = int(values["service"]["port"])
    return ports


@cache
def built_images() -> set[str]:
    """The image names the project builds: scripts/build-images.sh (the service and MLflow),
    the base stand-in, and the cluster's own images (cluster/env.sh)."""
    text = (REPO / "scripts/build-images.sh").read_text() + (REPO / "cluster/env.sh").read_text()
    return set(re.findall(r"localhost/[a-z0-9/_-]+", text))


def app_version() -> str:
    chart = yaml.safe_load((REPO / "charts/beyondfit/Chart.yaml").read_text())
    return str(chart["appVersion"])


def words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def test_the_docs_have_shell_blocks_to_check() -> None:
    assert {b.path for b in BLOCKS} == set(documents()), "every page shows its commands"
    assert len(COMMANDS) > 40


def test_make_help_lists_every_target_with_a_description() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = re.findall(r"^\s+make (\S+)\s+(.*)$", done.stdout, re.M)
    described = {t: d for t, d in make_targets().items() if d}
    assert dict(listed) == described
    assert "e2e" in described
    assert "test-unit" in described
    # and every target a user can call has a description: none is hidden from help
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", (REPO / "Makefile").read_text(), re.M)
    assert phony is not None
    assert set(phony.group(1).replace("\\\n", " ").split()) == set(described)


@pytest.mark.parametrize(
    ("block", "command"), [p for p in COMMANDS if "make " in p[1]],
    ids=ids([p for p in COMMANDS if "make " in p[1]]),
)  # fmt: skip
def test_each_make_command_names_a_real_target(block: Block, command: str) -> None:
    for m in re.finditer(r"(?:^|[;&|(]\s*)make\s+((?:-\S+\s+)*)([A-Za-z0-9_.-]+)", command):
        assert m.group(2) in make_targets(), f"{block.where}: {command}"


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=ids(COMMANDS))
def test_each_command_can_be_pasted(block: Block, command: str) -> None:
    # the project's Python is .venv/bin/python (make setup); a bare python is another one
    assert not re.search(r"(?:^|[\s;&|(])python3?(?:\s|$)", command), (
        f"{block.where}: bare python in {command!r}: use .venv/bin/python"
    )
    assert "..." not in command, f"{block.where}: elided {command!r}"
    assert "…" not in command, f"{block.where}: elided {command!r}"
    assert not re.search(r"<[A-Za-z_-]+>", command), f"{block.where}: a placeholder in {command!r}"


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=ids(COMMANDS))
def test_each_repository_path_exists(block: Block, command: str) -> None:
    for word in words(command):
        for token in re.split(r"[=@]", word):
            token = token.removeprefix("./")
            if not token.startswith(PATH_PREFIXES) or token.startswith("docs/#"):
                continue
            token = token.split("#", 1)[0].rstrip(",;")
            matches = glob.glob(token, root_dir=REPO)
            assert matches, f"{block.where}: {token} does not exist ({command!r})"


def python_invocations() -> list[tuple[Block, list[str]]]:
    """Each `.venv/bin/python -m MODULE` or `.venv/bin/python FILE.py` of the docs."""
    found: dict[tuple[str, ...], tuple[Block, list[str]]] = {}
    for block, command in COMMANDS:
        for segment in re.split(r"\s*(?:\|\||&&|\||;)\s*", command):
            argv = words(segment)
            while argv and "=" in argv[0] and not argv[0].startswith("."):
                argv = argv[1:]  # VAR=value prefixes
            if len(argv) < 2 or argv[0] != ".venv/bin/python" or argv[1] == "-c":
                continue
            target = argv[1:3] if argv[1] == "-m" else argv[1:2]
            found.setdefault(tuple(target), (block, target))
    return list(found.values())


@pytest.mark.parametrize(
    ("block", "target"), python_invocations(), ids=[" ".join(t) for _, t in python_invocations()]
)
def test_each_documented_python_entry_point_answers_help(block: Block, target: list[str]) -> None:
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), *target, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{block.where}: {' '.join(target)} --help\n{done.stderr}"
    assert "usage" in done.stdout.lower()


def test_the_documented_python_entry_points_are_found() -> None:
    targets = {" ".join(t) for _, t in python_invocations()}
    assert {"-m training.train", "-m training.reproduce"} <= targets


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=ids(COMMANDS))
def test_ports_match_the_charts_and_the_local_defaults(block: Block, command: str) -> None:
    forwarded: set[int] = set()
    for m in re.finditer(r"port-forward\s+(?:svc|service)/([a-z0-9-]+)\s+(\d+):(\d+)", command):
        name, local, remote = m.group(1), int(m.group(2)), int(m.group(3))
        assert name in chart_service_ports(), f"{block.where}: no chart makes Service {name}"
        assert remote == chart_service_ports()[name], (
            f"{block.where}: Service {name} listens on {chart_service_ports()[name]}, "
            f"not {remote}: {command!r}"
        )
        forwarded.add(local)
    for m in re.finditer(r"(?:localhost|127\.0\.0\.1):(\d+)", command):
        assert int(m.group(1)) in LOCAL_PORTS | forwarded, f"{block.where}: port {m.group(1)}"
    for m in re.finditer(r"clusterIP}'\):(\d+)", command):
        assert int(m.group(1)) in chart_service_ports().values(), f"{block.where}: {command!r}"


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=ids(COMMANDS))
def test_images_are_ones_the_build_makes_with_the_charts_tag(block: Block, command: str) -> None:
    for m in re.finditer(r"(localhost/[a-z0-9/_-]+)(?::([A-Za-z0-9._-]+))?", command):
        assert m.group(1) in built_images(), f"{block.where}: nothing builds {m.group(1)}"
        if m.group(1) in ("localhost/beyondfit", "localhost/beyondfit-mlflow"):
            assert m.group(2) == app_version(), (
                f"{block.where}: {m.group(0)}: the build tags {app_version()}"
            )


def test_podman_commands_carry_the_flags_this_platform_needs() -> None:
    runs = [(b, c) for b, c in COMMANDS if re.search(r"\bpodman (run|build)\b", c)]
    assert runs
    for block, command in runs:
        for flag in ("--runtime /usr/sbin/runc", "--ulimit nofile=", "--ulimit nproc="):
            assert flag in command, f"{block.where}: {flag} missing in {command!r}"


def test_helm_and_kubectl_are_put_on_path_before_the_docs_use_them() -> None:
    """A page that runs helm or kubectl against the local cluster sources cluster/kube-env.sh
    first (helm and the cluster's kubectl are not on a default PATH)."""
    for block in BLOCKS:
        commands = block.commands()
        local = any("inventories/local/values/" in c or "load-image.sh" in c for c in commands)
        uses = [i for i, c in enumerate(commands) if re.match(r"(helm|kubectl)\b", c)]
        if local and uses:
            sourced = [i for i, c in enumerate(commands) if c == ". cluster/kube-env.sh"]
            assert sourced, block.where
            assert sourced[0] < uses[0], block.where


def test_the_local_deploy_block_creates_the_namespace_and_registers_a_model_first() -> None:
    block = next(
        b for b in blocks(REPO / "docs/deployment.md") if "inventories/local/values/" in b.text
    )
    commands = block.commands()

    def first(pattern: str) -> int:
        return next(i for i, c in enumerate(commands) if re.search(pattern, c))

    namespace = first(r"kubectl create namespace beyondfit")
    mlflow = first(r"helm upgrade --install mlflow")
    train = first(r"-m training\.train")
    service = first(r"helm upgrade --install beyondfit")
    load = first(r"cluster/load-image\.sh")
    assert load < namespace < mlflow < train < service
    assert "MLFLOW_TRACKING_URI=" in commands[train]


def test_shell_comment_stripping_keeps_quoted_hashes() -> None:
    assert strip_comment("echo '#x' # note") == "echo '#x' "
    assert strip_comment("a#b") == "a#b"
    assert Path(REPO / "README.md") in documents()


def test_the_service_charts_tracking_uris_use_the_mlflow_charts_port() -> None:
    files = [REPO / "charts/beyondfit/values.yaml",
             *sorted((REPO / "charts/beyondfit/environments").glob("values-*.yaml"))]  # fmt: skip
    for path in files:
        uri = (yaml.safe_load(path.read_text()).get("mlflow") or {}).get("trackingUri")
        if uri and re.match(r"http://mlflow[.:/]", uri):
            port = re.search(r":(\d+)", uri.removeprefix("http://"))
            assert port is not None, f"{path}: {uri}"
            assert int(port.group(1)) == chart_service_ports()["mlflow"], f"{path}: {uri}"
