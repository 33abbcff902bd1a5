// Media through the server: two peer connections, as in PROTOCOL.md's SFU section.
// publisher: we offer (`sfu.publish`), the server answers in the ack;
// subscriber: the server offers (`sfu.offer`), our answer goes back in the ack.
// Candidates: we wait briefly for gathering so the SDP carries them (aiortc prefers that),
// and trickle whatever comes later with `sfu.candidate`.
import { peerConfig } from './config.js';

const GATHER_WAIT_MS = 1500;

export function waitForGathering(pc, timeoutMs = GATHER_WAIT_MS) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** Runs async jobs one after another: negotiations must not interleave. */
export class SerialQueue {
  constructor() {
    this.tail = Promise.resolve();
  }

  run(job) {
    const result = this.tail.then(job);
    this.tail = result.catch(() => {});
    return result;
  }
}

/**
 * Events: `tracks` {tracks: [{mid, sid, identity, kind, source, track, receiver}]},
 * `data` {from, data}, `failed` {reason}, `datachannel` {open}.
 */
export class SfuSession extends EventTarget {
  /**
   * @param {import('./signaling.js').Signaling} signaling
   * @param {import('./media.js').LocalMedia} media
   */
  constructor(signaling, media, { iceServers = [], publish = true, subscribe = true } = {}) {
    super();
    this.signaling = signaling;
    this.media = media;
    this.config = { ...peerConfig(iceServers), bundlePolicy: 'max-bundle' };
    this.canPublish = publish;
    this.canSubscribe = subscribe;
    this.publisher = null;
    this.subscriber = null;
    this.dataChannel = null;
    this.senders = new Map(); // source -> RTCRtpTransceiver
    this.queue = new SerialQueue();
    this.pubSent = false;
    this.subSent = false;
    this.closed = false;
    this.onTrack = (event) => this.#localTrackChanged(event.detail);
  }

  async start() {
    this.media.addEventListener('track', this.onTrack);
    if (this.canPublish) {
      this.publisher = this.#peer('publisher');
      this.dataChannel = this.publisher.createDataChannel('data');
      this.dataChannel.onopen = () => this.#emit('datachannel', { open: true });
      this.dataChannel.onclose = () => this.#emit('datachannel', { open: false });
      const { audioTrack, videoTrack, screenTrack } = this.media;
      if (audioTrack) this.#addSender('microphone', audioTrack);
      if (videoTrack) this.#addSender('camera', videoTrack);
      if (screenTrack) this.#addSender('screen', screenTrack);
      await this.publish();
    }
    if (this.canSubscribe) await this.signaling.request('sfu.subscribe', {});
  }

  /** Handle the server's `sfu.offer`; returns the ack payload. */
  handleOffer(payload) {
    return this.queue.run(async () => {
      if (this.closed) return { ok: false, error: { code: 'conflict', message: 'session closed' } };
      if (typeof payload?.sdp !== 'string') {
        return { ok: false, error: { code: 'bad_request', message: 'sfu.offer needs sdp' } };
      }
      if (!this.subscriber) this.subscriber = this.#peer('subscriber');
      const pc = this.subscriber;
      await pc.setRemoteDescription({ type: 'offer', sdp: payload.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await waitForGathering(pc);
      this.subSent = true;
      this.#announceTracks(Array.isArray(payload.tracks) ? payload.tracks : []);
      return { sdp: pc.localDescription.sdp };
    });
  }

  /** Send room data over the publisher's `data` channel; false when it is not open. */
  send(data) {
    if (this.dataChannel?.readyState !== 'open') return false;
    this.dataChannel.send(JSON.stringify(data));
    return true;
  }

  get dataOpen() {
    return this.dataChannel?.readyState === 'open';
  }

  /** (Re)send our offer: at start and whenever a sender is added or retired. */
  publish() {
    return this.queue.run(async () => {
      const pc = this.publisher;
      if (!pc || this.closed) return;
      await pc.setLocalDescription(await pc.createOffer());
      await waitForGathering(pc);
      const sources = {};
      for (const [source, transceiver] of this.senders) {
        if (transceiver.mid !== null && transceiver.direction === 'sendonly') sources[transceiver.mid] = source;
      }
      const ack = await this.signaling.request('sfu.publish', { sdp: pc.localDescription.sdp, sources });
      this.pubSent = true;
      if (this.closed) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: ack.sdp });
    });
  }

  close() {
    this.closed = true;
    this.media.removeEventListener('track', this.onTrack);
    this.publisher?.close();
    this.subscriber?.close();
    this.publisher = this.subscriber = this.dataChannel = null;
  }

  #peer(role) {
    const pc = new RTCPeerConnection(this.config);
    pc.addEventListener('icecandidate', (event) => {
      // Candidates gathered before the description went out are inside it.
      const sent = role === 'publisher' ? this.pubSent : this.subSent;
      if (!sent || this.closed) return;
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      this.signaling.request('sfu.candidate', { pc: role, candidate }).catch(() => {});
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'failed' && !this.closed) this.#emit('failed', { reason: `${role} ICE failed` });
    });
    if (role === 'subscriber') {
      pc.addEventListener('datachannel', ({ channel }) => {
        if (channel.label !== 'data') return;
        channel.addEventListener('message', (event) => {
          let message;
          try {
            message = JSON.parse(event.data);
          } catch {
            return; // not ours to show
          }
          if (message && typeof message.from === 'string') this.#emit('data', { from: message.from, data: message.data });
        });
      });
    }
    return pc;
  }

  #addSender(source, track) {
    const transceiver = this.publisher.addTransceiver(track || 'video', { direction: 'sendonly' });
    this.senders.set(source, transceiver);
    return transceiver;
  }

  #announceTracks(tracks) {
    const byMid = new Map(this.subscriber.getTransceivers().map((t) => [t.mid, t]));
    const live = [];
    for (const info of tracks) {
      const transceiver = byMid.get(info.mid);
      if (!transceiver || !info.identity) continue;
      live.push({ ...info, track: transceiver.receiver.track, receiver: transceiver.receiver });
    }
    this.#emit('tracks', { tracks: live });
  }

  async #localTrackChanged({ source, track }) {
    if (!this.publisher || this.closed) return;
    const transceiver = this.senders.get(source);
    if (source !== 'screen') {
      if (transceiver) {
        await transceiver.sender.replaceTrack(track);
      } else if (track) {
        this.#addSender(source, track);
        await this.publish();
      }
      return;
    }
    // The screen: a sender of its own, reused across shares so m-lines do not pile up.
    if (track && transceiver) {
      await transceiver.sender.replaceTrack(track);
      transceiver.direction = 'sendonly';
    } else if (track) {
      this.#addSender('screen', track);
    } else if (transceiver) {
      await transceiver.sender.replaceTrack(null);
      transceiver.direction = 'inactive';
    }
    await this.publish();
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
