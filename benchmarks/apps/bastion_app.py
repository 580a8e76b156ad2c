"""The bastion side of the request-path benchmarks: one query, production settings.

Served as ``uvicorn --factory benchmarks.apps.bastion_app:create``. Settings come
from the environment, as in a deployment (benchmarks/request_path.py sets them)::

    BASTION_ENV=production
    BASTION_APP_SECRET_KEY=<32+ characters>
    BASTION_DATABASE_URL=sqlite:////abs/path/bench.sqlite3
    BASTION_LOG_FORMAT=json  BASTION_LOG_FILE=/abs/path/bastion.log  BASTION_LOG_ACCESS_LOG=true
    BASTION_RATELIMIT_DEFAULT_LIMITS='["100000000/minute"]' (limited, never refused)

benchmarks/auth_path.py also uses the mutation below and, with the same
environment, the two commands of this module::

    python -m benchmarks.apps.bastion_app seed-auth   # platform tables, a user, an API key
    python -m benchmarks.apps.bastion_app token USER_ID   # a fresh access token
"""

from __future__ import annotations

import argparse
import json

from bastion import App, Context, NotFound
from bastion.observability import configure_logging
from bastion.types import ASGIApp
from benchmarks.catalog import Base, Product, ProductOut

app = App("bench", metadata=Base.metadata, title="bastion request-path benchmark")

BENCH_USER_EMAIL = "bench-user@example.com"


@app.query("/products/{product_id}")
def get_product(ctx: Context, product_id: int) -> ProductOut:
    """One product by primary key."""
    product = ctx.session.get(Product, product_id)
    if product is None:
        raise NotFound()
    # The ORM row is returned as is: bastion validates it into ProductOut
    # (from_attributes), as an app written from the docs would rely on.
    return product  # type: ignore[return-value]


@app.mutation("/products/{product_id}/quote")
def quote_product(ctx: Context, product_id: int) -> ProductOut:
    """The cheapest mutation there is: the same read, in a write transaction.

    It changes nothing, so what auth_path.py measures on it is the mutation's
    transaction and, with an ``Idempotency-Key``, the idempotency record.
    """
    product = ctx.session.get(Product, product_id)
    if product is None:
        raise NotFound()
    return product  # type: ignore[return-value]


def create() -> ASGIApp:
    """The ASGI app uvicorn serves; logging is configured before the first request."""
    settings = app.load_settings()
    configure_logging(
        level=settings.log.level, fmt=settings.log.format, env=settings.env, file=settings.log.file
    )
    return app.runtime(settings).asgi()


def seed_auth() -> dict[str, object]:
    """Add bastion's platform tables, one user and one API key to the bench database."""
    from bastion.auth.api_keys import create_api_key
    from bastion.auth.passwords import Passwords
    from bastion.auth.users import create_user, principal_for
    from bastion.db.database import Database
    from bastion.db.migrations import Migrator

    settings = app.load_settings()
    database = Database(settings.database)
    try:
        # The products table comes from the seed; the platform branch adds users,
        # API keys, idempotency records and the rest.
        Migrator(database, branch=app.name, versions_dir=None, metadata=None).upgrade()
        with database.transaction() as session:
            # No password: the benchmark never logs in, and argon2 would only cost time.
            user = create_user(
                session, Passwords(settings.auth), email=BENCH_USER_EMAIL, password=None
            )
            principal = principal_for(user, settings.auth.roles)
            key = create_api_key(
                session,
                user,
                name="bench",
                scopes=sorted(principal.permissions),
                grantable=principal.permissions,
                prefix=settings.auth.api_key_prefix,
            )
            return {"user_id": user.id, "api_key": key.key}
    finally:
        database.dispose()


def access_token(user_id: int) -> dict[str, object]:
    """A valid access token for ``user_id``, made as ``/auth/token`` makes them."""
    from bastion.auth.tokens import Tokens

    settings = app.load_settings()
    token, ttl = Tokens(settings.auth, settings.app.secret_key.get_secret_value()).access_token(
        user_id
    )
    return {"token": token, "ttl_s": ttl}


def main() -> None:
    parser = argparse.ArgumentParser(description="Credentials for benchmarks/auth_path.py.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("seed-auth", help="platform tables, a user and an API key")
    token = commands.add_parser("token", help="a fresh access token for a user")
    token.add_argument("user_id", type=int)
    args = parser.parse_args()
    result = seed_auth() if args.command == "seed-auth" else access_token(args.user_id)
    print("BENCH_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
