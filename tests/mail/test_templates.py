"""Mail templates: strict variables, autoescaped HTML, locale variants and their fallback."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import jinja2
import pytest

from bastion.mail import MailTemplateError, MailTemplateNotFound, Templates


def write(folder: Path, files: dict[str, str]) -> Templates:
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    return Templates(folder)


GREETING = {
    "greet.subject.txt": "Hello\n  {{ name }}\n",
    "greet.txt": "Hi {{ name }}!\n",
    "greet.html": "<p>Hi {{ name }}!</p>\n",
    "greet.es.subject.txt": "Hola {{ name }}",
    "greet.es.txt": "¡Hola {{ name }}!",
    "greet.es.html": "<p>¡Hola {{ name }}!</p>",
}


@pytest.fixture
def templates(tmp_path: Path) -> Templates:
    return write(tmp_path, GREETING)


def test_html_is_autoescaped_and_text_is_not(templates: Templates) -> None:
    subject, text, html = templates.render("greet", name="<script>alert(1)</script>")
    assert html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;!</p>"
    assert text == "Hi <script>alert(1)</script>!"
    assert subject == "Hello <script>alert(1)</script>", "subjects are text, not HTML"


def test_the_subject_is_one_line(templates: Templates) -> None:
    assert templates.render("greet", name="Ana\r\nBcc: x@evil.example").subject == (
        "Hello Ana Bcc: x@evil.example"
    )


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("es", "¡Hola Ana!"),
        ("es-MX", "¡Hola Ana!"),  # the language's set when the region has none
        ("tr", "Hi Ana!"),  # no Turkish set: the default files
        ("en", "Hi Ana!"),
        (None, "Hi Ana!"),
    ],
)
def test_a_locale_set_is_preferred_with_fallback(
    templates: Templates, locale: str | None, expected: str
) -> None:
    assert templates.render("greet", locale, name="Ana").text == expected


def test_a_locale_set_is_used_whole(templates: Templates) -> None:
    subject, _text, html = templates.render("greet", locale="es", name="Ana")
    assert (subject, html) == ("Hola Ana", "<p>¡Hola Ana!</p>")


def test_html_is_optional(tmp_path: Path) -> None:
    templates = write(tmp_path, {"note.subject.txt": "Note", "note.txt": "Text only"})
    assert templates.render("note") == ("Note", "Text only", None)


def test_a_missing_template_names_itself(templates: Templates) -> None:
    with pytest.raises(MailTemplateNotFound, match=r"'farewell': farewell\.subject\.txt") as err:
        templates.render("farewell", name="Ana")
    assert isinstance(err.value, jinja2.TemplateNotFound)
    assert err.value.name == "farewell"


def test_a_missing_subject_is_an_error(tmp_path: Path) -> None:
    templates = write(tmp_path, {"note.txt": "Text"})
    with pytest.raises(MailTemplateNotFound, match=r"note\.subject\.txt not found"):
        templates.render("note")


@pytest.mark.parametrize("missing", ["greet.es.subject.txt", "greet.es.html"])
def test_an_incomplete_translation_is_an_error_not_a_mixed_email(
    tmp_path: Path, missing: str
) -> None:
    files = {name: content for name, content in GREETING.items() if name != missing}
    templates = write(tmp_path, files)
    with pytest.raises(MailTemplateNotFound, match=missing.replace(".", r"\.")):
        templates.render("greet", locale="es", name="Ana")


def test_names_cannot_leave_the_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.subject.txt").write_text("s")
    (tmp_path / "secret.txt").write_text("t")
    inner = tmp_path / "mail"
    inner.mkdir()
    with pytest.raises(MailTemplateNotFound):
        Templates(inner).render("../secret")


def test_a_missing_variable_is_an_error(templates: Templates) -> None:
    with pytest.raises(MailTemplateError, match=r"greet\.subject\.txt: 'name' is undefined"):
        templates.render("greet")


def test_an_undefined_attribute_is_an_error_too(tmp_path: Path) -> None:
    templates = write(tmp_path, {"o.subject.txt": "Order", "o.txt": "{{ order.number }}"})
    with pytest.raises(MailTemplateError, match="has no attribute 'number'"):
        templates.render("o", order={"id": 1})


def test_the_context_may_use_the_parameter_names(tmp_path: Path) -> None:
    templates = write(tmp_path, {"n.subject.txt": "{{ name }}", "n.txt": "{{ to }} {{ locale }}"})
    assert templates.render("n", "es", name="Ana", to="you") == ("Ana", "you es", None)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("en", "€12.50"), ("es", "12,50\xa0€"), ("es-ES", "12,50\xa0€"), ("xx", "€12.50")],
)
def test_money_is_formatted_in_the_locale(tmp_path: Path, locale: str, expected: str) -> None:
    templates = write(tmp_path, {"m.subject.txt": "m", "m.txt": "{{ total | money('EUR') }}"})
    assert templates.render("m", locale, total=Decimal("12.5")).text == expected


def test_the_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mail templates folder not found"):
        Templates(tmp_path / "nowhere")
