// The room page: lobby, then the call (SFU by default, `?mode=mesh` peer to peer), or a
// presence-only view with `?watch=1`. Wires the modules together; each owns one concern.
import { ChatPanel } from './chat.js';
import { DEV, FORCE_RELAY, fetchDevToken, fetchRoom, hasTurn, params, roomFromPath, tokenClaims, urlToken } from './config.js';
import { bindControls } from './controls.js';
import { Stage } from './grid.js';
import { askInLobby, credentials } from './lobby.js';
import { LocalMedia } from './media.js';
import { MESH_LIMIT, MeshSession } from './mesh.js';
import { Roster, renderPeople } from './presence.js';
import { SfuSession } from './sfu.js';
import { Signaling } from './signaling.js';
import { PresenceWatcher } from './watch.js';

const $ = (id) => document.getElementById(id);
const room = roomFromPath();
const mode = params.get('mode') === 'mesh' ? 'mesh' : 'sfu';
const roster = new Roster();
const stage = new Stage($('grid'), roster);
const peopleList = $('participant-list');
const speaking = new Set();
let self = null;

$('room-name').textContent = room;
document.title = `${room} · roomwire`;

function setStatus(state, detail = '') {
  const el = $('connection-status');
  el.textContent = state;
  el.dataset.state = state;
  el.title = detail;
}

let noticeTimer = 0;
function notify(text, action) {
  const el = $('notice');
  el.replaceChildren(text);
  if (action) {
    const button = document.createElement('button');
    button.className = 'btn btn-small btn-primary';
    button.type = 'button';
    button.textContent = action.label;
    button.addEventListener('click', () => {
      el.hidden = true;
      action.run();
    });
    el.append(' ', button);
  }
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (!action) noticeTimer = setTimeout(() => (el.hidden = true), 6000);
}

roster.addEventListener('change', () => {
  renderPeople(peopleList, roster, { self, speaking });
  $('people-count').textContent = String(roster.participants.size);
  stage.render();
});

$('copy-link').addEventListener('click', async () => {
  const link = new URL(location.href);
  link.searchParams.delete('token');
  link.searchParams.delete('name');
  link.hash = '';
  await navigator.clipboard?.writeText(link.href).catch(() => {});
  notify('Link copied. Anyone with it can join (with their own token outside dev mode).');
});

function showLeft(title, detail) {
  $('left-title').textContent = title;
  $('left-detail').textContent = detail;
  $('left-screen').hidden = false;
  $('rejoin-button').focus();
}

