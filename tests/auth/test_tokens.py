"""Access-token checks below HTTP: the verified-token memory never outlives a token."""

from __future__ import annotations

import pytest

from bastion.auth import tokens as tokens_module
from bastion.auth.tokens import Tokens
from bastion.errors import BastionError
from bastion.settings.sections import AuthSection
from bastion.testing.clock import Clock

SECRET = "unit-test-secret-that-is-long-enough-for-hs256-0123456789"


def test_a_remembered_token_still_expires(clock: Clock) -> None:
    tokens = Tokens(AuthSection(), SECRET)
    token, ttl = tokens.access_token(7)
    assert tokens.verify_access(token).user_id == 7
    assert tokens.verify_access(token).user_id == 7  # from memory
    clock.shift(ttl + 10)  # past the 5 s leeway too
    with pytest.raises(BastionError) as caught:
        tokens.verify_access(token)
    assert caught.value.error_code == "token_expired"


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "VERIFIED_CACHE_SIZE", 3)
    tokens = Tokens(AuthSection(), SECRET)
    issued = [tokens.access_token(user)[0] for user in range(5)]
    for token in issued:
        tokens.verify_access(token)
    assert len(tokens._verified) == 3
    assert list(tokens._verified) == issued[2:]


def test_a_token_signed_with_another_secret_is_not_remembered() -> None:
    theirs = Tokens(AuthSection(), "another-secret-that-is-long-enough-for-hs256-0123456789")
    ours = Tokens(AuthSection(), SECRET)
    token, _ = theirs.access_token(1)
    for _ in range(2):
        with pytest.raises(BastionError):
            ours.verify_access(token)
    assert ours._verified == {}
