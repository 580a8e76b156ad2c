"""Error codes, statuses and message templates."""

from __future__ import annotations

import pytest

from bastion.errors import PLATFORM_CODES, BastionError, ErrorCatalog, RateLimited


def test_every_platform_code_is_translated_in_every_shipped_locale() -> None:
    catalog = ErrorCatalog.with_platform_messages()
    assert catalog.locales == ["en", "es", "tr"]
    assert catalog.missing_translations() == {}
    for locale in catalog.locales:
        for code in PLATFORM_CODES:
            params = {
                "limit": 1,
                "retry_after": 2,
                "min_length": 10,
                "max_length": 128,
                "current": "queued",
            }
            message = catalog.render(code, locale, params)
            assert message.title
            assert message.detail
            assert "{" not in message.detail


def test_field_messages_exist_in_every_locale() -> None:
    catalog = ErrorCatalog.with_platform_messages()
    assert set(catalog.field_messages["es"]) == set(catalog.field_messages["en"])
    assert set(catalog.field_messages["tr"]) == set(catalog.field_messages["en"])


def test_declared_app_code_fills_its_template_per_locale() -> None:
    catalog = ErrorCatalog.with_platform_messages()
    catalog.declare(
        "insufficient_credits",
        402,
        {
            "en": {
                "title": "Insufficient credits",
                "detail": "You need {required} credits, but only have {available}.",
            },
            "es": {
                "title": "Créditos insuficientes",
                "detail": "Necesitas {required} créditos, pero solo tienes {available}.",
            },
        },
    )
    assert catalog.status_of("insufficient_credits") == 402
    params = {"required": 500, "available": 120}
    assert catalog.render("insufficient_credits", "es-MX", params).detail == (
        "Necesitas 500 créditos, pero solo tienes 120."
    )
    assert (
        catalog.render("insufficient_credits", "tr", params).detail
        == "You need 500 credits, but only have 120."
    )
    assert catalog.missing_translations()["tr"] == ["insufficient_credits"]


def test_templates_only_fill_plain_names() -> None:
    catalog = ErrorCatalog()
    catalog.declare("leaky", 400, {"en": {"title": "t", "detail": "{x.__class__} {x} {missing}"}})
    assert catalog.render("leaky", "en", {"x": 1}).detail == "{x.__class__} 1 {missing}"


def test_declaring_a_code_twice_with_another_status_is_refused() -> None:
    catalog = ErrorCatalog.with_platform_messages()
    with pytest.raises(ValueError, match="already declared"):
        catalog.declare("not_found", 410)
    with pytest.raises(ValueError, match="snake_case"):
        catalog.declare("Bad-Code", 400)


def test_exceptions_carry_code_params_and_headers() -> None:
    error = BastionError("insufficient_credits", required=5, available=1)
    assert (error.error_code, error.params) == (
        "insufficient_credits",
        {"required": 5, "available": 1},
    )
    limited = RateLimited(30)
    assert (limited.error_code, limited.headers["Retry-After"], limited.params["retry_after"]) == (
        "rate_limited",
        "30",
        30,
    )


def test_a_catalog_file_cannot_redeclare_a_status(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    catalog_file = folder / "en.toml"
    catalog_file.write_text('[codes.not_found]\nstatus = 410\ntitle = "Gone"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="already declared"):
        ErrorCatalog.with_platform_messages().load_dir(folder)
