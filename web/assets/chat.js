// The chat panel: `chat-log` holds one child per message, nothing else. Messages are `{type: "chat", id, text}`; they may reach us twice (the
// data channel and the Socket.IO fallback), so they are shown once per id.

const MAX_SHOWN = 500;

export function chatPayload(text) {
  const id = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  return { type: 'chat', id, text };
}

/** What to show for a message's data: our chat payload, plain text, or anything as JSON. */
export function chatText(data) {
  if (data && typeof data === 'object' && data.type === 'chat' && typeof data.text === 'string') return data.text;
  if (typeof data === 'string') return data;
  return JSON.stringify(data);
}

export class ChatPanel {
  /**
   * @param {{form: HTMLFormElement, input: HTMLInputElement, log: HTMLElement,
   *          nameOf: (identity: string) => string, send: (payload: object) => Promise<void>,
   *          notify: (text: string) => void}} options
   */
  constructor({ form, input, log, nameOf, send, notify }) {
    this.input = input;
    this.log = log;
    this.nameOf = nameOf;
    this.seen = new Set();
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const payload = chatPayload(text);
      input.value = '';
      this.show({ id: payload.id, from: null, text, self: true });
      try {
        await send(payload);
      } catch (err) {
        notify(`Message not delivered: ${err.message}`);
      }
    });
  }

  /** A message from someone (or from "server"). */
  receive(from, data, id) {
    this.show({ id: data?.id ?? id, from, text: chatText(data), self: false });
  }

  show({ id, from, text, self }) {
    if (id) {
      if (this.seen.has(id)) return;
      this.seen.add(id);
    }
    const item = document.createElement('li');
    item.className = 'chat-message';
    item.classList.toggle('mine', self);
    item.classList.toggle('from-server', from === 'server');
    if (from) item.dataset.from = from;
    const head = document.createElement('div');
    head.className = 'chat-head';
    const who = document.createElement('span');
    who.className = 'chat-from';
    who.textContent = self ? 'You' : this.nameOf(from);
    const time = document.createElement('time');
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    head.append(who, time);
    const body = document.createElement('p');
    body.className = 'chat-text';
    body.textContent = text;
    item.append(head, body);
    this.#append(item);
  }

  #append(item) {
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.append(item);
    while (this.log.children.length > MAX_SHOWN) this.log.firstElementChild.remove();
    if (atBottom || item.classList.contains('mine')) this.log.scrollTop = this.log.scrollHeight;
  }
}
