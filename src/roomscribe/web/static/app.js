// The roomscribe caption page: the microphone goes to the server over WebRTC (WHIP-style
// offer/answer on /whip); captions come back on the data channel. Interims update in place,
// finals stay. Each page reads captions in one language ("Read", or &read=ko): the server
// translates the session's finals into every language its pages read, and a line shows its
// translation once it arrives, the words as spoken until then. window.roomscribe keeps a log
// of what arrived when (for measurements).
//
// The page around the captions: one record button that is #start or #stop by the phase
// (idle, starting, recording), a level meter and timer (meter.js), Space to start and stop
// anywhere outside a text field, a caption size kept in localStorage, an empty state that
// says what to do, and files dropped on the page transcribed (files.js).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  pc: null, channel: null, participant: null, session: null, lines: new Map(), stream: null,
  translation: { state: "off", languages: [] }, phase: "idle",
};
const meter = new LevelMeter({ meter: $("level"), ring: $("record-wrap"), timer: $("timer") });
window.roomscribe = { log: [], captureStartedAt: null, state, meter };

const key = params.get("key") || sessionStorage.getItem("roomscribe-key") || "";
if (key) sessionStorage.setItem("roomscribe-key", key);
const authHeaders = () => (key ? { Authorization: `Bearer ${key}` } : {});

$("session").value = params.get("session") || Math.random().toString(36).slice(2, 10);
$("name").value = params.get("name") || localStorage.getItem("roomscribe-name") || "";
if (params.get("language")) {
  // A code the menu lacks is kept as it is: the server knows every Whisper language, and says
  // so clearly when it does not.
  const code = params.get("language");
  if (![...$("language").options].some((o) => o.value === code)) $("language").add(new Option(code, code));
  $("language").value = code;
}
if (params.get("read")) {
  const code = params.get("read");
  if (![...$("read").options].some((o) => o.value === code)) $("read").add(new Option(code, code));
  $("read").value = code;
}
if (params.get("policy")) $("policy").value = params.get("policy");
if (params.get("task")) $("task").value = params.get("task");
if (["1", "true", "yes"].includes(params.get("diarize"))) $("diarize").checked = true;
updateShare();
$("session").addEventListener("input", updateShare);
showSettingsSummary();
for (const id of ["name", "session", "language", "task", "policy", "prompt", "diarize"]) {
  $(id).addEventListener(id === "diarize" || $(id).tagName === "SELECT" ? "change" : "input", showSettingsSummary);
}

function updateShare() {
  const url = new URL(location.href);
  url.search = "";
  url.searchParams.set("session", $("session").value);
  $("share").href = url.toString();
  $("share").textContent = url.toString();
}

// What the settings panel holds, in a few words on its closed summary.
function showSettingsSummary() {
  const chosen = (id) => $(id).selectedOptions[0] ? $(id).selectedOptions[0].textContent : $(id).value;
  const parts = [
    $("name").value.trim() || "no name yet",
    $("language").value === "auto" ? "language detected" : chosen("language"),
  ];
  if ($("task").value === "translate") parts.push("captions in English");
  if ($("diarize").checked) parts.push("several people");
  $("settings-summary").textContent = parts.join(" · ");
}

function setStatus(text) {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = /^connected|^connecting|^new/.test(text)
    ? (text.startsWith("connected") ? "live" : "busy")
    : /failed|disconnected/.test(text) ? "bad" : "idle";
}
function showError(text) { $("error").textContent = text || ""; }

// The record control: #start while idle or starting, #stop while recording; the focus
// follows from one to the other so a keyboard user can press again to undo.
function setPhase(phase) {
  const focused = document.activeElement === $("start") || document.activeElement === $("stop") ||
    state.focusRecord;
  state.phase = phase;
  state.focusRecord = phase === "starting" && focused;
  document.body.dataset.phase = phase;
  $("recorder").dataset.phase = phase;
  $("start").disabled = phase !== "idle";
  $("stop").disabled = phase !== "recording";
  $("start").hidden = phase === "recording";
  $("stop").hidden = phase !== "recording";
  $("start").querySelector(".record-label").textContent = phase === "starting" ? "Connecting" : "Start";
  if (focused && phase !== "starting") (phase === "recording" ? $("stop") : $("start")).focus();
}

function toggleRecording() {
  if (state.phase === "idle") start();
  else if (state.phase === "recording") stop();
}

