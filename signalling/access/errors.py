"""The failures of sign-in and admission, shared by `siwe`, `grants` and `auth`.

Every failure is an `AuthError` whose message says exactly what failed, so clients (and tests) can
tell a replayed nonce from an expired message from a wrong domain.
"""

from __future__ import annotations


class AuthError(Exception):
    """Authentication or authorisation failed; str(exc) is the precise reason."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AccessDenied(AuthError):
    """The identity is known but the room's gate said no (HTTP 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 403)
