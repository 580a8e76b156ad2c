"""Demo data: categories and products, the same on every machine (seeded RNG)."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import exc, select

from bastion import Runtime
from bastion.auth import create_user
from bastion.db import MetaEntry
from examples.shop.app import app
from examples.shop.models import Category, Product

SEED_MARKER = "shop.demo_data"
ADMIN_MARKER = "shop.admin"

CATEGORIES = [
    ("Phones", "phones", ["iPhone", "Pixel", "Galaxy", "Xperia", "Moto"]),
    ("Audio", "audio", ["Headphones", "Earbuds", "Speaker", "Soundbar", "Turntable"]),
    ("Computers", "computers", ["Laptop", "Desktop", "Chromebook", "Workstation", "Mini PC"]),
    ("Cameras", "cameras", ["Mirrorless Camera", "Action Camera", "Lens", "Tripod", "Drone"]),
    ("Home", "home", ["Coffee Maker", "Kettle", "Blender", "Toaster", "Air Fryer"]),
    ("Books", "books", ["Novel", "Cookbook", "Atlas", "Field Guide", "Anthology"]),
    ("Outdoors", "outdoors", ["Tent", "Backpack", "Sleeping Bag", "Headlamp", "Water Filter"]),
    (
        "Fitness",
        "fitness",
        ["Yoga Mat", "Kettlebell", "Jump Rope", "Foam Roller", "Rowing Machine"],
    ),
    ("Toys", "toys", ["Puzzle", "Board Game", "Building Set", "Kite", "Yo-yo"]),
    ("Office", "office", ["Desk Lamp", "Notebook", "Fountain Pen", "Monitor Arm", "Keyboard"]),
    ("Garden", "garden", ["Watering Can", "Pruner", "Planter", "Hose", "Seed Kit"]),
    ("Kitchen", "kitchen", ["Chef Knife", "Cast Iron Pan", "Cutting Board", "Stock Pot", "Whisk"]),
]
ADJECTIVES = ["Classic", "Pro", "Mini", "Max", "Ultra", "Eco", "Smart", "Compact", "Deluxe", "Lite"]
COLORS = ["Black", "White", "Blue", "Red", "Green", "Silver", "Graphite", "Sand"]


def demo_products(count: int, category_ids: list[int]) -> list[Product]:
    """``count`` products, identical for a given count on every machine."""
    rng = random.Random(20261122)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    products = []
    for index in range(count):
        category_index = index % len(CATEGORIES)
        _name, _slug, nouns = CATEGORIES[category_index]
        noun = nouns[(index // len(CATEGORIES)) % len(nouns)]
        name = f"{rng.choice(ADJECTIVES)} {noun} {rng.choice(COLORS)} {index + 1:03d}"
        products.append(
            Product(
                name=name,
                description=f"A {noun.lower()} for everyday use. {rng.choice(ADJECTIVES)} build, "
                f"{rng.choice(COLORS).lower()} finish.",
                price_cents=rng.randrange(299, 250_000, 100) - 1,
                stock=rng.randrange(0, 200),
                weight_grams=rng.randrange(50, 15_000),
                category_id=category_ids[category_index],
                # One product in twenty is inactive, so listings have something to hide.
                is_active=index % 20 != 19,
                popularity_score=rng.randrange(0, 1000),
                created_at=created + timedelta(minutes=index),
                updated_at=created + timedelta(minutes=index),
            )
        )
    return products


@app.on_startup
def seed_demo_data(runtime: Runtime) -> None:
    """Seed an empty database once, even when several processes start together."""
    settings = runtime.settings.section("shop")
    if not settings.seed_demo_data:
        return
    try:
        with runtime.database.transaction() as session:
            if session.get(MetaEntry, SEED_MARKER) is not None:
                return
            # The marker row is the lock: a second process seeding at the same time
            # fails on its primary key at commit and rolls back all of its inserts.
            session.add(MetaEntry(key=SEED_MARKER, value=datetime.now(UTC).isoformat()))
            session.flush()
            if session.scalar(select(Category.id).limit(1)) is not None:
                return
            categories = [Category(name=name, slug=slug) for name, slug, _ in CATEGORIES]
            session.add_all(categories)
            session.flush()
            session.add_all(demo_products(settings.demo_products, [c.id for c in categories]))
    except exc.IntegrityError:
        runtime.log.info("demo_data_seeded_elsewhere")
        return
    runtime.log.info("demo_data_seeded", products=settings.demo_products)


@app.on_startup
def seed_admin(runtime: Runtime) -> None:
    """Create the admin once; print a generated password when none was configured."""
    settings = runtime.settings.section("shop")
    configured = settings.admin_password.get_secret_value() if settings.admin_password else ""
    password = configured or secrets.token_urlsafe(18)
    try:
        with runtime.database.transaction() as session:
            if session.get(MetaEntry, ADMIN_MARKER) is not None:
                return
            # As with the demo data, the marker row makes concurrent start-ups safe.
            session.add(MetaEntry(key=ADMIN_MARKER, value=settings.admin_email))
            session.flush()
            create_user(
                session,
                runtime.passwords,
                email=settings.admin_email,
                password=password,
                name="Shop admin",
                roles=["admin"],
                known_roles=runtime.settings.auth.roles,
            )
    except exc.IntegrityError:
        return
    runtime.log.info("admin_created", email=settings.admin_email)
    if not configured:
        # Printed, not logged: logs are shipped and kept, this must be seen once only.
        print(f"shop admin: {settings.admin_email} / password (shown once): {password}", flush=True)
