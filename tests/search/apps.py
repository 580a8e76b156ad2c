"""A search test app: a small product catalogue and its search index."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Boolean, Integer, String, Table, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import App
from bastion.search import SearchIndex


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(50))
    in_stock: Mapped[bool] = mapped_column(Boolean, default=True)


products = cast(Table, Product.__table__)
index = SearchIndex(
    "product_search",
    products,
    key=products.c.id,
    fields={"name": "A", "description": "B"},
    filters=[products.c.category, products.c.in_stock],
)


# The test database is built with metadata.create_all (the app has no migrations),
# so the index's tables are created alongside; a migration would call
# ``index.create(op.get_bind())`` instead.
@event.listens_for(Base.metadata, "after_create")
def _create_index(_target: Any, connection: Any, **_kw: Any) -> None:
    index.create(connection)


app = App("searchtests", metadata=Base.metadata)
app.search_index(index)

#: (id, name, description, category, in_stock)
CATALOGUE: list[tuple[int, str, str, str, bool]] = [
    (1, "Dark Chocolate Bar", "70% cocoa from Ecuador, a bitter and intense bar.", "food", True),
    (2, "Milk Chocolate Truffles", "Creamy truffles in a gift box of twelve.", "food", True),
    (3, "Black Coffee Beans", "Whole beans, dark roast, for espresso and filter.", "food", True),
    (4, "Decaf Coffee", "Ground decaffeinated arabica, medium roast.", "food", False),
    (5, "Espresso Machine", "15 bar pump machine with a steam wand for milk.", "kitchen", True),
    (6, "Wireless Headphones", "Over-ear, noise cancelling, 30 hours of battery.", "audio", True),
    (
        7,
        "Earbuds Pro",
        "In-ear wireless earbuds; a compact alternative to headphones.",
        "audio",
        True,
    ),
    (8, "Studio Monitor Speakers", "A pair of active speakers for the home studio.", "audio", True),
    (9, "Bluetooth Speaker", "Portable waterproof speaker with deep bass.", "audio", False),
    (10, "iPhone Case", "Slim silicone case, black, with a soft lining.", "accessories", True),
    (11, "USB-C Charging Cable", "Braided cable, two metres, fast charging.", "accessories", True),
    (12, "Laptop Stand", "Aluminium stand that raises the screen to eye level.", "office", True),
    (13, "Mechanical Keyboard", "Tactile switches, backlit keys, USB-C.", "office", True),
    (14, "Wireless Mouse", "Ergonomic mouse with a silent click.", "office", True),
    (15, "Desk Lamp", "LED lamp with warm and cold light and a dimmer.", "office", True),
    (16, "Green Tea", "Loose leaf sencha from Shizuoka.", "food", True),
    (17, "Herbal Tea Sampler", "Chamomile, mint and rooibos; caffeine free.", "food", True),
    (18, "Ceramic Teapot", "A teapot for green tea, holds one litre.", "kitchen", True),
    (19, "French Press", "Glass coffee maker for four cups.", "kitchen", True),
    (
        20,
        "Coffee Grinder",
        "Burr grinder with forty settings, from espresso to press.",
        "kitchen",
        True,
    ),
    (21, "Hot Chocolate Mix", "Cocoa powder with cane sugar, just add milk.", "food", True),
    (22, "Running Shoes", "Light trail running shoes with a grippy sole.", "sport", True),
    (23, "Yoga Mat", "Non-slip mat, six millimetres thick.", "sport", True),
    (24, "Water Bottle", "Insulated steel bottle keeps drinks cold for a day.", "sport", True),
    (25, "Backpack", "Twenty litre backpack with a padded laptop sleeve.", "travel", True),
    (26, "Travel Adapter", "Universal plug adapter with two USB ports.", "travel", True),
    (27, "Notebook", "Dotted paper notebook, A5, hard cover.", "office", True),
    (28, "Fountain Pen", "Steel nib fountain pen with a black ink cartridge.", "office", True),
    (29, "Chocolate Chip Cookies", "Butter cookies with dark chocolate chips.", "food", True),
    (30, "Noise Cancelling Earmuffs", "For workshops; not headphones, no audio.", "tools", True),
]
