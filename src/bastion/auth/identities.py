"""Links from provider accounts (OIDC ``provider`` + ``subject``) to bastion users.

The subject, not the email, identifies a returning user: emails change and can be
reassigned by the provider, subjects cannot. The email only matters the first time,
to find or create the user, and only once the provider says it verified it;
otherwise anyone able to type someone's address at a careless provider could take
over their account here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from bastion.auth.oidc import OidcIdentity
from bastion.auth.passwords import Passwords
from bastion.auth.users import User, create_user, normalize_email
from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime
from bastion.errors import BastionError, ValidationFailed
from bastion.observability.logs import get_logger


class UserIdentity(PlatformBase):
    """One provider account linked to a user (a user may have several)."""

    __tablename__ = "bastion_user_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    """The verified email the link was made through (normalized)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def link_identity(
    session: Session,
    identity: OidcIdentity,
    passwords: Passwords,
    on_create: Callable[[Session, User], None] | None = None,
) -> User:
    """The user ``identity`` signs in as, linking or creating it on first sign-in.

    A known (provider, subject) is its user; otherwise a verified email finds the
    user with that email, or creates one (role ``user``, no password) and calls
    ``on_create(session, user)`` (the app's registration hook: a welcome email). Banned
    or inactive users are returned as they are: refusing them is the caller's job.
    Call it inside a transaction: the link, the new user and the hook's writes commit
    together.

    Raises:
        BastionError: ``oidc_failed`` for an unknown identity without a verified email.
    """
    linked = session.scalar(
        select(User)
        .join(UserIdentity, UserIdentity.user_id == User.id)
        .where(UserIdentity.provider == identity.provider)
        .where(UserIdentity.subject == identity.subject)
    )
    if linked is not None:
        return linked
    log = get_logger("bastion.auth.oidc", provider=identity.provider)
    if not identity.email_verified or identity.email is None:
        log.warning("oidc_failed", reason="no verified email to link a new identity by")
        raise BastionError("oidc_failed")
    try:
        email = normalize_email(identity.email)
    except ValidationFailed:
        log.warning("oidc_failed", reason="the provider's email is not a valid address")
        raise BastionError("oidc_failed") from None
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = create_user(session, passwords, email=email, password=None, name=identity.name[:200])
        log.info("oidc_user_created", user_id=user.id)
        if on_create is not None:
            on_create(session, user)
    session.add(
        UserIdentity(
            provider=identity.provider, subject=identity.subject, user_id=user.id, email=email
        )
    )
    session.flush()
    log.info("oidc_identity_linked", user_id=user.id)
    return user
