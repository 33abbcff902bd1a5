// The join page: pick a room, a name (dev mode) or paste a token, then open /r/{room}.
import { BASE, DEV, ROOM_PATTERN } from './config.js';

const form = document.getElementById('join-form');
const roomInput = document.getElementById('room-input');
const nameInput = document.getElementById('name-input');
const tokenInput = document.getElementById('token-input');
const errorBox = document.getElementById('join-error');

document.getElementById('token-field').hidden = DEV;
document.getElementById('name-field').hidden = !DEV;
nameInput.value = localStorage.getItem('roomwire.name') || '';
roomInput.value = new URLSearchParams(location.search).get('room') || '';
(roomInput.value ? (DEV ? nameInput : tokenInput) : roomInput).focus();

function fail(message, field) {
  errorBox.textContent = message;
  errorBox.hidden = false;
  field?.setAttribute('aria-invalid', 'true');
  field?.focus();
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  errorBox.hidden = true;
  const room = roomInput.value.trim();
  if (!ROOM_PATTERN.test(room)) return fail('Choose a room name of letters, digits, “-” or “_”.', roomInput);
  const mode = new FormData(form).get('mode');
  const target = new URL(`r/${encodeURIComponent(room)}`, BASE);
  if (mode === 'watch') target.searchParams.set('watch', '1');
  if (mode === 'mesh') target.searchParams.set('mode', 'mesh');
  if (DEV) {
    const name = nameInput.value.trim();
    if (!name && mode !== 'watch') return fail('Tell the others your name.', nameInput);
    if (name) {
      localStorage.setItem('roomwire.name', name);
      target.searchParams.set('name', name);
    }
  } else {
    const token = tokenInput.value.trim();
    if (!token) return fail('This server needs an access token to join.', tokenInput);
    target.searchParams.set('token', token);
  }
  location.assign(target);
});
