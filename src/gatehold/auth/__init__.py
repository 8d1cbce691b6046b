"""Authentication: who is calling."""

from gatehold.auth.apikeys import ApiKeyAuthenticator, hash_secret, new_api_key, verify_secret

__all__ = ["ApiKeyAuthenticator", "hash_secret", "new_api_key", "verify_secret"]
