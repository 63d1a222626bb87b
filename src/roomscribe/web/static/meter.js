// The microphone's level and the recording's running time, shown while the page captions:
// whoever speaks sees at once that the microphone hears them. The level is the RMS of the
// captured stream (a Web Audio AnalyserNode, never connected to the speakers) on a dB scale,
// shown as a bar (#level, aria-valuenow 0-100) and as a ring around the record button.
"use strict";

class LevelMeter {
  constructor({ meter, ring, timer }) {
    this.meter = meter;
    this.fill = meter.querySelector(".level-fill");
    this.ring = ring;
    this.timer = timer;
    this.context = null;
    this.analyser = null;
    this.interval = null;
    this.level = 0;
    this.startedAt = null;
    this.wake = () => this.context && this.context.state === "suspended" && this.context.resume().catch(() => {});
  }

  // Follows `stream` from `startedAt` (Date.now() of the capture's start).
  start(stream, startedAt) {
    this.stop();
    this.startedAt = startedAt;
    try {
      this.context = new (window.AudioContext || window.webkitAudioContext)();
      this.analyser = this.context.createAnalyser();
      this.analyser.fftSize = 1024;
      this.context.createMediaStreamSource(stream).connect(this.analyser);
      this.samples = new Float32Array(this.analyser.fftSize);
      // Started without a gesture (?autostart=1), the context may wait for one.
      this.wake();
      for (const kind of ["pointerdown", "keydown"]) document.addEventListener(kind, this.wake, { once: true });
    } catch {
      this.analyser = null; // no Web Audio: the timer still runs
    }
    this.interval = setInterval(() => this.tick(), 100); // 10 a second: enough for the eye, cheap for the CPU
    this.tick();
  }

  // The bar falls to zero; the timer keeps the recording's length.
  stop() {
    clearInterval(this.interval);
    this.interval = null;
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
    this.analyser = null;
    this.level = 0;
    this.show(0);
  }

  reset() {
    this.stop();
    this.startedAt = null;
    this.timer.textContent = "00:00";
  }

  tick() {
    let level = 0;
    if (this.analyser) {
      this.analyser.getFloatTimeDomainData(this.samples);
      let sum = 0;
      for (const x of this.samples) sum += x * x;
      const db = 20 * Math.log10(Math.sqrt(sum / this.samples.length) + 1e-9);
      level = Math.min(1, Math.max(0, (db + 60) / 57)); // -60 dBFS is nothing, -3 dBFS is full
    }
    // Rises at once, falls gently: speech reads as a steady bar, not a flicker.
    this.level = level >= this.level ? level : this.level * 0.8 + level * 0.2;
    this.show(this.level);
    if (this.startedAt) {
      const clock = LevelMeter.clock(Date.now() - this.startedAt);
      if (this.timer.textContent !== clock) this.timer.textContent = clock;
    }
  }

  show(level) {
    const percent = Math.round(level * 100);
    if (percent === this.shown) return; // nothing to draw: no style work for the browser
    this.shown = percent;
    this.meter.setAttribute("aria-valuenow", String(percent));
    this.meter.dataset.level = percent > 70 ? "loud" : percent > 8 ? "ok" : "quiet";
    this.fill.style.clipPath = `inset(0 ${100 - level * 100}% 0 0)`; // the colours stay where the scale puts them
    this.ring.style.setProperty("--level", level.toFixed(3));
  }

  // Milliseconds as mm:ss (hh:mm:ss past an hour).
  static clock(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const two = (n) => String(n).padStart(2, "0");
    const mmss = `${two(Math.floor(s / 60) % 60)}:${two(s % 60)}`;
    return s >= 3600 ? `${Math.floor(s / 3600)}:${mmss}` : mmss;
  }
}
