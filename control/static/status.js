// The status page: polls GET /v1/status once a second and draws it. The API token
// (when the daemon has tokens) is asked for here and kept in sessionStorage, so it
// lives as long as the tab and never appears in a URL.
"use strict";
(function () {
  const TOKEN_KEY = "smppd.token";
  const PERIOD_MS = 1000;
  const $ = (id) => document.getElementById(id);
  const cards = new Map(); // operator id -> {root, parts}
  let canOperate = false;
  let busy = false;

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function headers() {
    const h = { "Accept": "application/json" };
    if (token()) h["Authorization"] = "Bearer " + token();
    return h;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pill(node, state) {
    const keep = node.getAttribute("data-class") || "";  // classes of its own, e.g. op-state
    node.className = ("pill " + String(state).replace(/[^a-z_]/g, "") + " " + keep).trim();
    node.textContent = String(state).replace(/_/g, " ");
  }

  function num(v, digits) {
    if (typeof v !== "number") return "–";
    return v.toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 1 : digits });
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + (s % 60) + "s";
    return s + "s";
  }

  function ago(iso) {
    const ms = Date.now() - Date.parse(iso);
    return isNaN(ms) ? "" : duration(Math.max(0, ms / 1000)) + " ago";
  }

  function showToken(message) {
    $("token-form").hidden = false;
    $("token-message").textContent = message || "";
  }

  function setConn(state, text) {
    pill($("conn"), state);
    $("conn").textContent = text;
  }

  function card(op) {
    let c = cards.get(op.id);
    if (c) return c;
    const root = el("article", { "class": "card op", "data-operator": op.id });
    const head = el("div", { "class": "op-head" });
    const name = el("h3", {}, op.name);
    const id = el("span", { "class": "op-id" }, op.id);
    const state = el("span", { "class": "pill op-state", "data-class": "op-state" });
    head.append(name, id, state);
    const figures = el("dl", { "class": "op-figures" });
    const parts = { name, state, figures: {} };
    for (const [key, label] of [["submit", "submits /s"], ["receipt", "receipts /s"],
                                ["tps", "TPS limit"], ["window", "window"],
                                ["queued", "queued"], ["spilled", "spilled"],
                                ["unmatched", "unmatched"], ["binds", "binds up"]]) {
      const dd = el("dd", { "data-figure": key });
      const pair = el("div");
      pair.append(el("dt", {}, label), dd);
      figures.append(pair);
      parts.figures[key] = dd;
    }
    const bar = el("div", { "class": "bar" });
    parts.bar = el("div");
    bar.append(parts.bar);
    const wrap = el("div", { "class": "table-wrap" });
    const table = el("table");
    const thead = el("thead");
    const tr = el("tr");
    for (const [label, cls] of [["bind", ""], ["state", ""], ["host", ""],
                                ["window", "hide-narrow"], ["last error", ""]]) {
      tr.append(el("th", cls ? { "class": cls } : {}, label));
    }
    thead.append(tr);
    parts.binds = el("tbody");
    table.append(thead, parts.binds);
    wrap.append(table);
    const actions = el("div", { "class": "actions" });
    parts.buttons = {};
    for (const action of ["pause", "resume", "rebind"]) {
      const b = el("button", { "type": "button", "data-action": action,
                               "class": action === "rebind" ? "secondary" : "" },
                   action[0].toUpperCase() + action.slice(1));
      b.addEventListener("click", () => act(op.id, action, b));
      actions.append(b);
      parts.buttons[action] = b;
    }
    parts.actions = actions;
    root.append(head, figures, bar, wrap, actions);
    $("operators").append(root);
    c = { root, parts };
    cards.set(op.id, c);
    return c;
  }

  function drawOperator(op) {
    const p = card(op).parts;
    p.name.textContent = op.name;
    pill(p.state, op.state);
    const f = p.figures;
    f.submit.textContent = num(op.submit_rate);
    f.receipt.textContent = num(op.receipt_rate);
    f.tps.textContent = num(op.tps_limit, 3);
    f.window.textContent = num(op.in_flight, 0) + " / " + num(op.window, 0);
    f.queued.textContent = num(op.queued, 0);
    f.spilled.textContent = num(op.spilled, 0);
    f.unmatched.textContent = num(op.receipts_unmatched, 0);
    f.binds.textContent = num(op.binds_up, 0) + " / " + num(op.binds_configured, 0);
    p.bar.style.width = Math.min(100, op.tps_limit ? 100 * op.submit_rate / op.tps_limit : 0) + "%";
    const rows = [];
    for (const b of op.binds || []) {
      const tr = el("tr", { "data-bind": b.bind });
      const st = el("span");
      pill(st, b.state);
      const stateCell = el("td");
      stateCell.append(st);
      const host = (b.host || "–") + (b.host ? (b.on_primary ? " (primary)" : " (backup)") : "");
      const err = el("td", { "class": b.last_error ? "error" : "muted" },
                     b.last_error ? b.last_error : "–");
      if (b.last_error && typeof b.last_error_since === "number") {
        const since = new Date(b.last_error_since * 1000).toISOString();
        err.append(el("br"), el("small", { "class": "muted" },
                                "since " + since + " (" + ago(since) + ")"));
      }
      tr.append(el("td", {}, b.bind), stateCell, el("td", {}, host),
                el("td", { "class": "hide-narrow" }, num(b.window_in_use, 0)), err);
      rows.push(tr);
    }
    p.binds.replaceChildren(...rows);
    p.actions.hidden = !canOperate;
    p.buttons.pause.disabled = busy || !canOperate || op.state === "paused";
    p.buttons.resume.disabled = busy || !canOperate || op.state !== "paused";
    p.buttons.rebind.disabled = busy || !canOperate;
  }

  function drawErrors(errors) {
    const items = errors.map((e) => {
      const li = el("li", { "data-level": e.level || "" });
      li.append(el("time", { "datetime": e.at }, e.at));
      const where = [e.operator, e.bind].filter(Boolean).join(" ");
      if (where) li.append(el("span", { "class": "where" }, where));
      li.append(document.createTextNode(e.message));
      return li;
    });
    if (!items.length) items.push(el("li", { "class": "muted" }, "none"));
    $("errors").replaceChildren(...items);
  }

  function draw(s) {
    canOperate = !!(s.you && s.you.operate);
    const t = s.totals;
    $("submit-rate").textContent = num(t.submit_rate);
    $("tps-limit").textContent = num(t.tps_limit, 3);
    $("submit-bar").style.width = Math.min(100, t.tps_limit ? 100 * t.submit_rate / t.tps_limit : 0) + "%";
    $("receipt-rate").textContent = num(t.receipt_rate);
    $("unmatched").textContent = num(t.unmatched, 0);
    $("held").textContent = num(t.receipts_held, 0);
    $("queued").textContent = num(t.queued, 0);
    $("spilled").textContent = num(t.spilled, 0);
    $("in-flight").textContent = num(t.in_flight, 0);
    $("uptime").textContent = duration(s.uptime_seconds);
    $("started").textContent = s.started_at;
    $("rate-window").textContent = s.rate_window_seconds;
    $("updated").textContent = "at " + s.time;
    const seen = new Set();
    for (const op of s.operators) { drawOperator(op); seen.add(op.id); }
    for (const [id, c] of cards) {
      if (!seen.has(id)) { c.root.remove(); cards.delete(id); }
    }
    drawErrors(s.errors || []);
  }

  async function poll() {
    try {
      const resp = await fetch("/v1/status", { headers: headers(), cache: "no-store" });
      if (resp.status === 401 || resp.status === 403) {
        setConn("down", resp.status === 401 ? "token needed" : "token lacks the read role");
        showToken(resp.status === 401 ? "This daemon needs an API token to show its status."
                                      : "This token may not read the status (needs read).");
      } else if (!resp.ok) {
        setConn("down", "error " + resp.status);
      } else {
        draw(await resp.json());
        setConn("live", "live");
      }
    } catch (e) {
      setConn("down", "daemon unreachable");
    }
    setTimeout(poll, PERIOD_MS);
  }

  async function act(id, action, button) {
    busy = true;
    button.disabled = true;
    try {
      const resp = await fetch("/v1/operators/" + encodeURIComponent(id) + "/" + action,
                               { method: "POST", headers: headers() });
      if (resp.ok) {
        $("notice").hidden = true;
        const op = cards.get(id);
        const body = await resp.json();
        if (op && body && body.state) pill(op.parts.state, body.state);
      } else {
        let detail = "";
        try { detail = (await resp.json()).detail || ""; } catch (e) { /* not JSON */ }
        $("notice").textContent = action + " " + id + " failed: " + resp.status + " " + detail;
        $("notice").hidden = false;
      }
    } finally {
      busy = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token-button").addEventListener("click", () => {
      const form = $("token-form");
      form.hidden = !form.hidden;
    });
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token").value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      $("token-form").hidden = true;
    });
    $("token-clear").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("token-message").textContent = "Forgotten.";
    });
    poll();
  });
})();
