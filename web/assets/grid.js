// The stage: one tile per participant (camera or avatar) plus one per shared screen,
// laid out as a grid that fits the count. Remote audio plays through hidden <audio>s.
import { initials, mediaState } from './presence.js';

function tileKey(identity, source) {
  return `${identity}\u0000${source === 'screen' ? 'screen' : 'camera'}`;
}

export class Stage extends EventTarget {
  /**
   * @param {HTMLElement} grid
   * @param {import('./presence.js').Roster} roster
   */
  constructor(grid, roster) {
    super();
    this.grid = grid;
    this.roster = roster;
    this.self = null;
    this.tiles = new Map(); // key -> {el, video, identity, source, track}
    this.audio = new Map(); // track id -> <audio>
    this.remoteTracks = new Map(); // identity -> [{kind, source, track, receiver}]
    this.sinks = document.createElement('div');
    this.sinks.hidden = true;
    grid.after(this.sinks);
  }

  setSelf(identity) {
    this.self = identity;
  }

  /** Replace one participant's remote tracks (mesh). */
  setTracks(identity, tracks) {
    if (tracks.length) this.remoteTracks.set(identity, tracks);
    else this.remoteTracks.delete(identity);
    this.render();
  }

  /** Replace every remote track at once (the SFU's track list). */
  setAllTracks(tracks) {
    this.remoteTracks.clear();
    for (const t of tracks) {
      if (t.identity === this.self) continue;
      if (!this.remoteTracks.has(t.identity)) this.remoteTracks.set(t.identity, []);
      this.remoteTracks.get(t.identity).push(t);
    }
    this.render();
  }

  /** All remote receivers of audio, for the speaking indicator. */
  audioReceivers() {
    const out = [];
    for (const [identity, tracks] of this.remoteTracks) {
      for (const t of tracks) if (t.kind === 'audio' && t.receiver) out.push({ identity, receiver: t.receiver });
    }
    return out;
  }

  /** Decoder figures of every remote video track (getStats), for diagnostics and tests. */
  async videoStats() {
    const out = [];
    for (const [identity, tracks] of this.remoteTracks) {
      for (const t of tracks) {
        if (t.kind !== 'video' || !t.receiver) continue;
        let framesDecoded = 0;
        for (const report of (await t.receiver.getStats()).values()) {
          if (report.type === 'inbound-rtp') framesDecoded += report.framesDecoded || 0;
        }
        out.push({ identity, source: t.source, framesDecoded });
      }
    }
    return out;
  }

  /** Re-render from the roster, the remote tracks and our own media. */
  render(local = this.local) {
    this.local = local;
    const wanted = new Map();
    const people = this.roster.list();
    for (const p of people) {
      const self = p.identity === this.self;
      const tracks = self ? this.#localTracks() : this.remoteTracks.get(p.identity) || [];
      const camera = tracks.find((t) => t.kind === 'video' && t.source !== 'screen');
      wanted.set(tileKey(p.identity, 'camera'), { participant: p, source: 'camera', track: camera?.track, self });
      for (const screen of tracks.filter((t) => t.kind === 'video' && t.source === 'screen')) {
        wanted.set(tileKey(p.identity, 'screen'), { participant: p, source: 'screen', track: screen.track, self });
      }
    }
    for (const [key, tile] of this.tiles) {
      if (!wanted.has(key)) {
        tile.el.remove();
        this.tiles.delete(key);
      }
    }
    for (const [key, want] of wanted) this.#renderTile(key, want);
    this.#renderAudio();
    // Screens first, then people in join order.
    const ordered = [...wanted.keys()].sort((a, b) => Number(b.endsWith('screen')) - Number(a.endsWith('screen')));
    for (const key of ordered) this.grid.append(this.tiles.get(key).el);
    this.grid.dataset.count = String(wanted.size);
    const cols = Math.max(1, Math.ceil(Math.sqrt(wanted.size)));
    this.grid.style.setProperty('--cols', String(cols));
    this.grid.style.setProperty('--rows', String(Math.max(1, Math.ceil(wanted.size / cols))));
  }

