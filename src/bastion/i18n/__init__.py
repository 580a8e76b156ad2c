"""Locale negotiation: pick the best shipped locale for a request."""

from __future__ import annotations

from bastion.i18n.negotiation import negotiate_locale, parse_accept_language

__all__ = ["negotiate_locale", "parse_accept_language"]
