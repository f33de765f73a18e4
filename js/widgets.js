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
function liveness(model, onChange, { changesAreKernels = false } = {}) {
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
  // Only where the view never sets state itself is every change news from the kernel.
  if (changesAreKernels) model.on("change", alive);
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
      if (changesAreKernels) model.off("change", alive);
    },
  };
}

// -- OperationWidget ---------------------------------------------------------------------------

const RUNNING = new Set(["running", "cancelling"]);
// Ended with nothing left to do: a full bar (a filtered video ended too, in its own colour).
const FULL = new Set(["succeeded", "filtered"]);

function safeHref(href) {
  return typeof href === "string" && /^https?:\/\//i.test(href) ? href : null;
}

function renderOperation({ model, el: host }) {
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

  let base = performance.now(); // when elapsed/eta were last received
  const link = liveness(model, () => update(), { changesAreKernels: true });

  function updateClock() {
    const state = model.get("state");
    const running = RUNNING.has(state);
    // Count on from the last update while live; freeze at the last sign of life when not, and at
    // the last update when nothing polls it any more (its client was closed).
    const unpolled = model.get("polling") === false;
    const until = unpolled ? base : link.get() === "true" ? performance.now() : Math.max(base, link.seen());
    const dt = running ? (until - base) / 1000 : 0;
    const parts = [];
    const elapsed = model.get("elapsed");
    if (elapsed !== null && elapsed !== undefined) parts.push(`${formatDuration(elapsed + dt)} elapsed`);
    if (running && link.get() !== "false" && !unpolled) {
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
    root.dataset.live = link.get();
    root.classList.toggle("opw-compact", Boolean(model.get("compact")));
    root.title = model.get("name");

    // Kinds and their names live in Python only; an older kernel sends no kind_label.
    kind.textContent = model.get("kind_label") || model.get("kind") || "";
    id.textContent = model.get("op_id");
    const stale = running && link.get() === "false";
    // Running, but nothing polls it any more: it must not look live (stripes, countdown, Cancel).
    const unpolled = running && !stale && model.get("polling") === false;
    badge.textContent = stale ? "not live" : unpolled ? "not polled" : state;
    badge.classList.toggle("opw-stale", stale || unpolled);
    root.dataset.polling = String(!unpolled);

    const determinate = progress !== null && progress !== undefined;
    const shown = FULL.has(state) ? 100 : determinate ? progress : 0;
    bar.classList.toggle("opw-indeterminate", running && !determinate && !stale && !unpolled);
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
    if (stale) notes.push("No kernel answers (it was shut down, or this is a saved view): nothing here is live.");
    if (model.get("poll_error")) notes.push(model.get("poll_error"));
    if (model.get("cancel_error")) notes.push(model.get("cancel_error"));
    note.textContent = notes.join(" ");
    note.hidden = !notes.length;

    // can_cancel is false where the service has no cancel for this kind (the Gemini API cancels
    // batches only): no enabled button that could only fail. Absent in old saved state: true.
    const cancellable = model.get("can_cancel") !== false;
    cancel.disabled = !cancellable || unpolled || state !== "running" || link.get() !== "true";
    cancel.title = !cancellable
      ? "The service cannot cancel this kind of operation"
      : unpolled ? "Nothing polls this operation any more (its client was closed)"
      : link.get() === "true" ? "Ask the server to cancel this operation" : "No live kernel";
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
  cancel.addEventListener("click", onCancel);
  const ticker = setInterval(updateClock, 1000);
  update();

  return () => {
    clearInterval(ticker);
    link.stop();
    model.off("change:elapsed", onElapsed);
    model.off("change", update);
    cancel.removeEventListener("click", onCancel);
  };
}

// -- OperationsTable ---------------------------------------------------------------------------

// Python's State, in its order (tests/test_frontend.py compares them).
const STATES = ["running", "succeeded", "failed", "cancelled", "filtered"];
const COLUMNS = [
  ["id", "operation"],
  ["kind", "kind"],
  ["state", "state"],
  ["progress", "progress"],
  ["create_time", "created"],
  ["duration", "duration"],
  ["error_message", "error"],
];
const NEWEST_FIRST = new Set(["create_time", "duration", "progress"]);

function checkbox(className, value) {
  const box = el("input", className);
  box.type = "checkbox";
  if (value !== undefined) box.value = value;
  return box;
}

// Its colour comes from data-state, through the one set of state colours in widgets.css.
function badgeFor(state) {
  const badge = el("span", "opt-badge", state);
  badge.dataset.state = state;
  return badge;
}

const fmt = (n) => Number(n).toLocaleString("en-US");

function renderTable({ model, el: host }) {
  const root = el("div", "opt");
  // filters
  const filters = el("div", "opt-filters");
  const stateBoxes = STATES.map((s) => {
    const label = el("label", "opt-chip");
    const box = checkbox("opt-state", s);
    label.append(box, badgeFor(s));
    filters.append(label);
    return box;
  });
  const kindsHolder = el("span", "opt-kinds");
  const search = el("input", "opt-search");
  search.type = "search";
  search.placeholder = "Search names and error messages";
  filters.append(kindsHolder, search);
  // selection and actions
  const actions = el("div", "opt-actions");
  const counts = el("span", "opt-counts");
  const selectAll = el("button", "opt-select-all");
  const clear = el("button", "opt-clear", "Clear selection");
  const cancelBtn = el("button", "opt-cancel", "Cancel selected");
  const deleteBtn = el("button", "opt-delete", "Delete selected");
  for (const b of [selectAll, clear, cancelBtn, deleteBtn]) b.type = "button";
  actions.append(counts, selectAll, clear, cancelBtn, deleteBtn);
  const confirmBar = el("div", "opt-confirm-bar");
  const confirmText = el("span", "opt-confirm-text");
  const confirmBtn = el("button", "opt-confirm");
  const backBtn = el("button", "opt-back", "Back");
  confirmBtn.type = backBtn.type = "button";
  confirmBar.append(confirmText, confirmBtn, backBtn);
  confirmBar.hidden = true;
  const message = el("div", "opt-message");
  // the table
  const table = el("table", "opt-table");
  const head = el("tr");
  const pageBox = checkbox("opt-page-select");
  const pageCell = el("th", "opt-check");
  pageCell.append(pageBox);
  head.append(pageCell);
  const headers = COLUMNS.map(([key, label]) => {
    const th = el("th", "opt-sortable", label);
    th.dataset.column = key;
    th.addEventListener("click", () => {
      if (model.get("sort_by") === key) model.set("sort_desc", !model.get("sort_desc"));
      else {
        model.set("sort_by", key);
        model.set("sort_desc", NEWEST_FIRST.has(key));
      }
      model.save_changes();
    });
    head.append(th);
    return th;
  });
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  table.append(thead, tbody);
  const scroller = el("div", "opt-scroll");
  scroller.append(table);
  // pager
  const pager = el("div", "opt-pager");
  const prev = el("button", "opt-prev", "‹ Prev");
  const pageText = el("span", "opt-page");
  const next = el("button", "opt-next", "Next ›");
  prev.type = next.type = "button";
  pager.append(prev, pageText, next);
  root.append(filters, actions, confirmBar, message, scroller, pager);
  host.append(root);

  let pendingAction = null;
  let kindBoxes = [];
  let kindsShown = "";
  const link = liveness(model, () => update());

  function setList(key, boxes) {
    model.set(key, boxes.filter((b) => b.checked).map((b) => b.value));
    model.save_changes();
  }
  stateBoxes.forEach((b) => b.addEventListener("change", () => setList("state_filter", stateBoxes)));

  function renderKinds() {
    const kinds = model.get("kinds") || [];
    const key = kinds.join("\u0000");
    if (key === kindsShown) return;
    kindsShown = key;
    kindsHolder.replaceChildren();
    kindBoxes = kinds.map((k) => {
      const label = el("label", "opt-chip");
      const box = checkbox("opt-kind", k);
      box.addEventListener("change", () => setList("kind_filter", kindBoxes));
      label.append(box, el("span", "opt-kind-label", k));
      kindsHolder.append(label);
      return box;
    });
  }

  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      model.set("search", search.value);
      model.save_changes();
    }, 250);
  });

  function rowNames() {
    return (model.get("rows") || []).map((r) => r.name);
  }
  pageBox.addEventListener("change", () => {
    model.send({ type: "select", names: rowNames(), selected: pageBox.checked });
  });
  selectAll.addEventListener("click", () => model.send({ type: "select_matching" }));
  clear.addEventListener("click", () => model.send({ type: "clear_selection" }));

  function ask(action) {
    pendingAction = action;
    // Only the rows the service can act on are counted and sent (the Gemini API cancels and
    // deletes batches only); the confirmation says how many are left alone.
    const able = model.get(action === "cancel" ? "cancellable_count" : "deletable_count") ?? model.get("selected_count");
    const n = fmt(able);
    const left = model.get("selected_count") - able;
    const rest = left > 0 ? ` (${fmt(left)} selected cannot be ${action === "cancel" ? "cancelled" : "deleted"} by the service)` : "";
    confirmText.textContent =
      (action === "cancel" ? `Cancel ${n} selected operations on the server?` : `Delete ${n} selected operations from the server?`) + rest;
    confirmBtn.textContent = action === "cancel" ? `Yes, cancel ${n}` : `Yes, delete ${n}`;
    confirmBar.hidden = false;
    confirmBar.dataset.action = action;
    confirmBtn.focus();
  }
  cancelBtn.addEventListener("click", () => ask("cancel"));
  deleteBtn.addEventListener("click", () => ask("delete"));
  confirmBtn.addEventListener("click", () => {
    if (pendingAction) model.send({ type: "action", action: pendingAction });
    pendingAction = null;
    confirmBar.hidden = true;
  });
  backBtn.addEventListener("click", () => {
    pendingAction = null;
    confirmBar.hidden = true;
  });

  function go(delta) {
    model.set("page", Math.max(0, model.get("page") + delta));
    model.save_changes();
  }
  prev.addEventListener("click", () => go(-1));
  next.addEventListener("click", () => go(1));

  function renderRows() {
    const rows = model.get("rows") || [];
    const body = [];
    for (const r of rows) {
      const tr = el("tr", "opt-row");
      tr.dataset.name = r.name;
      tr.dataset.state = r.state;
      tr.dataset.selected = String(Boolean(r.selected));
      const pick = checkbox("opt-row-select");
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
      tr.append(c0, id, el("td", "opt-kind-cell", r.kind), state, progress, el("td", "opt-time", r.create_time),
        el("td", "opt-time", r.duration === null ? "" : formatDuration(r.duration)), error);
      body.push(tr);
    }
    tbody.replaceChildren(...body);
    pageBox.checked = rows.length > 0 && rows.every((r) => r.selected);
  }

  function update() {
    const total = model.get("total");
    const matching = model.get("matching");
    const selected = model.get("selected_count");
    const busy = model.get("busy");
    root.dataset.total = String(total);
    root.dataset.matching = String(matching);
    root.dataset.selected = String(selected);
    root.dataset.busy = String(busy);
    root.dataset.live = link.get();
    const states = new Set(model.get("state_filter"));
    stateBoxes.forEach((b) => (b.checked = states.has(b.value)));
    renderKinds();
    const kinds = new Set(model.get("kind_filter"));
    kindBoxes.forEach((b) => (b.checked = kinds.has(b.value)));
    if (document.activeElement !== search) search.value = model.get("search");
    counts.textContent = `${fmt(matching)} matching of ${fmt(total)} · ${fmt(selected)} selected`;
    selectAll.textContent = `Select all ${fmt(matching)} matching`;
    const acting = busy || link.get() !== "true";
    selectAll.disabled = matching === 0;
    clear.disabled = selected === 0;
    cancelBtn.disabled = (model.get("cancellable_count") ?? selected) === 0 || acting;
    deleteBtn.disabled = (model.get("deletable_count") ?? selected) === 0 || acting;
    if (acting) confirmBar.hidden = true;
    message.textContent =
      link.get() === "false" ? "The kernel does not answer (busy, or gone): actions are paused." : model.get("message");
    message.hidden = !message.textContent;
    const sortBy = model.get("sort_by");
    headers.forEach((th) => {
      const on = th.dataset.column === sortBy;
      th.classList.toggle("opt-sorted", on);
      th.dataset.sort = on ? (model.get("sort_desc") ? "desc" : "asc") : "";
    });
    const size = Math.max(1, model.get("page_size"));
    const pages = Math.max(1, Math.ceil(matching / size));
    const page = model.get("page");
    pageText.textContent = `page ${fmt(page + 1)} of ${fmt(pages)}`;
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
    renderRows();
  }

  model.on("change", update);
  update();

  return () => {
    link.stop();
    clearTimeout(searchTimer);
    model.off("change", update);
  };
}


function render(context) {
  return context.model.get("_view") === "table" ? renderTable(context) : renderOperation(context);
}

export default { render };
export { formatDuration }; // for tests/test_frontend.py; anywidget only uses the default export