  setSpeaking(identity, speaking) {
    const tile = this.tiles.get(tileKey(identity, 'camera'));
    tile?.el.classList.toggle('speaking', speaking);
  }

  clear() {
    this.remoteTracks.clear();
    this.render();
  }

  #localTracks() {
    const tracks = [];
    if (this.local?.videoTrack) tracks.push({ kind: 'video', source: 'camera', track: this.local.videoTrack });
    if (this.local?.screenTrack) tracks.push({ kind: 'video', source: 'screen', track: this.local.screenTrack });
    return tracks;
  }

  #renderTile(key, { participant, source, track, self }) {
    let tile = this.tiles.get(key);
    if (!tile) {
      const el = document.createElement('figure');
      el.className = `tile tile-${source}`;
      el.dataset.identity = participant.identity;
      el.dataset.source = source;
      const avatar = document.createElement('div');
      avatar.className = 'tile-avatar';
      avatar.append(document.createElement('span'));
      avatar.firstChild.className = 'avatar';
      const label = document.createElement('figcaption');
      label.className = 'tile-label';
      const name = document.createElement('span');
      name.className = 'tile-name';
      const mic = document.createElement('span');
      mic.className = 'state-icon state-muted';
      mic.setAttribute('role', 'img');
      mic.setAttribute('aria-label', 'Muted');
      label.append(mic, name);
      el.append(avatar, label);
      tile = { el, video: null, track: null, onMute: null, cameraOff: false };
      this.tiles.set(key, tile);
    }
    const state = mediaState(participant);
    const muted = self ? !!this.local?.muted : state.muted;
    const cameraOff = source === 'camera' && (self ? !this.local?.videoTrack : state.cameraOff);
    const name = participant.name || participant.identity;
    tile.el.classList.toggle('self', self);
    tile.el.classList.toggle('muted', muted && source === 'camera');
    tile.el.querySelector('.avatar').textContent = initials(name);
    tile.el.querySelector('.tile-name').textContent =
      source === 'screen' ? `${name}'s screen` : self ? `${name} (you)` : name;
    tile.cameraOff = cameraOff;
    if (tile.track !== track) this.#attachVideo(tile, participant.identity, source, track, self);
    this.#showVideo(tile);
  }

  /** A tile shows its video only while frames flow and the camera is not off. */
  #showVideo(tile) {
    tile.el.classList.toggle('has-video', !!tile.track && !tile.track.muted && !tile.cameraOff);
  }

  #attachVideo(tile, identity, source, track, self) {
    if (tile.track) {
      tile.track.removeEventListener('mute', tile.onMute);
      tile.track.removeEventListener('unmute', tile.onMute);
    }
    tile.video?.remove();
    tile.video = null;
    tile.track = track || null;
    if (!track) return;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // sound comes from the <audio> sinks
    video.dataset.identity = identity;
    video.dataset.source = source;
    if (!self) video.dataset.testid = 'remote-video';
    if (self && source === 'camera') video.classList.add('mirror');
    video.srcObject = new MediaStream([track]);
    tile.el.prepend(video);
    tile.video = video;
    tile.onMute = () => this.#showVideo(tile);
    track.addEventListener('mute', tile.onMute);
    track.addEventListener('unmute', tile.onMute);
  }

  #renderAudio() {
    const live = new Set();
    for (const [identity, tracks] of this.remoteTracks) {
      for (const t of tracks) {
        if (t.kind !== 'audio') continue;
        live.add(t.track.id);
        if (this.audio.has(t.track.id)) continue;
        const audio = document.createElement('audio');
        audio.autoplay = true;
        audio.dataset.identity = identity;
        audio.srcObject = new MediaStream([t.track]);
        this.sinks.append(audio);
        this.audio.set(t.track.id, audio);
        audio.play().catch(() => this.dispatchEvent(new CustomEvent('autoplay-blocked')));
      }
    }
    for (const [id, audio] of this.audio) {
      if (live.has(id)) continue;
      audio.srcObject = null;
      audio.remove();
      this.audio.delete(id);
    }
  }

  /** Retry audio playback after a user gesture (autoplay policy). */
  resumeAudio() {
    for (const audio of this.audio.values()) audio.play().catch(() => {});
  }
}
