// Where the server is and who we are: derived from this module's URL and the page's, so
// the client works under any prefix the server (or a proxy in front of it) mounts it at.

/** `{prefix}/`: this file is served at `{prefix}/assets/config.js`. */
export const BASE = new URL('../', import.meta.url);
export const DEV = document.querySelector('meta[name="roomwire-dev"]')?.content === 'true';
export const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const params = new URLSearchParams(location.search);
/** `?relay=1`: media only through the TURN servers of the join ack, to diagnose NAT trouble. */
export const FORCE_RELAY = params.get('relay') === '1';

/** The configuration of our peer connections, from the `iceServers` of the join ack. */
export function peerConfig(iceServers) {
  return { iceServers, iceTransportPolicy: FORCE_RELAY ? 'relay' : 'all' };
}

/** Whether any of these ICE servers is a TURN server (the only way through a strict NAT). */
export function hasTurn(iceServers) {
  return iceServers.some((server) => [server.urls].flat().some((url) => /^turns?:/.test(url)));
}

/**
 * A token given in the URL: `?token=T`, or `#token=T`, which stays out of server logs and
 * Referer headers (an embedding app can link to the room that way).
 */
export function urlToken() {
  return params.get('token') || new URLSearchParams(location.hash.slice(1)).get('token');
}

/** The room of a `/r/{room}` page. */
export function roomFromPath() {
  const match = location.pathname.match(/\/r\/([^/]+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

export function apiUrl(path) {
  return new URL(path, BASE);
}

/** An error as the protocol reports it: `{code, message}`. */
export class RoomwireError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Dev mode only: `POST /api/dev/token {room, name}` -> `{token, identity}`. */
export async function fetchDevToken(room, name) {
  let response;
  try {
    response = await fetch(apiUrl('api/dev/token'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ room, name }),
    });
  } catch (err) {
    throw new RoomwireError('network', `cannot reach the server (${err.message})`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || {};
    throw new RoomwireError(error.code || 'internal', error.message || `HTTP ${response.status}`);
  }
  return body;
}

/** `GET /api/rooms/{room}` with a token of the room: `{name, epoch, offset, participants}`. */
export async function fetchRoom(room, token) {
  const response = await fetch(apiUrl(`api/rooms/${encodeURIComponent(room)}`), {
    headers: { Authorization: `Bearer ${token}` },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new RoomwireError(body.error?.code || 'internal', body.error?.message || `HTTP ${response.status}`);
  return body;
}

/** The claims of a JWT, unverified: only to show a name before the server confirms it. */
export function tokenClaims(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return {};
  }
}
