// The caption page on livekit-client (index.html explains what arrives and what it shows).
import { ConnectionState, Room, RoomEvent } from "livekit-client";

const CAPTIONS_TOPIC = "lk.transcription";
const CONTROL_TOPIC = "roomscribe.control";
const KEEP_SEGMENTS = 500; // translations come after their final: remember the recent segments

const $ = (id) => document.getElementById(id);
const room = new Room();
const state = {
  segments: new Map(), // lk.transcribed_track_id + "/" + the caption's lk.segment_id -> segment
  translation: { state: "off", languages: [] }, // from the caption bot's attributes
  sent: [], // every control message the page sent (or would have, while not connected)
};

// ---- Captions ------------------------------------------------------------------------------

function participantBox(identity) {
  const boxes = $("captions").children;
  let box = [...boxes].find((el) => el.dataset.participant === identity);
  if (!box) {
    box = document.createElement("section");
    box.className = "participant";
    box.dataset.participant = identity;
    box.append(element("h3", "", identity));
    $("captions").append(box);
  }
  return box;
}

// The line of a caption segment: a caption's own lk.segment_id, a translation's
// roomscribe.caption_segment_id (a translation's lk.segment_id is its own, one per language).
function segmentOf(identity, attributes) {
  const isTranslation = "roomscribe.translation_of" in attributes;
  const id = attributes[isTranslation ? "roomscribe.caption_segment_id" : "lk.segment_id"];
  const key = `${attributes["lk.transcribed_track_id"] || identity}/${id}`;
  let segment = state.segments.get(key);
  if (!segment) {
    segment = { el: element("div", "segment"), text: "", final: false, language: "", voice: "", translations: {} };
    segment.el.dataset.segment = id;
    participantBox(identity).append(segment.el);
    state.segments.set(key, segment);
    if (state.segments.size > KEEP_SEGMENTS) state.segments.delete(state.segments.keys().next().value);
  }
  return segment;
}

// What a text stream on "lk.transcription" says: a caption (an interim replaced in place until
// its final) or a translation of one (roomscribe.translation_of; its caption's segment in
// roomscribe.caption_segment_id). The stream handler below calls this with what it read; tests
// call it directly.
function handleCaption(identity, attributes, text) {
  const segment = segmentOf(identity, attributes);
  const final = attributes["lk.transcription_final"] === "true";
  if ("roomscribe.translation_of" in attributes) {
    // The same segment in another language. Not final: a provisional translation of a long
    // sentence's first clauses, shown until the caption is final (its final translation follows).
    if (final || !segment.final) segment.translations[attributes["roomscribe.language"]] = { text, final };
  } else {
    // A revised final replaces the final, and its translations (new ones follow).
    if (segment.final && text !== segment.text) segment.translations = {};
    if (final) {
      for (const [language, t] of Object.entries(segment.translations)) {
        if (!t.final) delete segment.translations[language];
      }
    }
    Object.assign(segment, { text, final, language: attributes["roomscribe.language"] || "" });
    segment.voice = attributes["roomscribe.speaker"] || ""; // a voice in a track several people share
  }
  render(segment);
  window.scrollTo(0, document.body.scrollHeight);
}

// A line: the voice label, the caption, and its translations; the one in the language read
// is shown under the caption (none when the caption is already in that language).
function render(segment) {
  const reads = $("read").value;
  const shown = reads && segment.language !== reads ? segment.translations[reads] : undefined;
  const children = [];
  if (segment.voice) children.push(element("span", "voice", segment.voice));
  children.push(element("span", "text", segment.text));
  for (const [language, t] of Object.entries(segment.translations)) {
    const line = element("div", "translation", t.text);
    Object.assign(line.dataset, { language, final: String(t.final) });
    line.hidden = t !== shown;
    children.push(line);
  }
  segment.el.replaceChildren(...children); // the same element: a line keeps its place
  segment.el.dataset.final = String(segment.final);
  segment.el.classList.toggle("translated", Boolean(shown));
}

function element(tag, className, text = "") {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = text;
  return el;
}

room.registerTextStreamHandler(CAPTIONS_TOPIC, async (reader, participantInfo) => {
  const attributes = reader.info.attributes || {};
  handleCaption(participantInfo.identity, attributes, await reader.readAll());
});

