import pytest

from gatehold.auth.apikeys import ApiKeyAuthenticator, hash_secret, new_api_key, verify_secret
from gatehold.config import ApiKey
from gatehold.errors import AuthenticationFailed


@pytest.fixture(scope="module")
def issued() -> tuple[str, ApiKeyAuthenticator]:
    key, hashed = new_api_key("ci-bot")
    return key, ApiKeyAuthenticator((ApiKey(id="ci-bot", hash=hashed, principal="ci", roles=("reader",)),))


def test_a_valid_key_names_its_principal_never_the_key(issued: tuple[str, ApiKeyAuthenticator]) -> None:
    key, auth = issued
    caller = auth.authenticate(f"Bearer {key}")
    assert (caller.principal, caller.roles, caller.credential_id) == ("ci", ("reader",), "apikey:ci-bot")
    assert key not in repr(caller)
    assert auth.authenticate(f"bearer {key}") == caller  # scheme is case-insensitive; cached path


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer ghk_ci-bot.wrong", "Bearer ghk_x.y",
                                    "Bearer not-a-gatehold-key"])
def test_invalid_credentials_are_refused(issued: tuple[str, ApiKeyAuthenticator], header: str | None) -> None:
    with pytest.raises(AuthenticationFailed):
        issued[1].authenticate(header)


def test_a_tampered_key_fails_even_after_the_real_one_was_cached(issued: tuple[str, ApiKeyAuthenticator]) -> None:
    key, auth = issued
    auth.authenticate(f"Bearer {key}")
    with pytest.raises(AuthenticationFailed):
        auth.authenticate(f"Bearer {key[:-1]}{'A' if key[-1] != 'A' else 'B'}")


def test_hashes_are_salted_and_malformed_hashes_never_match() -> None:
    assert hash_secret("s") != hash_secret("s")
    assert verify_secret("s", hash_secret("s"))
    assert not verify_secret("t", hash_secret("s"))
    for bad in ["", "scrypt$", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA$AA", "scrypt$16384$8$1$@@$@@"]:
        assert not verify_secret("s", bad)
