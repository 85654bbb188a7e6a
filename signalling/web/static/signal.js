import { ServerError } from './errors.js';

const REQUEST_TIMEOUT_MS = 15000;
const MAX_UNACKNOWLEDGED = 256;   // messages kept to send again after a resume (a pong frees them)
const RESUME_RETRY_MS = 250;
const PONG_TIMEOUT_MS = 5000;     // a ping without a pong this long: the socket is dead, resume (joined.ping may say otherwise)

// ---------------------------------------------------------------------------------------------
// Signalling: one WebSocket, JSON frames, request/reply by id.
//
// When the socket drops without a close frame (a lost network, a proxy restart) and the server gave
// a resume token, it reconnects and resumes the same participant (docs/protocol.md "Reconnecting"):
// the server writes again what this page did not read (`n`), this page sends again what the server
// did not read (`received`), and requests keep waiting for their replies. `hooks.reconnecting()` and
// `hooks.resumed()` bracket that; `onClose` runs only when it is over for good.
// ---------------------------------------------------------------------------------------------
export class Signal {
  constructor(url, onMessage, onClose, hooks = {}) {
    this.url = url;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.hooks = hooks;
    this.nextId = 1;
    this.waiters = new Map();
    this.ws = null;
    this.lastN = 0;           // number of the last server message read
    this.resume = null;       // {token, grace_s} from joined / resumed
    this.pongTimeoutMs = PONG_TIMEOUT_MS;
    this.sent = 0;            // messages sent since the join (the server counts what it reads)
    this.unacked = [];        // [index, text] the server may not have read yet
    this.resuming = false;
    this.closed = false;
    this.resumes = 0;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = (this.ws = new WebSocket(this.url));
      ws.onopen = () => { this.attach(ws); resolve(); };
      ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
    });
  }

  attach(ws) {
    ws.onerror = null;
    ws.onmessage = (e) => this.receive(e);
    ws.onclose = (e) => {
      if (ws !== this.ws || this.closed) return;
      // no close frame (1006): the network, not the server, ended it; a resume may bring it back
      if (!e.wasClean && this.resume && !this.ended) this.comeBack(e);
      else this.finish(e);
    };
  }

  receive(e) {
    let msg;
    try { msg = JSON.parse(e.data); } catch { return; }
    if (typeof msg.n === 'number') {
      if (msg.n <= this.lastN) return;   // already read (never expected)
      this.lastN = msg.n;
    }
    this.track(msg);
    if (msg.id !== undefined && this.waiters.has(msg.id)) {
      const w = this.waiters.get(msg.id);
      this.waiters.delete(msg.id);
      clearTimeout(w.timer);
      if (msg.type === 'error') w.reject(new ServerError(msg)); else w.resolve(msg);
    }
    this.onMessage(msg);
  }

  track(msg) {
    if (msg.type === 'pong') { clearTimeout(this.pongTimer); this.pongTimer = null; }
    if ((msg.type === 'joined' || msg.type === 'resumed') && msg.resume) this.resume = msg.resume;
    if (msg.type === 'joined' && msg.ping && msg.ping.timeout_s > 0) this.pongTimeoutMs = msg.ping.timeout_s * 1000;
    else if (msg.type === 'left' || msg.type === 'removed') this.ended = true;
    else if (msg.type === 'pong' && typeof msg.received === 'number') {
      while (this.unacked.length && this.unacked[0][0] < msg.received) this.unacked.shift();
    }
  }

  finish(e) {
    for (const w of this.waiters.values()) { clearTimeout(w.timer); w.reject(new Error('connection closed')); }
    this.waiters.clear();
    this.onClose(e);
  }

  // A keepalive that also finds a socket dead without a close (a lost network does not always end
  // it: the browser may wait minutes), and then resumes on a new one.
  ping() {
    if (this.resuming || !this.open_) return;
    this.send({ type: 'ping' });
    if (this.resume && !this.pongTimer) {
      const ws = this.ws;
      this.pongTimer = setTimeout(() => {
        this.pongTimer = null;
        if (ws !== this.ws || this.closed || this.resuming) return;
        ws.onclose = null;
        ws.onmessage = null;
        try { ws.close(); } catch { /* already closing */ }
        this.comeBack({ code: 1006, reason: 'no pong', wasClean: false });
      }, this.pongTimeoutMs);
    }
  }

  async comeBack(closeEvent) {
    this.resuming = true;
    this.unsentFrom = this.sent;                       // messages from here on went out on no socket
    this.askedBeforeDrop = new Set(this.waiters.keys());
    if (this.hooks.reconnecting) this.hooks.reconnecting();
    const deadline = Date.now() + (this.resume.grace_s || 0) * 1000;
    let why = 'the grace period ended';
    while (!this.closed && Date.now() < deadline) {
      try {
        const reply = await this.tryResume();
        if (reply.type === 'resumed') return;
        why = reply.message || reply.type;
        break;   // the server said no: the participant is gone
      } catch (err) {
        why = err.message;
        await new Promise((r) => setTimeout(r, RESUME_RETRY_MS));
      }
    }
    this.resuming = false;
    if (this.closed) return;
    this.ended = true;
    this.resumeError = why;
    this.finish(closeEvent);
  }

  // One attempt: a new socket, `resume`, and the first reply. Resolves with that reply (resumed or
  // an error message); rejects when the socket cannot be opened.
  tryResume() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
      ws.onclose = () => reject(new Error('closed before resuming'));
      ws.onopen = () => ws.send(JSON.stringify({ type: 'resume', token: this.resume.token, n: this.lastN }));
      ws.onmessage = (e) => {
        let reply;
        try { reply = JSON.parse(e.data); } catch { reply = { type: 'error', message: 'not JSON' }; }
        if (reply.type !== 'resumed') {
          ws.onclose = null;
          ws.close();
          resolve(reply);
          return;
        }
        if (reply.received === null) {
          // resumed through another replica after ours died (docs/protocol.md "Reconnecting"): what
          // we sent before the drop may or may not have been read, and replies to it are lost
          for (const id of this.askedBeforeDrop) {
            const w = this.waiters.get(id);
            if (!w) continue;
            this.waiters.delete(id);
            clearTimeout(w.timer);
            w.reject(new Error('the signalling server that read this request stopped; send it again'));
          }
          this.unacked = this.unacked.filter(([i]) => i >= this.unsentFrom);
          reply = { ...reply, received: this.unsentFrom };
        }
        const oldest = this.unacked.length ? this.unacked[0][0] : this.sent;
        if (reply.received > this.sent || (reply.received < this.sent && oldest > reply.received)) {
          ws.onclose = null;
          ws.close();
          resolve({ type: 'error', message: `the server read ${reply.received} of ${this.sent} messages` });
          return;
        }
        this.track(reply);
        for (const [i, text] of this.unacked) if (i >= reply.received) ws.send(text);
        this.ws = ws;
        this.attach(ws);
        this.resuming = false;
        this.resumes += 1;
        this.onMessage(reply);
        if (this.hooks.resumed) this.hooks.resumed();
        resolve(reply);
      };
    });
  }

  get open_() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  send(msg) {
    if (msg.type === 'ping' && this.resume) msg = { ...msg, n: this.lastN };
    const text = JSON.stringify(msg);
    if (this.resume && msg.type !== 'join') {
      this.unacked.push([this.sent++, text]);
      if (this.unacked.length > MAX_UNACKNOWLEDGED) this.unacked.shift();
      if (this.resuming) return true;   // goes out when the socket is back
    }
    if (!this.open_) return !!this.resume && !this.ended;   // kept: it goes when the socket is back
    this.ws.send(text);
    return true;
  }

  // Sends now; the returned promise settles with the reply carrying the same id.
  request(msg, timeoutMs = REQUEST_TIMEOUT_MS) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const expire = () => {
        // the reply of a request the server read comes after the resume: wait for it meanwhile
        if (this.resuming) { w.timer = setTimeout(expire, timeoutMs); return; }
        this.waiters.delete(id);
        reject(new Error(`no reply to ${msg.type} within ${timeoutMs / 1000} s`));
      };
      const w = { resolve, reject, timer: setTimeout(expire, timeoutMs) };
      this.waiters.set(id, w);
      if (!this.send({ ...msg, id })) {
        clearTimeout(w.timer);
        this.waiters.delete(id);
        reject(new Error('not connected'));
      }
    });
  }

  close() {
    this.closed = true;
    if (this.ws) { this.ws.onclose = null; try { this.ws.close(); } catch { /* already closed */ } }
    for (const w of this.waiters.values()) { clearTimeout(w.timer); w.reject(new Error('connection closed')); }
    this.waiters.clear();
  }
}