// ---- The caption bot's state ---------------------------------------------------------------

function botAttributes(attributes) {
  if ("roomscribe.captions" in attributes) {
    $("state").textContent = attributes["roomscribe.captions"] === "paused" ? "captions paused" : "";
  }
  if ("roomscribe.translation" in attributes) {
    const translation = state.translation;
    translation.state = attributes["roomscribe.translation"] || "off";
    translation.languages = (attributes["roomscribe.translation_languages"] || "").split(",").filter(Boolean);
    for (const code of translation.languages) addReadOption(code);
    const problem = /^(failing|unavailable)/.test(translation.state);
    const note = attributes["roomscribe.translation_note"] || ""; // languages the model is weak in
    $("translation-state").textContent = problem ? `translation ${translation.state} (captions shown as spoken)` : note;
  }
}

room.on(RoomEvent.ParticipantAttributesChanged, (changed, participant) => {
  botAttributes(participant.attributes || changed);
});
room.on(RoomEvent.ParticipantConnected, (participant) => botAttributes(participant.attributes || {}));

// ---- Controls ------------------------------------------------------------------------------

function control(message) {
  state.sent.push(message);
  if (room.state !== ConnectionState.Connected) return;
  const data = new TextEncoder().encode(JSON.stringify(message));
  room.localParticipant.publishData(data, { reliable: true, topic: CONTROL_TOPIC });
}

function addReadOption(code) {
  const select = $("read");
  if (![...select.options].some((o) => o.value === code)) select.add(new Option(code, code));
}

function showAll() {
  for (const segment of state.segments.values()) render(segment);
}

$("read").onchange = showAll;
$("add-read-button").onclick = () => {
  const code = $("add-read").value.trim();
  if (!code) return;
  // The room's languages are shared: ask for all of them plus this one.
  control({ type: "set_translation", languages: [...new Set([...state.translation.languages, code])] });
  addReadOption(code);
  $("read").value = code;
  showAll();
};
$("pause").onclick = () => control({ type: "pause" });
$("resume").onclick = () => control({ type: "resume" });
$("set-lang").onclick = () =>
  control({ type: "set_language", participant: $("lang-who").value, language: $("lang").value || null });

// ---- Joining -------------------------------------------------------------------------------

function showConnection(text, kind = text) {
  $("connection").textContent = text;
  $("connection").dataset.state = kind;
  const connected = room.state === ConnectionState.Connected;
  for (const id of ["pause", "resume", "set-lang", "add-read-button"]) $(id).disabled = !connected;
  $("join-button").disabled = room.state !== ConnectionState.Disconnected;
}

room.on(RoomEvent.ConnectionStateChanged, (s) => showConnection(s));

async function join() {
  try {
    await room.connect($("url").value.trim(), $("token").value.trim());
    for (const participant of room.remoteParticipants.values()) botAttributes(participant.attributes || {});
    if ($("mic").checked) await room.localParticipant.setMicrophoneEnabled(true);
  } catch (error) {
    showConnection(`error: ${error.message || error}`, "error");
  }
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  join();
});
// Talk: publish (or mute) the microphone; before joining, it says whether to publish on join.
$("mic").onchange = () => {
  if (room.state === ConnectionState.Connected) {
    room.localParticipant
      .setMicrophoneEnabled($("mic").checked)
      .catch((error) => showConnection(`error: ${error.message}`, "error"));
  }
};

// A link that joins directly: #url=…&token=…(&mic=1).
function joinLink() {
  const hash = new URLSearchParams({ url: $("url").value.trim(), token: $("token").value.trim() });
  if ($("mic").checked) hash.set("mic", "1");
  return `${location.href.split("#")[0]}#${hash}`;
}

$("copy-link").onclick = async () => {
  const link = joinLink();
  history.replaceState(null, "", link); // the address bar holds it too
  try {
    await navigator.clipboard.writeText(link);
    $("copy-link").textContent = "Copied";
  } catch {
    $("copy-link").textContent = "In the address bar";
  }
  setTimeout(() => ($("copy-link").textContent = "Copy link"), 2000);
};

const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("url") && hash.get("token")) {
  $("url").value = hash.get("url");
  $("token").value = hash.get("token");
  $("mic").checked = hash.get("mic") === "1";
  join();
}

window.roomscribeExample = { room, handleCaption, state };
