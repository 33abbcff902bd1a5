// The call controls: microphone, camera, screen, devices, leave. They act on LocalMedia;
// the peer connections follow its `track` events, and `onChange` announces the new state.

/**
 * @param {import('./media.js').LocalMedia} media
 * @param {{onChange: () => void, onLeave: () => void, notify: (text: string) => void}} hooks
 */
export function bindControls(media, { onChange, onLeave, notify }) {
  const mic = document.getElementById('mic-button');
  const camera = document.getElementById('camera-button');
  const screen = document.getElementById('screen-button');
  const devicesButton = document.getElementById('devices-button');
  const panel = document.getElementById('devices-panel');
  const cameraSelect = document.getElementById('camera-select');
  const micSelect = document.getElementById('mic-select');

  const sync = () => {
    setPressed(mic, !media.muted && !!media.audioTrack, media.muted ? 'Unmute microphone' : 'Mute microphone');
    mic.disabled = !media.audioTrack;
    setPressed(camera, !media.cameraOff, media.cameraOff ? 'Turn camera on' : 'Turn camera off');
    setPressed(screen, !!media.screenTrack, media.screenTrack ? 'Stop sharing' : 'Share your screen');
    screen.querySelector('.ctl-label').textContent = media.screenTrack ? 'Stop' : 'Share';
    screen.hidden = !navigator.mediaDevices?.getDisplayMedia;
  };

  const act = async (job) => {
    try {
      await job();
    } catch (err) {
      if (err.name !== 'NotAllowedError' || !err.message.includes('Permission denied by user')) {
        notify(`${err.name === 'NotAllowedError' ? 'Permission denied' : 'Could not do that'}: ${err.message}`);
      }
    }
    sync();
    onChange();
  };

  mic.addEventListener('click', () => act(() => media.setMuted(!media.muted)));
  camera.addEventListener('click', () => act(() => media.setCameraOff(!media.cameraOff)));
  screen.addEventListener('click', () => act(() => (media.screenTrack ? media.stopScreen() : media.startScreen())));
  media.addEventListener('track', (event) => {
    // The browser's "Stop sharing" ends the screen without a click here.
    if (event.detail.source === 'screen' && !event.detail.track) {
      sync();
      onChange();
    }
  });
  document.getElementById('leave-button').addEventListener('click', onLeave);

  devicesButton.addEventListener('click', async () => {
    const open = panel.hidden;
    panel.hidden = !open;
    devicesButton.setAttribute('aria-expanded', String(open));
    if (open) await fillDevices(media, cameraSelect, micSelect);
  });
  const closePanel = () => {
    panel.hidden = true;
    devicesButton.setAttribute('aria-expanded', 'false');
  };
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !panel.hidden) {
      closePanel();
      devicesButton.focus();
    }
  });
  document.addEventListener('pointerdown', (event) => {
    if (!panel.hidden && !panel.contains(event.target) && !devicesButton.contains(event.target)) closePanel();
  });
  cameraSelect.addEventListener('change', () => act(() => media.useDevice('videoinput', cameraSelect.value)));
  micSelect.addEventListener('change', () => act(() => media.useDevice('audioinput', micSelect.value)));
  sync();
  return { sync };
}

function setPressed(button, pressed, label) {
  button.setAttribute('aria-pressed', String(pressed));
  button.title = label;
  button.setAttribute('aria-label', label);
}

async function fillDevices(media, cameraSelect, micSelect) {
  const { audioinput, videoinput } = await media.devices();
  const currentVideo = media.videoTrack?.getSettings().deviceId || media.videoDeviceId;
  const currentAudio = media.audioTrack?.getSettings().deviceId || media.audioDeviceId;
  fill(cameraSelect, videoinput, currentVideo, 'Camera');
  fill(micSelect, audioinput, currentAudio, 'Microphone');
}

function fill(select, devices, current, fallback) {
  const options = devices.map((device, i) => {
    const option = document.createElement('option');
    option.value = device.deviceId;
    option.textContent = device.label || `${fallback} ${i + 1}`;
    option.selected = device.deviceId === current;
    return option;
  });
  if (!options.length) {
    const none = document.createElement('option');
    none.textContent = `No ${fallback.toLowerCase()} found`;
    options.push(none);
  }
  select.replaceChildren(...options);
  select.disabled = !devices.length;
}
