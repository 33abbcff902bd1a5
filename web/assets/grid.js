// The stage: one tile per participant (camera or avatar) plus one per shared screen,
// laid out as a grid that fits the count. Remote audio plays through hidden <audio>s.
import { initials, mediaState } from './presence.js';

const GAP = 12; // px, as .grid's gap in app.css

/** The widest 16:9 tile of which `count` fit in width x height, over every column count. */
function fit(count, width, height) {
  let best = 0;
  for (let cols = 1; cols <= Math.max(1, count); cols++) {
    const rows = Math.ceil(count / cols) || 1;
    const w = Math.min((width - (cols - 1) * GAP) / cols, ((height - (rows - 1) * GAP) / rows) * (16 / 9));
    best = Math.max(best, w);
  }
  return Math.max(80, Math.floor(best));
}

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
    new ResizeObserver(() => this.#layout()).observe(grid);
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
    // Screens first, then the others in join order, ourselves last (a stable sort).
    const rank = (key) => (wanted.get(key).source === 'screen' ? 0 : wanted.get(key).self ? 2 : 1);
    const ordered = [...wanted.keys()].sort((a, b) => rank(a) - rank(b));
    for (const key of ordered) this.grid.append(this.tiles.get(key).el);
    this.grid.dataset.count = String(wanted.size);
    this.#layout();
  }

  /** Size tiles to fill the stage: the biggest 16:9 tiles that fit; a shared screen on top. */
  #layout() {
    const width = this.grid.clientWidth;
    const height = this.grid.clientHeight;
    if (!width || !height) return;
    let screens = 0;
    for (const tile of this.tiles.values()) if (tile.el.dataset.source === 'screen') screens++;
    const cameras = this.tiles.size - screens;
    this.grid.classList.toggle('presenting', screens > 0);
    let cameraArea = height;
    if (screens) {
      const strip = cameras ? Math.min(height * 0.24, 200) : 0;
      const screenArea = height - strip - (cameras ? GAP : 0);
      this.grid.style.setProperty('--screen-w', `${fit(screens, width, screenArea)}px`);
      cameraArea = strip;
    }
    this.grid.style.setProperty('--tile-w', `${fit(cameras, width, cameraArea)}px`);
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
      source === 'screen' ? (self ? 'Your screen' : `${name}'s screen`) : self ? `${name} (you)` : name;
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