async function startCall() {
  const media = new LocalMedia();
  const mediaReady = media.start();
  const { token, name } = await credentials(room, { media, mediaReady, notify });
  await mediaReady;
  // Our level meter's AudioContext starts suspended until a user gesture (autoplay policy).
  media.audioContext?.resume().catch(() => {});
  document.addEventListener('pointerdown', () => media.audioContext?.resume().catch(() => {}), { once: true });
  if (DEV && name) {
    // A reload (or Rejoin) comes back as the same person without the lobby.
    const url = new URL(location.href);
    url.searchParams.set('name', name);
    history.replaceState(null, '', url);
  }
  if (media.error && !media.hasMedia) notify(`No camera or microphone: ${media.error.message}`);
  const grants = tokenClaims(token).grants || {};
  const signaling = new Signaling({
    token,
    refreshToken: DEV && name ? async () => (await fetchDevToken(room, name)).token : undefined,
  });
  let session = null;
  let restartTimer = 0;
  let restarts = 0;
  let iceServersOfJoin = [];

  const chat = new ChatPanel({
    form: $('chat-form'),
    input: $('chat-input'),
    log: $('chat-log'),
    nameOf: (identity) => roster.displayName(identity),
    notify,
    send: (payload) => sendChat(payload),
  });

  async function sendChat(payload) {
    const others = roster.list().filter((p) => p.identity !== self);
    if (session instanceof MeshSession) {
      for (const p of others) {
        if (!session.sendTo(p.identity, payload)) await signaling.request('message', { to: p.identity, data: payload });
      }
      return;
    }
    if (session?.send(payload)) {
      // The SFU's channel reaches those with media; the rest get it through Socket.IO.
      for (const p of others.filter((o) => !o.tracks?.length)) {
        await signaling.request('message', { to: p.identity, data: payload });
      }
      return;
    }
    await signaling.request('message', { data: payload });
  }

  function announceMedia() {
    if (!self || signaling.state !== 'connected') return;
    const me = roster.get(self);
    const metadata = { ...(me?.metadata || {}) };
    metadata.media = { muted: media.muted || !media.audioTrack, cameraOff: media.cameraOff, screen: !!media.screenTrack };
    signaling.request('update', { metadata }).catch((err) => console.warn('update failed', err));
  }

  async function startMedia(iceServers) {
    session?.close();
    session = null;
    stage.clear();
    if (FORCE_RELAY && !hasTurn(iceServers)) {
      notify('Relay only (?relay=1), but this server hands out no TURN server: media cannot connect.');
    }
    if (mode === 'mesh') {
      const others = roster.list().filter((p) => p.identity !== self);
      if (others.length >= MESH_LIMIT) {
        notify(`Direct mode is for up to ${MESH_LIMIT} people; this room has ${others.length + 1}. Media is off.`);
        return;
      }
      session = new MeshSession(signaling, media, { self, iceServers });
      session.addEventListener('tracks', (e) => stage.setTracks(e.detail.identity, e.detail.tracks));
      session.addEventListener('data', (e) => chat.receive(e.detail.from, e.detail.data));
      session.start(others.map((p) => p.identity));
      return;
    }
    const sfu = new SfuSession(signaling, media, {
      iceServers,
      publish: grants.publish !== false,
      subscribe: grants.subscribe !== false,
    });
    session = sfu;
    sfu.addEventListener('tracks', (e) => stage.setAllTracks(e.detail.tracks));
    sfu.addEventListener('data', (e) => chat.receive(e.detail.from, e.detail.data));
    sfu.addEventListener('failed', (e) => {
      // ICE gave up (network change): renegotiate from scratch, backing off.
      if (session !== sfu) return;
      clearTimeout(restartTimer);
      const delay = Math.min(10000, 1000 * 2 ** restarts++);
      notify(`Media connection lost (${e.detail.reason}); reconnecting…`);
      restartTimer = setTimeout(() => session === sfu && startMedia(iceServers), delay);
    });
    try {
      await sfu.start();
      restarts = 0;
    } catch (err) {
      if (session === sfu) notify(`Media unavailable: ${err.message}. Chat still works.`);
    }
  }

  signaling.addEventListener('status', (e) => {
    setStatus(e.detail.state, e.detail.detail);
    if (e.detail.state === 'disconnected' && e.detail.detail !== 'left') {
      session?.close();
      session = null;
      stage.clear();
      const refused = /^(unauthorized|forbidden)/.test(e.detail.detail);
      showLeft(refused ? 'Cannot join this room' : 'Disconnected', e.detail.detail);
    }
  });
  signaling.addEventListener('kicked', (e) => {
    const replaced = e.detail.reason === 'replaced';
    showLeft(replaced ? 'Joined from somewhere else' : 'Removed from the room',
      replaced ? 'This room is open in another tab or window.' : `Reason: ${e.detail.reason}`);
  });
  signaling.addEventListener('joined', (e) => {
    const { ack } = e.detail;
    self = ack.self?.identity ?? null;
    stage.setSelf(self);
    const participants = ack.participants || [];
    if (ack.self && !participants.some((p) => p.identity === self)) participants.push(ack.self);
    roster.reset(participants, ack.epoch, ack.offset);
    stage.render(media);
    document.body.dataset.transport = signaling.transport || '';
    if (media.muted || media.cameraOff || media.screenTrack || !media.audioTrack) announceMedia();
    iceServersOfJoin = ack.iceServers || [];
    startMedia(iceServersOfJoin);
  });
  roster.addEventListener('resync', async () => {
    // the presence log restarted and we missed its start: take the room as it is now
    try {
      const now = await fetchRoom(room, signaling.token);
      roster.reset(now.participants || [], now.epoch, now.offset);
    } catch (err) {
      notify(`Could not refresh the participant list: ${err.message}`);
    }
  });
  signaling.on('sfu.restart', () => {
    // the room's media moved to another server node: publish and subscribe again, at once
    if (!(session instanceof SfuSession)) return;
    clearTimeout(restartTimer);
    notify('Media moved to another server; reconnecting…');
    startMedia(iceServersOfJoin);
  });
  signaling.on('presence', (event) => {
    roster.apply(event);
    if (event?.type === 'leave' && session instanceof MeshSession) session.drop(event.participant.identity);
  });
  signaling.on('message', (message) => chat.receive(message?.from, message?.data, message?.id));
  signaling.on('signal', (message) => session instanceof MeshSession && session.handleSignal(message));
  signaling.on('sfu.offer', async (payload, ack) => {
    if (typeof ack !== 'function') return;
    if (!(session instanceof SfuSession)) {
      ack({ ok: false, error: { code: 'conflict', message: 'not in SFU mode' } });
      return;
    }
    ack(await session.handleOffer(payload).catch((err) => ({ ok: false, error: { code: 'internal', message: err.message } })));
  });

  bindControls(media, {
    notify,
    onChange: () => {
      stage.render(media);
      announceMedia();
    },
    onLeave: async () => {
      session?.close();
      session = null;
      await signaling.leave();
      media.stop();
      stage.clear();
      showLeft('You left the room', 'Rejoin whenever you like.');
    },
  });
  stage.addEventListener('autoplay-blocked', () =>
    notify('Your browser paused the sound.', { label: 'Play sound', run: () => stage.resumeAudio() }));
  window.addEventListener('pagehide', () => signaling.closeNow());
  // For the console and end-to-end tests: what the page is connected with, and decoder stats.
  window.roomwire = { mode, signaling, roster, videoStats: () => stage.videoStats() };
  setInterval(() => updateSpeaking(media), 300);
  stage.render(media);
  signaling.connect();
}

