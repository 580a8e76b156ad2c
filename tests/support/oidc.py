"""A real OpenID Connect provider on loopback: the ``oidc_provider`` fixture.

The provider is panva's ``oidc-provider`` (Node.js), run by ``oidc_provider/server.mjs``.
Its npm packages are installed into that folder by the first test that needs them
(``npm ci``) and stay there. Without Node.js, or when ``npm ci`` fails (offline), the
tests that use it are skipped with the reason, or failed when ``CI=true``.

A test signs in as one of the provider's accounts (``alice``: verified
alice@example.com; ``carol``: verified Carol@Example.COM; ``mallory``: unverified
mallory@example.com) with :meth:`OidcTestProvider.login`, which plays the browser
from the authorization URL to the redirect back and returns that callback URL.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from bastion.testing import require_service
from bastion.testing.client import free_port
from tests.support.processes import ServiceProcess, http_ok

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"
CLIENT_ID = "bastion"
CLIENT_SECRET = "bastion-test-secret"
#: Registered at the provider: the app's callback for provider key ``test`` under
#: ``BastionClient``'s base URL. The provider only redirects the browser there.
REDIRECT_URI = "http://testserver/api/v1/auth/oidc/test/callback"
#: Oldest Node.js that oidc-provider 9 runs on.
NODE_MINIMUM = (20, 19)


class OidcTestProvider:
    """One provider process; :meth:`start` it, :meth:`stop` it, or :meth:`restart` it.

    Args:
        redirect_uris: The client's registered redirect URIs.
        claims_in_id_token: False keeps email and name out of the ID token (only in
            UserInfo), as conforming providers do when they issue an access token.
    """

    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET

    def __init__(
        self, redirect_uris: tuple[str, ...] = (REDIRECT_URI,), *, claims_in_id_token: bool = True
    ) -> None:
        self.port = free_port()
        self.redirect_uris = redirect_uris
        self.claims_in_id_token = claims_in_id_token
        self._service = ServiceProcess()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def settings(self) -> dict[str, Any]:
        """This provider as an ``[oidc.providers.<key>]`` table."""
        return {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the process and wait until its discovery document answers."""
        self._service.start(
            ["node", "server.mjs", str(self.port)],
            cwd=PROVIDER_DIR,
            env={
                **os.environ,
                "OIDC_CLIENT_ID": self.client_id,
                "OIDC_CLIENT_SECRET": self.client_secret,
                "OIDC_REDIRECT_URIS": " ".join(self.redirect_uris),
                "OIDC_CLAIMS_IN_ID_TOKEN": "1" if self.claims_in_id_token else "0",
            },
            ready=http_ok(f"{self.issuer}/.well-known/openid-configuration"),
            name="OIDC test provider",
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        """Terminate the process (and close its log)."""
        self._service.stop()

    def restart(self) -> None:
        """Stop and start again on the same port: same issuer, new signing keys."""
        self.stop()
        self.start()

    async def login(
        self, client: httpx.AsyncClient, authorize_url: str, account: str = "alice"
    ) -> str:
        """Sign in at the provider as ``account``; returns the callback URL it redirects to.

        ``client`` plays the browser (it keeps the provider's cookies); redirects are
        followed here, up to the first one that leaves the provider. That callback
        URL (``...?code=...&state=...&iss=...``, or ``?error=...``) is returned, not
        requested: handing it to the app is the test's part.
        """
        url = authorize_url
        response = await client.get(url, follow_redirects=False)
        for _ in range(10):
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                if not url.startswith(f"{self.issuer}/"):
                    return url
                response = await client.get(url, follow_redirects=False)
            elif response.status_code == 200 and urlsplit(url).path.startswith("/interaction/"):
                response = await client.post(url, data={"account": account}, follow_redirects=False)
            else:
                raise AssertionError(
                    f"the provider answered {response.status_code} at {url}: {response.text[:500]}"
                )
        raise AssertionError("the provider never redirected back to the client")


def node_unavailable_reason() -> str | None:
    """Why the provider cannot run here (no Node.js, too old, packages not installable)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "the OIDC test provider needs Node.js and npm"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    parts = tuple(int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    if parts < NODE_MINIMUM:
        wanted = ".".join(map(str, NODE_MINIMUM))
        return f"the OIDC test provider needs Node.js >= {wanted}, found {version.stdout.strip()}"
    # `make test` runs two pytest processes at once: the first to get here installs
    # while the other waits (`npm ci` empties node_modules before filling it).
    with open(PROVIDER_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
            return None
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=PROVIDER_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if installed.returncode != 0:
        return f"npm ci for the OIDC test provider failed:\n{installed.stderr[-2000:]}"
    return None


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcTestProvider]:
    """A running provider (client ``bastion``, redirect :data:`REDIRECT_URI`) for the session."""
    require_service(node_unavailable_reason())
    provider = OidcTestProvider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
