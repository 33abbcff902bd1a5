// This browser's camera, microphone and screen. Peer connections listen for `track`
// {source, track} and swap the track into their sender: no renegotiation for mute, camera
// off or a device change; only screen sharing adds (or retires) a sender.

const VIDEO_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

export class LocalMedia extends EventTarget {
  constructor() {
    super();
    this.audioTrack = null; // the microphone, kept while muted (enabled = false)
    this.videoTrack = null; // the camera, stopped and null while the camera is off
    this.screenTrack = null;
    this.muted = false;
    this.cameraOff = false;
    this.audioDeviceId = localStorage.getItem('roomwire.mic') || undefined;
    this.videoDeviceId = localStorage.getItem('roomwire.camera') || undefined;
    this.error = null;
    this.audioContext = null;
    this.analyser = null;
  }

  /** Open camera and microphone; with either missing or refused, carry on with the other. */
  async start() {
    const attempts = [
      { audio: this.#audioConstraints(), video: this.#videoConstraints() },
      { audio: this.#audioConstraints(), video: false },
      { audio: false, video: this.#videoConstraints() },
    ];
    for (const constraints of attempts) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        this.audioTrack = stream.getAudioTracks()[0] || null;
        this.videoTrack = stream.getVideoTracks()[0] || null;
        this.error = null;
        break;
      } catch (err) {
        this.error = err;
        // A stale saved device id: forget it and try the defaults.
        if (err.name === 'OverconstrainedError') {
          this.audioDeviceId = this.videoDeviceId = undefined;
        }
      }
    }
    this.cameraOff = !this.videoTrack;
    this.#meter();
    return { audio: !!this.audioTrack, video: !!this.videoTrack };
  }

  get hasMedia() {
    return !!(this.audioTrack || this.videoTrack || this.screenTrack);
  }

  setMuted(muted) {
    this.muted = muted;
    if (this.audioTrack) this.audioTrack.enabled = !muted;
    this.#changed('microphone', this.audioTrack);
  }

  /** Camera off stops the device (its light goes out); on reopens it. */
  async setCameraOff(off) {
    if (off) {
      this.videoTrack?.stop();
      this.videoTrack = null;
      this.cameraOff = true;
      this.#changed('camera', null);
      return;
    }
    const stream = await navigator.mediaDevices.getUserMedia({ video: this.#videoConstraints() });
    this.videoTrack = stream.getVideoTracks()[0];
    this.cameraOff = false;
    this.#changed('camera', this.videoTrack);
  }

  async useDevice(kind, deviceId) {
    if (kind === 'audioinput') {
      this.audioDeviceId = deviceId;
      localStorage.setItem('roomwire.mic', deviceId);
      const stream = await navigator.mediaDevices.getUserMedia({ audio: this.#audioConstraints() });
      this.audioTrack?.stop();
      this.audioTrack = stream.getAudioTracks()[0];
      this.audioTrack.enabled = !this.muted;
      this.#meter();
      this.#changed('microphone', this.audioTrack);
    } else {
      this.videoDeviceId = deviceId;
      localStorage.setItem('roomwire.camera', deviceId);
      if (this.cameraOff) return;
      const stream = await navigator.mediaDevices.getUserMedia({ video: this.#videoConstraints() });
      this.videoTrack?.stop();
      this.videoTrack = stream.getVideoTracks()[0];
      this.#changed('camera', this.videoTrack);
    }
  }

  async devices() {
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      audioinput: all.filter((d) => d.kind === 'audioinput'),
      videoinput: all.filter((d) => d.kind === 'videoinput'),
    };
  }

  async startScreen() {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    this.screenTrack = stream.getVideoTracks()[0];
    // The browser's own "Stop sharing" button ends the track.
    this.screenTrack.addEventListener('ended', () => this.stopScreen());
    this.#changed('screen', this.screenTrack);
  }

  stopScreen() {
    if (!this.screenTrack) return;
    this.screenTrack.stop();
    this.screenTrack = null;
    this.#changed('screen', null);
  }

  /** Microphone level 0..1 (RMS of the last analyser window), 0 when muted. */
  level() {
    if (!this.analyser || this.muted || !this.audioTrack) return 0;
    const samples = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    return Math.sqrt(sum / samples.length);
  }

  stop() {
    for (const track of [this.audioTrack, this.videoTrack, this.screenTrack]) track?.stop();
    this.audioTrack = this.videoTrack = this.screenTrack = null;
    this.audioContext?.close();
    this.audioContext = this.analyser = null;
  }

  #meter() {
    if (!this.audioTrack) return;
    try {
      this.audioContext ??= new AudioContext();
      const source = this.audioContext.createMediaStreamSource(new MediaStream([this.audioTrack]));
      this.analyser = this.audioContext.createAnalyser();
      this.analyser.fftSize = 512;
      source.connect(this.analyser);
    } catch {
      this.analyser = null; // no WebAudio: no local speaking indicator, nothing else lost
    }
  }

  #audioConstraints() {
    const base = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    return this.audioDeviceId ? { ...base, deviceId: { exact: this.audioDeviceId } } : base;
  }

  #videoConstraints() {
    return this.videoDeviceId ? { ...VIDEO_CONSTRAINTS, deviceId: { exact: this.videoDeviceId } } : VIDEO_CONSTRAINTS;
  }

  #changed(source, track) {
    this.dispatchEvent(new CustomEvent('track', { detail: { source, track } }));
  }
}