async function start() {
  if (state.phase !== "idle") return;
  showError("");
  setPhase("starting");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: true, channelCount: 1 },
    });
    window.roomscribe.captureStartedAt = Date.now();
    meter.start(state.stream, window.roomscribe.captureStartedAt);
    const pc = new RTCPeerConnection({ iceServers: [] });
    state.pc = pc;
    for (const track of state.stream.getAudioTracks()) pc.addTransceiver(track, { direction: "sendonly" });
    const channel = pc.createDataChannel("captions");
    state.channel = channel;
    channel.onmessage = (e) => onMessage(JSON.parse(e.data));
    pc.onconnectionstatechange = () => {
      setStatus(pc.connectionState);
      if (pc.connectionState === "failed") showError("connection to the server failed");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    const query = new URLSearchParams({
      session: $("session").value, name: $("name").value,
      language: $("language").value, policy: $("policy").value, task: $("task").value,
      prompt: $("prompt").value, diarize: $("diarize").checked ? "true" : "false", read: $("read").value,
    });
    const response = await fetch(`/whip?${query}`, {
      method: "POST", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp", ...authHeaders() },
    });
    if (!response.ok) throw new Error(await errorText(response));
    state.resource = response.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    localStorage.setItem("roomscribe-name", $("name").value);
    rememberAddress();
    setPhase("recording");
    setStatus("connecting…");
  } catch (err) {
    showError(microphoneError(err));
    await stop();
  }
}

// This tab's address: the session's share link, plus what only this page chose.
function rememberAddress() {
  const url = new URL($("share").href);
  if ($("read").value) url.searchParams.set("read", $("read").value);
  if (key) url.searchParams.set("key", key);
  history.replaceState(null, "", url.toString());
}

function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // whatever candidates we have by then
  });
}

// getUserMedia's refusals in words a user can act on; anything else as it came.
function microphoneError(err) {
  const why = String(err.message || err);
  if (err.name === "NotAllowedError") return `The microphone is blocked: allow it for this page in the browser (${why}).`;
  if (err.name === "NotFoundError") return `No microphone found: plug one in and press Start again (${why}).`;
  if (!navigator.mediaDevices) return "This page cannot use the microphone here: open it over https or on localhost.";
  return why;
}

async function errorText(response) {
  try { return (await response.json()).error.message; } catch { return `${response.status} ${response.statusText}`; }
}

async function stop() {
  if (state.resource) {
    fetch(state.resource, { method: "DELETE", headers: authHeaders() }).catch(() => {});
    state.resource = null;
  }
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  // Keep the channel open a little: the last sentence's final is still on its way.
  const pc = state.pc;
  state.pc = null;
  setTimeout(() => pc && pc.close(), 5000);
  meter.stop();
  setPhase("idle");
  setStatus("stopped");
  showTranslationNotice();
}

function onMessage(msg) {
  window.roomscribe.log.push({ at: Date.now(), msg });
  if (msg.type === "welcome") {
    state.participant = msg.participant;
    state.session = msg.session;
    setStatus(`connected as ${msg.name}`);
  } else if (msg.type === "history") {
    for (const line of msg.lines) {
      renderLine({ ...line, final: true, tail: "", participant: null });
    }
  } else if (msg.type === "caption") {
    renderLine(msg);
    if (msg.participant === state.participant) showLag(msg.lag);
  } else if (msg.type === "participants") {
    const box = $("participants");
    box.replaceChildren(...msg.participants.map((p) => {
      const el = document.createElement("span");
      el.className = `who c${p.color}`;
      el.textContent = p.name + (p.id === state.participant ? " (you)" : "");
      return el;
    }));
  } else if (msg.type === "translation") {
    state.translation = msg;
    showTranslationNotice();
  } else if (msg.type === "error") {
    showError(msg.message);
  }
}

// Says so when this page reads a language the server cannot translate into now.
function showTranslationNotice() {
  const el = $("translation-notice");
  const current = state.translation.state || "off";
  let text = "";
  if ($("read").value && state.pc) {
    const why = current.replace(/^[a-z]+: /, "");
    if (current.startsWith("unavailable")) text = `Translation is unavailable: ${why}. Captions are shown as spoken.`;
    else if (current.startsWith("failing")) text = `Translation is failing: ${why}. Captions are shown as spoken until it works again.`;
    else if ((state.translation.notes || {})[$("read").value]) text = `Note: ${state.translation.notes[$("read").value]}.`;
  }
  el.textContent = text;
  el.hidden = !text;
}

