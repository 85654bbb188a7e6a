"""`basement sessions list | verify <session-id> | prove <session-id> <address> | writer`.

list/verify/prove are also coroutines callable from Python (`list_sessions`, `verify_session`,
`prove_participant`); `writer` runs the chain writer as its own process (what `basement serve` does
in-process): it drains the outbox into SessionLog until stopped.

verify = trust nothing but the chain: take the on-chain record (a SessionRecorded event, or a
SessionBatched event plus the batch manifest named by its BatchRecorded event, whose Merkle proof
must reach the on-chain batch root), fetch the document by CID, re-hash it, and recompute every
summary field from its contents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from eth_utils import to_checksum_address

from signalling import config, safejson
from signalling.sessions.cidstore import CidError, CidStore, cid_of, open_store, same_cid
from signalling.sessions.summary import (
    MAX_DOCUMENT_BYTES,
    address_leaf,
    check_document,
    from_hex32,
    hex32,
    participant_proof,
    summary_leaf,
    verify_proof,
)

if TYPE_CHECKING:
    from web3 import AsyncWeb3

# web3 and the contract bindings are imported where they are used: this module registers the
# `sessions` subcommand, so every `basement` command (serve, sfu, signal, bench) imports it, and
# web3 costs ~1.7 s of CPU to import (eth_account's BLS tables)

FIELDS = ("startedAt", "endedAt", "peakParticipants", "participantCount", "participantsRoot", "mediaBytes",
          "mediaPackets", "cid")


@dataclass
class Record:
    """One on-chain record of a session: kind "single" (full fields) or "batch" (root only)."""

    kind: str
    session_id: str
    block: int
    tx: str
    fields: dict[str, Any] = field(default_factory=dict)
    batch_root: str | None = None
    manifest_cid: str | None = None
    batch_proof: list[str] | None = None  # the session leaf's Merkle proof to batch_root, once verified


@dataclass
class VerifyResult:
    ok: bool
    session_id: str
    reasons: list[str]
    record: Record | None = None

    def line(self) -> str:
        if self.ok:
            how = "batch " + str(self.record.batch_root) if self.record and self.record.kind == "batch" else "single"
            return f"PASS {self.session_id} ({how}, cid {self.record.fields.get('cid') if self.record else '-'})"
        return f"FAIL {self.session_id}: " + "; ".join(self.reasons)


def _norm_sid(session_id: str | bytes) -> bytes:
    return session_id if isinstance(session_id, bytes) else from_hex32(session_id)


def _event_fields(args: Any) -> dict[str, Any]:
    out = {"sessionId": hex32(args["sessionId"]), "roomId": hex32(args["roomId"]), "writer": args["writer"]}
    for k in FIELDS:
        v = args[k]
        out[k] = hex32(v) if isinstance(v, bytes) else v
    return out


async def fetch_records(w3: AsyncWeb3, session_log: str, session_id: str | bytes | None = None,
                        from_block: int = 0) -> list[Record]:
    """All SessionRecorded / SessionBatched events (for one id, or all), in chain order."""
    from signalling.chain import contracts

    c = contracts.contract_at(w3, "SessionLog", session_log)
    from_block = max(from_block, int(await c.functions.deployedBlock().call()))
    flt = {"sessionId": _norm_sid(session_id)} if session_id is not None else None
    single = await c.events.SessionRecorded().get_logs(from_block=from_block, argument_filters=flt)
    batched = await c.events.SessionBatched().get_logs(from_block=from_block, argument_filters=flt)
    roots = sorted({bytes(e.args["batchRoot"]) for e in batched})
    manifests: dict[str, str] = {}
    if roots:  # one query: for the roots of one session, or for every batch when listing all
        root_flt = {"batchRoot": roots} if session_id is not None else None
        for e in await c.events.BatchRecorded().get_logs(from_block=from_block, argument_filters=root_flt):
            manifests.setdefault(hex32(e.args["batchRoot"]), e.args["manifestCid"])
    recs = [Record("single", hex32(e.args["sessionId"]), e.blockNumber, e.transactionHash.hex(),
                   _event_fields(e.args)) for e in single]
    recs += [Record("batch", hex32(e.args["sessionId"]), e.blockNumber, e.transactionHash.hex(),
                    batch_root=hex32(e.args["batchRoot"]), manifest_cid=manifests.get(hex32(e.args["batchRoot"])))
             for e in batched]
    return sorted(recs, key=lambda r: r.block)


async def _manifest_entry(store: CidStore, rec: Record) -> tuple[dict[str, Any] | None, str | None]:
    """The batch manifest's entry for this session, checked against the on-chain root."""
    if not rec.manifest_cid:
        return None, f"no BatchRecorded event for batch {rec.batch_root}"
    try:
        raw = await store.get(rec.manifest_cid)
        if not same_cid(cid_of(raw), rec.manifest_cid):  # a store (an IPFS gateway) may hand back anything
            return None, f"batch manifest does not match its CID: on-chain cid {rec.manifest_cid}, " \
                         f"stored bytes hash to {cid_of(raw)}"
        manifest = safejson.loads(raw, max_bytes=MAX_DOCUMENT_BYTES)
    except KeyError:
        return None, f"batch manifest {rec.manifest_cid} not found in the CID store"
    except (CidError, OSError, aiohttp.ClientError, TimeoutError) as e:
        return None, f"batch manifest {rec.manifest_cid} could not be read: {type(e).__name__}: {str(e)[:200]}"
    except ValueError as e:
        return None, f"batch manifest {rec.manifest_cid} is not JSON: {e}"
    sessions = manifest.get("sessions") if isinstance(manifest, dict) else None
    entries = [s for s in sessions or []
               if isinstance(s, dict) and str(s.get("sessionId", "")).lower() == rec.session_id]
    if not entries:
        return None, f"session is not in batch manifest {rec.manifest_cid}"
    entry = entries[0]
    root = from_hex32(rec.batch_root)
    try:
        proof = [from_hex32(p) for p in entry["proof"]]
        leaf = summary_leaf(entry)
    except (KeyError, ValueError, TypeError) as e:
        return None, f"batch manifest entry is malformed: {e}"
    if not verify_proof(proof, root, leaf):
        return None, f"Merkle proof of the summary does not reach the on-chain batch root {rec.batch_root}"
    return entry, None


