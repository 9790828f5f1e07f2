// task-runner console. Plain browser JavaScript, no build step, no dependencies.
// Every value from the runner (payloads, headers, handler names, reasons, output lines) is put
// into the page as text (textContent, or an attribute set with setAttribute), never as HTML.
"use strict";

const OUTCOME_COLOURS = {
  ok: "#2e7d32",
  failed: "#c62828",
  timeout: "#ef6c00",
  rejected: "#6a1b9a",
};

/** An element with attributes and children; strings become text nodes. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (name === "onclick") node.addEventListener("click", value);
    else if (name === "style") node.style.cssText = value; // CSSOM: allowed by the CSP, unlike a style attribute
    else if (value !== false && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const position = (t) => `${t.topic}/${t.partition}@${t.offset}`;
const time = (ms) => new Date(ms).toLocaleTimeString();
const outcomeCell = (o) => el("td", { class: `outcome-${o}` }, o);

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

async function getJson(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body;
}

const state = { session: null, running: new Map(), recent: [], page: "overview", selected: null };

// --- pages ---------------------------------------------------------------------------------

function show(page) {
  state.page = page;
  for (const section of document.querySelectorAll(".page")) {
    section.classList.toggle("shown", section.id === page);
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  if (page === "overview") loadLag();
  if (page === "recent") loadRecent();
  if (page === "dead-letters") loadDeadLetters();
  if (page === "functions") loadFunctions();
  if (page === "running") renderRunning();
  connect();
}

function renderOverview(o) {
  $("tps").textContent = o.tasksPerSecond.toFixed(1);
  $("children").textContent = `${o.running} / ${o.maxRunning}${o.saturated ? " (full)" : ""}`;
  $("prewarmed").textContent = String(o.prewarmedIdle);
  $("warm").textContent = String(o.warmProcesses);
  renderChart(o.buckets, o.now);
}

function renderChart(buckets, now) {
  const width = 10_000;
  const start = now - 60 * width;
  const byStart = new Map(buckets.map((b) => [b.at, b]));
  const totals = [];
  let max = 1;
  for (let at = start - (start % width) + width; at <= now; at += width) {
    const counts = { ok: 0, failed: 0, timeout: 0, rejected: 0 };
    for (const perOutcome of Object.values(byStart.get(at)?.counts ?? {})) {
      for (const [outcome, n] of Object.entries(perOutcome)) counts[outcome] += n;
    }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    max = Math.max(max, total);
    totals.push({ at, counts, byHandler: byStart.get(at)?.counts ?? {} });
  }
  $("chart").replaceChildren(...totals.map(({ at, counts, byHandler }) => {
    const title = `${time(at)}: ` + Object.entries(byHandler)
      .map(([h, c]) => `${h} ${Object.entries(c).map(([o, n]) => `${o} ${n}`).join(", ")}`)
      .join("; ");
    return el(
      "div",
      { class: "bar", title },
      ...Object.entries(counts).filter(([, n]) => n > 0).map(([outcome, n]) =>
        el("div", {
          class: "seg",
          style: `height:${(n / max) * 128}px;background:${OUTCOME_COLOURS[outcome]}`,
        })
      ),
    );
  }));
  const perFunction = new Map();
  for (const bucket of buckets) {
    for (const [handler, counts] of Object.entries(bucket.counts)) {
      const sum = perFunction.get(handler) ?? { ok: 0, failed: 0, timeout: 0, rejected: 0 };
      for (const [outcome, n] of Object.entries(counts)) sum[outcome] += n;
      perFunction.set(handler, sum);
    }
  }
  fill(
    $("by-function").tBodies[0],
    [...perFunction.entries()].sort(([a], [b]) => a < b ? -1 : 1).map(([handler, c]) =>
      el(
        "tr",
        {},
        el("td", {}, handler),
        ...["ok", "failed", "timeout", "rejected"].map((o) =>
          el("td", { class: c[o] ? `outcome-${o}` : "muted" }, c[o])
        ),
      )
    ),
  );
  $("legend").replaceChildren(
    ...Object.entries(OUTCOME_COLOURS).map(([o, colour]) =>
      el("span", {}, el("span", { class: "swatch", style: `background:${colour}` }), o)
    ),
  );
}

async function loadLag() {
  try {
    const lag = await getJson("/api/lag");
    $("total-lag").textContent = String(lag.totals.lag);
    fill(
      $("lag").tBodies[0],
      lag.partitions.map((p) =>
        el(
          "tr",
          {},
          el("td", {}, p.partition),
          el("td", {}, p.committed ?? "none"),
          el("td", {}, p.high),
          el("td", {}, p.lag ?? "-"),
          el("td", {}, p.owner ?? "-"),
        )
      ),
    );
    fill(
      $("members").tBodies[0],
      lag.members.map((m) =>
        el(
          "tr",
          {},
          el("td", {}, m.clientId),
          el("td", {}, m.clientHost),
          el("td", {}, m.partitions.join(", ")),
        )
      ),
    );
  } catch (error) {
    $("total-lag").textContent = "?";
    fill($("lag").tBodies[0], [el("tr", {}, el("td", { colspan: 5 }, `lag: ${error.message}`))]);
  }
}

function renderRunning() {
  const now = Date.now();
  const tasks = [...state.running.values()].sort((a, b) => a.startedAt - b.startedAt);
  $("running-empty").hidden = tasks.length > 0;
  fill(
    $("running-table").tBodies[0],
    tasks.map((t) => {
      const elapsed = now - t.startedAt;
      const share = Math.min(1, elapsed / t.timeoutMs);
      return el(
        "tr",
        { "data-position": position(t) },
        el("td", {}, t.handler),
        el("td", {}, position(t)),
        el("td", {}, t.key ?? "-"),
        el("td", {}, t.attempt),
        el("td", {}, time(t.startedAt)),
        el(
          "td",
          {},
          el("span", { class: "bar-line" }, el("span", { style: `width:${share * 100}%` })),
          `${(elapsed / 1000).toFixed(1)} s / ${(t.timeoutMs / 1000).toFixed(1)} s`,
        ),
      );
    }),
  );
}

async function loadRecent() {
  const handler = $("filter-handler").value;
  const outcome = $("filter-outcome").value;
  const query = new URLSearchParams();
  if (handler) query.set("handler", handler);
  if (outcome) query.set("outcome", outcome);
  state.recent = await getJson(`/api/recent?${query}`);
  const all = await getJson("/api/recent");
  const names = [...new Set(all.map((r) => r.handler ?? "-"))].sort();
  const select = $("filter-handler");
  select.replaceChildren(
    el("option", { value: "" }, "all"),
    ...names.map((n) => el("option", { value: n }, n)),
  );
  select.value = handler;
  fill(
    $("recent-table").tBodies[0],
    state.recent.map((r) =>
      el(
        "tr",
        { class: "clickable", "data-id": r.id, onclick: () => showDetail(r) },
        el("td", {}, time(r.endedAt)),
        outcomeCell(r.outcome),
        el("td", {}, r.handler ?? "-"),
        el("td", {}, position(r)),
        el("td", {}, `${r.durationMs} ms`),
        el("td", { class: "reason" }, r.reason),
      )
    ),
  );
}

function showDetail(r) {
  const detail = $("detail");
  detail.hidden = false;
  detail.replaceChildren(el(
    "div",
    {},
    el("h2", {}, `${r.handler ?? "-"} ${position(r)}`),
    el(
      "p",
      {},
      el("span", { class: `outcome-${r.outcome}` }, r.outcome),
      ` after ${r.attempts} attempt(s), ${r.durationMs} ms, ended ${time(r.endedAt)}`,
    ),
    el("h3", {}, "Reason"),
    el("p", { class: "reason" }, r.reason),
    r.error
      ? [
        el("h3", {}, "Error"),
        el("p", { class: "error-text" }, `${r.error.name}: ${r.error.message}`),
        el("pre", {}, r.error.stack.join("\n")),
      ]
      : null,
    el("h3", {}, "Output (last lines)"),
    r.output.length === 0
      ? el("p", { class: "muted" }, "no output")
      : el("pre", { class: "output" }, r.output.map((o) => `${o.stream}: ${o.line}`).join("\n")),
  ));
}

async function loadDeadLetters() {
  const topic = state.session?.deadLetterTopic;
  $("dlq-topic").textContent = topic ? `(${topic})` : "";
  $("token").disabled = !state.session?.actions;
  $("dry-run").disabled = !state.session?.actions;
  $("dlq-note").textContent = state.session?.actions
    ? "Select dead letters, run a dry run, then confirm the replay (needs the console token)."
    : "Read-only: replay needs a console token (CONSOLE_TOKEN_FILE), which this runner has none of.";
  let report;
  try {
    report = await getJson("/api/dead-letters");
  } catch (error) {
    fill($("dlq-table").tBodies[0], [el("tr", {}, el("td", { colspan: 7 }, error.message))]);
    return;
  }
  if (report.error) {
    fill($("dlq-table").tBodies[0], [el("tr", {}, el("td", { colspan: 7 }, report.error))]);
    return;
  }
  const rows = report.messages.map((m) => {
    const box = el("input", {
      type: "checkbox",
      "data-partition": m.partition,
      "data-offset": m.offset,
    });
    box.addEventListener("change", () => $("confirm").disabled = true);
    return el(
      "tr",
      { "data-offset": m.offset },
      el("td", {}, box),
      el(
        "td",
        { class: "clickable", onclick: () => showDeadLetter(m) },
        `${m.partition}@${m.offset}`,
      ),
      el("td", {}, m.handler ?? "-"),
      outcomeCell(m.deadLetter?.outcome ?? "-"),
      el("td", { class: "error" }, m.deadLetter?.error ?? "-"),
      el("td", {}, m.deadLetter?.origin ?? "-"),
      el("td", { class: "payload" }, m.preview ?? "(none)"),
    );
  });
  fill($("dlq-table").tBodies[0], rows);
  if (report.limitReached) {
    $("dlq-note").textContent += ` Only the first ${report.limit} are listed.`;
  }
}

function showDeadLetter(m) {
  const detail = $("dlq-detail");
  detail.hidden = false;
  detail.replaceChildren(el(
    "div",
    {},
    el("h2", {}, `${m.partition}@${m.offset} ${m.handler ?? "-"}`),
    el("h3", {}, "Error"),
    el("p", { class: "error-text" }, m.deadLetter?.error ?? "-"),
    m.deadLetter?.stack?.length ? el("pre", {}, m.deadLetter.stack.join("\n")) : null,
    el("h3", {}, "Headers"),
    el("pre", {}, Object.entries(m.headers).map(([k, v]) => `${k}: ${v}`).join("\n")),
    el("h3", {}, `Payload (${m.payloadBytes} bytes)`),
    el("pre", {}, m.preview ?? "(none)"),
  ));
}

function selectedDeadLetters() {
  return [...document.querySelectorAll("#dlq-table input[type=checkbox]:checked")].map((box) => ({
    partition: Number(box.dataset.partition),
    offset: Number(box.dataset.offset),
  }));
}

async function replaySelected(dryRun) {
  const out = $("replay-result");
  const chosen = selectedDeadLetters();
  if (chosen.length === 0) {
    out.textContent = "Select at least one dead letter first.";
    return;
  }
  const lines = [];
  for (const { partition, offset } of chosen) {
    const response = await fetch("/api/replay", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-csrf-token": state.session?.csrf ?? "",
        "x-console-token": $("token").value,
      },
      body: JSON.stringify({ partition, offset, dryRun }),
    });
    const body = await response.json();
    if (!response.ok) {
      lines.push(`${partition}@${offset}: ${body.error}`);
      $("confirm").disabled = true;
      out.textContent = lines.join("\n");
      out.classList.add("error-text");
      return;
    }
    for (const m of body.messages) {
      lines.push(
        dryRun
          ? `would replay ${partition}@${m.offset} (${m.handler ?? "-"}) to ${body.toTopic}`
          : `replayed ${partition}@${m.offset} (${m.handler ?? "-"}) to ` +
            `${body.toTopic}/${m.target.partition}@${m.target.offset}`,
      );
    }
  }
  out.classList.remove("error-text");
  out.textContent = lines.join("\n");
  $("confirm").disabled = !dryRun;
}

async function loadFunctions() {
  const functions = await getJson("/api/functions");
  fill(
    $("functions-table").tBodies[0],
    functions.map((f) =>
      el(
        "tr",
        {},
        el("td", {}, f.name),
        el("td", {}, f.hasDefaultExport === null ? "unknown" : f.hasDefaultExport ? "yes" : "no"),
        el("td", {}, el("code", {}, f.config ? JSON.stringify(f.config) : "(defaults)")),
        f.last
          ? el(
            "td",
            { class: `outcome-${f.last.outcome}` },
            `${f.last.outcome} ${time(f.last.endedAt)}`,
          )
          : el("td", { class: "muted" }, "none yet"),
      )
    ),
  );
}

// --- live updates ----------------------------------------------------------------------------

/** The pages that list tasks: only they ask the runner for every task's start and end. */
const TASK_PAGES = new Set(["running", "recent"]);

