"""The shop's mail templates render in every locale they are sent in."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bastion.mail import Templates
from examples.shop.app import HERE

ORDER = {
    "name": "Ana",
    "order_id": 1042,
    "currency": "EUR",
    "items": [
        {"name": "Tea <Earl Grey>", "quantity": 2, "unit_price": Decimal("8.50")},
        {"name": "Mug", "quantity": 1, "unit_price": Decimal("12.00")},
    ],
    "total": Decimal("29.00"),
}


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates(HERE / "templates" / "mail")


@pytest.mark.parametrize(
    ("locale", "subject", "greeting"),
    [
        ("en", "Welcome to the bastion shop, Ana", "Hello Ana,"),
        ("es", "Te damos la bienvenida a la tienda bastion, Ana", "Hola, Ana:"),
        ("tr", "Welcome to the bastion shop, Ana", "Hello Ana,"),
    ],
)
def test_welcome(templates: Templates, locale: str, subject: str, greeting: str) -> None:
    rendered = templates.render("welcome", locale, name="Ana")
    assert rendered.subject == subject
    assert rendered.text.startswith(greeting)
    assert rendered.html is not None
    assert greeting in rendered.html


def test_order_confirmation(templates: Templates) -> None:
    subject, text, html = templates.render("order_confirmation", "en", **ORDER)
    assert subject == "Your order #1042 is confirmed"
    assert "2 x Tea <Earl Grey>  (€8.50 each)  €17.00" in text
    assert "Total: €29.00" in text
    assert html is not None
    assert '<td style="padding: 4px 12px 4px 0;">Tea &lt;Earl Grey&gt;</td>' in html
    assert "€29.00" in html


def test_order_confirmation_formats_money_for_the_reader(templates: Templates) -> None:
    # No Spanish set yet: the English text, with amounts as a Spanish reader writes them.
    _subject, text, _html = templates.render("order_confirmation", "es", **ORDER)
    assert "Total: 29,00\xa0€" in text
