// roomscribe captions with components-react: <LiveKitRoom> joins (and publishes the microphone
// with audio), useTranscriptions() collects the caption streams, and the page shows one line per
// caption in a box per participant, with the caption's translation into the language read under it.
//
// useTranscriptions() keeps one entry per lk.segment_id with the latest stream's text and
// attributes, so a caption's interim is replaced in place by its final. A translation has its own
// segment id (one per caption and language): it never replaces its caption, and a provisional
// translation is replaced by the final one into the same language. Translations carry
// roomscribe.translation_of (the language spoken) and name their caption in
// roomscribe.caption_segment_id.
import { LiveKitRoom, useConnectionState, useRemoteParticipants, useTranscriptions } from "@livekit/components-react";
import { useCallback, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

function Captions() {
  const transcriptions = useTranscriptions(); // streams on lk.transcription, while connected
  const bot = useRemoteParticipants().find((p) => "roomscribe.captions" in p.attributes);
  const [read, setRead] = useState("");
  const languages = new Set((bot?.attributes["roomscribe.translation_languages"] ?? "").split(",").filter(Boolean));
  const translation = bot?.attributes["roomscribe.translation"] ?? "off";
  const problem = /^(failing|unavailable)/.test(translation);

  const byParticipant = new Map(); // identity -> that participant's captions, in order
  const translations = new Map(); // a caption's lk.segment_id -> { language: translation }
  for (const t of transcriptions) {
    const a = t.streamInfo.attributes ?? {};
    if ("roomscribe.translation_of" in a) {
      const caption = a["roomscribe.caption_segment_id"];
      translations.set(caption, { ...translations.get(caption), [a["roomscribe.language"]]: t });
    } else {
      const identity = t.participantInfo.identity;
      byParticipant.set(identity, [...(byParticipant.get(identity) ?? []), t]);
    }
  }
  useEffect(() => {
    window.scrollTo(0, document.body.scrollHeight);
  }, [transcriptions]);
  return (
    <>
      <div className="controls">
        <label>
          Read{" "}
          <select id="read" value={read} onChange={(e) => setRead(e.target.value)}>
            <option value="">Original</option>
            {[...languages].map((code) => (
              <option key={code}>{code}</option>
            ))}
          </select>
        </label>
        <span id="state">{bot?.attributes["roomscribe.captions"] === "paused" ? "captions paused" : ""}</span>
        <span id="translation-state">
          {problem
            ? `translation ${translation} (captions shown as spoken)`
            : bot?.attributes["roomscribe.translation_note"]}
        </span>
      </div>
      <div id="captions">
        {[...byParticipant].map(([identity, captions]) => (
          <section className="participant" data-participant={identity} key={identity}>
            <h3>{identity}</h3>
            {captions.map((caption) => {
              const id = caption.streamInfo.attributes["lk.segment_id"];
              return <Caption key={id} caption={caption} translations={translations.get(id) ?? {}} read={read} />;
            })}
          </section>
        ))}
      </div>
    </>
  );
}

const isFinal = (t) => t.streamInfo.attributes["lk.transcription_final"] === "true";

function Caption({ caption, translations, read }) {
  const a = caption.streamInfo.attributes;
  const final = isFinal(caption);
  // A provisional translation (a long sentence's first clauses) shows until the caption is
  // final, then only the final ones (they follow it).
  const kept = Object.fromEntries(Object.entries(translations).filter(([, t]) => isFinal(t) || !final));
  const shown = read && a["roomscribe.language"] !== read ? kept[read] : undefined;
  return (
    <div
      className={shown ? "segment translated" : "segment"}
      data-segment={a["lk.segment_id"]}
      data-final={String(final)}
    >
      {a["roomscribe.speaker"] && <span className="voice">{a["roomscribe.speaker"]}</span>}
      <span className="text">{caption.text}</span>
      {Object.entries(kept).map(([language, t]) => (
        <div
          key={language}
          className="translation"
          data-language={language}
          data-final={String(isFinal(t))}
          hidden={t !== shown}
        >
          {t.text}
        </div>
      ))}
    </div>
  );
}

function Connection({ error }) {
  const state = useConnectionState();
  const failed = error && state === "disconnected";
  return (
    <span id="connection" data-state={failed ? "error" : state}>
      {failed ? `error: ${error}` : state}
    </span>
  );
}

// The form, filled (and joined) from the hash: react.html#url=ws://…&token=…&mic=1. Each Join
// is a new <LiveKitRoom> (its key), so pressing it again after an error tries again.
function App() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const [join, setJoin] = useState(() =>
    hash.get("url") && hash.get("token")
      ? { url: hash.get("url"), token: hash.get("token"), mic: hash.get("mic") === "1", n: 1 }
      : null,
  );
  const [error, setError] = useState("");
  const onError = useCallback((e) => setError(e.message), []); // stable: a new one would reconnect
  const submit = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    setError("");
    setJoin({
      url: form.get("url").trim(),
      token: form.get("token").trim(),
      mic: form.get("mic") === "on",
      n: (join?.n ?? 0) + 1,
    });
  };
  return (
    <LiveKitRoom
      key={join?.n}
      serverUrl={join?.url}
      token={join?.token}
      connect={Boolean(join)}
      audio={Boolean(join?.mic)}
      onError={onError}
    >
      <header>
        <h1>Live captions · React</h1>
        <Connection error={error} />
      </header>
      <form onSubmit={submit}>
        <input id="url" name="url" defaultValue={join?.url ?? "ws://127.0.0.1:7880"} aria-label="server URL" />
        <input id="token" name="token" defaultValue={join?.token} placeholder="join token" aria-label="join token" />
        <button>Join</button>
        <label>
          <input type="checkbox" id="mic" name="mic" defaultChecked={join?.mic} /> talk
        </label>
      </form>
      <Captions />
    </LiveKitRoom>
  );
}

createRoot(document.getElementById("root")).render(<App />);
