"""Content-addressed storage for session documents.

The CID is always computed locally: CIDv1, codec raw, sha2-256, base32 (`bafkrei…`). For content up to
256 KiB that is exactly what `ipfs add --cid-version=1 --raw-leaves` prints, so a document stored
here can be pinned on IPFS later under the same CID. Backends:

* `DirCidStore` — one file per CID in a directory (default; all-in-one server).
* `IpfsHttpCidStore` — a Kubo node's HTTP RPC API (`/api/v0/add`, `/api/v0/cat`).
* `IpfsMirroredStore` — a `DirCidStore` whose documents are also published (pinned) through that
  API: what the chain writer uses when `ipfs_api` is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from multiformats import CID, multihash

from signalling import safejson
from signalling.httpjson import read_at_most
from signalling.sessions.pinning import PinningError, PinningService

log = logging.getLogger(__name__)

# ipfs add chunks files above 256 KiB into a DAG, after which its CID is no longer the raw-leaf CID
# computed here; summaries are far below that, and we refuse rather than silently diverge.
MAX_RAW_BLOCK = 256 * 1024


class CidError(Exception):
    """A CID is malformed or the backend returned content that does not match it."""


def cid_of(data: bytes) -> str:
    """CIDv1 (raw, sha2-256) of `data`, base32."""
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


def same_cid(a: str, b: str) -> bool:
    """The same CID whatever its text base (Kubo prints CIDv1 in base32, js-ipfs in base58btc)."""
    try:
        return bool(CID.decode(a) == CID.decode(b))
    except Exception:  # noqa: BLE001 - multiformats raises several unrelated types
        return False


def parse_cid(cid: str) -> CID:
    try:
        c = CID.decode(cid)
    except Exception as e:  # multiformats raises several unrelated types
        raise CidError(f"not a CID: {cid!r} ({e})") from None
    if c.version != 1 or c.codec.name != "raw" or c.hashfun.name != "sha2-256":
        raise CidError(f"unsupported CID {cid!r}: want v1 raw sha2-256")
    return c


class CidStore(Protocol):
    async def put(self, data: bytes) -> str:
        """Store `data`; returns its CID. Idempotent."""

    async def get(self, cid: str) -> bytes:
        """The bytes stored under `cid`, as stored (callers re-hash to detect tampering).

        Raises KeyError when absent."""


class DirCidStore:
    """Files named by CID under `root/blocks/`, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blocks = self.root / "blocks"

    def __repr__(self) -> str:
        return f"DirCidStore({str(self.root)!r})"

    def path_for(self, cid: str) -> Path:
        parse_cid(cid)
        return self.blocks / cid

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self.put_sync, data)

    async def get(self, cid: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, cid)

    def put_sync(self, data: bytes) -> str:
        if len(data) > MAX_RAW_BLOCK:
            raise CidError(f"{len(data)} bytes is over the single-block limit of {MAX_RAW_BLOCK}")
        cid = cid_of(data)
        path = self.blocks / cid
        if path.exists():
            return cid
        write_atomic(path, data)
        return cid

    def get_sync(self, cid: str) -> bytes:
        path = self.path_for(cid)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KeyError(cid) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, and it survives power loss once we return."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class IpfsHttpCidStore:
    """Kubo HTTP RPC backend. The CID Kubo reports must equal the local one, else CidError."""

    def __init__(self, api_url: str, *, timeout_s: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"IpfsHttpCidStore({self.api_url!r})"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def put(self, data: bytes) -> str:
        if len(data) > MAX_RAW_BLOCK:
            raise CidError(f"{len(data)} bytes is over the single-block limit of {MAX_RAW_BLOCK}")
        expected = cid_of(data)
        form = aiohttp.FormData()
        form.add_field("file", data, filename="summary.json", content_type="application/octet-stream")
        params = {"cid-version": "1", "raw-leaves": "true", "hash": "sha2-256", "pin": "true"}
        async with self._http().post(f"{self.api_url}/api/v0/add", params=params, data=form) as r:
            if r.status != 200:
                raise CidError(f"ipfs add failed: HTTP {r.status}: {(await r.text())[:200]}")
            raw = await read_at_most(r, 64 * 1024 + 1)
        try:
            body = safejson.loads(raw, max_bytes=64 * 1024)
        except safejson.JsonError as e:
            raise CidError(f"ipfs add answered malformed JSON: {e}") from None
        got = body.get("Hash") if isinstance(body, dict) else None
        if not isinstance(got, str) or not same_cid(got, expected):
            raise CidError(f"ipfs add returned {got!r}, expected {expected}")
        return expected

    async def get(self, cid: str) -> bytes:
        parse_cid(cid)
        async with self._http().post(f"{self.api_url}/api/v0/cat", params={"arg": cid}) as r:
            if r.status == 200:
                # documents are single raw blocks: a node answering more is broken or hostile
                data = await read_at_most(r, MAX_RAW_BLOCK + 1)
                if len(data) > MAX_RAW_BLOCK:
                    raise CidError(f"ipfs cat returned more than the single-block limit of {MAX_RAW_BLOCK} bytes")
                return data
            text = await r.text()
            if r.status == 500 and ("not found" in text or "no link" in text):
                raise KeyError(cid)
            raise CidError(f"ipfs cat failed: HTTP {r.status}: {text[:200]}")


class IpfsMirroredStore(DirCidStore):
    """A directory store whose documents are also published to IPFS, pinned, under the same CID.

    The local copy is written first (fsync): it is what the chain write waits for, and what is
    published again if IPFS cannot take it now. Publication waits at most `publish_timeout_s`, and
    not at all while IPFS is failing (after a failed attempt, until one succeeds), so a slow or
    absent IPFS node holds a chain write (even a batch) at most that long once. A document IPFS has not
    confirmed keeps a marker file under `unpublished/` (written before the first attempt, removed
    when IPFS returned the same CID); `start()` runs a task that retries the marked ones with backoff,
    also after a restart. Nothing is lost: the document and its marker are on disk until IPFS has it.
    """

    def __init__(self, root: str | os.PathLike[str], ipfs: IpfsHttpCidStore, *, publish_timeout_s: float = 10.0,
                 retry_initial_s: float = 1.0, retry_max_s: float = 60.0, pinning: Any = None) -> None:
        super().__init__(root)
        self.ipfs = ipfs
        # optional PinningService: a document counts as published once the service pins it too
        self.pinning = pinning
        self.unpublished = self.root / "unpublished"
        self.publish_timeout_s = publish_timeout_s
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.published = 0  # documents IPFS confirmed
        self.failed = 0  # publication attempts that failed or timed out
        self._down = False  # the last attempt failed: puts do not wait until one succeeds again
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"IpfsMirroredStore({str(self.root)!r}, {self.ipfs!r})"

    async def put(self, data: bytes) -> str:
        cid = await super().put(data)
        marker = self.unpublished / cid
        await asyncio.to_thread(write_atomic, marker, b"")
        if self._down:
            # IPFS failed the last attempt: do not wait on it again (a batch of 50 would wait 50
            # timeouts); the retry task publishes this one once IPFS answers
            self._wake.set()
            return cid
        problem = await self._publish(cid, data)
        if problem is not None:
            log.warning("IPFS has not taken document %s (%s); the chain write goes on and publication is "
                        "retried", cid, problem)
            self._wake.set()
        return cid

    async def get(self, cid: str) -> bytes:
        try:
            return await super().get(cid)
        except KeyError:
            return await self.ipfs.get(cid)

    def pending(self) -> list[str]:
        """CIDs stored here that IPFS has not confirmed yet."""
        try:
            return sorted(p.name for p in self.unpublished.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    async def _publish(self, cid: str, data: bytes) -> str | None:
        """None when IPFS confirmed `cid`, else why not (and IPFS counts as down until one works)."""
        try:
            await asyncio.wait_for(self._put_and_pin(cid, data), self.publish_timeout_s)
        except (CidError, PinningError, OSError, aiohttp.ClientError, TimeoutError, ValueError) as e:
            self.failed += 1
            self._down = True
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        self._down = False
        (self.unpublished / cid).unlink(missing_ok=True)
        self.published += 1
        return None

    async def _put_and_pin(self, cid: str, data: bytes) -> None:
        await self.ipfs.put(data)
        if self.pinning is not None:
            await self.pinning.pin(cid, f"basement {cid}")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._retry_loop(), name="ipfs-republish")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.ipfs.close()
        if self.pinning is not None:
            await self.pinning.close()

    async def _retry_round(self) -> bool:
        """Try every marked document once; True when none is left."""
        for cid in self.pending():
            try:
                data = await super().get(cid)
            except (KeyError, CidError):  # no document (or not a CID): nothing that could be published
                log.error("unpublished/%s has no document in %s; dropping the marker", cid, self.blocks)
                (self.unpublished / cid).unlink(missing_ok=True)
                continue
            if cid_of(data) != cid:  # never publish a corrupted copy under another CID and call it done
                log.error("the local copy of %s does not hash to its CID; left unpublished", cid)
                continue
            problem = await self._publish(cid, data)
            if problem is not None:
                log.warning("%d session document(s) not yet on IPFS (%s)", len(self.pending()), problem)
                if not problem.startswith("CidError"):
                    return False  # IPFS is down or hanging: the rest would wait the same way
        return not [c for c in self.pending() if self._publishable(c)]

    def _publishable(self, cid: str) -> bool:
        try:
            return cid_of(self.get_sync(cid)) == cid
        except (KeyError, CidError, OSError):
            return False

    async def _retry_loop(self) -> None:
        delay = self.retry_initial_s
        while True:
            try:
                done = await self._retry_round()
            except Exception:  # noqa: BLE001 - the task must outlive any one bad round
                log.exception("retrying IPFS publication failed")
                done = False
            if done:
                delay = self.retry_initial_s
                self._wake.clear()
                if not [c for c in self.pending() if self._publishable(c)]:
                    await self._wake.wait()
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self._wake.clear()
            delay = min(delay * 2, self.retry_max_s)


def open_store(spec: str, ipfs_api: str = "", publish_timeout_s: float = 10.0, *, pin_service: str = "",
               pin_token: str = "") -> CidStore:
    """`http(s)://host:port` → Kubo API; anything else → a directory path, mirrored to the Kubo API
    `ipfs_api` when one is given (and then also pinned on the Pinning Service API `pin_service`)."""
    if spec.startswith(("http://", "https://")):
        return IpfsHttpCidStore(spec)
    if ipfs_api:
        pinning = PinningService(pin_service, pin_token, timeout_s=publish_timeout_s) if pin_service else None
        return IpfsMirroredStore(spec, IpfsHttpCidStore(ipfs_api), publish_timeout_s=publish_timeout_s,
                                 pinning=pinning)
    return DirCidStore(spec)