function renderLine(msg) {
  let el = state.lines.get(msg.segment_id);
  if (msg.translated && msg.translated.length && !msg.final) {
    // A provisional translation of the open line's words so far (msg.text): the line keeps
    // its own state; the page shows this until the final's translation comes.
    if (el && !el.classList.contains("final")) {
      el.caption.provisional = { text: msg.text, translations: msg.translations || {} };
      showLine(el);
    }
    return;
  }
  if (msg.final && !msg.text && !msg.tail) {
    // A final with no words: an interim heard nothing after all, or a second hearing
    // retracted the line (a word's tail heard again on its own).
    if (el) {
      const after = el.nextElementSibling;
      el.remove();
      state.lines.delete(msg.segment_id);
      if (after) markContinued(after);
    }
    return;
  }
  const box = $("transcript");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  if (!el) {
    el = document.createElement("div");
    el.className = `line c${msg.color}`;
    el.dataset.start = msg.start;
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = msg.speaker;
    el.append(who, document.createElement("span"), " ", document.createElement("span"));
    el.children[1].className = "text";
    el.children[2].className = "tail";
    state.lines.set(msg.segment_id, el);
    box.append(el);
    $("empty").hidden = true;
  }
  // A voice label can settle after the first interim of its line.
  el.querySelector(".speaker").textContent = msg.speaker;
  markContinued(el);
  if (el.nextElementSibling) markContinued(el.nextElementSibling);
  // Every update carries the segment's translations so far (a revised final: none yet).
  const provisional = !msg.final && el.caption ? el.caption.provisional : null;
  el.caption = {
    text: msg.text, tail: msg.tail || "", language: msg.language, translations: msg.translations || {}, provisional,
  };
  showLine(el);
  el.classList.toggle("final", !!msg.final);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// A line by the speaker of the line before it shows no name of its own (its colour says it).
function markContinued(el) {
  const before = el.previousElementSibling;
  el.classList.toggle("continued", !!before &&
    before.querySelector(".speaker").textContent === el.querySelector(".speaker").textContent);
}

// A line in the language this page reads where a translation exists; as spoken until then.
// An open line with a provisional translation of its first words shows that, then the words
// after them as spoken.
function showLine(el) {
  const c = el.caption;
  const reads = $("read").value;
  let translated = "", rest = c.tail, partly = false;
  if (reads && c.language !== reads) {
    const early = c.provisional;
    if (c.translations[reads]) {
      translated = c.translations[reads];
      rest = "";
    } else if (early && early.translations[reads] && c.text.startsWith(early.text)) {
      translated = early.translations[reads];
      rest = [c.text.slice(early.text.length), c.tail].join(" ").trim();
      partly = true;
    }
  }
  el.querySelector(".text").textContent = translated || c.text;
  el.querySelector(".tail").textContent = rest;
  el.classList.toggle("translated", !!translated && !partly);
  el.classList.toggle("partly-translated", partly);
  el.title = translated ? [c.text, c.tail].join(" ").trim() : "";
  el.lang = translated ? reads : c.language || "";
}

function showLag(lag) {
  const el = $("lag");
  el.textContent = `lag ${lag.toFixed(1)} s`;
  el.className = "lag " + (lag < 2 ? "good" : lag < 5 ? "slow" : "bad");
}

$("language").addEventListener("change", () => {
  if (state.channel && state.channel.readyState === "open") {
    state.channel.send(JSON.stringify({ type: "set_language", language: $("language").value }));
  }
});

$("read").addEventListener("change", () => {
  for (const el of state.lines.values()) showLine(el);
  if (state.channel && state.channel.readyState === "open") {
    const reads = $("read").value;
    state.channel.send(JSON.stringify({ type: "set_translation", languages: reads ? [reads] : [] }));
    rememberAddress();
  }
  showTranslationNotice();
});

// Saves what `url` answers as `filename` (or shows the server's error in `errorEl`).
async function download(url, filename, errorEl = $("error")) {
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) { errorEl.textContent = await errorText(response); return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  link.click();
  URL.revokeObjectURL(link.href);
}

for (const button of document.querySelectorAll("footer button[data-format]")) {
  button.addEventListener("click", () => {
    const fmt = button.dataset.format;
    const sid = state.session || $("session").value;
    download(`/sessions/${encodeURIComponent(sid)}/transcript?format=${fmt}`, `roomscribe-${sid}.${fmt}`);
  });
}

// -- caption size (kept in localStorage) ------------------------------------------------------
const CAPTION_SIZES = [18, 20, 24, 28, 32, 38, 44, 52, 64]; // px
const DEFAULT_CAPTION_SIZE = 28;

function captionSize() {
  const kept = Number(localStorage.getItem("roomscribe-caption-size"));
  return CAPTION_SIZES.includes(kept) ? kept : DEFAULT_CAPTION_SIZE;
}

function showCaptionSize(px) {
  $("transcript").style.setProperty("--caption-size", `${px}px`);
  $("caption-size").textContent = `${px} px`;
  $("caption-smaller").disabled = px === CAPTION_SIZES[0];
  $("caption-larger").disabled = px === CAPTION_SIZES[CAPTION_SIZES.length - 1];
}

function stepCaptionSize(step) {
  const at = CAPTION_SIZES.indexOf(captionSize());
  const px = CAPTION_SIZES[Math.min(CAPTION_SIZES.length - 1, Math.max(0, at + step))];
  localStorage.setItem("roomscribe-caption-size", String(px));
  showCaptionSize(px);
}

showCaptionSize(captionSize());
$("caption-smaller").addEventListener("click", () => stepCaptionSize(-1));
$("caption-larger").addEventListener("click", () => stepCaptionSize(1));

// -- keys: Space starts and stops, + and - size the captions, wherever the focus is not in a
// field (and not on a control, whose own Space is its click) -------------------------------
function typingIn(el) {
  return !!el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
}

document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || typingIn(e.target)) return;
  if (e.key === " ") {
    if (e.target.closest && e.target.closest("button, a[href], summary, [role=button]")) return;
    e.preventDefault(); // not a page scroll
    if (!e.repeat) toggleRecording();
  } else if (e.key === "+" || e.key === "=") {
    stepCaptionSize(1);
  } else if (e.key === "-" || e.key === "_") {
    stepCaptionSize(-1);
  }
});

