// `?mode=mesh`: one peer connection per other participant, negotiated through `signal`,
// no media through the server. The "perfect negotiation" pattern settles offer glare (the
// lower identity is polite). Every signal carries our session id, so a peer that rejoined
// (new session) gets a fresh connection instead of a renegotiation of a dead one.
// A `signal`'s data: {session, description?, candidate?, sources?: {streamId: source}}.
import { peerConfig } from './config.js';

export const MESH_LIMIT = 4;

function randomId() {
  return crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
}

/** Events: `tracks` {identity, tracks: [{kind, source, track, receiver}]}, `data` {from, data}, `peer` {identity, state}. */
export class MeshSession extends EventTarget {
  constructor(signaling, media, { self, iceServers = [] }) {
    super();
    this.signaling = signaling;
    this.media = media;
    this.self = self;
    this.session = randomId();
    this.config = peerConfig(iceServers);
    this.peers = new Map();
    // Our outgoing streams; their ids tell the far side which source a track is.
    this.cameraStream = new MediaStream();
    this.screenStream = new MediaStream();
    this.closed = false;
    this.onTrack = (event) => this.#localTrackChanged(event.detail);
  }

  /** Connect to everyone already here (we are the newcomer: we offer). */
  start(identities) {
    this.media.addEventListener('track', this.onTrack);
    for (const identity of identities) {
      if (identity !== this.self) this.#peer(identity);
    }
  }

  async handleSignal(message) {
    const { from, type, data } = message || {};
    if (this.closed || typeof from !== 'string' || from === this.self || !data) return;
    if (type === 'bye') {
      this.drop(from);
      return;
    }
    let peer = this.peers.get(from);
    const isOffer = type === 'offer';
    if (peer && peer.remoteSession && data.session !== peer.remoteSession) {
      if (!isOffer) return; // a straggler from the old session
      this.drop(from, { quiet: true });
      peer = null;
    }
    if (!peer) {
      if (!isOffer) return;
      peer = this.#peer(from, { offer: false });
    }
    peer.remoteSession ??= data.session;
    if (data.sources) Object.assign(peer.sources, data.sources);
    const { pc } = peer;
    try {
      if (type === 'offer' || type === 'answer') {
        const description = data.description;
        const collision = description.type === 'offer' && (peer.makingOffer || pc.signalingState !== 'stable');
        peer.ignoreOffer = !peer.polite && collision;
        if (peer.ignoreOffer) return;
        await pc.setRemoteDescription(description);
        if (description.type === 'offer') {
          await pc.setLocalDescription();
          this.#send(from, 'answer', { description: pc.localDescription });
        }
      } else if (type === 'candidate') {
        try {
          await pc.addIceCandidate(data.candidate ?? null);
        } catch (err) {
          if (!peer.ignoreOffer) throw err;
        }
      }
    } catch (err) {
      console.warn(`mesh: signal ${type} from ${from} failed`, err);
    }
  }

  /** Send to one peer's data channel; false when it is not open. */
  sendTo(identity, data) {
    const channel = this.peers.get(identity)?.channel;
    if (channel?.readyState !== 'open') return false;
    channel.send(JSON.stringify(data));
    return true;
  }

  drop(identity, { quiet = false } = {}) {
    const peer = this.peers.get(identity);
    if (!peer) return;
    this.peers.delete(identity);
    peer.pc.close();
    if (!quiet) this.#emit('tracks', { identity, tracks: [] });
  }

  close() {
    this.closed = true;
    this.media.removeEventListener('track', this.onTrack);
    for (const identity of [...this.peers.keys()]) {
      this.signaling.request('signal', { to: identity, type: 'bye', data: { session: this.session } }).catch(() => {});
      this.drop(identity);
    }
  }

