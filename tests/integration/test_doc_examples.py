"""The README's request examples, run as written against a real gunicorn service serving the
bundled breast-cancer model (only the port differs: the test's service listens on a free one)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RegisteredModel
from tests.support.docs import REPO, blocks
from tests.support.procs import MlflowServer, Service

pytestmark = pytest.mark.slow


def readme_requests() -> list[str]:
    """The commands of the README block that shows the requests (the one naming the example
    bodies in docs/examples/)."""
    found = [b for b in blocks(REPO / "README.md") if "docs/examples/predict.json" in b.text]
    assert len(found) == 1, "the README shows its request examples in one shell block"
    return found[0].commands()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_server: MlflowServer,
    registered_model: RegisteredModel,
) -> Iterator[Service]:
    svc = Service(
        tmp_path_factory.mktemp("svc"),
        {"MLFLOW_TRACKING_URI": mlflow_server.url, "BEYONDFIT_RELOAD_INTERVAL_SECONDS": "0"},
    ).start()
    svc.wait_ready(180)
    yield svc
    svc.stop()


def run(command: str, service: Service) -> dict[str, Any]:
    """One documented command, from the repository root, with the demo's port replaced by
    the test service's; its output must be one JSON object."""
    assert "localhost:8000" in command, command
    command = command.replace("localhost:8000", service.url.removeprefix("http://"))
    # -w adds the HTTP status of the last curl of the command on a line of its own
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command + " -w '\\n%{http_code}'"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200", f"{command}\n{done.stdout}"
    answer: dict[str, Any] = json.loads(body)
    return answer


def test_every_readme_request_answers_200_with_predictions(
    service: Service, registered_model: RegisteredModel
) -> None:
    commands = readme_requests()
    predict = [c for c in commands if c.rstrip().endswith(("predict.json", "-d @-"))]
    infer = [c for c in commands if "/infer" in c]
    assert len(predict) == 2, commands
    assert len(infer) == 2, commands

    from_file = run(predict[0], service)
    assert len(from_file["predictions"]) == 2
    assert from_file["model_name"] == registered_model.name
    assert from_file["model_version"] == registered_model.version
    from_example = run(predict[1], service)
    assert len(from_example["predictions"]) == 1

    # the same two rows through V2, in both layouts: the same classes and probabilities
    for command in infer:
        answer = run(command, service)
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert outputs["predict"]["data"] == from_file["predictions"], command
        proba = outputs["predict_proba"]["data"]
        flat = [p for row in from_file["probabilities"] for p in row]
        assert proba == pytest.approx(flat), command


def test_the_example_bodies_are_the_held_out_rows_with_every_feature(
    registered_model: RegisteredModel,
) -> None:
    body = json.loads((REPO / "docs/examples/predict.json").read_text())
    expected = registered_model.X_test.iloc[:2].to_dict(orient="records")
    assert body["instances"] == expected
    assert list(body["instances"][0]) == registered_model.feature_names
