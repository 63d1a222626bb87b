// The roomscribe caption page: the microphone goes to the server over WebRTC (WHIP-style
// offer/answer on /whip); captions come back on the data channel. Interims update in place,
// finals stay. Each page reads captions in one language ("Read", or &read=ko): the server
// translates the session's finals into every language its pages read, and a line shows its
// translation once it arrives, the words as spoken until then. window.roomscribe keeps a log
// of what arrived when (for measurements).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  pc: null, channel: null, participant: null, session: null, lines: new Map(), stream: null,
  translation: { state: "off", languages: [] },
};
window.roomscribe = { log: [], captureStartedAt: null, state };

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

function updateShare() {
  const url = new URL(location.href);
  url.search = "";
  url.searchParams.set("session", $("session").value);
  $("share").href = url.toString();
  $("share").textContent = url.toString();
}

function setStatus(text) { $("status").textContent = text; }
function showError(text) { $("error").textContent = text || ""; }

async function start() {
  showError("");
  $("start").disabled = true;
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: true, channelCount: 1 },
    });
    window.roomscribe.captureStartedAt = Date.now();
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
    $("stop").disabled = false;
    setStatus("connecting…");
  } catch (err) {
    showError(String(err.message || err));
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
  $("start").disabled = false;
  $("stop").disabled = true;
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
  }
  // A voice label can settle after the first interim of its line.
  el.querySelector(".speaker").textContent = msg.speaker;
  // Every update carries the segment's translations so far (a revised final: none yet).
  const provisional = !msg.final && el.caption ? el.caption.provisional : null;
  el.caption = {
    text: msg.text, tail: msg.tail || "", language: msg.language, translations: msg.translations || {}, provisional,
  };
  showLine(el);
  el.classList.toggle("final", !!msg.final);
  if (atBottom) box.scrollTop = box.scrollHeight;
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

for (const button of document.querySelectorAll("footer button[data-format]")) {
  button.addEventListener("click", async () => {
    const fmt = button.dataset.format;
    const sid = state.session || $("session").value;
    const response = await fetch(`/sessions/${encodeURIComponent(sid)}/transcript?format=${fmt}`,
      { headers: authHeaders() });
    if (!response.ok) { showError(await errorText(response)); return; }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `roomscribe-${sid}.${fmt}`;
    link.click();
    URL.revokeObjectURL(link.href);
  });
}

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
  button.addEventListener("click", async () => {
    const id = $("meeting-view").dataset.meeting;
    const fmt = button.dataset.meetingFormat;
    const response = await fetch(`/meetings/${encodeURIComponent(id)}/transcript?format=${fmt}`,
      { headers: authHeaders() });
    if (!response.ok) { showError(await errorText(response)); return; }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `${id}.${fmt}`;
    link.click();
    URL.revokeObjectURL(link.href);
  });
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
if (params.get("autostart") === "1") start();
