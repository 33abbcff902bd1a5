// `?watch=1`: presence without Socket.IO. SSE first (EventSource, token in the query since
// it cannot set headers); when EventSource is missing or cannot open the stream, long
// polling, which resumes from the (epoch, offset) the server last returned.
import { apiUrl } from './config.js';

const SSE_OPEN_TIMEOUT_MS = 5000;
const POLL_TIMEOUT_S = 25;
const FATAL_STATUS = new Set([400, 401, 403, 404]);

/** Events: `status` {state, detail, transport}. Feeds the roster given. */
export class PresenceWatcher extends EventTarget {
  /** @param {{room: string, token: string, roster: import('./presence.js').Roster}} options */
  constructor({ room, token, roster }) {
    super();
    this.room = room;
    this.token = token;
    this.roster = roster;
    this.transport = null;
    this.source = null;
    this.abort = null;
    this.stopped = false;
  }

  start() {
    if (typeof EventSource === 'function') this.#sse();
    else this.#poll();
  }

  stop() {
    this.stopped = true;
    this.source?.close();
    this.abort?.abort();
    this.#status('disconnected', 'stopped');
  }

  #url(kind, extra = {}) {
    const url = apiUrl(`rooms/${encodeURIComponent(this.room)}/presence/${kind}`);
    url.searchParams.set('token', this.token);
    for (const [k, v] of Object.entries(extra)) if (v !== null && v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  #sse() {
    this.transport = 'sse';
    this.#status('connecting');
    let opened = false;
    const source = new EventSource(this.#url('sse'));
    this.source = source;
    const giveUp = () => {
      source.close();
      if (!this.stopped) this.#poll();
    };
    const openTimer = setTimeout(() => !opened && giveUp(), SSE_OPEN_TIMEOUT_MS);
    source.addEventListener('open', () => {
      opened = true;
      clearTimeout(openTimer);
    });
    source.addEventListener('snapshot', (event) => {
      const snap = parse(event.data);
      if (!snap) return;
      this.roster.reset(snap.participants || [], snap.epoch, snap.offset);
      this.#status('connected');
    });
    source.addEventListener('presence', (event) => {
      const presence = parse(event.data);
      if (presence) this.roster.apply(presence);
    });
    source.addEventListener('error', () => {
      if (this.stopped) return;
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (status or content type): EventSource will not retry.
        clearTimeout(openTimer);
        giveUp();
      } else {
        this.#status('reconnecting'); // EventSource retries with Last-Event-ID by itself
      }
    });
  }

  async #poll() {
    this.transport = 'longpoll';
    this.#status(this.roster.epoch ? 'reconnecting' : 'connecting');
    let failures = 0;
    while (!this.stopped) {
      this.abort = new AbortController();
      const timer = setTimeout(() => this.abort.abort(), (POLL_TIMEOUT_S + 10) * 1000);
      try {
        const url = this.#url('poll', {
          epoch: this.roster.epoch,
          offset: this.roster.epoch ? this.roster.offset : null,
          timeout: POLL_TIMEOUT_S,
        });
        const response = await fetch(url, { signal: this.abort.signal, cache: 'no-store' });
        const body = await response.json().catch(() => null);
        if (!response.ok) {
          const message = body?.error?.message || `HTTP ${response.status}`;
          if (FATAL_STATUS.has(response.status)) {
            this.stopped = true;
            this.#status('disconnected', message);
            return;
          }
          throw new Error(message);
        }
        if (body.snapshot) {
          this.roster.reset(body.snapshot.participants || [], body.epoch, body.offset);
        } else {
          for (const event of body.events || []) this.roster.apply(event);
          this.roster.epoch = body.epoch;
          this.roster.offset = body.offset;
        }
        failures = 0;
        this.#status('connected');
      } catch (err) {
        if (this.stopped) return;
        this.#status('reconnecting', err.message);
        const delay = Math.min(10000, 500 * 2 ** failures++) * (0.5 + Math.random());
        await new Promise((resolve) => setTimeout(resolve, delay));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  #status(state, detail = '') {
    this.dispatchEvent(new CustomEvent('status', { detail: { state, detail, transport: this.transport } }));
  }
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
