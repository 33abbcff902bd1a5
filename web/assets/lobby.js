// The lobby before a call: who joins (a name in dev mode, else a token) with a preview of
// the camera and microphone toggles that carry over into the call.
import { DEV, fetchDevToken, params, tokenClaims, urlToken } from './config.js';

const $ = (id) => document.getElementById(id);

/**
 * The lobby: a name (dev mode) or a token, with a camera preview when `media` is given.
 * Resolves `{token, name}`.
 */
export function askInLobby(room, { media = null, mediaReady = null, notify = () => {} } = {}) {
  $('lobby-room').textContent = room;
  $('lobby').hidden = false;
  $('lobby-name-field').hidden = !DEV;
  $('lobby-token-field').hidden = DEV;
  const nameInput = $('name-input');
  nameInput.value = localStorage.getItem('roomwire.name') || '';
  (DEV ? nameInput : $('lobby-token-input')).focus();
  if (mediaReady) {
    const preview = () => {
      $('lobby-video').srcObject = media.videoTrack ? new MediaStream([media.videoTrack]) : null;
      $('lobby-preview-empty').hidden = !!media.videoTrack;
      const mic = !media.muted && !!media.audioTrack;
      setToggle($('lobby-mic'), mic, mic ? 'Mute microphone' : 'Unmute microphone');
      $('lobby-mic').disabled = !media.audioTrack;
      setToggle($('lobby-camera'), !!media.videoTrack, media.videoTrack ? 'Turn camera off' : 'Turn camera on');
    };
    mediaReady.then(preview);
    $('lobby-mic').addEventListener('click', () => {
      media.setMuted(!media.muted);
      preview();
    });
    $('lobby-camera').addEventListener('click', async () => {
      await media.setCameraOff(!media.cameraOff).catch((err) => notify(`Camera: ${err.message}`));
      preview();
    });
  } else {
    document.querySelector('.lobby-preview').hidden = true;
  }
  return new Promise((resolve) => {
    $('lobby-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const error = $('lobby-error');
      error.hidden = true;
      try {
        if (DEV) {
          const name = nameInput.value.trim();
          if (!name) throw new Error('Tell the others your name.');
          localStorage.setItem('roomwire.name', name);
          $('join-button').disabled = true;
          const { token } = await fetchDevToken(room, name);
          resolve({ token, name });
        } else {
          const token = $('lobby-token-input').value.trim();
          if (!token) throw new Error('Paste your access token.');
          // Rejoin reloads the page: keep the token where the page looks for it.
          const url = new URL(location.href);
          url.searchParams.set('token', token);
          history.replaceState(null, '', url);
          resolve({ token, name: tokenClaims(token).name });
        }
        $('lobby').hidden = true;
        $('lobby-video').srcObject = null; // the call's own tile shows the camera from now on
      } catch (err) {
        $('join-button').disabled = false;
        error.textContent = err.message;
        error.hidden = false;
      }
    });
  });
}

function setToggle(button, on, label) {
  button.setAttribute('aria-pressed', String(on));
  button.setAttribute('aria-label', label);
  button.title = label;
}

/** Who joins: `?token=`, dev mode's `?name=`, or whoever the lobby gets. */
export async function credentials(room, { media, mediaReady, notify }) {
  const token = urlToken();
  if (token) return { token, name: tokenClaims(token).name };
  const name = params.get('name');
  if (DEV && name) return { token: (await fetchDevToken(room, name)).token, name };
  return askInLobby(room, { media, mediaReady, notify });
}
