// The widgets' front-end: OperationWidget (one operation, live) and OperationsTable (many).
// One plain ES module for anywidget, no build step; each widget's model says which view it is
// (_view). Server text (names, messages, metadata) only ever goes in through textContent.

const CHECK_EVERY_MS = 2500;
const PING_AFTER_MS = 8000; // quiet this long: ask
// A new view with no sign of life this long has no kernel behind it. Longer than the Python
// side's HEARTBEAT (10 s) plus a check step: a kernel blocked in the next cell answers no ping,
// and a widget with no progress to report only hears the heartbeat.
const FIRST_ANSWER_MS = 12500;
const SILENCE_MS = 35000; // three missed heartbeats (the kernel side beats every 10 s)
// Search waits for this pause in typing: a search of 100,000 rows takes the kernel 50-100 ms, so a
// result shows about 110-160 ms after the last keystroke (tests/browser/test_operations_table.py reads it).
// Keys further apart send a search each; at this pause at most about one is still in the kernel.
const SEARCH_PAUSE_MS = 60;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The same text as Python's format_duration (ops_widgets/_text.py), so repr() and the screen agree:
// "1h 05m", "1m 12s", "7s". tests/test_frontend.py compares the two on the same inputs.
const MAX_SECONDS = 2 ** 53; // past this a number is no exact integer: digits would drift from Python's

