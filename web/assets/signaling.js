// The Socket.IO connection: connect with a token, join, and keep the room joined through
// drops. socket.io-client reconnects transport failures itself; a refusal or a server-side
// disconnect it leaves to us, so those get our own backoff. Every (re)connect rejoins and
// announces `joined`, which is when media is (re)negotiated.
import { io } from '../vendor/socket.io.esm.min.js';
import { BASE, RoomwireError } from './config.js';

const REQUEST_TIMEOUT_MS = 10000;

function backoff(attempt) {
  const base = Math.min(8000, 500 * 2 ** attempt);
  return base * (0.5 + Math.random());
}

/**
 * Events: `status` {state, detail}, `joined` {ack, rejoin}, `kicked` {reason}.
 * States: connecting, connected, reconnecting, disconnected.
 */
export class Signaling extends EventTarget {
  /** @param {{token: string, refreshToken?: () => Promise<string>}} options */
  constructor({ token, refreshToken }) {
    super();
    this.token = token;
    this.refreshToken = refreshToken;
    this.state = 'disconnected';
    this.joinedOnce = false;
    this.closing = false;
    this.attempt = 0;
    this.retryTimer = 0;
    this.socket = io(BASE.origin, {
      path: `${BASE.pathname}socket.io/`,
      autoConnect: false,
      // Read at every (re)connect, so a refreshed token is used.
      auth: (cb) => cb({ token: this.token }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      randomizationFactor: 0.5,
      // Polling first, then upgrade: a blocked WebSocket leaves a working polling session.
      transports: ['polling', 'websocket'],
    });
    this.socket.on('connect', () => this.#join());
    this.socket.on('disconnect', (reason) => this.#onDisconnect(reason));
    this.socket.on('connect_error', (err) => this.#onConnectError(err));
    this.socket.on('kicked', (payload) => {
      const reason = payload?.reason || 'kicked';
      if (reason === 'rejoin') {
        // the room lost track of us (its shared state had an outage): the server disconnects
        // us next, and we connect and join again
        this.#setState('reconnecting', 'rejoining the room');
        return;
      }
      this.closing = true;
      this.#setState('disconnected', reason === 'replaced' ? 'opened in another tab or window' : reason);
      this.dispatchEvent(new CustomEvent('kicked', { detail: { reason } }));
    });
  }

  get transport() {
    return this.socket.io.engine?.transport?.name || null;
  }

  connect() {
    this.closing = false;
    this.#setState(this.joinedOnce ? 'reconnecting' : 'connecting');
    this.socket.connect();
  }

  /** Subscribe to a server event; the socket object outlives reconnects. */
  on(event, handler) {
    this.socket.on(event, handler);
  }

  /** Emit with an ack; resolves the `{ok: true, ...}` ack or throws a RoomwireError. */
  async request(event, payload = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    let ack;
    try {
      ack = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      throw new RoomwireError('timeout', `${event}: no answer within ${timeoutMs} ms`);
    }
    if (!ack || ack.ok !== true) {
      const error = ack?.error || {};
      throw new RoomwireError(error.code || 'internal', `${event}: ${error.message || 'failed'}`);
    }
    return ack;
  }

  /** Say goodbye and stay disconnected. */
  async leave() {
    this.closing = true;
    clearTimeout(this.retryTimer);
    if (this.socket.connected) {
      await this.request('leave', {}, 2000).catch(() => {});
    }
    this.socket.disconnect();
    this.#setState('disconnected', 'left');
  }

  /** Best effort on page close: no awaiting, the page is going away. */
  closeNow() {
    this.closing = true;
    if (this.socket.connected) this.socket.emit('leave', {});
    this.socket.disconnect();
  }

  async #join() {
    try {
      const ack = await this.request('join', {});
      const rejoin = this.joinedOnce;
      this.joinedOnce = true;
      this.attempt = 0;
      this.#setState('connected');
      this.dispatchEvent(new CustomEvent('joined', { detail: { ack, rejoin } }));
    } catch (err) {
      if (!this.socket.connected) return; // the disconnect handler takes it from here
      if (['timeout', 'internal', 'rate_limited', 'unavailable'].includes(err.code)) {
        this.socket.disconnect();
        this.#retry();
        return;
      }
      this.closing = true;
      this.socket.disconnect();
      this.#setState('disconnected', err.message);
    }
  }

  #onDisconnect(reason) {
    if (this.closing) return;
    if (reason === 'io client disconnect') return;
    this.#setState('reconnecting', reason);
    // socket.io-client does not reconnect after the server disconnected us on purpose.
    if (reason === 'io server disconnect') this.#retry();
  }

  async #onConnectError(err) {
    if (this.closing) return;
    if (this.socket.active) {
      // A transport failure: socket.io-client retries by itself.
      this.#setState(this.joinedOnce ? 'reconnecting' : 'connecting', err.message);
      return;
    }
    // Refused at connect: the token. A dev page can mint a new one; otherwise we stop.
    const code = err.data?.code || 'unauthorized';
    if (code === 'unauthorized' && this.refreshToken && this.attempt < 5) {
      try {
        this.token = await this.refreshToken();
        this.#retry();
        return;
      } catch (refreshErr) {
        err = refreshErr;
      }
    }
    this.closing = true;
    this.#setState('disconnected', `${code}: ${err.data?.message || err.message}`);
  }

  #retry() {
    clearTimeout(this.retryTimer);
    const delay = backoff(this.attempt++);
    this.retryTimer = setTimeout(() => {
      if (!this.closing && !this.socket.connected) this.socket.connect();
    }, delay);
  }

  #setState(state, detail = '') {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, detail } }));
  }
}
