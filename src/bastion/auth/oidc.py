"""Sign-in with OpenID Connect providers: authorization code flow with PKCE, state and nonce.

The flow has two halves around a browser redirect; what connects them lives in the
visitor's server-side session, never in the browser:

1. :meth:`OidcClient.start` returns the provider's authorization URL and a small
   JSON-serialisable ``state`` dict (random ``state``, ``nonce`` and PKCE
   ``code_verifier``) that the caller stores in the session before redirecting;
2. :meth:`OidcClient.finish` takes the callback's query parameters and that dict,
   checks them, exchanges the code (with the verifier) and validates the ID token
   against the provider's published keys: signature, ``iss``, ``aud``, ``exp``, ``nonce``.

Every failure reaches the client as the same 400 ``oidc_failed``; the reason is
logged, so a provider's internals never leak into a response.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.client import OAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from bastion.errors import BastionError, NotFound
from bastion.observability.logs import get_logger
from bastion.settings.sections import OidcProviderSettings, OidcSection

#: How long a started sign-in may take before its callback is refused.
STATE_TTL_S = 600
#: Clock difference tolerated between bastion and the provider (``exp``, ``iat``).
LEEWAY_S = 60
#: Asymmetric signatures only: ``none`` and HMAC (keyed with the client secret) are refused.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)


@dataclass(frozen=True, slots=True)
class OidcStart:
    """Where to send the browser, and what to keep in its session until the callback."""

    url: str
    state: dict[str, Any]
    """``provider``, ``state``, ``nonce``, ``code_verifier``, ``redirect_uri``, ``created_at``."""


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who the provider says signed in; ``subject`` is stable, the email may change."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    """Only a JSON ``true`` counts: anything else is treated as unverified."""
    name: str


class _Failed(Exception):
    """Why a sign-in is refused: logged, never shown to the client."""


class _AsyncOAuth2(OAuth2Client):  # type: ignore[misc]  # authlib ships no type information
    """Authlib's OAuth 2 client sending its token request through bastion's httpx client.

    ``authlib.integrations.httpx_client.AsyncOAuth2Client`` is the same few lines,
    but since Authlib 1.8 it is built on httpx2 and warns (deprecated) on plain
    httpx; this keeps one HTTP stack, and lets one connection pool serve every provider.
    """

    def __init__(self, http: httpx.AsyncClient, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)
        self.http = http

    async def _fetch_token(
        self,
        url: str,
        body: str = "",
        headers: Mapping[str, str] | None = None,
        auth: Any = None,
        method: str = "POST",
        **kwargs: Any,
    ) -> Any:
        # A copy: authlib passes its module-level default headers, which the client
        # authentication would otherwise write the Basic credentials into.
        url, prepared, body = auth.prepare(method, url, dict(headers or {}), body)
        response = await self.http.post(url, content=body, headers=prepared)
        return self.parse_response_token(response)


class OidcClient:
    """The relying party for every provider in ``[oidc.providers]``.

    Discovery documents and key sets are fetched on first use and cached per
    provider; the key set is fetched again when an ID token names a key it lacks
    (the provider rotated its keys). Failed fetches are not cached.

    Args:
        settings: The ``[oidc]`` section.
        http: The client for every request to the providers; by default one of its
            own, closed by :meth:`aclose`.
    """

    def __init__(self, settings: OidcSection, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http = http if http is not None else httpx.AsyncClient(timeout=10.0)
        self._owns_http = http is None
        self._metadata: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, KeySet] = {}
        self._log = get_logger("bastion.auth.oidc")

    async def aclose(self) -> None:
        """Close the HTTP client, unless it was passed in."""
        if self._owns_http:
            await self._http.aclose()

    async def start(self, provider: str, redirect_uri: str) -> OidcStart:
        """Begin a sign-in: the authorization URL to redirect to, and the state to keep.

        Raises:
            NotFound: no such provider.
            BastionError: ``oidc_failed`` when the provider cannot be reached.
        """
        config = self._provider(provider)
        try:
            metadata = await self._discover(provider, config)
        except _Failed as failure:
            raise self._refuse(provider, failure) from None
        state: dict[str, Any] = {
            "provider": provider,
            "state": secrets.token_urlsafe(32),
            "nonce": secrets.token_urlsafe(32),
            "code_verifier": secrets.token_urlsafe(48),
            "redirect_uri": redirect_uri,
            "created_at": int(time.time()),
        }
        url, _ = self._oauth(config, metadata).create_authorization_url(
            metadata["authorization_endpoint"],
            state=state["state"],
            code_verifier=state["code_verifier"],
            nonce=state["nonce"],
            redirect_uri=redirect_uri,
        )
        return OidcStart(url=str(url), state=state)

    async def finish(
        self, provider: str, query_params: Mapping[str, str], state: Mapping[str, Any]
    ) -> OidcIdentity:
        """Complete a sign-in from the callback's query parameters and the stored state.

        The caller must drop ``state`` from the session whatever the outcome, so a
        callback URL cannot be replayed.

        Raises:
            NotFound: no such provider.
            BastionError: ``oidc_failed``, for every reason the sign-in is refused.
        """
        config = self._provider(provider)
        try:
            return await self._finish(provider, config, query_params, state)
        except _Failed as failure:
            raise self._refuse(provider, failure) from None

    def _provider(self, provider: str) -> OidcProviderSettings:
        config = self.settings.providers.get(provider)
        if config is None:
            raise NotFound()
        return config

    def _refuse(self, provider: str, failure: _Failed) -> BastionError:
        self._log.warning("oidc_failed", provider=provider, reason=str(failure))
        return BastionError("oidc_failed")

    def _oauth(self, config: OidcProviderSettings, metadata: Mapping[str, Any]) -> _AsyncOAuth2:
        supported = metadata.get("token_endpoint_auth_methods_supported", [])
        basic = "client_secret_basic" in supported or "client_secret_post" not in supported
        return _AsyncOAuth2(
            self._http,
            client_id=config.client_id,
            client_secret=config.client_secret.get_secret_value(),
            token_endpoint_auth_method="client_secret_basic" if basic else "client_secret_post",
            scope=" ".join(config.scopes),
            code_challenge_method="S256",
        )

    async def _finish(
        self,
        provider: str,
        config: OidcProviderSettings,
        query: Mapping[str, str],
        state: Mapping[str, Any],
    ) -> OidcIdentity:
        if "error" in query:
            raise _Failed(f"the provider answered error={query['error'][:100]!r}")
        expected = _checked_state(provider, state)
        if not hmac.compare_digest(str(query.get("state", "")), expected["state"]):
            raise _Failed("the state parameter does not match the session")
        code = query.get("code")
        if not code:
            raise _Failed("the callback has no code")
        metadata = await self._discover(provider, config)
        # RFC 9207: a callback naming another issuer is a mix-up attack.
        if "iss" in query and query["iss"] != metadata["issuer"]:
            raise _Failed(f"the callback names issuer {query['iss'][:200]!r}")
        try:
            token = await self._oauth(config, metadata).fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                redirect_uri=expected["redirect_uri"],
                code_verifier=expected["code_verifier"],
            )
        except OAuth2Error as exc:
            raise _Failed(f"the token request was refused: {exc.error}") from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise _Failed(f"the token request failed: {type(exc).__name__}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise _Failed("the token response has no ID token")
        access_token = token.get("access_token")
        claims = await self._id_token_claims(
            provider, config, metadata, id_token, expected["nonce"], access_token
        )
        if len(claims["sub"]) > 255:
            raise _Failed("the subject is longer than OIDC's 255 characters")
        if "email" not in claims and isinstance(access_token, str):
            claims = {**await self._userinfo(metadata, access_token, claims["sub"]), **claims}
        email, name = claims.get("email"), claims.get("name")
        return OidcIdentity(
            provider=provider,
            subject=claims["sub"],
            email=email if isinstance(email, str) and email else None,
            email_verified=claims.get("email_verified") is True,
            name=name if isinstance(name, str) else "",
        )

    async def _discover(self, provider: str, config: OidcProviderSettings) -> dict[str, Any]:
        cached = self._metadata.get(provider)
        if cached is not None:
            return cached
        url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        metadata = await self._get_json(url, "discovery")
        if metadata.get("issuer") != config.issuer:
            raise _Failed(f"discovery names issuer {str(metadata.get('issuer'))[:200]!r}")
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(metadata.get(field), str):
                raise _Failed(f"discovery lacks {field}")
        self._metadata[provider] = metadata
        return metadata

    async def _key_set(
        self, provider: str, metadata: Mapping[str, Any], *, refresh: bool
    ) -> KeySet:
        cached = self._keys.get(provider)
        if cached is not None and not refresh:
            return cached
        document = await self._get_json(metadata["jwks_uri"], "key set")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, KeyError, TypeError, ValueError) as exc:
            raise _Failed(f"the key set is unusable: {type(exc).__name__}") from exc
        self._keys[provider] = keys
        return keys

    async def _id_token_claims(
        self,
        provider: str,
        config: OidcProviderSettings,
        metadata: Mapping[str, Any],
        id_token: str,
        nonce: str,
        access_token: Any,
    ) -> dict[str, Any]:
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [alg for alg in SIGNING_ALGORITHMS if alg in offered]
        if not algorithms:
            raise _Failed(f"the provider signs ID tokens with none of {SIGNING_ALGORITHMS}")
        try:
            keys = await self._key_set(provider, metadata, refresh=False)
            try:
                decoded = jwt.decode(id_token, keys, algorithms=algorithms)
            except InvalidKeyIdError:
                keys = await self._key_set(provider, metadata, refresh=True)
                decoded = jwt.decode(id_token, keys, algorithms=algorithms)
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                options={
                    "iss": {"essential": True, "value": metadata["issuer"]},
                    "aud": {"essential": True, "value": config.client_id},
                },
                params={
                    "nonce": nonce,
                    "client_id": config.client_id,
                    "access_token": access_token,
                },
            )
            claims.validate(leeway=LEEWAY_S)
        except (JoseError, ValueError) as exc:
            raise _Failed(f"the ID token is invalid: {type(exc).__name__}: {exc}") from exc
        return dict(claims)

    async def _userinfo(
        self, metadata: Mapping[str, Any], access_token: str, subject: str
    ) -> dict[str, Any]:
        """The UserInfo claims, for providers that keep the email out of the ID token.

        Conforming providers do that when they also issue an access token (OIDC Core
        5.4); the ``sub`` must match the ID token's, or the answer is someone else's.
        """
        endpoint = metadata.get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        claims = await self._get_json(
            endpoint, "userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
        if claims.get("sub") != subject:
            raise _Failed("the userinfo subject differs from the ID token's")
        return claims

    async def _get_json(
        self, url: str, what: str, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._http.get(
                url, headers={"Accept": "application/json", **(headers or {})}
            )
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _Failed(f"{what} request to {url} failed: {type(exc).__name__}") from exc
        if not isinstance(document, dict):
            raise _Failed(f"{what} response is not a JSON object")
        return document


def _checked_state(provider: str, state: Mapping[str, Any]) -> dict[str, str]:
    """The stored state's fields, after checking they are whole, ours and fresh."""
    fields = ("provider", "state", "nonce", "code_verifier", "redirect_uri")
    values = {field: state.get(field) for field in fields}
    created_at = state.get("created_at")
    if not all(isinstance(value, str) and value for value in values.values()):
        raise _Failed("the session holds no usable sign-in state")
    if not isinstance(created_at, int) or isinstance(created_at, bool):
        raise _Failed("the session holds no usable sign-in state")
    if values["provider"] != provider:
        raise _Failed(f"the sign-in was started with {values['provider']!r}")
    age = time.time() - created_at
    if not -LEEWAY_S <= age <= STATE_TTL_S:
        raise _Failed(f"the sign-in was started {int(age)} s ago")
    return {field: str(value) for field, value in values.items()}
