"""Platform users: normalized email, argon2id password hash, roles, active and banned flags.

Roles map to permissions in ``[auth.roles]``; :func:`principal_for` turns a user
into the :class:`~bastion.context.Principal` functions see as ``ctx.user``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import JSON, Boolean, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from bastion.auth.passwords import Passwords
from bastion.auth.principal import Principal
from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime
from bastion.errors import BastionError, FieldError, ValidationFailed


class User(PlatformBase):
    """A person (or admin) who can sign in."""

    __tablename__ = "bastion_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    """Normalized by :func:`normalize_email`: validated, then lowercased as a whole."""
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(512), nullable=True)
    """``None`` for accounts that only sign in through OIDC."""
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    banned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ban_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def is_banned(self) -> bool:
        return self.banned_at is not None


def normalize_email(email: str, *, field: str = "email") -> str:
    """The canonical form of an email address, or 422 with field code ``invalid_email``.

    The local part is lowercased too: RFC 5321 lets servers treat it case-sensitively,
    but practically none do, and two accounts for ``Ann@x`` and ``ann@x`` would be
    a support problem and an impersonation risk.
    """
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise ValidationFailed(errors=[FieldError(field, "invalid_email")]) from None


def find_user(session: Session, email: str) -> User | None:
    """The user with this email (normalized first), or ``None``."""
    try:
        normalized = normalize_email(email)
    except ValidationFailed:
        return None
    return session.scalar(select(User).where(User.email == normalized))


def create_user(
    session: Session,
    passwords: Passwords,
    *,
    email: str,
    password: str | None,
    name: str = "",
    roles: Iterable[str] = ("user",),
    known_roles: Iterable[str] | None = None,
) -> User:
    """Add a user after checking the email, the password policy and the roles.

    Raises:
        ValidationFailed: invalid email or unknown role.
        BastionError: ``weak_password``, or ``email_taken`` (409).
    """
    normalized = normalize_email(email)
    wanted = sorted(set(roles))
    if known_roles is not None:
        unknown = [role for role in wanted if role not in set(known_roles)]
        if unknown:
            raise ValidationFailed(
                errors=[FieldError("roles", "unknown_role", params={"role": unknown[0]})]
            )
    if password is not None:
        passwords.check_policy(password)
    if session.scalar(select(User.id).where(User.email == normalized)) is not None:
        raise BastionError("email_taken")
    user = User(
        email=normalized,
        name=name,
        roles=wanted,
        password_hash=passwords.hash(password) if password is not None else None,
    )
    session.add(user)
    session.flush()
    return user


def principal_for(user: User, roles: Mapping[str, Iterable[str]]) -> Principal:
    """The caller a user becomes: its roles and the permissions they grant."""
    permissions = {permission for role in user.roles for permission in roles.get(role, ())}
    return Principal(str(user.id), roles=frozenset(user.roles), permissions=frozenset(permissions))