  #peer(identity, { offer = true } = {}) {
    const pc = new RTCPeerConnection(this.config);
    const peer = {
      pc,
      polite: this.self < identity,
      makingOffer: false,
      ignoreOffer: false,
      remoteSession: null,
      sources: {},
      senders: new Map(),
      // Negotiated with a fixed id on both sides: no extra round of offers for it.
      channel: pc.createDataChannel('data', { negotiated: true, id: 0 }),
    };
    this.peers.set(identity, peer);
    peer.channel.addEventListener('message', (event) => {
      try {
        this.#emit('data', { from: identity, data: JSON.parse(event.data) });
      } catch {
        // not JSON: not ours
      }
    });
    pc.addEventListener('icecandidate', ({ candidate }) => {
      this.#send(identity, 'candidate', { candidate: candidate ? candidate.toJSON() : null });
    });
    pc.addEventListener('negotiationneeded', async () => {
      if (!offer && pc.signalingState === 'stable' && !pc.remoteDescription) return; // the far side offers first
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        this.#send(identity, 'offer', { description: pc.localDescription });
      } catch (err) {
        console.warn(`mesh: offer to ${identity} failed`, err);
      } finally {
        peer.makingOffer = false;
      }
    });
    pc.addEventListener('signalingstatechange', () => {
      if (pc.signalingState === 'stable') this.#announce(identity);
    });
    pc.addEventListener('connectionstatechange', () => {
      this.#emit('peer', { identity, state: pc.connectionState });
      // The impolite side restarts ICE; the other side follows its offer.
      if (pc.connectionState === 'failed' && !peer.polite) pc.restartIce();
    });
    const { audioTrack, videoTrack, screenTrack } = this.media;
    if (audioTrack) peer.senders.set('microphone', pc.addTrack(audioTrack, this.cameraStream));
    if (videoTrack) peer.senders.set('camera', pc.addTrack(videoTrack, this.cameraStream));
    if (screenTrack) peer.senders.set('screen', pc.addTrack(screenTrack, this.screenStream));
    pc.addEventListener('track', ({ transceiver, streams }) => {
      peer.trackStreams ??= new Map();
      peer.trackStreams.set(transceiver.mid, streams[0]?.id);
      // Applying an answer fires `track` after the state is already stable.
      if (pc.signalingState === 'stable') this.#announce(identity);
    });
    return peer;
  }

  #announce(identity) {
    const peer = this.peers.get(identity);
    if (!peer) return;
    const tracks = [];
    for (const transceiver of peer.pc.getTransceivers()) {
      const receiving = transceiver.currentDirection === 'sendrecv' || transceiver.currentDirection === 'recvonly';
      const streamId = peer.trackStreams?.get(transceiver.mid);
      if (!receiving || !streamId) continue;
      const { track } = transceiver.receiver;
      const source = track.kind === 'audio' ? 'microphone' : peer.sources[streamId] || 'camera';
      tracks.push({ identity, kind: track.kind, source, track, receiver: transceiver.receiver, mid: transceiver.mid });
    }
    this.#emit('tracks', { identity, tracks });
  }

  #localTrackChanged({ source, track }) {
    for (const peer of this.peers.values()) {
      const sender = peer.senders.get(source);
      if (sender && track) {
        sender.replaceTrack(track).catch(() => {});
      } else if (sender && source === 'screen') {
        peer.pc.removeTrack(sender); // renegotiates: the far side drops the screen tile
        peer.senders.delete(source);
      } else if (sender) {
        sender.replaceTrack(null).catch(() => {});
      } else if (track) {
        const stream = source === 'screen' ? this.screenStream : this.cameraStream;
        peer.senders.set(source, peer.pc.addTrack(track, stream));
      }
    }
  }

  #send(to, type, data) {
    if (this.closed) return;
    const payload = { ...data, session: this.session };
    if (type !== 'candidate') payload.sources = { [this.cameraStream.id]: 'camera', [this.screenStream.id]: 'screen' };
    this.signaling
      .request('signal', { to, type, data: payload })
      .catch((err) => console.warn(`mesh: signal ${type} to ${to} failed`, err));
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
