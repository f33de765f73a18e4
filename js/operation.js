// OperationWidget front-end: one operation, live. Plain ES module for anywidget; no build step.
// Server text (names, messages, metadata) only ever goes in through textContent, never as HTML.

const PING_EVERY_MS = 15000;
const PONG_WAIT_MS = 5000;
const RUNNING = new Set(["running", "cancelling"]);
const KIND_LABELS = { video: "video", tuning: "tuning", import: "import", batch: "batch", other: "operation" };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(r).padStart(2, "0")}s`;
  return `${r}s`;
}

function safeHref(href) {
  return typeof href === "string" && /^https?:\/\//i.test(href) ? href : null;
}

function render({ model, el: host }) {
  const root = el("div", "opw");
  const head = el("div", "opw-head");
  const kind = el("span", "opw-kind");
  const id = el("span", "opw-id");
  const badge = el("span", "opw-badge");
  const cancel = el("button", "opw-cancel", "Cancel");
  cancel.type = "button";
  head.append(kind, id, badge, cancel);
  const bar = el("div", "opw-bar");
  const fill = el("div", "opw-fill");
  bar.append(fill);
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  const meta = el("div", "opw-meta");
  const pct = el("span", "opw-pct");
  const clock = el("span", "opw-time");
  meta.append(pct, clock);
  const error = el("div", "opw-error");
  const errorCode = el("span", "opw-error-code");
  const errorMessage = el("span", "opw-error-message");
  error.append(errorCode, errorMessage);
  const result = el("div", "opw-result");
  const note = el("div", "opw-note");
  root.append(head, bar, meta, error, result, note);
  host.append(root);

  // "unknown" until the kernel answers a ping; "false" if it does not: then nothing looks live.
  let live = "unknown";
  let pongTimer = null;
  let base = performance.now(); // when elapsed/eta were last received

  function setLive(value) {
    if (live !== value) {
      live = value;
      update();
    }
  }

  function ping() {
    try {
      model.send({ type: "ping" });
    } catch (err) {
      setLive("false"); // no comm: a saved view with no kernel behind it
      return;
    }
    clearTimeout(pongTimer);
    pongTimer = setTimeout(() => setLive("false"), PONG_WAIT_MS);
  }

  function onMessage(msg) {
    if (msg && msg.type === "pong") {
      clearTimeout(pongTimer);
      setLive("true");
    }
  }

  function updateClock() {
    const state = model.get("state");
    const running = RUNNING.has(state);
    const dt = running && live === "true" ? (performance.now() - base) / 1000 : 0;
    const parts = [];
    const elapsed = model.get("elapsed");
    if (elapsed !== null && elapsed !== undefined) parts.push(`${formatDuration(elapsed + dt)} elapsed`);
    if (running && live !== "false") {
      const eta = model.get("eta");
      if (eta === null || eta === undefined) parts.push("time left unknown");
      else parts.push(`${model.get("eta_is_estimate") ? "~" : ""}${formatDuration(Math.max(0, eta - dt))} left`);
    }
    clock.textContent = parts.join(" · ");
  }

  function update() {
    const state = model.get("state");
    const progress = model.get("progress");
    const running = RUNNING.has(state);
    root.dataset.state = state;
    root.dataset.opId = model.get("op_id");
    root.dataset.kind = model.get("kind");
    root.dataset.progress = progress === null || progress === undefined ? "" : String(progress);
    root.dataset.live = live;
    root.classList.toggle("opw-compact", Boolean(model.get("compact")));
    root.title = model.get("name");

    kind.textContent = KIND_LABELS[model.get("kind")] || "operation";
    id.textContent = model.get("op_id");
    const stale = running && live === "false";
    badge.textContent = stale ? "not live" : state;
    badge.classList.toggle("opw-stale", stale);

    const determinate = progress !== null && progress !== undefined;
    const shown = state === "succeeded" ? 100 : determinate ? progress : 0;
    bar.classList.toggle("opw-indeterminate", running && !determinate);
    fill.style.width = running && !determinate ? "" : `${shown}%`;
    if (determinate) bar.setAttribute("aria-valuenow", String(progress));
    else bar.removeAttribute("aria-valuenow");
    pct.textContent = determinate ? `${progress.toFixed(progress < 10 ? 1 : 0)}%` : running ? "no progress reported" : "";

    const message = model.get("error_message");
    const code = model.get("error_code");
    error.hidden = !message && !code;
    errorCode.textContent = code ? `${code}: ` : "";
    errorMessage.textContent = message;

    result.replaceChildren();
    for (const item of model.get("result") || []) {
      const row = el("div", "opw-result-item");
      row.append(el("span", "opw-result-label", `${item.label || ""} `));
      const href = safeHref(item.href);
      const value = href ? el("a", "opw-result-value", item.text || href) : el("span", "opw-result-value", item.text || "");
      if (href) {
        value.href = href;
        value.target = "_blank";
        value.rel = "noopener noreferrer";
      }
      row.append(value);
      result.append(row);
    }
    result.hidden = !result.childElementCount;

    const notes = [];
    if (stale) notes.push("No kernel is connected: this is a saved view, not a live one.");
    if (model.get("poll_error")) notes.push(model.get("poll_error"));
    if (model.get("cancel_error")) notes.push(model.get("cancel_error"));
    note.textContent = notes.join(" ");
    note.hidden = !notes.length;

    cancel.disabled = state !== "running" || live !== "true";
    cancel.title = live === "true" ? "Ask the server to cancel this operation" : "No live kernel";
    updateClock();
  }

  function onCancel() {
    if (cancel.disabled) return;
    cancel.disabled = true; // one click, one request; the kernel answers with state "cancelling"
    badge.textContent = "cancelling";
    root.dataset.state = "cancelling";
    model.send({ type: "cancel" });
  }

  const onElapsed = () => {
    base = performance.now();
  };
  model.on("change:elapsed", onElapsed);
  model.on("change", update);
  model.on("msg:custom", onMessage);
  cancel.addEventListener("click", onCancel);
  const ticker = setInterval(updateClock, 1000);
  const pinger = setInterval(ping, PING_EVERY_MS);
  update();
  ping();

  return () => {
    clearInterval(ticker);
    clearInterval(pinger);
    clearTimeout(pongTimer);
    model.off("change:elapsed", onElapsed);
    model.off("change", update);
    model.off("msg:custom", onMessage);
    cancel.removeEventListener("click", onCancel);
  };
}

export default { render };
