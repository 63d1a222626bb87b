// Transcribing a recording: a file dropped anywhere on the page (or chosen in #file-drop) goes
// to the server's POST /transcribe with this page's settings (language, captions task,
// vocabulary, several people; the language the page reads as translate_to). An
// XMLHttpRequest, for the upload's progress; then the answer's progress lines (how much of
// the audio is transcribed, `progress=true`) and its result, shown as segments with their
// times, speakers and translations. A refused file shows the server's own message.
// window.roomscribe.files.log keeps the phases (for tests and measurements).
"use strict";

(() => {
  const files = { log: [], xhr: null, phase: "none" };
  window.roomscribe.files = files;

  function setPhase(phase, detail = {}) {
    files.phase = phase;
    files.log.push({ at: Date.now(), phase, ...detail });
    $("files").dataset.state = phase;
  }

  // The bar at `fraction` (null: busy, no measure yet) and what is happening, in words.
  function setProgress(fraction, text) {
    const bar = $("file-progress");
    if (fraction === null) bar.removeAttribute("value");
    else bar.value = Math.min(1, Math.max(0, fraction));
    $("file-state").textContent = text;
  }

  function transcribeFile(file, { translate = true } = {}) {
    if (files.xhr) files.xhr.abort();
    files.xhr = null;
    $("file-error").textContent = "";
    if (translate) $("file-notice").hidden = true;
    $("file-result").hidden = true;
    $("file-placeholder").hidden = true;
    $("file-job").hidden = false;
    $("file-name").textContent = file.name;
    setPhase("uploading", { name: file.name, size: file.size });
    setProgress(0, "Uploading… 0%");

    const reads = translate ? $("read").value : "";
    const form = new FormData();
    form.append("file", file, file.name);
    if ($("language").value && $("language").value !== "auto") form.append("language", $("language").value);
    form.append("task", $("task").value);
    if ($("prompt").value.trim()) form.append("prompt", $("prompt").value.trim());
    if ($("diarize").checked) form.append("diarize", "true");
    if (reads) form.append("translate_to", reads);

    const xhr = new XMLHttpRequest();
    files.xhr = xhr;
    xhr.open("POST", "/transcribe?progress=true");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable || files.xhr !== xhr) return;
      setProgress(e.loaded / e.total, `Uploading… ${Math.round((100 * e.loaded) / e.total)}%`);
    };
    xhr.upload.onload = () => {
      if (files.xhr !== xhr) return;
      setPhase("transcribing");
      setProgress(null, "Transcribing…");
    };

    let read = 0;
    let ended = false;
    const readLines = () => {
      if (xhr.status !== 200 || files.xhr !== xhr) return;
      const text = xhr.responseText;
      for (let end = text.indexOf("\n", read); end >= 0; end = text.indexOf("\n", read)) {
        const line = text.slice(read, end).trim();
        read = end + 1;
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.type === "progress") {
          if (files.phase !== "transcribing") setPhase("transcribing");
          const total = msg.total || 0;
          setProgress(total ? msg.done / total : null,
            `Transcribing… ${clock(msg.done)} of ${clock(total)}`);
        } else if (msg.type === "result") {
          ended = true;
          showResult(file, msg);
        } else if (msg.type === "error") {
          ended = true;
          refused(file, msg.error.code, msg.error.message, reads);
        }
      }
    };
    xhr.onprogress = readLines;
    xhr.onload = () => {
      if (files.xhr !== xhr) return;
      if (xhr.status !== 200) {
        files.xhr = null;
        refused(file, xhr.status, messageOf(xhr), reads);
        return;
      }
      readLines();
      files.xhr = null;
      if (!ended) failed(`The server's answer about ${file.name} ended early: try again.`);
    };
    xhr.onerror = () => {
      if (files.xhr !== xhr) return;
      files.xhr = null;
      failed(`The upload of ${file.name} failed: the server could not be reached.`);
    };
    xhr.send(form);
  }

  function messageOf(xhr) {
    try {
      return JSON.parse(xhr.responseText).error.message;
    } catch {
      return `${xhr.status} ${xhr.statusText}`.trim();
    }
  }

  // A translation the server cannot make is no reason to lose the transcript: the file goes
  // again without it, and the page says why. Anything else refused is the file's error.
  function refused(file, code, message, reads) {
    const translation = reads && (code === 501 || /^translate_to|translat/i.test(message)) && !/diariz/i.test(message);
    if (translation) {
      $("file-notice").textContent = `Not translated into ${reads}: ${message}. The transcript is shown as spoken.`;
      $("file-notice").hidden = false;
      transcribeFile(file, { translate: false });
      return;
    }
    failed(`Could not transcribe ${file.name}: ${message}`, code);
  }

  function failed(text, code = null) {
    setPhase("error", { message: text, code });
    $("file-job").hidden = true;
    $("file-error").textContent = text;
  }

  function languageName(code) {
    try {
      const name = new Intl.DisplayNames([navigator.language || "en"], { type: "language" }).of(code);
      return name && name !== code ? `${name} (${code})` : code;
    } catch {
      return code;
    }
  }

  function showResult(file, doc) {
    const segments = doc.segments || [];
    setPhase("done", { segments: segments.length });
    const took = typeof doc.processing_time === "number" ? ` in ${doc.processing_time.toFixed(1)} s` : "";
    setProgress(1, `Done${took}`);
    const parts = [`${clock(doc.duration || 0)} of audio`];
    if (doc.language) parts.push(languageName(doc.language));
    parts.push(`${segments.length} segment${segments.length === 1 ? "" : "s"}`);
    if (doc.has_diarization) parts.push(`${doc.total_speakers} speaker${doc.total_speakers === 1 ? "" : "s"}`);
    $("file-summary").textContent = parts.join(" · ");

    const reads = $("read").value;
    const colors = new Map();
    $("file-segments").replaceChildren(...segments.map((segment) => {
      const item = document.createElement("li");
      item.className = "segment";
      const time = document.createElement("span");
      time.className = "time";
      time.textContent = `${clock(segment.start)}–${clock(segment.end)}`;
      item.append(time);
      const body = document.createElement("div");
      body.className = "body";
      if (segment.speaker) {
        if (!colors.has(segment.speaker)) colors.set(segment.speaker, colors.size % 8);
        item.classList.add(`c${colors.get(segment.speaker)}`);
        const who = document.createElement("span");
        who.className = "speaker";
        who.textContent = segment.speaker;
        body.append(who);
      }
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = segment.text.trim();
      text.lang = doc.language || "";
      body.append(text);
      const translated = reads && segment.translations && segment.translations[reads];
      if (translated && translated !== segment.text) {
        const translation = document.createElement("span");
        translation.className = "translation";
        translation.lang = reads;
        translation.textContent = translated;
        body.append(translation);
      }
      item.append(body);
      return item;
    }));
    if (!segments.length) {
      const none = document.createElement("li");
      none.className = "segment none";
      none.textContent = "No speech found in this file.";
      $("file-segments").append(none);
    }
    $("file-downloads").hidden = !doc.meeting_id;
    $("file-downloads").dataset.meeting = doc.meeting_id || "";
    $("file-result").hidden = false;
    if ($("meetings").open) listMeetings();
  }

  for (const button of document.querySelectorAll("button[data-file-format]")) {
    button.addEventListener("click", () => {
      const id = $("file-downloads").dataset.meeting;
      const fmt = button.dataset.fileFormat;
      download(`/meetings/${encodeURIComponent(id)}/transcript?format=${fmt}`, `${id}.${fmt}`, $("file-error"));
    });
  }

  $("file-input").addEventListener("change", () => {
    const file = $("file-input").files[0];
    if (file) transcribeFile(file);
    $("file-input").value = ""; // the same file again is a new choice
  });

  // A file dragged over the page: the whole page is the drop zone.
  const carriesFiles = (e) => !!e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  let depth = 0;
  document.addEventListener("dragenter", (e) => {
    if (!carriesFiles(e)) return;
    depth += 1;
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragleave", (e) => {
    if (!carriesFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) document.body.classList.remove("dragging");
  });
  document.addEventListener("dragover", (e) => {
    if (!carriesFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (e) => {
    if (!carriesFiles(e)) return;
    e.preventDefault();
    depth = 0;
    document.body.classList.remove("dragging");
    const file = e.dataTransfer.files[0];
    if (!file) return;
    transcribeFile(file);
    $("files").scrollIntoView({ block: "nearest" });
  });

  files.transcribe = transcribeFile;
})();