async def verify_session(w3: AsyncWeb3, session_log: str, store: CidStore, session_id: str | bytes, *,
                         from_block: int = 0) -> VerifyResult:
    sid = hex32(_norm_sid(session_id))
    recs = await fetch_records(w3, session_log, sid, from_block)
    if not recs:
        return VerifyResult(False, sid, ["not recorded on-chain (no SessionRecorded/SessionBatched event)"])
    if len(recs) > 1:
        return VerifyResult(False, sid, [f"recorded {len(recs)} times on-chain"], recs[0])
    rec = recs[0]
    if rec.kind == "batch":
        entry, err = await _manifest_entry(store, rec)
        if err:
            return VerifyResult(False, sid, [err], rec)
        rec.fields = {k: entry[k] for k in ("sessionId", "roomId", *FIELDS)}
        rec.batch_proof = [hex32(from_hex32(p)) for p in entry["proof"]]
    try:
        document = await store.get(rec.fields["cid"])
    except KeyError:
        return VerifyResult(False, sid, [f"document {rec.fields['cid']} not found in the CID store"], rec)
    except (CidError, OSError, aiohttp.ClientError, TimeoutError) as e:  # e.g. the IPFS node is down
        return VerifyResult(False, sid, [f"document {rec.fields['cid']} could not be read: "
                                         f"{type(e).__name__}: {str(e)[:200]}"], rec)
    problems = check_document(document, rec.fields)
    return VerifyResult(not problems, sid, problems, rec)


