"""The bastion side of the request-path benchmark: one query, production settings.

Served as ``uvicorn --factory benchmarks.apps.bastion_app:create``. Settings come
from the environment, as in a deployment (benchmarks/request_path.py sets them)::

    BASTION_ENV=production
    BASTION_APP_SECRET_KEY=<32+ characters>
    BASTION_DATABASE_URL=sqlite:////abs/path/bench.sqlite3
    BASTION_LOG_FORMAT=json  BASTION_LOG_FILE=/abs/path/bastion.log  BASTION_LOG_ACCESS_LOG=true
    BASTION_RATELIMIT_DEFAULT_LIMITS='["100000000/minute"]' (limited, never refused)
"""

from __future__ import annotations

from bastion import App, Context, NotFound
from bastion.observability import configure_logging
from bastion.types import ASGIApp
from benchmarks.catalog import Base, Product, ProductOut

app = App("bench", metadata=Base.metadata, title="bastion request-path benchmark")


@app.query("/products/{product_id}")
def get_product(ctx: Context, product_id: int) -> ProductOut:
    """One product by primary key."""
    product = ctx.session.get(Product, product_id)
    if product is None:
        raise NotFound()
    # The ORM row is returned as is: bastion validates it into ProductOut
    # (from_attributes), as an app written from the docs would rely on.
    return product  # type: ignore[return-value]


def create() -> ASGIApp:
    """The ASGI app uvicorn serves; logging is configured before the first request."""
    settings = app.load_settings()
    configure_logging(
        level=settings.log.level, fmt=settings.log.format, env=settings.env, file=settings.log.file
    )
    return app.runtime(settings).asgi()
