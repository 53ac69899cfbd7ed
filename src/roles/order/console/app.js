// dop's operator console. Plain JavaScript, no build step: it calls the
// order role's admin API (docs/api.md), the same API `dop admin` uses.
// The token lives in this tab's sessionStorage only and travels in the
// Authorization header, never in a URL. Every text from the API is set as
// text (never as HTML): dead-letter reasons come from messages.
"use strict";

const TOKEN_KEY = "dop.console.token";
const REFRESH_MS = 5000;
const PAGE = "25";
const STATUSES = ["IN_PROGRESS", "COMPENSATING", "COMPLETED", "COMPENSATED", "FAILED"];
const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

const $ = (id) => document.getElementById(id);
let timer = null;
// True while a page redraws itself on its timer (not on navigation): the
// redraw then keeps the focus and any filter the operator is changing.
let refreshing = false;
// Paging of the saga list: the `before` of each page seen, for "Previous".
let pages = [];

// ---- small DOM helpers ------------------------------------------------------

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** What identifies a focusable element across a redraw. */
function focusKey(el) {
  if (!el || !$("view").contains(el)) return null;
  if (el.id) return `#${CSS.escape(el.id)}`;
  if (el.dataset.queue) return `[data-queue="${CSS.escape(el.dataset.queue)}"]`;
  if (el.getAttribute("href")) return `a[href="${CSS.escape(el.getAttribute("href"))}"]`;
  return null;
}

function render(...nodes) {
  const keep = nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false);
  const focus = refreshing ? focusKey(document.activeElement) : null;
  const values = refreshing
    ? [...$("view").querySelectorAll("select[id], input[id]")].map((el) => [el.id, el.value])
    : [];
  $("view").replaceChildren(...keep);
  for (const [id, value] of values) {
    const el = $(id);
    if (el && [...(el.options || [])].some((o) => o.value === value)) el.value = value;
  }
  if (focus) {
    const el = $("view").querySelector(focus);
    if (el) el.focus({ preventScroll: true });
  }
  // Each cell knows its column's name: at phone width a row becomes a
  // card of "name: value" lines (app.css).
  for (const t of $("view").querySelectorAll("table")) {
    const heads = [...t.querySelectorAll("thead th")].map((th) => th.textContent);
    for (const tr of t.querySelectorAll("tbody tr")) {
      [...tr.children].forEach((td, i) => { td.dataset.label = heads[i] || ""; });
    }
  }
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** A status as text and a shape-coded badge, readable without colour. */
function badge(status) {
  const marks = {
    IN_PROGRESS: "\u25B6", COMPENSATING: "\u21BA", COMPLETED: "\u2714",
    COMPENSATED: "\u21A9", FAILED: "\u2716", CONFIRMED: "\u2714", PENDING: "\u2026",
  };
  const mark = marks[status] || "\u2022";
  return h("span", { class: `badge st-${String(status).toLowerCase()}` },
    h("span", { "aria-hidden": "true" }, mark + " "), status);
}

function stuckMark() {
  return h("span", { class: "badge stuck-badge" }, h("span", { "aria-hidden": "true" }, "\u26A0 "), "STUCK");
}

// ---- messages ---------------------------------------------------------------

function showError(err) {
  const box = $("error");
  box.replaceChildren();
  if (err instanceof ApiError) {
    box.append(h("strong", {}, `HTTP ${err.status} ${err.code}`), ": ", err.message);
    if (err.status === 401 || err.status === 403) {
      box.append(" ", h("button", { type: "button", onclick: askToken }, "Set token"));
    }
  } else {
    box.append(h("strong", {}, "Error"), ": ", String(err && err.message ? err.message : err));
  }
  box.hidden = false;
}

function clearMessages() {
  $("error").hidden = true;
  $("notice").hidden = true;
}

function notice(...parts) {
  const box = $("notice");
  box.replaceChildren(...parts);
  box.hidden = false;
}

// ---- token ------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showTokenState() {
  const t = token();
  $("token-state").textContent = t ? "Token set for this tab" : "No token";
  $("token-forget").hidden = !t;
}

function askToken() {
  $("token-input").value = "";
  $("token-dialog").showModal();
  $("token-input").focus();
}

