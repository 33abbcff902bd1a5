// Who is in the room: a snapshot plus the presence log's events, in order.

/** Participants by identity. Emits `change` {type, participant} after every applied event. */
export class Roster extends EventTarget {
  constructor() {
    super();
    this.participants = new Map();
    this.epoch = null;
    this.offset = 0;
  }

  /** Replace everything with a snapshot (join ack, SSE `snapshot`, long-poll snapshot). */
  reset(participants, epoch, offset) {
    this.participants = new Map(participants.map((p) => [p.identity, p]));
    this.epoch = epoch ?? null;
    this.offset = Number.isInteger(offset) ? offset : 0;
    this.dispatchEvent(new CustomEvent('change', { detail: { type: 'snapshot' } }));
  }

  /**
   * Apply one presence event; an event we already hold (a replay) is skipped. An event of
   * another epoch means the log restarted (e.g. the server's shared state was lost): its
   * events from offset 1 are the whole room, so the list starts over; one that is not offset 1
   * means its start was missed, and a `resync` event asks for a fresh snapshot.
   */
  apply(event) {
    if (!event?.participant?.identity) return;
    if (this.epoch && event.epoch && event.epoch !== this.epoch) {
      if (event.offset !== 1) {
        this.dispatchEvent(new CustomEvent('resync'));
        return;
      }
      this.participants = new Map();
      this.offset = 0;
    }
    if (event.epoch === this.epoch && Number.isInteger(event.offset) && event.offset <= this.offset) return;
    this.epoch = event.epoch ?? this.epoch;
    if (Number.isInteger(event.offset)) this.offset = event.offset;
    const { participant } = event;
    if (event.type === 'leave') {
      this.participants.delete(participant.identity);
    } else {
      this.participants.set(participant.identity, participant);
    }
    this.dispatchEvent(new CustomEvent('change', { detail: { type: event.type, participant } }));
  }

  get(identity) {
    return this.participants.get(identity);
  }

  displayName(identity) {
    if (identity === 'server') return 'Server';
    const p = this.participants.get(identity);
    return p?.name || identity;
  }

  /** Everyone, sorted by when they joined. */
  list() {
    return [...this.participants.values()].sort(
      (a, b) => (a.joinedAt ?? 0) - (b.joinedAt ?? 0) || a.identity.localeCompare(b.identity),
    );
  }
}

export function initials(name) {
  const words = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? words[0][0] + words[words.length - 1][0] : (words[0] || '?')[0];
  return letters.toUpperCase();
}

/** The media state a client announced in its metadata (see docs/web-client.md). */
export function mediaState(participant) {
  const media = participant?.metadata?.media;
  return {
    muted: media?.muted === true,
    cameraOff: media?.cameraOff === true,
    screen: media?.screen === true,
  };
}

/**
 * Render the participant list: one `<li data-identity>` per participant.
 * @param {HTMLElement} list
 * @param {Roster} roster
 * @param {{self?: string, speaking?: Set<string>}} options
 */
export function renderPeople(list, roster, { self, speaking = new Set() } = {}) {
  const items = roster.list().map((p) => {
    const li = document.createElement('li');
    li.className = 'person';
    li.dataset.identity = p.identity;
    li.classList.toggle('speaking', speaking.has(p.identity));
    const avatar = document.createElement('span');
    avatar.className = 'avatar avatar-small';
    avatar.textContent = initials(p.name || p.identity);
    avatar.setAttribute('aria-hidden', 'true');
    const text = document.createElement('span');
    text.className = 'person-text';
    const name = document.createElement('span');
    name.className = 'person-name';
    name.textContent = p.name || p.identity;
    if (p.identity === self) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = ' (you)';
      name.append(you);
    }
    const meta = document.createElement('span');
    meta.className = 'person-meta';
    meta.textContent = describe(p);
    text.append(name, meta);
    const icons = document.createElement('span');
    icons.className = 'person-icons';
    const state = mediaState(p);
    if (state.screen) icons.append(badgeIcon('presenting', 'Presenting'));
    if (state.cameraOff) icons.append(badgeIcon('cam-off', 'Camera off'));
    if (state.muted) icons.append(badgeIcon('muted', 'Muted'));
    li.append(avatar, text, icons);
    return li;
  });
  list.replaceChildren(...items);
}

const TRANSPORT_LABEL = { bot: 'bot', sse: 'watching', longpoll: 'watching' };

function describe(participant) {
  const label = TRANSPORT_LABEL[participant.transport];
  if (label) return label;
  if (!participant.joinedAt) return '';
  const at = new Date(participant.joinedAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return `joined ${at}`;
}

function badgeIcon(kind, label) {
  const icon = document.createElement('span');
  icon.className = `state-icon state-${kind}`;
  icon.title = label;
  icon.setAttribute('role', 'img');
  icon.setAttribute('aria-label', label);
  return icon;
}
