"""Accounts: bastion's account endpoints, plus the shop's welcome email on registration
and the merge of the visitor's session cart into the user's cart at login."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bastion.auth import User
from examples.shop import cart
from examples.shop.app import app


def queue_welcome_email(session: Session, user: User) -> None:
    """Runs inside the registration transaction: the email job exists if and only if
    the account does.

    The hook is not told the request's locale, so the email is in the user's saved
    language, which a new account does not have yet: English.
    """
    assert app.send_email is not None  # the shop declares its mail templates
    app.send_email.enqueue(
        session,
        template="welcome",
        to=[user.email],
        locale=str(user.preferences.get("language") or "en"),
        context={"name": user.name or user.email},
    )


app.use_auth(on_register=queue_welcome_email, on_login=cart.merge_session_cart)
