"""Product images: ``POST /products/{id}/image`` (admin) and the signed URLs that
products carry in ``image_url`` (shop-api.md, Catalog)."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import BaseModel

from bastion import Context, NotAuthenticated, NotFound, PageResult, PermissionDenied, Runtime
from bastion.files import UPLOAD_REQUEST_BODY
from bastion.http.file_routes import build_download_router
from bastion.http.state import user_of
from examples.shop.app import app
from examples.shop.models import Product
from examples.shop.schemas import ProductOut

#: Larger images are refused with 413 ``payload_too_large`` as they stream in.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
#: Types sniffed from the bytes; anything else is 415 ``unsupported_media_type``.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
ADMIN_PERMISSION = "write:all"


class ImageOut(BaseModel):
    url: str
    """The image's signed download URL."""
    expires_at: datetime


def product_out(ctx: Context, product: Product) -> ProductOut:
    """The product as the API shows it, with a freshly signed ``image_url``."""
    out = ProductOut.model_validate(product, from_attributes=True)
    if product.image_file_id is None:
        return out
    return out.model_copy(update={"image_url": ctx.services.files.url(product.image_file_id)})


def products_out(ctx: Context, page: PageResult[Product]) -> PageResult[ProductOut]:
    """A page of products with their signed ``image_url``."""
    return PageResult([product_out(ctx, product) for product in page.data], page.pagination)


def build_image_router(runtime: Runtime) -> APIRouter:
    """The upload route; it streams into ``runtime.files``, so it is built per runtime."""
    router = APIRouter(tags=["catalog"])

    @router.post(
        "/products/{product_id}/image",
        status_code=201,
        response_model=ImageOut,
        openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
    )
    async def upload_product_image(request: Request, product_id: int) -> ImageOut:
        """Set a product's image (admin; multipart field ``file``): PNG, JPEG or WebP by
        its bytes (415 ``unsupported_media_type``), at most 5 MiB (413
        ``payload_too_large``). Replaces the previous image. Returns its signed URL."""
        user = user_of(request.scope)
        if user is None:
            raise NotAuthenticated()
        if not user.allows(ADMIN_PERMISSION):
            raise PermissionDenied()
        # Checked first so that an unknown product costs no upload; checked again below.
        if await anyio.to_thread.run_sync(_find, runtime, product_id) is None:
            raise NotFound(resource="product")
        files = runtime.files
        stored = await files.upload(
            request,
            owner=user.id,
            # Shoppers see images anonymously: the signed URL is enough, no audit needed.
            access="public",
            allowed_types=IMAGE_TYPES,
            max_bytes=MAX_IMAGE_BYTES,
        )
        try:
            previous = await anyio.to_thread.run_sync(_attach, runtime, product_id, stored.id)
        except BaseException:
            # The product went away meanwhile (or the database failed): nothing refers
            # to the new file.
            with anyio.CancelScope(shield=True):
                await files.delete(stored.id)
            raise
        if previous is not None:
            await files.delete(previous)
        url, expires = files.signed(stored.id)
        return ImageOut(url=url, expires_at=datetime.fromtimestamp(expires, UTC))

    return router


def _find(runtime: Runtime, product_id: int) -> int | None:
    with runtime.database.read_transaction() as session:
        product = session.get(Product, product_id)
        return None if product is None else product.id


def _attach(runtime: Runtime, product_id: int, file_id: str) -> str | None:
    """Point the product at its new image; returns the previous image's file id."""
    with runtime.database.transaction() as session:
        product = session.get(Product, product_id, with_for_update=True)
        if product is None:
            raise NotFound(resource="product")
        previous, product.image_file_id = product.image_file_id, file_id
        return previous


app.include_router(build_image_router, prefix=app.api_prefix)
# The signed downloads (GET /files/{id}) without use_files(): shoppers get no general
# upload endpoint.
app.include_router(lambda runtime: build_download_router(runtime.files))