async def prove_participant(w3: AsyncWeb3, session_log: str, store: CidStore, session_id: str | bytes,
                            participant: str) -> dict[str, Any]:
    """Merkle proof that `participant` is in the session's participantsRoot (as recorded on-chain).

    The proof verifies with OpenZeppelin `MerkleProof.verify(proof, root, keccak256(abi.encodePacked(addr)))`.
    For a batched session, `session` adds the second step: the summary leaf (which commits to
    participantsRoot and every other field) and its proof up to the batch root stored on-chain.
    """
    result = await verify_session(w3, session_log, store, session_id)
    if not result.ok:
        raise ValueError("session does not verify: " + "; ".join(result.reasons))
    assert result.record is not None
    document = safejson.loads(await store.get(result.record.fields["cid"]), max_bytes=MAX_DOCUMENT_BYTES)
    root = from_hex32(result.record.fields["participantsRoot"])
    leaf = address_leaf(participant)
    try:
        proof = participant_proof(document["participants"], participant)
    except KeyError:
        raise ValueError(f"{participant} did not take part in session {result.session_id}") from None
    out: dict[str, Any] = {
        "sessionId": result.session_id,
        "participant": to_checksum_address(participant),
        "leaf": hex32(leaf),
        "participantsRoot": hex32(root),
        "proof": [hex32(p) for p in proof],
        "valid": verify_proof(proof, root, leaf),
    }
    rec = result.record
    if rec.kind == "batch" and rec.batch_root and rec.batch_proof is not None:
        # The second step for a batched session: its summary leaf (which commits to participantsRoot)
        # up to the batch root stored on-chain (SessionLog.getBatch).
        session_leaf = summary_leaf(rec.fields)
        batch_proof = [from_hex32(p) for p in rec.batch_proof]
        out["session"] = {"leaf": hex32(session_leaf), "batchRoot": rec.batch_root, "proof": rec.batch_proof,
                          "manifestCid": rec.manifest_cid}
        out["valid"] = out["valid"] and verify_proof(batch_proof, from_hex32(rec.batch_root), session_leaf)
    return out


async def list_sessions(w3: AsyncWeb3, session_log: str, *, from_block: int = 0) -> list[Record]:
    return await fetch_records(w3, session_log, None, from_block)


# ---------------------------------------------------------------- command line
# The chain, the SessionLog address, the data directory, the writer's key and settings come from
# Settings (flags/env of the groups in config.SUBCOMMAND_GROUPS["sessions …"]); only what is not a
# setting of any process is an option here.

log = logging.getLogger("basement.sessions")


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store-dir", default=None,
                   help="CID store directory or Kubo API URL [default <data-dir>/cids]")


def add_subparser(subparsers: Any) -> None:
    """Register `sessions list|verify|prove|writer` on the `basement` CLI's subparsers."""
    p = subparsers.add_parser("sessions", help="recorded sessions: list, verify and prove on-chain summaries; "
                                               "run the chain writer",
                              description="Recorded sessions (calls) and their on-chain summaries.")
    sub = p.add_subparsers(dest="sessions_cmd", required=True, metavar="COMMAND")
    lp = sub.add_parser("list", help="every session recorded on-chain")
    lp.add_argument("--json", action="store_true")
    lp.add_argument("--from-block", type=int, default=0)
    _add_store(lp)
    vp = sub.add_parser("verify", help="check a session's on-chain record against its document")
    vp.add_argument("session_id", nargs="+")
    vp.add_argument("--from-block", type=int, default=0)
    _add_store(vp)
    pp = sub.add_parser("prove", help="Merkle proof that an address took part in a session")
    pp.add_argument("session_id")
    pp.add_argument("address")
    _add_store(pp)
    wp = sub.add_parser("writer", help="drain the session outbox into SessionLog (the chain writer as a process)",
                        description="Drain the session outbox into SessionLog, each session exactly once. The key "
                                    "comes from BASEMENT_WRITER_KEY, BASEMENT_WRITER_KEY_FILE or --writer-key-file, "
                                    "never the command line. With a redis_url, the outbox is the Redis stream and "
                                    "one writer per key holds a lock there. Prints READY once running.")
    wp.add_argument("--outbox", default=None,
                    help="sqlite path or redis:// URL [default: the Redis stream if redis_url is set, "
                         "else <data-dir>/outbox.sqlite3]")
    _add_store(wp)
    wp.add_argument("--backoff-max-s", type=float, default=10.0, help="longest wait between retries after an error")
    for name, sp in (("list", lp), ("verify", vp), ("prove", pp)):
        config.add_arguments(sp, f"sessions {name}")
        sp.set_defaults(func=run)
    config.add_arguments(wp, "sessions writer")
    wp.set_defaults(func=run_writer)