/** Speaking: our analyser locally, the receivers' `audioLevel` (getStats) for others. */
async function updateSpeaking(media) {
  const now = new Set();
  if (self && media.level() > 0.02) now.add(self);
  for (const { identity, receiver } of stage.audioReceivers()) {
    try {
      const stats = await receiver.getStats();
      for (const report of stats.values()) {
        if (report.type === 'inbound-rtp' && report.audioLevel > 0.03) now.add(identity);
      }
    } catch {
      // a receiver of a closed connection: no level
    }
  }
  for (const identity of new Set([...speaking, ...now])) {
    const on = now.has(identity);
    stage.setSpeaking(identity, on);
    peopleList.querySelector(`[data-identity="${CSS.escape(identity)}"]`)?.classList.toggle('speaking', on);
  }
  speaking.clear();
  for (const identity of now) speaking.add(identity);
}

async function startWatch() {
  document.body.classList.add('watch-mode');
  $('mode-badge').textContent = 'Watching';
  $('mode-badge').hidden = false;
  let token = urlToken();
  if (!token && DEV) token = (await fetchDevToken(room, params.get('name') || 'watcher')).token;
  if (!token) token = (await askInLobby(room, { notify })).token;
  const watcher = new PresenceWatcher({ room, token, roster });
  watcher.addEventListener('status', (e) => {
    setStatus(e.detail.state, e.detail.detail);
    document.body.dataset.transport = e.detail.transport || '';
  });
  window.roomwire = { mode: 'watch', roster, watcher };
  watcher.start();
}

document.getElementById('rejoin-button').addEventListener('click', () => location.reload());
if (params.get('watch') === '1') {
  startWatch().catch((err) => showLeft('Cannot watch this room', err.message));
} else {
  if (mode === 'mesh') {
    $('mode-badge').textContent = 'Direct';
    $('mode-badge').hidden = false;
  }
  startCall().catch((err) => {
    setStatus('disconnected', err.message);
    showLeft('Cannot join this room', err.message);
  });
}