function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  const s = Math.min(MAX_SECONDS, Math.max(0, Math.round(seconds))); // half up, as Python does it
  const r = s % 60;
  const m = ((s % 3600) - r) / 60; // exact divisions: no float floor to round the wrong way
  const h = (s - (s % 3600)) / 3600;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(r).padStart(2, "0")}s`;
  return `${r}s`;
}

// Is a kernel behind this view? Any sign of life counts: a pong, or a state update (a running
// OperationWidget gets one from the engine thread at least every HEARTBEAT, even while a cell
// blocks the kernel). "unknown" until the first sign; "false" when none came for a while (a
// notebook reopened with saved widget state, a dead kernel): then nothing may look live.
function liveness(model, onChange, { kernelTraits = [] } = {}) {
  let state = "unknown";
  let seen = 0;
  const set = (value) => {
    if (state !== value) {
      state = value;
      onChange();
    }
  };
  const alive = () => {
    seen = performance.now();
    set("true");
  };
  const ping = () => {
    try {
      model.send({ type: "ping" });
    } catch (err) {
      set("false"); // no comm at all
    }
  };
  const check = () => {
    const now = performance.now();
    if (state === "unknown") {
      if (now - started > FIRST_ANSWER_MS) set("false");
      return;
    }
    const quiet = now - seen;
    if (quiet > SILENCE_MS) set("false");
    if (quiet > PING_AFTER_MS) ping(); // also while "false": a kernel that was only busy comes back
  };
  const onMessage = (msg) => {
    if (msg && (msg.type === "pong" || msg.type === "beat")) alive();
  };
  model.on("msg:custom", onMessage);
  // Only where the view never sets these traits itself is their change news from the kernel.
  for (const trait of kernelTraits) model.on(`change:${trait}`, alive);
  const started = performance.now();
  const every = setInterval(check, CHECK_EVERY_MS);
  const first = setTimeout(ping, 0); // after the caller has finished building its view
  return {
    get: () => state,
    seen: () => seen, // when the last sign of life came (performance.now() time)
    stop: () => {
      clearTimeout(first);
      clearInterval(every);
      model.off("msg:custom", onMessage);
      for (const trait of kernelTraits) model.off(`change:${trait}`, alive);
    },
  };
}

// Tells the kernel whether this view is in front of a person: in the viewport of a visible page.
// (It observes the view's own box: anywidget's host element may have none.)
// While one is, the operation is polled at a watched cadence; the kernel counts views by id.
function reportOnScreen(model, host) {
  const view = Math.random().toString(36).slice(2);
  let inViewport = false;
  let sent = null;
  const send = (value) => {
    if (value === sent) return;
    try {
      model.send({ type: "on_screen", view, value });
      sent = value;
    } catch (err) {
      // no comm yet (or any more): the next look tries again
    }
  };
  const judge = () => send(inViewport && document.visibilityState === "visible");
  const observer = typeof IntersectionObserver === "function"
    ? new IntersectionObserver((entries) => {
      inViewport = entries[entries.length - 1].isIntersecting;
      judge();
    })
    : null;
  if (observer) observer.observe(host);
  document.addEventListener("visibilitychange", judge);
  const again = setInterval(judge, 5000); // a message lost while the comm opened is sent again
  return () => {
    clearInterval(again);
    if (observer) observer.disconnect();
    document.removeEventListener("visibilitychange", judge);
    send(false);
  };
}

// The bar between polls: the last reading moved on at the rate the kernel measured, short of 100
// (only the service says done). The rule of ops_widgets/_progress.py's extrapolate().
function shownProgress(progress, rate, ageSeconds) {
  if (!(rate > 0) || !(ageSeconds > 0)) return progress;
  return Math.max(progress, Math.min(99, progress + rate * ageSeconds));
}

// -- OperationWidget ---------------------------------------------------------------------------

const RUNNING = new Set(["running", "cancelling"]);
// Ended with nothing left to do: a full bar (a filtered video ended too, in its own colour).
const FULL = new Set(["succeeded", "filtered"]);
// How a finished operation's time reads: a result, not a clock.
const ENDED_AFTER = { succeeded: "took", filtered: "took", failed: "failed after", cancelled: "cancelled after" };
// Every trait the view shows; it listens to these (change:<trait>), never to every change.
const OPERATION_TRAITS = [
  "name", "op_id", "kind", "kind_label", "state", "progress", "elapsed", "eta", "eta_is_estimate", "error_code",
  "error_message", "result", "poll_error", "cancel_error", "compact", "polling", "can_cancel", "stopped",
  "progress_rate", "video_count",
];

function button(className, text, label) {
  const b = el("button", className, text);
  b.type = "button";
  if (label) b.setAttribute("aria-label", label);
  return b;
}

// Listen to `traits` (change:<trait> each); calls made within one message are folded into one.
function onTraits(model, traits, fn) {
  let queued = false;
  const run = () => {
    queued = false;
    fn();
  };
  const schedule = () => {
    if (!queued) {
      queued = true;
      queueMicrotask(run);
    }
  };
  for (const trait of traits) model.on(`change:${trait}`, schedule);
  return () => traits.forEach((trait) => model.off(`change:${trait}`, schedule));
}

// The inline "are you sure?" of a cancel, hidden until asked: v.confirm holding v.confirmText,
// v.confirmYes and v.confirmNo (the widget's and the list's).
function confirmBar(v, className, yes, no) {
  v.confirm = el("div", className);
  v.confirm.setAttribute("role", "group");
  v.confirmText = el("span", "opw-confirm-text");
  v.confirmYes = button("opw-confirm-yes", yes);
  v.confirmNo = button("opw-confirm-no", no);
  v.confirm.append(v.confirmText, v.confirmYes, v.confirmNo);
  v.confirm.hidden = true;
}

function operationDom(host) {
  const v = {};
  v.root = el("div", "opw");
  const head = el("div", "opw-head");
  v.kind = el("span", "opw-kind");
  v.id = el("span", "opw-id");
  v.copy = button("opw-copy", "Copy name", "Copy the operation's full name");
  v.badge = el("span", "opw-badge");
  v.badge.setAttribute("role", "status"); // state changes are announced
  v.cancel = button("opw-cancel", "Cancel");
  head.append(v.kind, v.id, v.copy, v.badge, v.cancel);
  confirmBar(v, "opw-confirm", "Yes, cancel it", "Keep it running");
  v.bar = el("div", "opw-bar");
  v.fill = el("div", "opw-fill");
  v.bar.append(v.fill);
  v.bar.setAttribute("role", "progressbar");
  v.bar.setAttribute("aria-valuemin", "0");
  v.bar.setAttribute("aria-valuemax", "100");
  const meta = el("div", "opw-meta");
  v.pct = el("span", "opw-pct");
  v.clock = el("span", "opw-time");
  meta.append(v.pct, v.clock);
  v.error = el("div", "opw-error");
  v.errorMessage = el("span", "opw-error-message");
  v.error.append(v.errorMessage);
  v.result = el("div", "opw-result");
  v.note = el("div", "opw-note");
  v.note.setAttribute("aria-live", "polite");
  v.root.append(head, v.confirm, v.bar, meta, v.error, v.result, v.note);
  host.append(v.root);
  return v;
}

// What the widget may claim: "live" (polled, a kernel answers), "stopped" (nothing polls it any
// more, or no kernel answers, while it has not ended) or "ended".
function operationPhase(model, link) {
  const state = model.get("state");
  if (!RUNNING.has(state)) return { state, running: false, stopped: "" };
  if (link.get() === "false") {
    return { state, running: true, stale: true, stopped: "no kernel answers (it was shut down, or this is a saved view)" };
  }
  const stopped = model.get("stopped") || (model.get("polling") === false ? "nothing polls it any more" : "");
  return { state, running: true, stopped };
}

function renderResult(box, items) {
  box.replaceChildren();
  for (const item of items || []) {
    const row = el("div", "opw-result-item");
    row.append(el("span", "opw-result-label", `${item.label || ""} `));
    // Text only, never a link: an href in older saved state is ignored.
    row.append(el("span", "opw-result-value", item.text || ""));
    box.append(row);
  }
  box.hidden = !box.childElementCount;
}

function renderCancel(v, model, phase, link, asking) {
  // Only where the service can cancel it, and only until it ends. Absent in old saved state: true.
  const cancellable = model.get("can_cancel") !== false;
  v.cancel.hidden = !cancellable || !phase.running;
  const cancelling = phase.state === "cancelling";
  v.cancel.textContent = cancelling ? "Cancelling…" : "Cancel";
  const blocked = cancelling || Boolean(phase.stopped) || link.get() !== "true";
  v.cancel.disabled = blocked || asking;
  v.cancel.title = phase.stopped ? `Stopped: ${phase.stopped}`
    : cancelling ? "A cancel was sent; waiting for the server to confirm it"
    : link.get() === "true" ? "Ask the server to cancel this operation" : "Waiting for the kernel to answer";
  if (v.cancel.hidden || blocked) v.confirm.hidden = true; // nothing left to confirm
}

function clockText(model, phase, dt) {
  const elapsed = model.get("elapsed");
  const has = elapsed !== null && elapsed !== undefined;
  if (!phase.running) return has && ENDED_AFTER[phase.state] ? `${ENDED_AFTER[phase.state]} ${formatDuration(elapsed)}` : "";
  const parts = has ? [`${formatDuration(elapsed + dt)} elapsed`] : [];
  if (phase.stopped) parts.push("clock stopped");
  else if (phase.state === "running") {
    const eta = model.get("eta");
    if (eta === null || eta === undefined) parts.push("time left unknown");
    else parts.push(`${model.get("eta_is_estimate") ? "~" : ""}${formatDuration(Math.max(0, eta - dt))} left`);
  }
  return parts.join(" · ");
}

// The inline confirmation of a cancel, and the copy-name control. `ui.asking`: the confirmation
// is open (its Cancel button is disabled meanwhile); `ui.sent`: a confirmed cancel went to the
// kernel, which has not answered yet (the view reads "cancelling" already, with no ETA).
function wireOperationControls(v, model, update, ui) {
  v.cancel.addEventListener("click", () => {
    if (v.cancel.disabled || v.cancel.hidden) return;
    ui.asking = true;
    v.confirmText.textContent = `Cancel this ${model.get("kind_label") || "operation"} on the server? It cannot be resumed.`;
    v.confirm.hidden = false;
    update();
    v.confirmNo.focus(); // the safe choice has the focus
  });
  v.confirmYes.addEventListener("click", () => {
    v.confirm.hidden = true;
    ui.asking = false;
    ui.sent = true;
    model.send({ type: "cancel" });
    update();
  });
  v.confirmNo.addEventListener("click", () => {
    v.confirm.hidden = true;
    ui.asking = false;
    update();
    v.cancel.focus();
  });
  v.copy.addEventListener("click", () => {
    const done = () => {
      v.copy.textContent = "Copied";
      setTimeout(() => (v.copy.textContent = "Copy name"), 1500);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(model.get("name")).then(done, () => {});
  });
}

// The bar, moved on between polls while live and running at the measured rate (marked as an
// estimate: a lighter fill and "~" before the percentage). ``progressAt``: when the reading came.
function drawOperationBar(v, model, phase, link, progressAt) {
  const { state } = phase;
  const progress = model.get("progress");
  const determinate = progress !== null && progress !== undefined;
  const moving = determinate && state === "running" && !phase.stopped && link.get() === "true";
  const age = (performance.now() - progressAt) / 1000;
  const shown = moving ? shownProgress(progress, model.get("progress_rate"), age) : progress;
  const estimated = moving && shown > progress;
  v.bar.classList.toggle("opw-indeterminate", phase.running && !determinate && !phase.stopped);
  v.bar.classList.toggle("opw-extrapolated", estimated);
  v.fill.style.width = phase.running && !determinate ? "" : `${FULL.has(state) ? 100 : determinate ? shown : 0}%`;
  if (determinate) v.bar.setAttribute("aria-valuenow", String(Math.round(shown * 10) / 10));
  else v.bar.removeAttribute("aria-valuenow");
  v.pct.textContent = determinate
    ? `${estimated ? "~" : ""}${shown.toFixed(shown < 10 ? 1 : 0)}%`
    : phase.running ? "no progress reported" : "";
}

// A finished video plays inline. The kernel downloads it through its client (the key never
// reaches the page) and answers a request with the bytes as a binary buffer: nothing of it is in
// the widget's saved state. Each view asks once the operation has succeeded with videos
// (video_count: video 0, then the others), plays a blob: URL and offers it to save.
// Returns {refresh, stop}; refresh() runs with every update of the view.
function operationVideos(model, root, link) {
  const box = el("div", "opw-videos");
  box.hidden = true;
  root.append(box);
  const asked = new Map(); // index -> its slot
  const urls = [];
  const slot = (index) => {
    if (!asked.has(index)) {
      const node = el("div", "opw-video");
      node.dataset.index = String(index);
      node.dataset.state = "loading";
      node.append(el("span", "opw-video-status", "Fetching the video…"));
      box.append(node);
      asked.set(index, node);
    }
    return asked.get(index);
  };
  const ask = (index) => {
    if (asked.has(index)) return;
    try {
      model.send({ type: "video_request", index });
    } catch (err) {
      return; // no comm (yet): the next refresh asks again
    }
    slot(index);
    box.hidden = false;
  };
  const play = (node, msg, buffer) => {
    const url = URL.createObjectURL(new Blob([buffer], { type: msg.mime || "video/mp4" }));
    urls.push(url);
    const video = el("video", "opw-video-player");
    Object.assign(video, { controls: true, muted: true, loop: true, playsInline: true, preload: "metadata", src: url });
    video.setAttribute("aria-label", `Video ${msg.index + 1} of ${msg.count}`);
    const save = el("a", "opw-video-save", "Save video");
    save.href = url;
    save.download = msg.filename || `video-${msg.index + 1}.mp4`;
    save.title = `Save as ${save.download}`;
    const size = msg.size >= 1e6 ? `${(msg.size / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(msg.size / 1e3))} KB`;
    const bar = el("div", "opw-video-bar");
    bar.append(el("span", "opw-video-label", `video ${msg.index + 1} · ${size}`), save);
    node.replaceChildren(video, bar);
    node.dataset.state = "ready";
  };
  const onMessage = (msg, buffers) => {
    if (!msg || msg.type !== "video_file" || typeof msg.index !== "number") return;
    if (!msg.count) {
      asked.get(msg.index)?.remove(); // nothing to play: the result line says why
      box.hidden = !box.childElementCount;
      return;
    }
    const node = slot(msg.index);
    if (msg.error || !buffers || !buffers.length) {
      node.replaceChildren(el("span", "opw-video-error", msg.error || "No video came with the answer."));
      node.dataset.state = "error";
    } else if (node.dataset.state !== "ready") play(node, msg, buffers[0]);
    for (let i = 1; i < Math.min(msg.count, 16); i += 1) ask(i);
  };
  const refresh = () => {
    if (model.get("video_count") > 0 && model.get("state") === "succeeded" && link.get() !== "false") ask(0);
    for (const node of asked.values()) {
      if (node.dataset.state === "loading" && link.get() === "false") {
        node.firstChild.textContent = "No kernel answers: the video plays while the kernel runs.";
      }
    }
  };
  model.on("msg:custom", onMessage);
  return {
    refresh,
    stop: () => {
      model.off("msg:custom", onMessage);
      urls.forEach((url) => URL.revokeObjectURL(url));
    },
  };
}

function renderOperation({ model, el: host }) {
  const v = operationDom(host);
  let base = performance.now(); // when elapsed/eta were last received
  let progressAt = performance.now(); // when the progress reading was received
  const ui = { asking: false, sent: false };
  const link = liveness(model, () => update(), { kernelTraits: OPERATION_TRAITS });
  const phaseNow = () => {
    const phase = operationPhase(model, link);
    if (ui.sent && phase.state === "running" && !phase.stopped) phase.state = "cancelling";
    return phase;
  };

  function updateClock() {
    const phase = phaseNow();
    drawOperationBar(v, model, phase, link, progressAt);
    // Count on from the last update only while live and running (not while cancelling: no ETA
    // then); freeze at the last update once stopped.
    const until = phase.stopped ? base : link.get() === "true" ? performance.now() : Math.max(base, link.seen());
    v.clock.textContent = clockText(model, phase, phase.running ? Math.max(0, until - base) / 1000 : 0);
  }

  function update() {
    const phase = phaseNow();
    const { state } = phase;
    const progress = model.get("progress");
    const d = v.root.dataset;
    d.state = state;
    d.opId = model.get("op_id");
    d.kind = model.get("kind");
    d.progress = progress === null || progress === undefined ? "" : String(progress);
    d.live = link.get();
    d.polling = String(!phase.stopped || Boolean(phase.stale));
    d.stopped = String(Boolean(phase.stopped));
    v.root.classList.toggle("opw-compact", Boolean(model.get("compact")));
    v.root.title = model.get("name");
    // Kinds and their names live in Python only; an older kernel sends no kind_label.
    v.kind.textContent = model.get("kind_label") || model.get("kind") || "";
    v.id.textContent = model.get("op_id");
    v.badge.textContent = phase.stopped ? "stopped" : state;
    v.badge.classList.toggle("opw-stale", Boolean(phase.stopped));

    v.bar.setAttribute("aria-label", `${model.get("kind_label") || "operation"} progress`);
    drawOperationBar(v, model, phase, link, progressAt);

    // The message in plain words; the code name (INTERNAL (13)) on hover.
    const message = model.get("error_message");
    v.error.hidden = !message;
    v.errorMessage.textContent = message;
    v.error.title = model.get("error_code") || "";
    renderResult(v.result, model.get("result"));

    const notes = [];
    if (phase.stopped) notes.push(`Stopped: ${phase.stopped}. This widget no longer updates.`);
    else if (model.get("poll_error")) notes.push(model.get("poll_error"));
    if (model.get("cancel_error")) notes.push(model.get("cancel_error"));
    v.note.textContent = notes.join(" ");
    v.note.hidden = !notes.length;
    if (v.confirm.hidden) ui.asking = false;
    renderCancel(v, model, phase, link, ui.asking);
    if (v.bell) drawBell(v, phase, link);
    updateClock();
    videos.refresh();
  }

  const onElapsed = () => {
    base = performance.now();
  };
  const onProgress = () => {
    progressAt = performance.now();
  };
  model.on("change:elapsed", onElapsed);
  model.on("change:progress", onProgress);
  const stopReporting = reportOnScreen(model, v.root);
  const videos = operationVideos(model, v.root, link);
  const stopListening = onTraits(model, OPERATION_TRAITS, update);
  wireOperationControls(v, model, update, ui);
  const stopNotify = operationNotify(v, model);
  const answered = () => (ui.sent = false); // the kernel's own state (or error) takes over
  model.on("change:state", answered);
  model.on("change:cancel_error", answered);
  const ticker = setInterval(updateClock, 1000);
  update();

  return () => {
    clearInterval(ticker);
    link.stop();
    stopReporting();
    model.off("change:elapsed", onElapsed);
    model.off("change:progress", onProgress);
    model.off("change:state", answered);
    model.off("change:cancel_error", answered);
    stopListening();
    videos.stop();
    stopNotify();
  };
}

// -- Notifications: once an operation ends while a view shows it (the notify trait; the bell) -----

const ENDED = new Set(["succeeded", "failed", "cancelled", "filtered"]);
// Page-wide, by operation name, over every model and view (anywidget may load this module once per
// model): {running: a view here saw it not ended, over: one saw it ended, told}. Once per operation.
const NOTIFY_SEEN = (globalThis[Symbol.for("ops_widgets.notify")] ??= new Map());

// Which of `rows` ({name, state, ...}) to tell of now; `last` is this view's own name -> state.
// Told when this view saw it end, or when it first shows it ended while another view here saw it
// run and nobody saw it end (JupyterLab re-renders an output as its operation ends). Never of one
// ended when first shown on this page (a reopened notebook), never twice, never when `on` was off
// as it ended (turning the bell on later tells nothing).
function endsToTell(rows, seen, on, last) {
  const out = [];
  for (const row of rows) {
    if (!row || !row.name) continue;
    const prev = last.get(row.name);
    last.set(row.name, row.state);
    const mark = seen.get(row.name) || { running: false, over: false, told: false };
    seen.set(row.name, mark);
    if (!ENDED.has(row.state)) {
      mark.running = true;
      continue;
    }
    const sawItEnd = prev !== undefined && !ENDED.has(prev);
    const eligible = mark.running && !mark.told && (sawItEnd || (prev === undefined && !mark.over));
    mark.over = true;
    if (eligible && on) {
      mark.told = true;
      out.push(row);
    }
  }
  return out;
}

// What the notification says, as plain text (a browser Notification and JupyterLab's toast show
// text; nothing here is ever HTML). Failure, cancellation and safety filtering read differently.
function finishNote(row) {
  const what = row.kind_label || "operation";
  const kind = what.charAt(0).toUpperCase() + what.slice(1);
  const id = row.op_id || row.name || "";
  const after = typeof row.elapsed === "number" ? ` after ${formatDuration(row.elapsed)}` : "";
  const clip = (text) => (text.length > 240 ? `${text.slice(0, 239)}…` : text);
  if (row.state === "failed") {
    const why = row.error_message ? `: ${row.error_message}` : ".";
    return { type: "error", title: `${kind} failed`, body: clip(`${id} failed${after}${why}`) };
  }
  if (row.state === "cancelled") return { type: "info", title: `${kind} cancelled`, body: `${id} was cancelled${after}.` };
  if (row.state === "filtered") {
    return { type: "warning", title: `${kind} withheld by safety filters`,
      body: `${id} ended${after}, but the safety filters withheld its result.` };
  }
  return { type: "success", title: `${kind} finished`, body: `${id} succeeded${after}.` };
}

// JupyterLab's notification while the page is visible, the browser's while it is hidden; each
// falls back to the other. anywidget gives a view no JupyterLab app object: its "apputils:notify"
// command is reachable only where the app is exposed (window.jupyterapp: --LabApp.expose_app_in_browser
// or dev mode). Returns the way it went ("lab", "browser"), or "" when neither was open.
function deliverNote(note, name) {
  const lab = () => {
    const commands = globalThis.jupyterapp && globalThis.jupyterapp.commands;
    if (!commands || typeof commands.hasCommand !== "function" || !commands.hasCommand("apputils:notify")) return "";
    const autoClose = note.type === "error" ? false : 10000; // a failure stays until read
    Promise.resolve(commands.execute("apputils:notify", {
      message: `${note.title}\n${note.body}`, type: note.type, options: { autoClose },
    })).catch(() => {});
    return "lab";
  };
  const browser = () => {
    if (typeof Notification !== "function" || Notification.permission !== "granted") return "";
    try {
      new Notification(note.title, { body: note.body, tag: `ops_widgets:${name}` }); // tag: one per operation
      return "browser";
    } catch (err) {
      return ""; // some browsers show notifications from service workers only
    }
  };
  const order = document.visibilityState === "hidden" ? [browser, lab] : [lab, browser];
  for (const way of order) {
    const went = way();
    if (went) return went;
  }
  return "";
}

const SVG_NS = "http://www.w3.org/2000/svg";

// A bell drawn in the button's text colour: filled when on, struck through when off.
function bellButton(className) {
  const b = button(className);
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  const body = document.createElementNS(SVG_NS, "path");
  body.setAttribute("class", "opw-bell-body");
  body.setAttribute("d", "M8 2a4.2 4.2 0 0 0-4.2 4.2v3.3L2.5 11.8h11l-1.3-2.3V6.2A4.2 4.2 0 0 0 8 2z");
  const clapper = document.createElementNS(SVG_NS, "path");
  clapper.setAttribute("d", "M6.4 13.2a1.6 1.6 0 0 0 3.2 0");
  const slash = document.createElementNS(SVG_NS, "path");
  slash.setAttribute("class", "opw-bell-slash");
  slash.setAttribute("d", "M2.5 2.5l11 11");
  svg.append(body, clapper, slash);
  b.append(svg);
  return b;
}

// The bell shows and toggles the notify trait (synced: Python sees it, a saved notebook keeps it).
// Turning it on asks for the browser's permission: a click is the gesture browsers require.
function wireBell(b, model, what) {
  const draw = () => {
    const on = Boolean(model.get("notify"));
    const blocked = typeof Notification === "function" && Notification.permission === "denied";
    b.setAttribute("aria-pressed", String(on));
    b.title = on
      ? `You will be notified when ${what} ends${blocked ? " (in JupyterLab only: this browser blocks notifications here)" : ""}. Click to stop.`
      : `Notify me when ${what} ends`;
  };
  b.setAttribute("aria-label", `Notify me when ${what} ends`);
  const click = () => {
    const on = !model.get("notify");
    model.set("notify", on);
    model.save_changes();
    if (on && typeof Notification === "function" && Notification.permission === "default") {
      Promise.resolve(Notification.requestPermission()).then(draw, () => {});
    }
  };
  b.addEventListener("click", click);
  model.on("change:notify", draw);
  draw();
  return () => {
    b.removeEventListener("click", click);
    model.off("change:notify", draw);
  };
}

// Tells of the ends among `rows()` on each change:<trait> of `traits`; data-notified on `root` counts them.
function watchEnds(model, root, traits, rows) {
  const last = new Map();
  const check = () => {
    for (const row of endsToTell(rows(), NOTIFY_SEEN, Boolean(model.get("notify")), last)) {
      deliverNote(finishNote(row), row.name);
      root.dataset.notified = String(Number(root.dataset.notified || 0) + 1);
    }
  };
  for (const trait of traits) model.on(`change:${trait}`, check);
  check();
  return () => traits.forEach((trait) => model.off(`change:${trait}`, check));
}

// OperationWidget: the bell beside Copy name, and the notification once it ends while shown.
function operationNotify(v, model) {
  v.bell = bellButton("opw-bell");
  v.copy.after(v.bell);
  const stopBell = wireBell(v.bell, model, `this ${model.get("kind_label") || "operation"}`);
  const row = () => [{ name: model.get("name"), op_id: model.get("op_id"), kind_label: model.get("kind_label"),
    state: model.get("state"), elapsed: model.get("elapsed"), error_message: model.get("error_message") }];
  const stopWatching = watchEnds(model, v.root, ["state"], row);
  return () => {
    stopBell();
    stopWatching();
  };
}

// Only while it runs and something answers: an ended operation has nothing left to tell.
function drawBell(v, phase, link) {
  v.bell.hidden = !phase.running;
  v.bell.disabled = Boolean(phase.stopped) || link.get() !== "true";
}

// OperationsList: one bell for the whole list, shown while anything runs; a notification per row.
function listNotify(v, model) {
  v.bell = bellButton("opw-bell opl-bell");
  v.summary.after(v.bell);
  const stopBell = wireBell(v.bell, model, "each operation");
  const rows = () => model.get("rows") || [];
  const stopWatching = watchEnds(model, v.root, ["rows"], rows);
  const draw = () => (v.bell.hidden = rows().every((r) => !RUNNING.has(r.state) || r.stopped));
  model.on("change:rows", draw);
  draw();
  return () => {
    stopBell();
    stopWatching();
    model.off("change:rows", draw);
  };
}

// -- OperationsTable ---------------------------------------------------------------------------

// Python's State, in its order (tests/test_frontend.py compares them).
const STATES = ["running", "succeeded", "failed", "cancelled", "filtered"];
// [key, header, width]: fixed widths, so columns do not jump as the data changes.
const COLUMNS = [
  ["id", "operation", "16em"],
  ["kind", "kind", "6em"],
  ["state", "state", "7.5em"],
  ["progress", "progress", "10em"],
  ["create_time", "created", "8.5em"],
  ["duration", "duration", "6em"],
  ["error_message", "error", "auto"],
];
const NEWEST_FIRST = new Set(["create_time", "duration", "progress"]);
const TABLE_TRAITS = [
  "rows", "total", "matching", "page", "page_size", "sort_by", "sort_desc", "state_filter", "kind_filter", "search",
  "kinds", "selected_count", "cancellable_count", "deletable_count", "busy", "message",
];

function checkbox(className, value, label) {
  const box = el("input", className);
  box.type = "checkbox";
  if (value !== undefined) box.value = value;
  if (label) box.setAttribute("aria-label", label);
  return box;
}

// Its colour comes from data-state, through the one set of state colours in widgets.css.
function badgeFor(state) {
  const badge = el("span", "opt-badge", state);
  badge.dataset.state = state;
  return badge;
}

const fmt = (n) => Number(n).toLocaleString("en-US");

// "3m 05s ago" from an ISO time in UTC; the exact time, in UTC, goes on hover.
function relativeCell(iso, now) {
  const cell = el("td", "opt-time");
  const t = iso ? Date.parse(iso) : NaN;
  if (Number.isFinite(t)) {
    const ago = (now - t) / 1000;
    cell.textContent = ago < 1 ? "just now" : `${formatDuration(ago)} ago`;
    cell.title = `${iso.replace("T", " ").replace("Z", "")} UTC`;
    cell.dataset.utc = iso;
  }
  return cell;
}

function tableFilters(model, parts) {
  const filters = el("div", "opt-filters");
  filters.setAttribute("role", "group");
  filters.setAttribute("aria-label", "Filters");
  parts.stateBoxes = STATES.map((s) => {
    const label = el("label", "opt-chip");
    const box = checkbox("opt-state", s, `Show ${s}`);
    label.append(box, badgeFor(s));
    filters.append(label);
    return box;
  });
  parts.kindsHolder = el("span", "opt-kinds");
  parts.search = el("input", "opt-search");
  parts.search.type = "search";
  parts.search.placeholder = "Search names and error messages";
  parts.search.setAttribute("aria-label", "Search names and error messages");
  filters.append(parts.kindsHolder, parts.search);
  return filters;
}

function tableActions(parts) {
  const actions = el("div", "opt-actions");
  parts.counts = el("span", "opt-counts");
  parts.counts.setAttribute("aria-live", "polite");
  parts.selectAll = button("opt-select-all");
  parts.clear = button("opt-clear", "Clear selection");
  parts.cancelBtn = button("opt-cancel", "Cancel selected");
  parts.deleteBtn = button("opt-delete", "Delete selected");
  actions.append(parts.counts, parts.selectAll, parts.clear, parts.cancelBtn, parts.deleteBtn);
  parts.confirmBar = el("div", "opt-confirm-bar");
  parts.confirmBar.setAttribute("role", "alertdialog");
  parts.confirmText = el("span", "opt-confirm-text");
  parts.confirmText.id = `opt-confirm-${Math.random().toString(36).slice(2)}`;
  parts.confirmBar.setAttribute("aria-describedby", parts.confirmText.id);
  parts.confirmBtn = button("opt-confirm");
  parts.backBtn = button("opt-back", "Back");
  parts.confirmBar.append(parts.confirmText, parts.confirmBtn, parts.backBtn);
  parts.confirmBar.hidden = true;
  parts.message = el("div", "opt-message");
  parts.message.setAttribute("role", "status"); // outcomes of actions are announced
  return [actions, parts.confirmBar, parts.message];
}

function tableGrid(model, parts) {
  const table = el("table", "opt-table");
  const cols = el("colgroup");
  cols.append(Object.assign(el("col"), { className: "opt-col-check" }));
  for (const [key, , width] of COLUMNS) {
    const col = el("col");
    col.dataset.column = key;
    if (width !== "auto") col.style.width = width;
    cols.append(col);
  }
  const head = el("tr");
  parts.pageBox = checkbox("opt-page-select", undefined, "Select every row on this page");
  const pageCell = el("th", "opt-check");
  pageCell.append(parts.pageBox);
  head.append(pageCell);
  parts.headers = COLUMNS.map(([key, label]) => {
    const th = el("th", "opt-sortable");
    th.dataset.column = key;
    th.setAttribute("scope", "col");
    // A button: reachable with Tab, sorted with Enter or Space; aria-sort on the header says how.
    const sort = button("opt-sort", label);
    sort.addEventListener("click", () => {
      if (model.get("sort_by") === key) model.set("sort_desc", !model.get("sort_desc"));
      else {
        model.set("sort_by", key);
        model.set("sort_desc", NEWEST_FIRST.has(key));
      }
      model.save_changes();
    });
    th.append(sort);
    head.append(th);
    return th;
  });
  const thead = el("thead");
  thead.append(head);
  parts.tbody = el("tbody");
  table.append(cols, thead, parts.tbody);
  const scroller = el("div", "opt-scroll");
  scroller.append(table);
  return scroller;
}

function tablePager(parts) {
  const pager = el("div", "opt-pager");
  parts.prev = button("opt-prev", "‹ Prev", "Previous page");
  parts.pageText = el("span", "opt-page");
  parts.next = button("opt-next", "Next ›", "Next page");
  pager.append(parts.prev, parts.pageText, parts.next);
  return pager;
}

function tableRow(model, r, now) {
  const tr = el("tr", "opt-row");
  tr.dataset.name = r.name;
  tr.dataset.state = r.state;
  tr.dataset.selected = String(Boolean(r.selected));
  const pick = checkbox("opt-row-select", undefined, `Select ${r.id}`);
  pick.checked = Boolean(r.selected);
  pick.addEventListener("change", () => model.send({ type: "select", names: [r.name], selected: pick.checked }));
  const c0 = el("td", "opt-check");
  c0.append(pick);
  const id = el("td", "opt-id", r.id);
  id.title = r.name;
  const state = el("td");
  state.append(badgeFor(r.state));
  const progress = el("td", "opt-progress");
  if (r.progress !== null && r.progress !== undefined) {
    const bar = el("span", "opt-mini");
    const fill = el("span", "opt-mini-fill");
    fill.style.width = `${Math.max(0, Math.min(100, r.progress))}%`;
    bar.append(fill);
    progress.append(bar, el("span", "opt-mini-text", `${Math.round(r.progress)}%`));
  }
  const error = el("td", "opt-error", r.error);
  error.title = r.error;
  tr.append(c0, id, el("td", "opt-kind-cell", r.kind), state, progress, relativeCell(r.create_time, now),
    el("td", "opt-duration", r.duration === null ? "" : formatDuration(r.duration)), error);
  return tr;
}

function tableConfirmText(model, action) {
  // Only the rows the service can act on are counted and sent (the Gemini API cancels and
  // deletes batches only); the confirmation says how many are left alone.
  const able = model.get(action === "cancel" ? "cancellable_count" : "deletable_count") ?? model.get("selected_count");
  const n = fmt(able);
  const left = model.get("selected_count") - able;
  const rest = left > 0 ? ` (${fmt(left)} selected cannot be ${action === "cancel" ? "cancelled" : "deleted"} by the service)` : "";
  return {
    text: (action === "cancel" ? `Cancel ${n} selected operations on the server?` : `Delete ${n} selected operations from the server?`) + rest,
    yes: action === "cancel" ? `Yes, cancel ${n}` : `Yes, delete ${n}`,
  };
}

// The table's controls that only send: filters, search, selection, the confirmed actions, paging.
// Returns close() for the confirmation bar and the pending search timer.
function wireTableControls(model, p) {
  const setList = (key, boxes) => {
    model.set(key, boxes.filter((b) => b.checked).map((b) => b.value));
    model.save_changes();
  };
  let pendingAction = null;
  p.stateBoxes.forEach((b) => b.addEventListener("change", () => setList("state_filter", p.stateBoxes)));

  let searchTimer = null;
  p.search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      model.set("search", p.search.value);
      model.save_changes();
    }, SEARCH_PAUSE_MS);
  });
  p.pageBox.addEventListener("change", () => {
    model.send({ type: "select", names: (model.get("rows") || []).map((r) => r.name), selected: p.pageBox.checked });
  });
  p.selectAll.addEventListener("click", () => model.send({ type: "select_matching" }));
  p.clear.addEventListener("click", () => model.send({ type: "clear_selection" }));

  function ask(action) {
    pendingAction = action;
    const { text, yes } = tableConfirmText(model, action);
    p.confirmText.textContent = text;
    p.confirmBtn.textContent = yes;
    p.confirmBar.hidden = false;
    p.confirmBar.dataset.action = action;
    p.backBtn.focus(); // the safe choice has the focus
  }
  const close = () => {
    pendingAction = null;
    p.confirmBar.hidden = true;
  };
  p.cancelBtn.addEventListener("click", () => ask("cancel"));
  p.deleteBtn.addEventListener("click", () => ask("delete"));
  p.confirmBtn.addEventListener("click", () => {
    if (pendingAction) model.send({ type: "action", action: pendingAction });
    close();
  });
  p.backBtn.addEventListener("click", close);
  const go = (delta) => {
    model.set("page", Math.max(0, model.get("page") + delta));
    model.save_changes();
  };
  p.prev.addEventListener("click", () => go(-1));
  p.next.addEventListener("click", () => go(1));

  return { close, searchTimer: () => searchTimer };
}

function renderTable({ model, el: host }) {
  const parts = {};
  const root = el("div", "opt");
  root.append(tableFilters(model, parts), ...tableActions(parts), tableGrid(model, parts), tablePager(parts));
  host.append(root);
  const p = parts;
  let kindBoxes = [];
  let kindsShown = "";
  const link = liveness(model, () => update());
  const { close, searchTimer } = wireTableControls(model, p);
  const setList = (key, boxes) => {
    model.set(key, boxes.filter((b) => b.checked).map((b) => b.value));
    model.save_changes();
  };

  function renderKinds() {
    const kinds = model.get("kinds") || [];
    const key = kinds.join("\u0000");
    if (key === kindsShown) return;
    kindsShown = key;
    p.kindsHolder.replaceChildren();
    kindBoxes = kinds.map((k) => {
      const label = el("label", "opt-chip");
      const box = checkbox("opt-kind", k, `Show ${k}`);
      box.addEventListener("change", () => setList("kind_filter", kindBoxes));
      label.append(box, el("span", "opt-kind-label", k));
      p.kindsHolder.append(label);
      return box;
    });
  }

  function renderRows() {
    const rows = model.get("rows") || [];
    const now = Date.now();
    p.tbody.replaceChildren(...rows.map((r) => tableRow(model, r, now)));
    p.pageBox.checked = rows.length > 0 && rows.every((r) => r.selected);
  }

  function renderHeaders() {
    const sortBy = model.get("sort_by");
    const desc = model.get("sort_desc");
    p.headers.forEach((th) => {
      const on = th.dataset.column === sortBy;
      th.classList.toggle("opt-sorted", on);
      th.dataset.sort = on ? (desc ? "desc" : "asc") : "";
      th.setAttribute("aria-sort", on ? (desc ? "descending" : "ascending") : "none");
    });
  }

  function update() {
    const [total, matching, selected, busy] = ["total", "matching", "selected_count", "busy"].map((k) => model.get(k));
    Object.assign(root.dataset, { total, matching, selected, busy, live: link.get() });
    const states = new Set(model.get("state_filter"));
    p.stateBoxes.forEach((b) => (b.checked = states.has(b.value)));
    renderKinds();
    const kinds = new Set(model.get("kind_filter"));
    kindBoxes.forEach((b) => (b.checked = kinds.has(b.value)));
    if (document.activeElement !== p.search) p.search.value = model.get("search");
    p.counts.textContent = `${fmt(matching)} matching of ${fmt(total)} · ${fmt(selected)} selected`;
    p.selectAll.textContent = `Select all ${fmt(matching)} matching`;
    const acting = busy || link.get() !== "true";
    p.selectAll.disabled = matching === 0;
    p.clear.disabled = selected === 0;
    p.cancelBtn.disabled = (model.get("cancellable_count") ?? selected) === 0 || acting;
    p.deleteBtn.disabled = (model.get("deletable_count") ?? selected) === 0 || acting;
    if (acting) close();
    p.message.textContent =
      link.get() === "false" ? "The kernel does not answer (busy, or gone): actions are paused." : model.get("message");
    p.message.hidden = !p.message.textContent;
    renderHeaders();
    const pages = Math.max(1, Math.ceil(matching / Math.max(1, model.get("page_size"))));
    const page = model.get("page");
    p.pageText.textContent = `page ${fmt(page + 1)} of ${fmt(pages)}`;
    p.prev.disabled = page <= 0;
    p.next.disabled = page >= pages - 1;
    renderRows();
  }

  const stopListening = onTraits(model, TABLE_TRAITS, update);
  const ticker = setInterval(() => {
    const now = Date.now(); // relative times move on
    p.tbody.querySelectorAll("td[data-utc]").forEach((cell) => {
      cell.textContent = relativeCell(cell.dataset.utc, now).textContent;
    });
  }, 30000);
  update();

  return () => {
    link.stop();
    clearTimeout(searchTimer());
    clearInterval(ticker);
    stopListening();
  };
}

// -- OperationsList (watch_all) ------------------------------------------------------------------

const LIST_TRAITS = ["rows", "summary", "cancellable", "not_cancellable"];

function listDom(host) {
  const v = {};
  v.root = el("div", "opl");
  const head = el("div", "opl-head");
  v.summary = el("span", "opl-summary");
  v.summary.setAttribute("role", "status"); // progress of the whole list is announced
  v.cancelAll = button("opl-cancel-all", "Cancel all running");
  head.append(v.summary, v.cancelAll);
  confirmBar(v, "opw-confirm opl-confirm", "", "Keep them running");
  v.grid = el("div", "opl-grid");
  v.grid.setAttribute("role", "list");
  v.root.append(head, v.confirm, v.grid);
  host.append(v.root);
  return v;
}

// One row: kind, id, bar, percent, badge, time; a note under it when there is something to say.
function listRow(row, link) {
  const rowModel = { get: (key) => row[key] };
  const phase = RUNNING.has(row.state) && link.get() === "false"
    ? { state: row.state, running: true, stale: true, stopped: "no kernel answers" }
    : { state: row.state, running: RUNNING.has(row.state), stopped: RUNNING.has(row.state) ? row.stopped : "" };
  const r = el("div", "opl-row");
  r.setAttribute("role", "listitem");
  r.dataset.state = row.state;
  r.dataset.opId = row.op_id;
  r.dataset.stopped = String(Boolean(phase.stopped));
  const id = el("span", "opl-id", row.op_id);
  id.title = row.name;
  const bar = el("span", "opl-bar");
  const fill = el("span", "opl-fill");
  const determinate = row.progress !== null && row.progress !== undefined;
  fill.style.width = phase.running && !determinate ? "" : `${FULL.has(row.state) ? 100 : determinate ? row.progress : 0}%`;
  bar.classList.toggle("opw-indeterminate", phase.running && !determinate && !phase.stopped);
  bar.append(fill);
  const pct = el("span", "opl-pct", determinate ? `${row.progress.toFixed(row.progress < 10 ? 1 : 0)}%` : "");
  const badge = el("span", "opw-badge opl-badge", phase.stopped ? "stopped" : row.state);
  badge.classList.toggle("opw-stale", Boolean(phase.stopped));
  const time = el("span", "opl-time");
  r.append(el("span", "opl-kind", row.kind_label || ""), id, bar, pct, badge, time);
  const said = [row.error_message, phase.stopped ? `Stopped: ${phase.stopped}.` : row.poll_error, row.cancel_error];
  const note = el("div", "opl-note", said.filter(Boolean).join(" "));
  note.title = row.error_code || "";
  note.hidden = !note.textContent;
  if (row.state === "failed") note.classList.add("opl-error");
  r.append(note);
  return { node: r, tick: (dt) => (time.textContent = clockText(rowModel, phase, phase.stopped ? 0 : dt)) };
}

function renderList({ model, el: host }) {
  const v = listDom(host);
  let base = performance.now();
  let ticks = [];
  const link = liveness(model, () => update(), { kernelTraits: LIST_TRAITS });
  const stopReporting = reportOnScreen(model, v.root);
  const stopNotify = listNotify(v, model);

  function tick() {
    const until = link.get() === "true" ? performance.now() : Math.max(base, link.seen());
    ticks.forEach((t) => t(Math.max(0, until - base) / 1000));
  }

  function update() {
    const rows = model.get("rows") || [];
    v.root.dataset.live = link.get();
    v.root.dataset.count = String(rows.length);
    const built = rows.map((row) => listRow(row, link));
    v.grid.replaceChildren(...built.map((b) => b.node));
    ticks = built.map((b) => b.tick);
    v.summary.textContent = model.get("summary");
    const n = model.get("cancellable");
    v.cancelAll.hidden = n === 0;
    v.cancelAll.textContent = `Cancel all running (${fmt(n)})`;
    v.cancelAll.disabled = link.get() !== "true" || !v.confirm.hidden;
    if (n === 0 || link.get() !== "true") v.confirm.hidden = true;
    tick();
  }

  v.cancelAll.addEventListener("click", () => {
    const n = model.get("cancellable");
    const others = model.get("not_cancellable");
    const rest = others ? ` (${fmt(others)} running cannot be cancelled by the service)` : "";
    v.confirmText.textContent = `Cancel ${fmt(n)} running operations on the server?${rest} This cannot be undone.`;
    v.confirmYes.textContent = `Yes, cancel ${fmt(n)}`;
    v.confirm.hidden = false;
    update();
    v.confirmNo.focus(); // the safe choice has the focus
  });
  v.confirmYes.addEventListener("click", () => {
    v.confirm.hidden = true;
    model.send({ type: "cancel_all" });
    update();
  });
  v.confirmNo.addEventListener("click", () => {
    v.confirm.hidden = true;
    update();
  });
  const onRows = () => {
    base = performance.now();
  };
  model.on("change:rows", onRows);
  const stopListening = onTraits(model, LIST_TRAITS, update);
  const ticker = setInterval(tick, 1000);
  update();

  return () => {
    clearInterval(ticker);
    link.stop();
    stopReporting();
    model.off("change:rows", onRows);
    stopListening();
    stopNotify();
  };
}


const VIEWS = { table: renderTable, list: renderList, operation: renderOperation };

function render(context) {
  return (VIEWS[context.model.get("_view")] || renderOperation)(context);
}

export default { render };
export { endsToTell, finishNote, formatDuration, shownProgress }; // for tests/test_frontend.py; anywidget only uses the default export
