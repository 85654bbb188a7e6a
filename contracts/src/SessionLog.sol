// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title SessionLog
/// @notice Append-only, exactly-once log of Basement session summaries.
/// @dev Every record names the position it appends at (`seq` must equal `sessionCount`): a
///      compare-and-append. A writer first reads `sessionCount`, then looks the ids up in the
///      events (SessionRecorded / SessionBatched, indexed by id) up to at least that block, and
///      appends only ids it found nowhere. Whatever lands between its read and its transaction moves
///      `sessionCount`, so the transaction reverts with SeqMismatch and the writer looks again: two
///      writers, or a writer and its own restarted self, can never record an id twice, and a batch
///      needs no storage per session (about 3,000 gas each in a batch of 50 instead of ~48,000).
///      A session is recorded either in full (recordSession: every field in storage, readable by
///      other contracts) or as a leaf of a batch (recordBatch: the Merkle root is stored; each
///      session's fields, leaf and proof are in the batch manifest, whose CID the event carries).
contract SessionLog {
    struct Session {
        bytes32 roomId;
        uint64 startedAt;
        uint64 endedAt;
        uint32 peakParticipants;
        uint32 participantCount;
        bytes32 participantsRoot;
        uint64 mediaBytes;
        uint64 mediaPackets;
        address writer;
        string cid;
    }

    /// @dev One storage slot: 20 + 8 + 4 bytes.
    struct Batch {
        address writer;
        uint64 firstSeq;
        uint32 count;
    }

    address public immutable admin;
    /// @notice Block the log was deployed in: where event scans start.
    uint256 public immutable deployedBlock;
    /// @notice Sessions recorded so far, which is also the position the next record must name.
    uint256 public sessionCount;

    mapping(address => bool) private _writers;
    mapping(bytes32 => Session) private _sessions;
    mapping(bytes32 => Batch) private _batches;

    event WriterSet(address indexed writer, bool allowed);
    event SessionRecorded(
        bytes32 indexed sessionId,
        bytes32 indexed roomId,
        address indexed writer,
        uint64 startedAt,
        uint64 endedAt,
        uint32 peakParticipants,
        uint32 participantCount,
        bytes32 participantsRoot,
        uint64 mediaBytes,
        uint64 mediaPackets,
        string cid
    );
    /// @dev One per session of a batch, in order: the i-th has position firstSeq + i.
    event SessionBatched(bytes32 indexed sessionId, bytes32 indexed batchRoot);
    event BatchRecorded(
        bytes32 indexed batchRoot, address indexed writer, uint64 firstSeq, uint32 count, string manifestCid
    );

    error NotAdmin(address caller);
    error NotWriter(address caller);
    error SeqMismatch(uint256 expected, uint256 given);
    error DuplicateSession(bytes32 sessionId);
    error DuplicateBatch(bytes32 batchRoot);
    error EmptyBatch();
    error BadTimes();

    modifier onlyWriter() {
        if (!_writers[msg.sender]) revert NotWriter(msg.sender);
        _;
    }

    constructor(address admin_) {
        admin = admin_;
        deployedBlock = block.number;
    }

    function setWriter(address w, bool allowed) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _writers[w] = allowed;
        emit WriterSet(w, allowed);
    }

    function isWriter(address w) external view returns (bool) {
        return _writers[w];
    }

    /// @notice Record one session with every field in storage, at position `seq`.
    function recordSession(
        uint256 seq,
        bytes32 sessionId,
        bytes32 roomId,
        uint64 startedAt,
        uint64 endedAt,
        uint32 peakParticipants,
        uint32 participantCount,
        bytes32 participantsRoot,
        uint64 mediaBytes,
        uint64 mediaPackets,
        string calldata cid
    ) external onlyWriter {
        _append(seq, 1);
        if (endedAt < startedAt) revert BadTimes();
        Session storage s = _sessions[sessionId];
        if (s.writer != address(0)) revert DuplicateSession(sessionId);
        s.roomId = roomId;
        s.startedAt = startedAt;
        s.endedAt = endedAt;
        s.peakParticipants = peakParticipants;
        s.participantCount = participantCount;
        s.participantsRoot = participantsRoot;
        s.mediaBytes = mediaBytes;
        s.mediaPackets = mediaPackets;
        s.writer = msg.sender;
        s.cid = cid;
        emit SessionRecorded(
            sessionId, roomId, msg.sender, startedAt, endedAt, peakParticipants, participantCount,
            participantsRoot, mediaBytes, mediaPackets, cid
        );
    }

    /// @notice Record `sessionIds` at positions firstSeq.. as the leaves of `batchRoot`.
    /// @param manifestCid CID of the batch manifest (every session's fields, leaf and proof).
    function recordBatch(uint256 firstSeq, bytes32 batchRoot, bytes32[] calldata sessionIds,
                         string calldata manifestCid) external onlyWriter {
        uint256 n = sessionIds.length;
        if (n == 0 || n > type(uint32).max) revert EmptyBatch();
        _append(firstSeq, n);
        Batch storage b = _batches[batchRoot];
        if (b.writer != address(0)) revert DuplicateBatch(batchRoot);
        b.writer = msg.sender;
        b.firstSeq = uint64(firstSeq);
        b.count = uint32(n);
        for (uint256 i = 0; i < n; ++i) {
            emit SessionBatched(sessionIds[i], batchRoot);
        }
        emit BatchRecorded(batchRoot, msg.sender, uint64(firstSeq), uint32(n), manifestCid);
    }

    function _append(uint256 seq, uint256 n) private {
        uint256 count = sessionCount;
        if (seq != count) revert SeqMismatch(count, seq);
        sessionCount = count + n;
    }

    /// @notice Full record of a session recorded with recordSession (all zero otherwise).
    function getSession(bytes32 sessionId) external view returns (Session memory) {
        return _sessions[sessionId];
    }

    /// @notice The batch recorded under `batchRoot` (writer zero if none): a contract holding a
    ///         session's leaf and proof can check it against this root.
    function getBatch(bytes32 batchRoot) external view returns (Batch memory) {
        return _batches[batchRoot];
    }
}
