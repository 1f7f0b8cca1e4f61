"""SMPP credentials from Vault / OpenBao KV v2: client, credential store, rotation job.

Knows nothing of ``smppd`` or ``control``: the daemon reads ``CredentialStore``.
"""

from .client import (
    AppRoleAuth,
    CasConflict,
    SecretNotFound,
    TokenAuth,
    VaultAuthError,
    VaultClient,
    VaultError,
    VaultUnavailable,
)
from .credentials import Credentials, CredentialStore

__all__ = [
    "AppRoleAuth",
    "CasConflict",
    "CredentialStore",
    "Credentials",
    "SecretNotFound",
    "TokenAuth",
    "VaultAuthError",
    "VaultClient",
    "VaultError",
    "VaultUnavailable",
]