def _store_dir(args: argparse.Namespace, settings: config.Settings) -> str:
    return args.store_dir if args.store_dir is not None else str(Path(settings.data_dir) / "cids")


def run(args: argparse.Namespace, settings: config.Settings) -> int:
    """Entry point for a parsed `sessions list|verify|prove`; returns the exit status."""
    if not settings.rpc_url or not settings.session_log_address:
        print("error: --rpc-url and --session-log-address (or BASEMENT_RPC_URL / BASEMENT_SESSION_LOG_ADDRESS) "
              "are required", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, settings.rpc_url, settings.session_log_address, _store_dir(args, settings),
                            settings.ipfs_api))


async def _run(args: argparse.Namespace, rpc_url: str, session_log: str, store_dir: str, ipfs_api: str = "") -> int:
    from web3 import AsyncWeb3

    w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(rpc_url, cache_allowed_requests=True))
    store = open_store(store_dir, ipfs_api)  # with ipfs_api: the local copy, else IPFS
    try:
        if args.sessions_cmd == "list":
            recs = await list_sessions(w3, session_log, from_block=args.from_block)
            if args.json:
                print(json.dumps([r.__dict__ for r in recs], indent=1))
            for r in recs if not args.json else []:
                detail = (f"room {r.fields['roomId'][:12]}… {r.fields['startedAt']}-{r.fields['endedAt']} "
                          f"{r.fields['participantCount']} participants cid {r.fields['cid']}"
                          if r.kind == "single" else f"batch {r.batch_root}")
                print(f"{r.session_id} block {r.block} {r.kind}: {detail}")
            return 0
        if args.sessions_cmd == "verify":
            status = 0
            for sid in args.session_id:
                res = await verify_session(w3, session_log, store, sid, from_block=args.from_block)
                print(res.line())
                status |= 0 if res.ok else 1
            return status
        if args.sessions_cmd == "prove":
            try:
                out = await prove_participant(w3, session_log, store, args.session_id, args.address)
            except ValueError as e:
                print(f"FAIL {e}", file=sys.stderr)
                return 1
            print(json.dumps(out, indent=1))
            return 0 if out["valid"] else 1
        return 2
    finally:
        if hasattr(store, "close"):
            await store.close()
        await w3.provider.disconnect()


def run_writer(args: argparse.Namespace, settings: config.Settings) -> int:
    """`basement sessions writer`: runs until interrupted."""
    if not (settings.writer_key and settings.rpc_url and settings.session_log_address):
        print("error: the writer needs --rpc-url, --session-log-address and a key (BASEMENT_WRITER_KEY, "
              "BASEMENT_WRITER_KEY_FILE or --writer-key-file)", file=sys.stderr)
        return 2
    asyncio.run(_run_writer(args, settings))
    return 0


async def _run_writer(args: argparse.Namespace, settings: config.Settings) -> None:
    from signalling.sessions import writer as chainwriter
    from signalling.sessions.outbox import open_outbox

    cfg = chainwriter.WriterConfig(confirmations=settings.writer_confirmations,
                                   batch_size=settings.writer_batch_size,
                                   batch_wait_s=settings.writer_batch_wait_s,
                                   max_fee_cap_wei=int(settings.writer_max_fee_gwei * chainwriter.GWEI),
                                   backoff_max_s=args.backoff_max_s)
    outbox = open_outbox(args.outbox) if args.outbox else None  # None: from settings
    store = chainwriter.store_for_settings(settings, _store_dir(args, settings))
    writer = chainwriter.from_settings(settings, outbox=outbox, store=store, config=cfg)
    log.info("writer %r started", writer)
    print("READY", flush=True)
    await writer.run()
