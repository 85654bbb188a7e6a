"""How the cluster processes reach Redis: URL, password and TLS, without leaking the password.

The password comes from `redis_password` (env `BASEMENT_REDIS_PASSWORD`) or `redis_password_file`
(a mounted Secret), never from the command line, and is handed to redis-py as a keyword so it does
not have to sit in the URL. Anything that prints a target prints `safe_url`, whose userinfo
password is masked, so a URL that does carry one (an external Redis URL kept in a Secret) still
never reaches a log line. `rediss://` URLs verify the server against `redis_ssl_ca_certs` when set,
else against the system's CAs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from signalling.config import ConfigError, Settings

SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """`url` with the password of its userinfo (if any) replaced by `***`; the user name is kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable Redis URL>"
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, _password = userinfo.partition(":")
    # a bare userinfo (redis://x@host) is a user name to redis-py, but people put passwords there
    masked = f"{user}:***" if sep else "***"
    return urlunsplit((parts.scheme, f"{masked}@{hostport}", parts.path, parts.query, parts.fragment))


def url_has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.password is not None


@dataclass(frozen=True)
class RedisTarget:
    """One Redis endpoint and how to authenticate to it; `repr` never shows the password."""

    url: str
    password: str = field(default="", repr=False)
    ssl_ca_certs: str = ""

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme not in SCHEMES:
            raise ConfigError(f"redis_url: scheme {scheme!r} is not one of redis://, rediss://, unix://")
        if self.password and url_has_password(self.url):
            raise ConfigError("redis_password: the Redis URL carries a password too; give it in one place only")
        if self.ssl_ca_certs and scheme != "rediss":
            raise ConfigError("redis_ssl_ca_certs: only used with a rediss:// (TLS) Redis URL")

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for `redis.asyncio.Redis.from_url` beyond the URL."""
        opts: dict[str, Any] = {}
        if self.password:
            opts["password"] = self.password
        if self.ssl_ca_certs:
            opts["ssl_ca_certs"] = self.ssl_ca_certs
        return opts

    def client(self) -> Any:
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(self.url, **self.options())


def as_target(target: str | RedisTarget) -> RedisTarget:
    return target if isinstance(target, RedisTarget) else RedisTarget(target)


def read_password(settings: Settings) -> str:
    """The Redis password from the setting or from its file (trailing newline stripped)."""
    if settings.redis_password and settings.redis_password_file:
        raise ConfigError("redis_password / redis_password_file: set one, not both")
    if not settings.redis_password_file:
        return settings.redis_password
    try:
        password = Path(settings.redis_password_file).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"redis_password_file: cannot read {settings.redis_password_file}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    if not password:
        raise ConfigError(f"redis_password_file: {settings.redis_password_file} is empty")
    return password


def target_from_settings(settings: Settings) -> RedisTarget:
    if not settings.redis_url:
        raise ConfigError("redis_url: required for `basement sfu` and `basement signal`")
    return RedisTarget(settings.redis_url, read_password(settings), settings.redis_ssl_ca_certs)
