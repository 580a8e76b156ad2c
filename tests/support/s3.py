"""A real S3-compatible server in its own process: moto's, on a free loopback port.

moto answers the S3 API as AWS does for what bastion uses (put, multipart, get, head,
delete, presigned GET). It checks neither request signatures nor the expiry of a
presigned URL: tests check a presigned URL's expiry by its ``X-Amz-*`` parameters.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from bastion.testing.client import free_port
from tests.support.processes import ServiceProcess, http_ok

ROOT = Path(__file__).resolve().parents[2]
#: Why S3 tests cannot run here, or ``None``.
MISSING = (
    None
    if importlib.util.find_spec("moto") and importlib.util.find_spec("boto3")
    else "moto[server] and boto3 are not installed (pip install -e '.[dev]')"
)
#: Any keys do: moto accepts every credential.
ACCESS_KEY_ID = "bastion-test"
SECRET_ACCESS_KEY = "bastion-test-secret"


class MotoServer:
    """One moto server process on 127.0.0.1; :meth:`start` it, :meth:`stop` it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._service = ServiceProcess()

    def start(self, timeout_s: float = 30.0) -> None:
        self._service.start(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT,
            ready=http_ok(f"{self.url}/moto-api/data.json"),
            name="moto S3 server",
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        self._service.stop()

    def settings(self, bucket: str, *, prefix: str = "") -> dict[str, str]:
        """This server as the ``s3`` backend of a ``[files]`` table."""
        return {
            "backend": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.url,
            "s3_region": "us-east-1",
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
            "s3_prefix": prefix,
        }