/**
 * The live stream, with task batches when the page shown lists tasks. A hidden tab (another
 * tab in front, a minimised window) has none: it costs the runner and the browser nothing until
 * it is shown again.
 */
function connect() {
  if (document.hidden) {
    state.events?.close();
    state.events = null;
    $("live").textContent = "paused while hidden";
    return;
  }
  const withTasks = TASK_PAGES.has(state.page);
  if (state.events && state.events.withTasks === withTasks) return;
  state.events?.close();
  const events = new EventSource(withTasks ? "/api/events?tasks=1" : "/api/events");
  events.withTasks = withTasks;
  state.events = events;
  // Batches that come while the running tasks are being read again wait for that read.
  let held = null;
  const apply = ({ started, stopped, ended }) => {
    for (const task of started) state.running.set(position(task), task);
    for (const key of stopped) state.running.delete(key);
    for (const outcome of ended) state.running.delete(position(outcome));
  };
  events.addEventListener("open", async () => {
    $("live").textContent = "live";
    if (!withTasks) return;
    // Starts and ends were not followed while away: begin from what runs now.
    held = [];
    const running = await getJson("/api/running");
    state.running = new Map(running.map((task) => [position(task), task]));
    for (const batch of held) apply(batch);
    held = null;
    if (state.page === "running") renderRunning();
  });
  events.addEventListener("error", () => $("live").textContent = "reconnecting…");
  events.addEventListener("overview", (e) => renderOverview(JSON.parse(e.data)));
  events.addEventListener("batch", (e) => {
    const batch = JSON.parse(e.data);
    if (held) return held.push(batch);
    apply(batch);
    if (state.page === "running") renderRunning();
    if (state.page === "recent" && batch.ended.length > 0) loadRecent();
  });
}

async function start() {
  state.session = await getJson("/api/session");
  $("filter-handler").addEventListener("change", loadRecent);
  $("filter-outcome").addEventListener("change", loadRecent);
  $("dry-run").addEventListener("click", () => replaySelected(true));
  $("confirm").addEventListener("click", () => {
    if (confirm("Replay the selected dead letters to the task topic? They will run again.")) {
      replaySelected(false);
    }
  });
  addEventListener("hashchange", () => show(location.hash.slice(1) || "overview"));
  // Shown again: the page is read afresh and the stream reopened.
  document.addEventListener(
    "visibilitychange",
    () => document.hidden ? connect() : show(state.page),
  );
  setInterval(() => {
    if (document.hidden) return;
    if (state.page === "running") renderRunning();
    if (state.page === "overview") loadLag();
  }, 2000);
  show(location.hash.slice(1) || "overview");
}

start();
