"""A real S3-compatible server (moto_server, test-only, from requirements/dev.in)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import VENV_BIN, free_port, stop_process, wait_http


@dataclass(frozen=True)
class S3Server:
    """An S3-compatible endpoint. The keys are moto's fake test credentials, not secrets."""

    endpoint: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )

    def env(self) -> dict[str, str]:
        """What an MLflow client or server needs in its environment to use this endpoint."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }


@contextlib.contextmanager
def running_s3_server(workdir: Path) -> Iterator[S3Server]:
    """moto_server on a free loopback port, in its own session; stopped by its PID."""
    port = free_port()
    log_path = workdir / "moto-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/moto-api/", 60, proc=proc)
        yield S3Server(url)
    except BaseException:
        print(log_path.read_text(errors="replace")[-3000:])
        raise
    finally:
        stop_process(proc)
