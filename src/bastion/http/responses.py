"""Result bodies: JSON serialization, ETag/304, Cache-Control, Accept negotiation."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.responses import Response

from bastion.functions import FunctionSpec

_JSON_RANGES = {"*/*", "application/*", "application/json", "application/problem+json"}


def accepts_json(accept: str) -> bool:
    """Whether an ``Accept`` header admits a JSON answer (q=0 ranges excluded)."""
    for part in accept.split(","):
        media, _, params = part.partition(";")
        media = media.strip().lower()
        if "q=0" in params.replace(" ", "") and not any(
            p.strip().startswith("q=0.") for p in params.split(";")
        ):
            continue
        if media in _JSON_RANGES or media.endswith("+json"):
            return True
    return False


def etag_for(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str, tag: str) -> bool:
    candidates = {c.strip().removeprefix("W/") for c in if_none_match.split(",")}
    return "*" in candidates or tag in candidates


def result_response(spec: FunctionSpec, result: Any, if_none_match: str | None) -> Response:
    """The HTTP response for a function's (already validated) result."""
    if spec.output is None:
        return Response(status_code=spec.status_code)
    body = spec.output.dump_json(result)
    headers: dict[str, str] = {}
    if spec.etag:
        tag = etag_for(body)
        headers["ETag"] = tag
        headers["Cache-Control"] = spec.cache_control or "no-cache"
        if if_none_match and etag_matches(if_none_match, tag):
            return Response(status_code=304, headers=headers)
    elif spec.cache_control:
        headers["Cache-Control"] = spec.cache_control
    return Response(
        body, status_code=spec.status_code, headers=headers, media_type="application/json"
    )
