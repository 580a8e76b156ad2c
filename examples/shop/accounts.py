"""Accounts: bastion's account endpoints, plus the shop's welcome email on registration."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bastion.auth import User
from examples.shop.app import app
from examples.shop.models import OutboxMessage


def queue_welcome_email(session: Session, user: User) -> None:
    """Runs inside the registration transaction: no account without its welcome email."""
    session.add(
        OutboxMessage(
            kind="welcome_email",
            recipient=user.email,
            payload={"user_id": user.id, "name": user.name},
        )
    )


app.use_auth(on_register=queue_welcome_email)
