// The server's JSON HTTP endpoints (/api/*, /auth/*).
import { HttpError } from './errors.js';

export async function api(path, body) {
  const init = body === undefined ? {}
    : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new Error(`cannot reach the server (${path}): ${e.message || e}`);
  }
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new HttpError(res.status, (data && data.error) || `${path} answered HTTP ${res.status}`, path);
  return data;
}

let infoPromise = null;
// GET /api/info: {chainId, embedded, demoGatedRoom?, demoWallet?, ...}; fetched once (retried on failure).
export function serverInfo() {
  if (!infoPromise) infoPromise = api('/api/info').catch((e) => { infoPromise = null; throw e; });
  return infoPromise;
}
