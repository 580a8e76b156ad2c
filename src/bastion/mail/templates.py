"""Email templates: Jinja2 files for the subject, the text body and the HTML body.

A template ``welcome`` is up to three files in one folder::

    welcome.subject.txt      one line (whitespace, newlines included, collapses to spaces)
    welcome.txt              the plain-text body (required)
    welcome.html             the HTML body (optional; autoescaped)

and a translation is the same set with the locale before the part:
``welcome.es.subject.txt``, ``welcome.es.txt``, ``welcome.es.html``.

A locale's set is used when its ``.txt`` exists (``es-MX`` tries ``es-MX``, then
``es``), and then it must be complete: a missing translated subject, or a missing
translated HTML body while the default has one, is an error rather than an email
in two languages. A locale without a set gets the default files.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency


class MailTemplateError(jinja2.TemplateError):
    """A mail template could not be rendered (a variable it uses was not passed)."""


class MailTemplateNotFound(MailTemplateError, jinja2.TemplateNotFound):
    """A mail template, or one part of it in the chosen locale, does not exist."""


class RenderedEmail(NamedTuple):
    """What :meth:`Templates.render` returns: unpack it as ``subject, text, html``."""

    subject: str
    text: str
    html: str | None


class Templates:
    """The mail templates of one folder.

    Variables are strict: a template that uses a variable the caller did not pass
    fails instead of sending "Hello ," to a customer. HTML files are autoescaped, so
    a name like ``<script>`` arrives as text; text files and subjects are not (they
    are not HTML, and ``&lt;`` would show as such).

    Every template also sees ``locale`` and can format amounts with the ``money``
    filter in that locale: ``{{ total | money("EUR") }}`` is ``€12.50`` in ``en`` and
    ``12,50 €`` in ``es``. Amounts are in major units; pass ``Decimal`` for exactness.

    Args:
        directory: The folder; must exist.

    Example::

        templates = Templates(HERE / "templates" / "mail")
        subject, text, html = templates.render("welcome", locale="es", name="Ana")
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ValueError(f"mail templates folder not found: {self.directory}")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.directory),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            undefined=jinja2.StrictUndefined,
            # Block tags on lines of their own leave no blank lines in text bodies.
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["money"] = _money

    def render(self, name: str, /, locale: str | None = None, **context: Any) -> RenderedEmail:
        """Render template ``name`` in ``locale`` (default files when ``None``).

        ``name`` is positional-only, so the context may have a ``name`` of its own;
        ``locale`` is the one variable it cannot have (every template gets it anyway).

        Raises:
            MailTemplateNotFound: no ``<name>.txt`` or ``<name>.subject.txt``, or the
                chosen locale's set lacks a part (the message names the file).
            MailTemplateError: a variable the template uses was not passed.
        """
        chosen = self._locale_with_text(name, locale)
        prefix = f"{name}.{chosen}" if chosen else name
        subject = self._require(name, f"{prefix}.subject.txt")
        text = self._require(name, f"{prefix}.txt")
        html = self._load(f"{prefix}.html")
        if html is None and chosen and self._load(f"{name}.html") is not None:
            raise MailTemplateNotFound(
                name,
                f"mail template {name!r}: {prefix}.html is missing in {self.directory} "
                f"({name}.html exists; translate it too)",
            )
        values = {**context, "locale": locale or "en"}
        return RenderedEmail(
            subject=" ".join(_render(subject, values).split()),
            text=_render(text, values),
            html=_render(html, values) if html is not None else None,
        )

    def _locale_with_text(self, name: str, locale: str | None) -> str | None:
        if not locale:
            return None
        language = re.split(r"[-_]", locale, maxsplit=1)[0]
        for candidate in dict.fromkeys((locale, language)):
            if self._load(f"{name}.{candidate}.txt") is not None:
                return candidate
        return None

    def _load(self, filename: str) -> jinja2.Template | None:
        try:
            return self.env.get_template(filename)
        except jinja2.TemplateNotFound:
            return None

    def _require(self, name: str, filename: str) -> jinja2.Template:
        template = self._load(filename)
        if template is None:
            raise MailTemplateNotFound(
                name, f"mail template {name!r}: {filename} not found in {self.directory}"
            )
        return template


def _render(template: jinja2.Template, values: dict[str, Any]) -> str:
    try:
        return template.render(values)
    except jinja2.UndefinedError as exc:
        raise MailTemplateError(f"mail template {template.name}: {exc.message}") from exc


@jinja2.pass_context
def _money(context: jinja2.runtime.Context, amount: Decimal | float, currency: str) -> str:
    try:
        locale = Locale.parse(str(context.get("locale") or "en").replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        locale = Locale.parse("en")
    return str(format_currency(amount, currency, locale=locale))
