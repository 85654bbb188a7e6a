// Errors the client tells apart: server error replies, HTTP failures, and gate refusals.

export class ServerError extends Error {
  constructor(msg) {
    super(`${msg.code}: ${msg.message}`);
    this.code = msg.code;
  }
}

export class HttpError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

export function gateError(message, cause) {
  const err = new Error(message);
  err.gate = true;
  err.status = cause && cause.status;
  return err;
}

// A room that requires end-to-end encryption, joined without keys for it: offer the wallets (whose
// sign-in binds the page's media key to its address) beside the passphrase.
export function keysError(room) {
  const err = gateError(`“${room}” is end-to-end encrypted: sign in with a wallet, or type the room’s passphrase`);
  err.e2ee = true;
  return err;
}

// True when a join failed because the room wants (another) grant: offer the wallets.
export function isGateRefusal(e) {
  return !!(e && (e.gate || e.code === 'unauthorized'));
}