// -- the session link ---------------------------------------------------------------------
$("copy-share").addEventListener("click", async () => {
  const button = $("copy-share");
  try {
    await navigator.clipboard.writeText($("share").href);
    button.textContent = "Copied ✓";
  } catch {
    getSelection().selectAllChildren($("share")); // copy it by hand
    button.textContent = "Selected: copy it";
  }
  setTimeout(() => { button.textContent = "Copy link"; }, 2000);
});

// -- past meetings (the key's tenant's, newest first) ---------------------------------------
const clock = (t) => {
  const s = Math.max(0, Math.floor(t));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

async function listMeetings() {
  const list = $("meeting-list");
  const response = await fetch("/meetings?limit=50", { headers: authHeaders() });
  if (!response.ok) { showError(await errorText(response)); return; }
  const { meetings } = await response.json();
  list.replaceChildren();
  if (!meetings.length) {
    const empty = document.createElement("li");
    empty.textContent = "No meetings yet: captioned sessions, uploads and rooms appear here.";
    list.append(empty);
  }
  for (const meeting of meetings) {
    const item = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "meeting";
    open.dataset.meeting = meeting.id;
    const when = new Date(meeting.started_at * 1000).toLocaleString();
    open.textContent = `${meeting.title || meeting.id} · ${meeting.source} · ${when} · ${meeting.segments_count} lines`;
    open.addEventListener("click", () => openMeeting(meeting.id));
    item.append(open);
    list.append(item);
  }
}

async function openMeeting(id) {
  const response = await fetch(`/meetings/${encodeURIComponent(id)}`, { headers: authHeaders() });
  if (!response.ok) { showError(await errorText(response)); return; }
  const meeting = await response.json();
  $("meeting-view").hidden = false;
  $("meeting-view").dataset.meeting = id;
  $("meeting-title").textContent = meeting.title || meeting.id;
  $("meeting-summary").textContent =
    `${meeting.total_segments} lines, ${meeting.total_speakers} speakers, ${clock(meeting.duration)}` +
    (meeting.language ? `, ${meeting.language}` : "");
  const lines = $("meeting-lines");
  lines.replaceChildren();
  for (const segment of meeting.segments) {
    const line = document.createElement("p");
    line.className = "line final";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = clock(segment.start);
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = segment.label;
    const text = document.createElement("span");
    text.className = "text";
    const reads = $("read").value;
    text.textContent = (reads && segment.translations && segment.translations[reads]) || segment.text;
    line.append(time, who, text);
    lines.append(line);
  }
}

$("meetings").addEventListener("toggle", () => { if ($("meetings").open) listMeetings(); });
for (const button of document.querySelectorAll("button[data-meeting-format]")) {
  button.addEventListener("click", () => {
    const id = $("meeting-view").dataset.meeting;
    const fmt = button.dataset.meetingFormat;
    download(`/meetings/${encodeURIComponent(id)}/transcript?format=${fmt}`, `${id}.${fmt}`);
  });
}

setPhase("idle");
$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
if (params.get("autostart") === "1") start();
