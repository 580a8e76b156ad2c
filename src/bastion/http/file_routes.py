"""File routes: ``POST {api_prefix}/files`` (upload) and ``GET /files/{id}`` (signed download)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.responses import RedirectResponse, StreamingResponse

from bastion.errors import NotAuthenticated, NotFound
from bastion.files import DOWNLOAD_PREFIX, UPLOAD_REQUEST_BODY, Access, FileService, Redirect
from bastion.http.state import request_id_of, user_of


class FileOut(BaseModel):
    id: str
    content_type: str
    size: int
    url: str
    expires_at: datetime


def build_upload_router(files: FileService) -> APIRouter:
    """``POST /files`` and ``DELETE /files/{id}``, mounted under the API prefix."""
    router = APIRouter(tags=["files"])

    @router.post(
        "/files",
        status_code=201,
        response_model=FileOut,
        openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
    )
    async def upload_file(request: Request, access: Access = Query("owner")) -> FileOut:
        """Upload one file (multipart field ``file``) for the signed-in user.

        The size is limited by ``files.max_bytes`` (413 ``payload_too_large``) and the
        type, sniffed from the bytes, must be one of ``files.allowed_types`` (415
        ``unsupported_media_type``). ``access`` is ``owner`` (default), ``signed``,
        ``public`` or ``admin``. Returns the file with a signed download URL.
        """
        user = user_of(request.scope)
        if user is None:
            raise NotAuthenticated()
        stored = await files.upload(request, owner=user.id, access=access)
        url, expires = files.signed(stored.id)
        return FileOut(
            id=stored.id,
            content_type=stored.content_type,
            size=stored.size,
            url=url,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    @router.delete("/files/{file_id}", status_code=204)
    async def delete_file(request: Request, file_id: str) -> Response:
        """Delete a file: its owner or an admin (403 otherwise, 404 when unknown)."""
        user = user_of(request.scope)
        if user is None:
            raise NotAuthenticated()
        if not await files.delete(file_id, user=user):
            raise NotFound()
        return Response(status_code=204)

    return router


def build_download_router(files: FileService) -> APIRouter:
    """``GET /files/{id}?expires=...&sig=...``, mounted at the root (URLs are signed)."""
    router = APIRouter(tags=["files"])

    @router.get(
        f"{DOWNLOAD_PREFIX}/{{file_id}}",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}},
            307: {"description": "The storage serves the bytes (S3: a presigned URL)."},
        },
    )
    async def download_file(
        request: Request,
        file_id: str,
        expires: str | None = Query(None),
        sig: str | None = Query(None),
    ) -> Response:
        """A file's bytes through its signed URL, or a 307 redirect to the storage's own
        short-lived URL (S3) once the checks below have passed.

        403 ``invalid_signature`` for a missing or wrong signature, 403 ``url_expired``
        past its expiry; ``owner`` and ``admin`` files also need the owner or an admin
        signed in (401, 403).
        """
        download = await files.download(
            file_id,
            expires=expires,
            sig=sig,
            user=user_of(request.scope),
            request_id=request_id_of(request.scope),
        )
        if isinstance(download, Redirect):
            # The location is a capability of its own: no cache may keep or share it.
            return RedirectResponse(download.location, 307, headers={"Cache-Control": "no-store"})
        file = download.file
        scope = "public" if file.access == "public" else "private"
        headers = {
            "Content-Length": str(file.size),
            "Cache-Control": f"{scope}, max-age={download.remaining_s}",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": file.disposition,
        }
        return StreamingResponse(download.chunks, media_type=file.content_type, headers=headers)

    return router
