"""Keeping secrets out of logs: RPC URLs carry API keys (in the path, the query or user:password@),
Redis URLs carry passwords, and exceptions from web3/aiohttp/redis quote the URL they failed on.

`redact_url` is for code that logs a URL on purpose; `redact_logs` installs a filter on the root
logger's handlers that rewrites every record, tracebacks included, so a URL or key quoted by a
third-party library is masked too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# a path segment that looks like a key: 16+ characters with a digit, or 20+ of any (Infura /v3/<32 hex>,
# Alchemy /v2/<key>, QuickNode /<token>/); words like "mainnet" or "rpc" stay readable
_KEYLIKE = re.compile(r"(?=.*[0-9])[A-Za-z0-9_\-]{16,}|[A-Za-z0-9_\-]{20,}")


def redact_url(url: str) -> str:
    """The URL with userinfo, query values, fragment and key-like path segments masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK  # not even a URL: show nothing rather than something secret
    if not parts.scheme or not parts.netloc:
        return MASK if url else url
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    path = "/".join(MASK if _KEYLIKE.fullmatch(seg) else seg for seg in parts.path.split("/"))
    query = "&".join(f"{kv.split('=', 1)[0]}={MASK}" if "=" in kv else MASK
                     for kv in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, MASK if parts.fragment else ""))


def _replacements(urls: Iterable[str], secrets: Iterable[str]) -> list[tuple[str, str]]:
    pairs: dict[str, str] = {}
    for url in urls:
        if not url:
            continue
        safe = redact_url(url)
        pairs[url] = safe
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        # libraries also quote pieces: the password alone, the path with its key, the query
        for piece in (parts.password, parts.username if parts.password is None else None, parts.query):
            if piece and len(piece) >= 4:
                pairs.setdefault(piece, MASK)
        for seg in parts.path.split("/"):
            if _KEYLIKE.fullmatch(seg):
                pairs.setdefault(seg, MASK)
    for secret in secrets:
        if secret and len(secret) >= 8:  # shorter "secrets" would mask ordinary words
            pairs.setdefault(secret, MASK)
            pairs.setdefault(secret.removeprefix("0x"), MASK)
    # longest first, so a whole URL is replaced before the pieces inside it
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


class RedactingFilter(logging.Filter):
    """Masks the given URLs and secrets in a record's message and traceback text."""

    def __init__(self, urls: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        super().__init__("basement.redact")
        self.pairs = _replacements(urls, secrets)

    def scrub(self, text: str) -> str:
        for secret, safe in self.pairs:
            if secret in text:
                text = text.replace(secret, safe)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.pairs:
            return True
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def redact_logs(urls: Iterable[str] = (), secrets: Iterable[str] = (),
                logger: logging.Logger | None = None) -> RedactingFilter:
    """Install (or replace) the filter on every handler of `logger` (default: the root logger).

    On handlers, not on the logger: records from child loggers reach the root's handlers without
    passing the root logger's own filters."""
    target = logger or logging.getLogger()
    filt = RedactingFilter(urls, secrets)
    for handler in target.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(filt)
    return filt
