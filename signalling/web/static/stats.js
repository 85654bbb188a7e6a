import { call } from './state.js';

// ---------------------------------------------------------------------------------------------
// Stats for the debugging/test surface
// ---------------------------------------------------------------------------------------------
export async function stats() {
  const s = call;
  const inbound = [];
  const outbound = [];
  if (!s) return { inbound, outbound };
  if (s.sub) {
    const report = await s.sub.getStats();
    report.forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      const info = s.current[r.mid] || {};
      inbound.push({
        kind: r.kind, mid: r.mid, trackIdentifier: r.trackIdentifier, track: info.track || null,
        participant: info.participant || null, framesDecoded: r.framesDecoded, frameWidth: r.frameWidth,
        frameHeight: r.frameHeight, freezeCount: r.freezeCount, pliCount: r.pliCount, nackCount: r.nackCount,
        packetsLost: r.packetsLost, packetsReceived: r.packetsReceived, bytesReceived: r.bytesReceived,
        framesReceived: r.framesReceived, framesDropped: r.framesDropped, keyFramesDecoded: r.keyFramesDecoded,
        jitterBufferDelay: r.jitterBufferDelay, jitterBufferEmittedCount: r.jitterBufferEmittedCount,
        totalSamplesReceived: r.totalSamplesReceived, concealedSamples: r.concealedSamples,
        totalAudioEnergy: r.totalAudioEnergy,
        codec: (report.get(r.codecId) || {}).mimeType || null,
      });
    });
  }
  if (s.pub) {
    const report = await s.pub.getStats();
    report.forEach((r) => {
      if (r.type !== 'outbound-rtp') return;
      outbound.push({
        kind: r.kind, mid: r.mid, rid: r.rid, source: s.screenTx && r.mid === s.screenTx.mid ? 'screen' : null,
        frameWidth: r.frameWidth, frameHeight: r.frameHeight,
        active: r.active, bytesSent: r.bytesSent, packetsSent: r.packetsSent, framesEncoded: r.framesEncoded,
        framesSent: r.framesSent, targetBitrate: r.targetBitrate,
        qualityLimitationReason: r.qualityLimitationReason, encoderImplementation: r.encoderImplementation,
        scalabilityMode: r.scalabilityMode || null,
        codec: (report.get(r.codecId) || {}).mimeType || null,
      });
    });
  }
  return { inbound, outbound, paths: { publisher: await path(s.pub), subscriber: await path(s.sub) } };
}

// The candidate pair a connection uses: {local, remote} candidate types and protocols (a relayed
// one has local type "relay" and relayProtocol udp/tcp/tls), and the browser's own estimate of what
// it may send on it (availableOutgoingBitrate, bit/s), or null while there is none.
async function path(pc) {
  if (!pc) return null;
  const report = await pc.getStats();
  let pair = null;
  report.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
  });
  if (!pair) return null;
  const local = report.get(pair.localCandidateId) || {};
  const remote = report.get(pair.remoteCandidateId) || {};
  return {
    localType: local.candidateType, localProtocol: local.protocol, relayProtocol: local.relayProtocol || null,
    remoteType: remote.candidateType, remoteAddress: remote.address, remotePort: remote.port,
    availableOutgoingBitrate: pair.availableOutgoingBitrate ?? null,
  };
}

export function transceivers() {
  const s = call;
  if (!s || !s.sub) return [];
  return s.sub.getTransceivers().map((t) => ({
    mid: t.mid, kind: t.receiver.track && t.receiver.track.kind, direction: t.direction,
    currentDirection: t.currentDirection, track: (s.current[t.mid] || {}).track || null,
  }));
}

export function senderEncodings() {
  const s = call;
  if (!s || !s.videoTx) return [];
  return (s.videoTx.sender.getParameters().encodings || []).map((e) => ({
    rid: e.rid, active: e.active, scaleResolutionDownBy: e.scaleResolutionDownBy, maxBitrate: e.maxBitrate,
  }));
}