// ---- API --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the admin API; throws ApiError with the envelope's code and message. */
async function api(method, path) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let resp;
  try {
    resp = await fetch(path, { method, headers, cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new Error(`cannot reach the order role (${e.message}); is dop serve running?`);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch (_) {
    body = null;
  }
  if (!resp.ok) {
    const code = body && body.code ? body.code : "ERROR";
    const msg = body && body.error ? body.error : `${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, code, msg);
  }
  return body;
}

function confirmAction(text) {
  return new Promise((resolve) => {
    const d = $("confirm-dialog");
    $("confirm-text").textContent = text;
    d.returnValue = "cancel";
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
    $("confirm-no").focus();
  });
}

// ---- overview ---------------------------------------------------------------

function counter(label, value, detail, id, extra) {
  return h("div", { class: "card", id },
    h("div", { class: "card-label" }, label),
    h("div", { class: "card-value", "data-value": value }, String(value)),
    h("div", { class: "card-detail" }, detail),
    extra || null);
}

function emptyState() {
  const origin = location.origin;
  return h("section", { class: "empty", id: "empty-state", "aria-labelledby": "empty-title" },
    h("h2", { id: "empty-title" }, "No sagas yet"),
    h("p", {}, "This system has not processed an order. Place a first one and it shows up here within seconds:"),
    h("ol", {},
      h("li", {}, "Stock a product on the inventory role (port 8082 by default; the operator token if one is set). The default configuration seeds products 1001 and 1002 already (inventory.seed).",
        h("pre", {}, `curl -X POST http://127.0.0.1:8082/inventory \\\n  -H "Authorization: Bearer $DOP_ADMIN__TOKEN" \\\n  -d '{"product_id": 1, "available_qty": 10}'`)),
      h("li", {}, "Place an order here, on the order role:",
        h("pre", {}, `curl -X POST ${origin}/orders \\\n  -d '{"user_id": 1, "product_id": 1, "quantity": 2, "total_amount": 19.98}'`)),
      h("li", {}, "Watch its saga move on the ", h("a", { href: "#/sagas" }, "Sagas"), " page, and open it for its timeline.")),
    h("p", {}, "The README's quick start and docs/operations.md say more."));
}

async function overview() {
  const s = await api("GET", "/admin/summary");
  const by = Object.fromEntries(s.statuses.map((x) => [x.status, x]));
  // Counts stop at the server's cap (a bounded index scan): "10000+".
  const atLeast = (c) => c.capped ? `${c.count}+` : c.count;
  const perMin = (n) => `${n} in the last ${s.window_seconds}s`;
  const heading = h("h2", { tabindex: "-1", id: "page-title" }, "Overview");
  const cards = h("div", { class: "cards", id: "counters" },
    counter("In flight", s.in_flight, `${s.started_in_window} started in the last ${s.window_seconds}s`, "c-in-flight"),
    counter("Completed", atLeast(by.COMPLETED), perMin(by.COMPLETED.in_window), "c-completed"),
    counter("Compensated", atLeast(by.COMPENSATED), perMin(by.COMPENSATED.in_window), "c-compensated"),
    counter("Failed", atLeast(by.FAILED), perMin(by.FAILED.in_window), "c-failed",
      by.FAILED.count ? h("a", { href: "#/sagas?status=FAILED" }, "List failed sagas") : null),
    counter("Stuck", s.stuck, `in flight, not moved for ${ago(s.stuck_after_seconds)}`, "c-stuck",
      s.stuck ? h("a", { href: `#/sagas?idle=${s.stuck_after_seconds}` }, "List stuck sagas") : null));
  if (s.stuck) cards.querySelector("#c-stuck").classList.add("alarm");
  const when = h("p", { class: "muted" }, `${s.total}${s.capped ? "+" : ""} sagas in all. Refreshed ${new Date().toLocaleTimeString()}, every ${REFRESH_MS / 1000}s.`);
  render(heading, cards, when, s.total === 0 ? emptyState() : null);
  schedule(overview);
}

// ---- saga list --------------------------------------------------------------

function hashParams() {
  const q = location.hash.split("?")[1] || "";
  return new URLSearchParams(q);
}

function listHash(p) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(p)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `#/sagas?${s}` : "#/sagas";
}

