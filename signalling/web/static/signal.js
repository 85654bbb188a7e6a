import { ServerError } from './errors.js';

const REQUEST_TIMEOUT_MS = 15000;

// ---------------------------------------------------------------------------------------------
// Signalling: one WebSocket, JSON frames, request/reply by id
// ---------------------------------------------------------------------------------------------
export class Signal {
  constructor(url, onMessage, onClose) {
    this.url = url;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.nextId = 1;
    this.waiters = new Map();
    this.ws = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = (this.ws = new WebSocket(this.url));
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
      ws.onmessage = (e) => {
        let msg;
        try { msg = JSON.parse(e.data); } catch { return; }
        if (msg.id !== undefined && this.waiters.has(msg.id)) {
          const w = this.waiters.get(msg.id);
          this.waiters.delete(msg.id);
          clearTimeout(w.timer);
          if (msg.type === 'error') w.reject(new ServerError(msg)); else w.resolve(msg);
        }
        this.onMessage(msg);
      };
      ws.onclose = (e) => {
        for (const w of this.waiters.values()) { clearTimeout(w.timer); w.reject(new Error('connection closed')); }
        this.waiters.clear();
        this.onClose(e);
      };
    });
  }

  get open_() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  send(msg) {
    if (!this.open_) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  // Sends now; the returned promise settles with the reply carrying the same id.
  request(msg, timeoutMs = REQUEST_TIMEOUT_MS) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new Error(`no reply to ${msg.type} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiters.set(id, { resolve, reject, timer });
      if (!this.send({ ...msg, id })) {
        clearTimeout(timer);
        this.waiters.delete(id);
        reject(new Error('not connected'));
      }
    });
  }

  close() {
    if (this.ws) { this.ws.onclose = null; try { this.ws.close(); } catch { /* already closed */ } }
    for (const w of this.waiters.values()) { clearTimeout(w.timer); w.reject(new Error('connection closed')); }
    this.waiters.clear();
  }
}
