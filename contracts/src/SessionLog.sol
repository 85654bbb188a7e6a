// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title SessionLog
/// @notice Append-only, exactly-once log of Basement session summaries. A session is recorded
///         either in full (recordSession) or as a member of a Merkle batch (recordBatch) whose
///         proofs live off-chain; either way a session id can only ever be recorded once.
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

    struct Batch {
        address writer;
        uint32 count;
        uint64 recordedAt;
    }

    address public immutable admin;
    uint256 public sessionCount;

    mapping(address => bool) private _writers;
    mapping(bytes32 => bool) private _recorded;
    mapping(bytes32 => Session) private _sessions;
    mapping(bytes32 => bytes32) private _batchOf;
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
    event SessionBatched(bytes32 indexed sessionId, bytes32 indexed batchRoot);
    event BatchRecorded(bytes32 indexed batchRoot, uint32 count, address indexed writer);

    error NotAdmin(address caller);
    error NotWriter(address caller);
    error DuplicateSession(bytes32 sessionId);
    error DuplicateBatch(bytes32 batchRoot);
    error BadTimes();

    modifier onlyWriter() {
        if (!_writers[msg.sender]) revert NotWriter(msg.sender);
        _;
    }

    constructor(address admin_) {
        admin = admin_;
    }

    function setWriter(address w, bool allowed) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _writers[w] = allowed;
        emit WriterSet(w, allowed);
    }

    function isWriter(address w) external view returns (bool) {
        return _writers[w];
    }

    function recordSession(
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
        if (_recorded[sessionId]) revert DuplicateSession(sessionId);
        if (endedAt < startedAt) revert BadTimes();
        _recorded[sessionId] = true;
        unchecked { sessionCount += 1; }
        Session storage s = _sessions[sessionId];
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

    /// @notice Record many sessions at once by the Merkle root of their summary hashes.
    /// @dev Ids already recorded (singly or in an earlier batch) are skipped rather than reverting,
    ///      so a writer retrying after a partial failure never gets stuck; `count` in
    ///      BatchRecorded is the number of ids this call newly recorded.
    function recordBatch(bytes32 batchRoot, bytes32[] calldata sessionIds) external onlyWriter {
        if (_batches[batchRoot].writer != address(0)) revert DuplicateBatch(batchRoot);
        uint32 count = 0;
        for (uint256 i = 0; i < sessionIds.length; ++i) {
            bytes32 id = sessionIds[i];
            if (_recorded[id]) continue;
            _recorded[id] = true;
            _batchOf[id] = batchRoot;
            unchecked { ++count; }
            emit SessionBatched(id, batchRoot);
        }
        unchecked { sessionCount += count; }
        _batches[batchRoot] = Batch(msg.sender, count, uint64(block.timestamp));
        emit BatchRecorded(batchRoot, count, msg.sender);
    }

    function isRecorded(bytes32 sessionId) external view returns (bool) {
        return _recorded[sessionId];
    }

    /// @notice Full record of a session recorded with recordSession (all zero for batched ids).
    function getSession(bytes32 sessionId) external view returns (Session memory) {
        return _sessions[sessionId];
    }

    /// @notice Batch root a session id was recorded under (zero if recorded singly or not at all).
    function batchOf(bytes32 sessionId) external view returns (bytes32) {
        return _batchOf[sessionId];
    }

    function getBatch(bytes32 batchRoot) external view returns (Batch memory) {
        return _batches[batchRoot];
    }
}