function select(id, label, options, value) {
  return h("div", { class: "field" }, h("label", { for: id }, label),
    h("select", { id, name: id },
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
}

async function sagaList() {
  const p = hashParams();
  const status = p.get("status") || "";
  const idle = p.get("idle") || "";
  const older = p.get("older") || "";
  const before = p.get("before") || "";
  const limit = /^[0-9]+$/.test(p.get("limit") || "") ? p.get("limit") : PAGE;
  const q = new URLSearchParams({ limit });
  if (status) q.set("status", status);
  if (idle) q.set("idle_for", idle);
  if (older) q.set("older_than", older);
  if (before) q.set("before", before);
  const list = await api("GET", `/admin/sagas?${q}`);

  const ages = [["", "any"], ["30", "30 s"], ["300", "5 min"], ["3600", "1 h"], ["86400", "1 day"]];
  if (idle && !ages.some(([v]) => v === idle)) ages.push([idle, `${idle} s`]);
  const form = h("form", { class: "filters", id: "filters", onsubmit: (e) => {
    e.preventDefault();
    pages = [];
    location.hash = listHash({
      status: $("f-status").value, idle: $("f-idle").value, older: $("f-older").value,
      limit: $("f-limit").value === PAGE ? "" : $("f-limit").value,
    });
  } },
  select("f-status", "Status", [["", "any"], ...STATUSES.map((x) => [x, x])], status),
  select("f-idle", "Not moved for at least", ages, idle),
  select("f-older", "Created at least", ages.map(([v, t]) => [v, v ? `${t} ago` : t]), older),
  select("f-limit", "Per page", [...new Set(["10", PAGE, "100", limit])].map((n) => [n, n]), limit),
  h("button", { type: "submit" }, "Apply"));

  const rows = list.sagas.map((g) => h("tr", { class: g.stuck ? "stuck" : null, "data-saga": g.saga_id },
    h("td", {}, h("a", { href: `#/saga/${g.saga_id}`, class: "mono" }, g.saga_id)),
    h("td", { class: "num" }, g.order_id),
    h("td", {}, badge(g.status), g.stuck ? [" ", stuckMark()] : null),
    h("td", {}, g.failed_step ? `${g.current_step} (failed at ${g.failed_step})` : g.current_step),
    h("td", { class: "num" }, ago(g.age_seconds)),
    h("td", { class: "num" }, ago(g.idle_seconds)),
    h("td", { class: "num" }, g.retry_count),
    h("td", { class: "reason" }, g.failure_reason || "")));
  const table = list.count === 0
    ? h("p", { id: "no-sagas" }, status || idle || older || before
      ? "No saga matches these filters."
      : "No sagas yet: place an order (see the Overview page).")
    : h("div", { class: "scroll" }, h("table", { id: "saga-table" },
      h("caption", {}, `${list.count} saga${list.count === 1 ? "" : "s"}, newest first${before ? " (a later page)" : ""}; rows marked STUCK are in flight and have not moved for the recovery threshold`),
      h("thead", {}, h("tr", {}, ["Saga", "Order", "Status", "Step", "Age", "Last moved", "Retries", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)));
  const nav = h("nav", { class: "pager", "aria-label": "Pages" },
    before ? h("button", { type: "button", id: "prev-page", onclick: () => {
      pages.pop();
      location.hash = listHash({ status, idle, older, limit: p.get("limit"), before: pages[pages.length - 1] || "" });
    } }, "Previous page") : null,
    list.next_before ? h("button", { type: "button", id: "next-page", onclick: () => {
      pages.push(list.next_before);
      location.hash = listHash({ status, idle, older, limit: p.get("limit"), before: list.next_before });
    } }, "Next page") : null);
  render(h("h2", { tabindex: "-1", id: "page-title" }, "Sagas"), form, table, nav);
  schedule(sagaList);
}

// ---- one saga ---------------------------------------------------------------

/** What the saga did to stock and money, read from its timeline. */
function effects(d) {
  const o = d.order;
  const out = [];
  for (const e of d.events) {
    const units = o ? `${o.quantity} unit${o.quantity === 1 ? "" : "s"} of product ${o.product_id}` : "the units";
    const why = e.reason ? `: ${e.reason}` : "";
    const said = {
      "inventory.reserved": ["Stock", `${units} reserved`],
      "inventory.reserve_failed": ["Stock", `not reserved${why}`],
      "payment.processed": ["Payment", `${o ? o.total_amount : "the amount"} charged`],
      "payment.failed": ["Payment", `declined${why}`],
      "inventory.released": ["Stock", `${units} released`],
      "inventory.release_failed": ["Stock", `release failed${why}`],
    }[e.event];
    if (said) out.push([...said, e]);
  }
  return out;
}

function canRetry(s) {
  return s.status === "IN_PROGRESS" || s.status === "COMPENSATING" ||
    (s.status === "FAILED" && s.failed_step === "RELEASING_INVENTORY");
}

async function retry(id) {
  clearMessages();
  if (!await confirmAction(`Retry saga ${id}? Its pending command (or the release of a failed compensation) is sent again.`)) return;
  try {
    const r = await api("POST", `/admin/sagas/${id}/retry`);
    await sagaPage(id, false);
    notice(h("strong", {}, "Retry accepted"), `: ${r.action} (message ${r.message_id}). It appears in the timeline below as the saga moves.`);
  } catch (e) {
    showError(e);
  }
}

async function sagaPage(id, refresh = true) {
  const d = await api("GET", `/admin/sagas/${encodeURIComponent(id)}`);
  const s = d.saga;
  const o = d.order;
  const dl = (pairs) => h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const sagaFacts = dl([
    ["Status", [badge(s.status), s.stuck ? [" ", stuckMark()] : null]],
    ["Step", s.current_step],
    s.failed_step && ["Failed at", s.failed_step],
    s.failure_reason && ["Reason", s.failure_reason],
    ["Retries", String(s.retry_count)],
    ["Created", `${s.created_at} (${ago(s.age_seconds)} ago)`],
    ["Last moved", `${s.updated_at} (${ago(s.idle_seconds)} ago)`],
  ]);
  const orderFacts = o ? dl([
    ["Order", String(o.order_id)], ["Status", badge(o.status)], ["User", String(o.user_id)],
    ["Product", String(o.product_id)], ["Quantity", String(o.quantity)], ["Total", String(o.total_amount)],
  ]) : h("p", {}, "The order row is missing.");
  const eff = effects(d);
  const effList = eff.length
    ? h("ul", { id: "effects" }, eff.map(([what, text, e]) => h("li", {}, h("strong", {}, `${what}: `), text, h("span", { class: "muted" }, ` (${e.created_at})`))))
    : h("p", { id: "effects" }, "No stock or payment effect yet.");
  const events = h("div", { class: "scroll" }, h("table", { id: "timeline" },
    h("caption", {}, `Timeline: ${d.events.length} event${d.events.length === 1 ? "" : "s"}, oldest first`),
    h("thead", {}, h("tr", {}, ["#", "Event", "From", "To", "Message id", "Reason", "Time (UTC)"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, d.events.map((e) => h("tr", { "data-event": e.event },
      h("td", { class: "num" }, e.id),
      h("td", {}, e.event),
      h("td", {}, e.from_status ? `${e.from_status}/${e.from_step}` : "-"),
      h("td", {}, `${e.to_status}/${e.to_step}`),
      h("td", { class: "mono" }, e.message_id || "-"),
      h("td", { class: "reason" }, e.reason || ""),
      h("td", {}, e.created_at))))));
  const actions = h("div", { class: "actions" },
    canRetry(s)
      ? h("button", { type: "button", id: "retry", class: "primary", onclick: () => retry(s.saga_id) }, "Retry saga\u2026")
      : h("p", { class: "muted" }, `A ${s.status} saga needs no retry: only one in flight or a failed compensation can be retried.`));
  render(
    h("h2", { tabindex: "-1", id: "page-title" }, "Saga ", h("span", { class: "mono" }, s.saga_id)),
    h("p", {}, h("a", { href: "#/sagas" }, "\u2190 All sagas")),
    h("div", { class: "two" },
      h("section", { "aria-labelledby": "h-saga" }, h("h3", { id: "h-saga" }, "Saga"), sagaFacts, actions),
      h("section", { "aria-labelledby": "h-order" }, h("h3", { id: "h-order" }, "Order"), orderFacts,
        h("h3", {}, "Stock and payment"), effList)),
    events);
  if (refresh) schedule(() => sagaPage(id));
}

// ---- dead letters -----------------------------------------------------------

async function redrive(q) {
  clearMessages();
  if (!await confirmAction(`Redrive ${q.dlq}? Its ${q.depth} message(s) go back to ${q.queue}, each with its own message id; those past the deduplication window stay.`)) return;
  try {
    const r = await api("POST", `/admin/dlq/${encodeURIComponent(q.queue)}/redrive`);
    await dlqPage(false);
    const parts = [h("strong", {}, "Redrive done"), `: moved ${r.moved} of ${r.depth_at_start} message(s) from ${r.dlq}.`];
    if (r.skipped.length) parts.push(h("ul", {}, r.skipped.map((s) => h("li", {}, `${s.message_id || "-"} stays: ${s.why}`))));
    if (r.error) parts.push(h("p", {}, `Stopped: ${r.error}`));
    notice(...parts);
  } catch (e) {
    showError(e);
  }
}

async function dlqPage(refresh = true) {
  const all = await api("GET", "/admin/dlq");
  const total = all.reduce((n, q) => n + (q.depth || 0), 0);
  const rows = all.map((q) => h("tr", { "data-dlq": q.dlq },
    h("td", { class: "mono" }, q.dlq),
    h("td", { class: "num" }, q.depth === null ? "missing" : String(q.depth)),
    h("td", {}, q.depth ? h("button", { type: "button", class: "redrive", "data-queue": q.queue, onclick: () => redrive(q) }, `Redrive ${q.dlq}\u2026`) : "-")));
  const samples = all.filter((q) => q.samples.length).map((q) => h("section", { class: "samples", "aria-label": `${q.dlq} messages` },
    h("h3", {}, `${q.dlq}: first ${q.samples.length} of ${q.depth}`),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Message id", "Routing key", "Saga", "Retries", "x-dlq-reason"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, q.samples.map((m) => h("tr", {},
        h("td", { class: "mono" }, m.message_id || "-"),
        h("td", {}, m.routing_key || "-"),
        h("td", {}, m.saga_id ? h("a", { href: `#/saga/${m.saga_id}`, class: "mono" }, m.saga_id) : "-"),
        h("td", { class: "num" }, m.retry_count || "-"),
        h("td", { class: "reason" }, m.reason || "-"))))))));
  render(
    h("h2", { tabindex: "-1", id: "page-title" }, "Dead letters"),
    h("p", {}, total ? `${total} message(s) wait in dead-letter queues. Peeking leaves them in place.` : "Every dead-letter queue is empty."),
    h("div", { class: "scroll" }, h("table", { id: "dlq-table" },
      h("caption", {}, "Dead-letter queues and their depth"),
      h("thead", {}, h("tr", {}, ["Queue", "Depth", "Action"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows))),
    samples);
  if (refresh) schedule(() => dlqPage(), REFRESH_MS * 2);
}

// ---- routing ----------------------------------------------------------------

/** Refreshes the current page while it is shown and the tab is visible. */
function schedule(fn, ms = REFRESH_MS) {
  clearTimeout(timer);
  const hash = location.hash;
  timer = setTimeout(async () => {
    if (location.hash !== hash) return;
    if (document.hidden || document.querySelector("dialog[open]")) {
      schedule(fn, ms);
      return;
    }
    refreshing = true;
    try {
      await fn();
    } catch (e) {
      showError(e);
      schedule(fn, ms);
    } finally {
      refreshing = false;
    }
  }, ms);
}

async function route(focus = true) {
  clearTimeout(timer);
  clearMessages();
  const hash = location.hash || "#/";
  const path = hash.split("?")[0];
  for (const a of document.querySelectorAll("[data-nav]")) {
    const on = (a.dataset.nav === "overview" && path === "#/") ||
      (a.dataset.nav === "sagas" && (path.startsWith("#/sagas") || path.startsWith("#/saga/"))) ||
      (a.dataset.nav === "dlq" && path === "#/dlq");
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    if (path.startsWith("#/saga/")) await sagaPage(decodeURIComponent(path.slice(7)));
    else if (path === "#/sagas") await sagaList();
    else if (path === "#/dlq") await dlqPage();
    else await overview();
  } catch (e) {
    render(h("h2", { tabindex: "-1", id: "page-title" }, "Could not load this page"),
      e instanceof ApiError && e.status === 401
        ? h("p", {}, "This system has admin tokens configured: set the read or operator token to see it.")
        : h("p", {}, "The error above says why. The page reloads when you navigate again."));
    showError(e);
  }
  const title = $("page-title");
  if (focus && title) title.focus();
}

async function search(e) {
  e.preventDefault();
  clearMessages();
  const q = $("search-q").value.trim();
  if (UUID.test(q)) {
    $("search-q").value = "";
    location.hash = `#/saga/${q.toLowerCase()}`;
    return;
  }
  if (/^[0-9]+$/.test(q)) {
    try {
      const o = await api("GET", `/orders/${q}`);
      $("search-q").value = "";
      location.hash = `#/saga/${o.saga_id}`;
    } catch (err) {
      showError(err);
    }
    return;
  }
  showError(new Error("enter a saga id (a UUID) or an order id (a number)"));
}

document.addEventListener("DOMContentLoaded", () => {
  showTokenState();
  $("token-set").addEventListener("click", askToken);
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    route(false);
  });
  $("token-cancel").addEventListener("click", () => $("token-dialog").close());
  $("token-form").addEventListener("submit", () => {
    const t = $("token-input").value.trim();
    $("token-input").value = "";
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    showTokenState();
    route(false);
  });
  $("search").addEventListener("submit", search);
  window.addEventListener("hashchange", () => route(true));
  route(false);
});
