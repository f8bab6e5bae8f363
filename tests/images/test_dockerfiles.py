"""The Dockerfiles themselves: read as text (cheap, no image needed), and one real build that
must fail.

Shows: the default base of both Dockerfiles is pinned by tag and digest (`name:tag@sha256:`
and 64 hex digits), the same pin in both, and every comment naming the python base image in
the build scripts, Dockerfiles and docs/deployment.md names that same tag; both Dockerfiles
are multi-stage (a builder stage, a final stage on the same base that copies from the builder
and installs nothing); no pip install in a RUN is followed by `||` (which would turn a failed
install into an image with an empty venv); and a build whose pip install really fails (an
unreachable package index) fails.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.images.conftest import REPO, podman

DOCKERFILES = {"service": REPO / "Dockerfile", "mlflow": REPO / "docker" / "mlflow.Dockerfile"}
STANDIN_IMAGE = "localhost/debian-python:bookworm"
# registry/name:tag@sha256:<64 hex>; the registry and path are optional, the tag is not.
PINNED = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})@sha256:[0-9a-f]{64}$"
)


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts, 1-based
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # continuation lines joined with a space


def instructions(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile: comment lines dropped (also inside a continuation,
    as Docker does), backslash continuations joined."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buf:
            start = n
        cont = stripped.endswith("\\")
        buf.append(stripped[:-1].strip() if cont else stripped)
        if not cont:
            text = " ".join(buf)
            keyword, _, args = text.partition(" ")
            out.append(Instruction(start, keyword.upper(), args.strip()))
            buf = []
    assert not buf, f"{path}: ends inside a continuation"
    return out


def stages(path: Path) -> list[list[Instruction]]:
    """Instructions grouped by stage, each starting with its FROM (the global ARGs before
    the first FROM are dropped)."""
    out: list[list[Instruction]] = []
    for ins in instructions(path):
        if ins.keyword == "FROM":
            out.append([ins])
        elif out:
            out[-1].append(ins)
    return out


def default_base(path: Path) -> str:
    args = [i.args for i in instructions(path) if i.keyword == "ARG"]
    defaults = [a.split("=", 1)[1] for a in args if a.startswith("BASE_IMAGE=")]
    assert len(defaults) == 1, f"{path}: expected one `ARG BASE_IMAGE=<default>`, got {defaults}"
    return defaults[0].strip().strip('"')


@pytest.mark.parametrize("which", sorted(DOCKERFILES))
def test_default_base_is_pinned_by_tag_and_digest(which: str) -> None:
    base = default_base(DOCKERFILES[which])
    assert PINNED.match(base), f"{which}: default base {base!r} is not name:tag@sha256:<64 hex>"
    # Every stage builds on that ARG, not on a hard-coded image.
    froms = [s[0].args.split()[0] for s in stages(DOCKERFILES[which])]
    assert froms
    assert all(f in ("${BASE_IMAGE}", "$BASE_IMAGE") for f in froms), froms


def test_both_dockerfiles_pin_the_same_base() -> None:
    assert default_base(DOCKERFILES["service"]) == default_base(DOCKERFILES["mlflow"])


def test_comments_name_the_pinned_base_tag() -> None:
    """Prose (comments, docs) that names the python base image names the pinned tag, so a new
    pin cannot leave stale text behind."""
    m = PINNED.match(default_base(DOCKERFILES["service"]))
    assert m
    pinned = f"python:{m['tag']}"
    files = [
        *DOCKERFILES.values(),
        REPO / "scripts" / "build-images.sh",
        REPO / "scripts" / "base-image.sh",
        REPO / "docs" / "deployment.md",
    ]
    stale = [
        f"{f.relative_to(REPO)}:{n}: {hit}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        for hit in re.findall(r"\bpython:3[\w.-]*", line)
        if hit != pinned
    ]
    assert not stale, f"these name another base than {pinned}:\n" + "\n".join(stale)


@pytest.mark.parametrize("which", sorted(DOCKERFILES))
def test_multi_stage_final_stage_copies_from_the_builder_and_installs_nothing(
    which: str,
) -> None:
    st = stages(DOCKERFILES[which])
    assert len(st) >= 2, f"{which}: {len(st)} FROM, expected a builder and a final stage"
    builders = {s[0].args.split()[-1] for s in st[:-1] if " AS " in s[0].args.upper()}
    assert "builder" in builders, f"{which}: no stage named builder: {builders}"
    final = st[-1]
    assert final[0].args.split()[0] == st[0][0].args.split()[0], "final stage on another base"
    copies = [i.args for i in final if i.keyword == "COPY" and "--from=builder" in i.args]
    assert any("/opt/venv" in c for c in copies), f"{which}: final stage copies no venv: {copies}"
    # The final stage adds users and directories only: no package manager, no compiler.
    tools = re.compile(r"\b(pip3?|apt-get|apt|dpkg|gcc|cc|make|curl|wget|compileall)\b")
    runs = [f"{i.line}: {i.args}" for i in final if i.keyword == "RUN" and tools.search(i.args)]
    assert not runs, f"{which}: the final stage runs build tools:\n" + "\n".join(runs)


@pytest.mark.parametrize("which", sorted(DOCKERFILES))
def test_a_pip_install_failure_is_never_swallowed(which: str) -> None:
    """`pip install ... && pip uninstall ... || true` is `(install && uninstall) || true`: a
    failed install would still build. No `||` may follow a pip install in its RUN."""
    runs = [i for i in instructions(DOCKERFILES[which]) if i.keyword == "RUN"]
    installs = [i for i in runs if re.search(r"\bpip3?\s+install\b", i.args)]
    assert installs, f"{which}: no pip install found"
    for ins in installs:
        after = re.split(r"\bpip3?\s+install\b", ins.args, maxsplit=1)[1]
        assert "||" not in after, f"{which} line {ins.line}: a failed pip install is ignored"
        assert ";" not in after, f"{which} line {ins.line}: `;` runs on after a failed install"


def build_base() -> str:
    """The base scripts/build-images.sh would use here, without asking a registry."""
    forced = os.environ.get("BEYONDFIT_BASE_IMAGE")
    if forced:
        return forced
    default = default_base(DOCKERFILES["service"])
    if podman("image", "exists", default, check=False).returncode == 0:
        return default
    if podman("image", "exists", STANDIN_IMAGE, check=False).returncode == 0:
        return STANDIN_IMAGE
    pytest.fail(f"no base image: run scripts/setup-images.sh ({STANDIN_IMAGE})", pytrace=False)


@pytest.mark.parametrize("which", sorted(DOCKERFILES))
def test_the_build_fails_when_pip_install_fails(which: str) -> None:
    """The builder stage against a package index that refuses connections: pip install fails
    and so must the build (the layers before it come from the cache; nothing is tagged)."""
    with tempfile.TemporaryDirectory() as tmp:
        iidfile = Path(tmp) / "iid"
        proc = podman(
            "build",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1000:1000",
            "--format",
            "docker",
            "--network",
            "host",
            "--target",
            "builder",
            "--build-arg",
            f"BASE_IMAGE={build_base()}",
            # Port 9 (discard) on loopback: nothing listens, every request is refused.
            "--build-arg",
            "PIP_INDEX_URL=http://127.0.0.1:9/simple/",
            "--iidfile",
            str(iidfile),
            "-f",
            str(DOCKERFILES[which]),
            str(REPO),
            check=False,
            timeout=600,
        )
        output = proc.stdout + proc.stderr
        if iidfile.exists():  # the bug: an image with an empty venv was built; remove it
            podman("rmi", "--force", iidfile.read_text().strip(), check=False)
    # pip really ran against the dead index (not a cached layer, not an earlier failure)...
    assert "Looking in indexes: http://127.0.0.1:9/simple/" in output, output[-4000:]
    # ...and its failure failed the build.
    assert proc.returncode != 0, f"{which}: the build succeeded although pip install failed"
    print(f"{which}: build failed as it must:\n{output[-600:]}")
