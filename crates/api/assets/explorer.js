// netchain explorer: a single-page app over the node's JSON API. Vanilla JS, no build step.
//
// Design: one poller samples GET /v1/status once a second (at most 300 samples: five minutes)
// and derives finalized TPS from committed_txs_total deltas; the overview updates text nodes
// in place and redraws one <canvas>, so the page does constant work per second whatever the
// chain's throughput. Lists are paged on the server (?before=) or on the client (block
// transactions), never rendered whole. Every request has a timeout; a failed one shows a
// banner and the poller keeps going. Test hooks are plain DOM ids and data-* attributes.
"use strict";

(() => {
  const SAMPLE_MS = 1000;
  const SAMPLES_MAX = 300;
  const WINDOW_MAX_MS = 300000;
  const WINDOW_MIN_MS = 60000;
  const BLOCK_PAGE = 20;
  const TX_PAGE = 50;
  const REQUEST_TIMEOUT_MS = 8000;

  const state = {
    status: null,
    samples: [], // {t: browser ms, ct: node's last commit ms, total, height}
    validators: null,
    blocks: null,
    blockCursor: null, // null: newest page; else the `before` of the shown page
    blockStack: [], // earlier cursors, for "newer"
    routeToken: 0,
    route: { name: "overview" },
    errors: new Map(),
    ticks: 0,
    inflight: new Map(), // key -> promise of the running request
  };

  // ---------- small helpers ----------

  const $ = (id) => document.getElementById(id);

  /** Builds an element: h("a", {href: "#/", class: "x", "data-n": 1}, "text", child). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function setText(id, value) {
    const el = $(id);
    const s = String(value);
    if (el && el.textContent !== s) el.textContent = s;
  }

  const nf = new Intl.NumberFormat("en-US");
  const fmt = (n) => (n === null || n === undefined ? "–" : nf.format(n));

  function fmtCompact(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1).replace(/\.0$/, "") + "M";
    if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1).replace(/\.0$/, "") + "k";
    return String(Math.round(n));
  }

  function fmtAge(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "–";
    if (ms < 0) ms = 0;
    if (ms < 1000) return "just now";
    const s = Math.round(ms / 1000);
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1000) return ms + " ms";
    return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return isNaN(d) ? String(ms) : d.toISOString().replace("T", " ").replace("Z", " UTC");
  }

  const short = (hex, a = 8, b = 6) =>
    hex && hex.length > a + b + 1 ? hex.slice(0, a) + "…" + hex.slice(-b) : hex || "–";

  const isHex64 = (s) => /^[0-9a-f]{64}$/.test(s);

  function quorum(n) {
    return Math.floor((2 * n) / 3) + 1;
  }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
    try {
      const r = await fetch(path, {
        signal: ctl.signal,
        cache: "no-store",
        headers: { accept: "application/json" },
      });
      let body = null;
      try {
        body = await r.json();
      } catch (_) {
        body = null;
      }
      if (!r.ok) {
        const code = (body && body.code) || "http_" + r.status;
        const msg = (body && body.message) || r.statusText || "request failed";
        throw new ApiError(r.status, code, msg);
      }
      if (body === null) throw new ApiError(r.status, "malformed", "the node sent no JSON");
      return body;
    } catch (e) {
      if (e instanceof ApiError) throw e;
      if (e && e.name === "AbortError") throw new ApiError(0, "timeout", "the node did not answer in time");
      throw new ApiError(0, "unreachable", "cannot reach the node");
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs `fn` unless a run under the same key is still in flight, in which case it returns that
   * run's promise: requests never pile up behind a slow node.
   */
  function once(key, fn) {
    const running = state.inflight.get(key);
    if (running) return running;
    const run = (async () => {
      try {
        await fn();
      } finally {
        state.inflight.delete(key);
      }
    })();
    state.inflight.set(key, run);
    return run;
  }

  // ---------- errors banner ----------

  function setError(key, msg) {
    if (msg) state.errors.set(key, msg);
    else state.errors.delete(key);
    const banner = $("error");
    if (!banner) return;
    // When the node is unreachable every request fails: say it once.
    const unreachable = state.errors.has("status");
    const text = unreachable ? state.errors.get("status") : [...state.errors.values()].join(" · ");
    banner.hidden = text === "";
    banner.textContent = text;
  }

  function setLive(ok, text) {
    const chip = $("live");
    if (!chip) return;
    chip.classList.toggle("ok", ok);
    chip.classList.toggle("down", !ok);
    // Figures on screen are the last ones read: grey them while they may be stale.
    document.body.classList.toggle("stale", !ok);
    setText("live-text", text);
  }

  // ---------- sampling ----------

  async function sampleStatus() {
    try {
      const s = await api("/v1/status");
      state.status = s;
      const t = Date.now();
      const last = state.samples[state.samples.length - 1];
      // A node restarted from scratch counts from zero again: start a new series.
      if (last && s.committed_txs_total < last.total) state.samples = [];
      state.samples.push({ t, ct: s.last_commit_time_ms, total: s.committed_txs_total, height: s.height });
      if (state.samples.length > SAMPLES_MAX) state.samples.splice(0, state.samples.length - SAMPLES_MAX);
      setError("status", null);
      setLive(true, "live · validator " + s.validator_index);
      setText("chain-id", s.chain_id);
    } catch (e) {
      setError("status", "Cannot read the node's status (" + e.message + "); retrying every second.");
      setLive(false, "offline");
    }
  }

  /**
   * Finalized TPS between two samples. The divisor is the node's own commit clock (the time
   * between the last commits each sample saw), not the browser's: timer jitter, a throttled
   * background tab or a slow answer then cannot distort the rate.
   */
  function rate(a, b) {
    const n = b.total - a.total;
    if (n <= 0) return 0;
    return (n * 1000) / Math.max(1, b.ct - a.ct);
  }

  /** Per-interval rates: [{t, tps}], plotted at browser time. */
  function rates() {
    const out = [];
    const s = state.samples;
    for (let i = 1; i < s.length; i++) out.push({ t: s[i].t, tps: rate(s[i - 1], s[i]) });
    return out;
  }

  /** TPS over the samples of the last `ms`. */
  function tpsOver(ms) {
    const s = state.samples;
    if (s.length < 2) return null;
    const last = s[s.length - 1];
    let first = s[0];
    for (let i = s.length - 2; i >= 0; i--) {
      first = s[i];
      if (last.t - s[i].t >= ms) break;
    }
    return rate(first, last);
  }

  async function tick() {
    state.ticks++;
    await once("status", sampleStatus);
    if (state.route.name === "overview") {
      updateOverview();
      const visible = !document.hidden;
      if (visible && (state.ticks % 3 === 1 || !state.validators)) once("validators", loadValidators);
      if (visible && state.blockCursor === null) {
        once("blocks", () => loadBlocks(null));
      }
    }
  }

  // ---------- overview ----------

  function stat(id, label, subId, extraClass) {
    return h(
      "div",
      { class: "card stat " + (extraClass || "") },
      h("div", { class: "label" }, label),
      h("div", { class: "value" }, h("span", { id }, "–")),
      h("div", { class: "sub", id: subId }, "\u00a0"),
    );
  }

  function renderOverview(app) {
    app.replaceChildren(
      h(
        "div",
        { class: "stats", id: "overview" },
        stat("height", "Height", "height-sub"),
        stat("round", "Round", "round-sub"),
        stat("tps", "Finalized TPS", "tps-sub", "accent"),
        stat("latency", "Commit latency", "latency-sub"),
        stat("certified-height", "Checkpoint", "certified-sub"),
        stat("mempool", "Mempool", "mempool-sub"),
        stat("peers", "Peers", "peers-sub"),
      ),
      h(
        "div",
        { class: "card chart-card" },
        h(
          "div",
          { class: "card-head" },
          h("h2", {}, "Finalized transactions per second"),
          h(
            "div",
            { class: "right legend" },
            h("span", {}, "now ", h("b", { id: "tps-now" }, "–")),
            h("span", {}, "avg ", h("b", { id: "tps-avg" }, "–")),
            h("span", {}, "peak ", h("b", { id: "tps-peak" }, "–")),
            h("span", { id: "tps-window" }, ""),
          ),
        ),
        h("div", { class: "chart-wrap" }, h("canvas", { id: "tps-chart", "data-samples": 0 })),
      ),
      h(
        "div",
        { class: "grid2" },
        h(
          "div",
          { class: "card" },
          h(
            "div",
            { class: "card-head" },
            h("h2", {}, "Latest blocks"),
            h("div", { class: "right", id: "blocks-range" }, ""),
          ),
          h(
            "table",
            { id: "block-table" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", {}, "Height"),
                h("th", {}, "Block id"),
                h("th", { class: "num" }, "Txs"),
                h("th", { class: "num" }, "Round"),
                h("th", { class: "num" }, "Proposer"),
                h("th", { class: "num" }, "Age"),
              ),
            ),
            h("tbody", { id: "blocks" }, h("tr", {}, h("td", { colspan: 6, class: "empty" }, "Loading blocks…"))),
          ),
          h(
            "div",
            { class: "pager" },
            h("button", { class: "btn ghost", id: "blocks-newest", onclick: () => pageBlocks("newest") }, "Latest"),
            h(
              "div",
              { class: "nav-row" },
              h("button", { class: "btn ghost", id: "blocks-newer", onclick: () => pageBlocks("newer") }, "‹ Newer"),
              h("button", { class: "btn ghost", id: "blocks-older", onclick: () => pageBlocks("older") }, "Older ›"),
            ),
          ),
        ),
        h(
          "div",
          { class: "card" },
          h(
            "div",
            { class: "card-head" },
            h("h2", {}, "Validators"),
            h("div", { class: "right", id: "validators-summary" }, ""),
          ),
          h("div", { class: "vals", id: "validators" }, h("div", { class: "empty" }, "Loading validators…")),
        ),
      ),
    );
    updateOverview();
    if (state.validators) renderValidators();
    if (state.blocks) renderBlocks();
    once("blocks", () => loadBlocks(state.blockCursor));
    once("validators", loadValidators);
  }

  function updateOverview() {
    if (state.route.name !== "overview" || !$("overview")) return;
    const s = state.status;
    if (s) {
      setText("height", fmt(s.height));
      setText("height-sub", "block " + short(s.block_id, 6, 4));
      setText("round", fmt(s.round));
      setText("round-sub", "consensus round");
      setText("latency", fmtMs(s.last_commit_latency_ms));
      setText("latency-sub", "proposal → execution");
      setText("certified-height", fmt(s.certified_height));
      setText("certified-sub", "certified · " + fmt(Math.max(0, s.height - s.certified_height)) + " behind");
      setText("mempool", fmt(s.mempool_size));
      setText("mempool-sub", "pending txs");
      setText("peers", fmt(s.peers_connected));
      setText("peers-sub", "of " + Math.max(0, s.validators.length - 1) + " connected");
    }
    const now = tpsOver(5000);
    const avg = tpsOver(WINDOW_MAX_MS);
    const r = rates();
    const peak = r.reduce((m, p) => Math.max(m, p.tps), 0);
    setText("tps", now === null ? "–" : fmt(Math.round(now)));
    setText("tps-sub", s ? fmt(s.committed_txs_total) + " total" : "\u00a0");
    setText("tps-now", now === null ? "–" : fmt(Math.round(now)));
    setText("tps-avg", avg === null ? "–" : fmt(Math.round(avg)));
    setText("tps-peak", r.length ? fmt(Math.round(peak)) : "–");
    drawChart();
  }

  /** A round grid step (1, 2 or 5 times a power of ten) giving at most 5 lines up to `v`. */
  function niceStep(v) {
    if (!(v > 0)) return 5;
    const raw = v / 5;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return Math.max(1, m * p);
    return 10 * p;
  }

  function drawChart() {
    const canvas = $("tps-chart");
    if (!canvas) return;
    canvas.setAttribute("data-samples", String(state.samples.length));
    const w = canvas.clientWidth;
    const hgt = canvas.clientHeight;
    if (!w || !hgt) return;
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.round(w * dpr);
    const ph = Math.round(hgt * dpr);
    if (canvas.width !== pw || canvas.height !== ph) {
      canvas.width = pw;
      canvas.height = ph;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);

    const pad = { l: 54, r: 14, t: 10, b: 26 };
    const plotW = w - pad.l - pad.r;
    const plotH = hgt - pad.t - pad.b;
    const pts = rates();
    const s = state.samples;
    const tEnd = s.length ? s[s.length - 1].t : Date.now();
    const span = s.length ? tEnd - s[0].t : 0;
    const windowMs = Math.min(WINDOW_MAX_MS, Math.max(WINDOW_MIN_MS, Math.ceil(span / 60000) * 60000));
    const tStart = tEnd - windowMs;
    const top = pts.reduce((m, p) => Math.max(m, p.tps), 0) * 1.05;
    const yStep = niceStep(top);
    const lines = Math.max(1, Math.ceil(top / yStep));
    const yMax = yStep * lines;
    const x = (t) => pad.l + ((t - tStart) / windowMs) * plotW;
    const y = (v) => pad.t + plotH - (v / yMax) * plotH;
    setText("tps-window", "last " + Math.round(windowMs / 60000) + " min");

    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    // Horizontal grid and y labels.
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= lines; i++) {
      const v = yStep * i;
      const yy = Math.round(y(v)) + 0.5;
      ctx.strokeStyle = i === 0 ? "#cfd5e1" : "#eceff5";
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(pad.l + plotW, yy);
      ctx.stroke();
      ctx.fillStyle = "#6b7385";
      ctx.fillText(fmtCompact(v), pad.l - 8, yy);
    }
    // X labels: minutes (or 15 s steps in the first minute) before the newest sample.
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const step = windowMs <= WINDOW_MIN_MS ? 15000 : 60000;
    for (let ago = 0; ago <= windowMs; ago += step) {
      const xx = x(tEnd - ago);
      const label = ago === 0 ? "now" : step < 60000 ? "-" + ago / 1000 + "s" : "-" + ago / 60000 + "m";
      ctx.fillStyle = "#6b7385";
      ctx.fillText(label, Math.min(Math.max(xx, pad.l + 10), pad.l + plotW - 10), pad.t + plotH + 8);
    }

    if (pts.length === 0) {
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillStyle = "#9aa1b1";
      ctx.font = "13px system-ui, sans-serif";
      ctx.fillText(s.length ? "collecting samples…" : "waiting for the node…", pad.l + plotW / 2, pad.t + plotH / 2);
      return;
    }
    const visible = pts.filter((p) => p.t >= tStart);
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, pad.t, plotW, plotH + 1);
    ctx.clip();
    // Area under the line.
    const grad = ctx.createLinearGradient(0, pad.t, 0, pad.t + plotH);
    grad.addColorStop(0, "rgba(79, 70, 229, 0.28)");
    grad.addColorStop(1, "rgba(79, 70, 229, 0.02)");
    ctx.beginPath();
    ctx.moveTo(x(visible[0].t), y(0));
    for (const p of visible) ctx.lineTo(x(p.t), y(p.tps));
    ctx.lineTo(x(visible[visible.length - 1].t), y(0));
    ctx.closePath();
    ctx.fillStyle = grad;
    ctx.fill();
    // The line.
    ctx.beginPath();
    visible.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.tps)) : ctx.moveTo(x(p.t), y(p.tps))));
    ctx.strokeStyle = "#4f46e5";
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.stroke();
    ctx.restore();
    // Newest point.
    const lastP = visible[visible.length - 1];
    ctx.beginPath();
    ctx.arc(x(lastP.t), y(lastP.tps), 3.5, 0, Math.PI * 2);
    ctx.fillStyle = "#4f46e5";
    ctx.fill();
  }

  async function loadValidators() {
    try {
      state.validators = await api("/v1/validators");
      setError("validators", null);
      renderValidators();
    } catch (e) {
      setError("validators", "Validators unavailable (" + e.message + ")");
    }
  }

  function renderValidators() {
    const box = $("validators");
    if (!box || !state.validators) return;
    const me = state.status ? state.status.validator_index : null;
    const online = state.validators.filter((v) => v.online).length;
    setText("validators-summary", online + " of " + state.validators.length + " online");
    box.replaceChildren(
      ...state.validators.map((v) =>
        h(
          "div",
          { class: "val validator", "data-index": v.index, "data-online": v.online },
          h("div", { class: "idx" }, v.index),
          h(
            "div",
            { class: "who" },
            h("a", { class: "mono", href: "#/account/" + v.public_key, title: v.public_key }, short(v.public_key, 12, 8)),
            h("span", { class: "addr" }, v.api_address + (v.index === me ? " · this node" : "")),
          ),
          h(
            "div",
            { class: "state" },
            h("span", { class: "badge " + (v.online ? "online" : "offline") }, v.online ? "online" : "offline"),
            h(
              "div",
              { class: "muted", title: "time since this node last heard from it" },
              v.index === me ? "\u00a0" : v.last_seen_ms_ago === null ? "never seen" : fmtAge(v.last_seen_ms_ago),
            ),
          ),
        ),
      ),
    );
  }

  async function loadBlocks(before) {
    const q = "/v1/blocks?limit=" + BLOCK_PAGE + (before === null ? "" : "&before=" + before);
    try {
      const blocks = await api(q);
      // Ignore an answer for a page the user already left.
      if (before !== state.blockCursor) return;
      state.blocks = blocks;
      setError("blocks", null);
      renderBlocks();
    } catch (e) {
      setError("blocks", "Block list unavailable (" + e.message + ")");
    }
  }

  function renderBlocks() {
    const body = $("blocks");
    if (!body || !state.blocks) return;
    const now = Date.now();
    if (state.blocks.length === 0) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No blocks yet")));
    } else {
      body.replaceChildren(
        ...state.blocks.map((b) =>
          h(
            "tr",
            { "data-height": b.height },
            h("td", {}, h("a", { class: "block-link", href: "#/block/" + b.height }, fmt(b.height))),
            h("td", {}, h("a", { class: "short", href: "#/block/" + b.id, title: b.id }, short(b.id, 10, 6))),
            h("td", { class: "num" }, fmt(b.tx_count)),
            h("td", { class: "num" }, fmt(b.round)),
            h("td", { class: "num" }, "#" + b.author),
            h("td", { class: "num muted" }, fmtAge(now - b.timestamp_ms)),
          ),
        ),
      );
    }
    const first = state.blocks[0];
    const last = state.blocks[state.blocks.length - 1];
    setText(
      "blocks-range",
      first ? "heights " + fmt(last.height) + "–" + fmt(first.height) + (state.blockCursor === null ? " · live" : "") : "",
    );
    const older = $("blocks-older");
    if (older) older.disabled = !last || last.height === 0;
    const newer = $("blocks-newer");
    if (newer) newer.disabled = state.blockCursor === null;
    const newest = $("blocks-newest");
    if (newest) newest.disabled = state.blockCursor === null;
  }

  function pageBlocks(dir) {
    if (dir === "older") {
      const last = state.blocks && state.blocks[state.blocks.length - 1];
      if (!last || last.height === 0) return;
      state.blockStack.push(state.blockCursor);
      state.blockCursor = last.height;
    } else if (dir === "newer") {
      state.blockCursor = state.blockStack.length ? state.blockStack.pop() : null;
    } else {
      state.blockCursor = null;
      state.blockStack = [];
    }
    loadBlocks(state.blockCursor);
  }

  // ---------- detail pages ----------

  function kv(rows) {
    const out = [];
    for (const [k, v, id] of rows) {
      out.push(h("div", { class: "k" }, k));
      out.push(h("div", { class: "v", id: id || null }, v));
    }
    return h("div", { class: "kv" }, ...out);
  }

  const blockLink = (key, text, cls) => h("a", { href: "#/block/" + key, class: cls || null }, text ?? String(key));
  const accountLink = (key, cls) => h("a", { href: "#/account/" + key, class: "mono " + (cls || "") }, key);
  const mono = (s, id) => h("span", { class: "mono", id: id || null }, s);

  function errorBox(e, what) {
    const msg = e.status === 404 ? what + " was not found on this node." : "Could not load " + what + ": " + e.message;
    return h(
      "div",
      { class: "error-box", id: "page-error", "data-code": e.code || "" },
      h("strong", {}, msg),
      h("div", {}, h("a", { href: "#/" }, "← Back to the overview"), " · ", h("a", { href: location.hash, onclick: () => route() }, "retry")),
    );
  }

  function loading(app, what) {
    app.replaceChildren(h("div", { class: "loading" }, "Loading " + what + "…"));
  }

  /** The committee and tip, for pages opened directly (before the poller's first answer). */
  async function ensureStatus() {
    if (!state.status) await once("status", sampleStatus);
  }

  async function renderBlock(app, key, token) {
    loading(app, "block " + key);
    let b;
    try {
      [b] = await Promise.all([api("/v1/blocks/" + encodeURIComponent(key)), ensureStatus()]);
    } catch (e) {
      if (token === state.routeToken) app.replaceChildren(errorBox(e, "Block " + key));
      return;
    }
    if (token !== state.routeToken) return;
    const tip = state.status ? state.status.height : null;
    const validators = state.status ? state.status.validators : [];
    const author = validators[b.author];
    const page = { n: 0 };
    const txBody = h("tbody", { id: "block-txs" });
    const txPager = h("div", { class: "pager" });
    const drawTxs = () => {
      const start = page.n * TX_PAGE;
      const slice = b.transactions.slice(start, start + TX_PAGE);
      txBody.replaceChildren(
        ...(slice.length
          ? slice.map((id, i) =>
              h(
                "tr",
                {},
                h("td", { class: "num muted" }, start + i),
                h("td", { class: "id" }, h("a", { class: "tx-link mono", href: "#/tx/" + id }, id)),
              ),
            )
          : [h("tr", {}, h("td", { colspan: 2, class: "empty" }, "No transactions in this block"))]),
      );
      const pages = Math.ceil(b.transactions.length / TX_PAGE);
      txPager.hidden = pages <= 1;
      txPager.replaceChildren(
        h("span", { class: "muted" }, "page " + (page.n + 1) + " of " + pages),
        h(
          "div",
          { class: "nav-row" },
          h("button", { class: "btn ghost", disabled: page.n === 0, onclick: () => { page.n--; drawTxs(); } }, "‹ Previous"),
          h("button", { class: "btn ghost", disabled: page.n + 1 >= pages, onclick: () => { page.n++; drawTxs(); } }, "Next ›"),
        ),
      );
    };
    drawTxs();
    app.replaceChildren(
      h(
        "section",
        { id: "block-page", "data-height": b.height, "data-id": b.id },
        h(
          "h1",
          {},
          "Block ",
          h("span", { id: "block-height" }, fmt(b.height)),
          tip !== null && tip >= b.height ? h("span", { class: "badge committed" }, "finalized") : null,
          h(
            "div",
            { class: "nav-row" },
            b.height > 0 ? h("a", { class: "btn ghost", href: "#/block/" + (b.height - 1) }, "‹ Parent") : null,
            h("a", { class: "btn ghost", href: "#/block/" + (b.height + 1) }, "Next ›"),
          ),
        ),
        h(
          "div",
          { class: "card" },
          kv([
            ["Block id", mono(b.id), "block-id"],
            ["Height", fmt(b.height)],
            ["Parent", b.height > 0 ? blockLink(b.parent_id, b.parent_id, "mono") : mono(b.parent_id)],
            ["Round", fmt(b.round)],
            ["Proposer", h("span", {}, "validator #" + b.author + " ", author ? h("span", { class: "muted mono" }, short(author.public_key, 12, 8)) : null)],
            ["Timestamp", fmtTime(b.timestamp_ms) + " (" + fmtAge(Date.now() - b.timestamp_ms) + ")"],
            ["QC round", fmt(b.qc_round)],
            [
              "QC signers",
              h(
                "div",
                { class: "signers", id: "qc-signers", "data-count": b.qc_signers.length },
                ...b.qc_signers.map((i) => h("span", { class: "badge plain" }, "#" + i)),
                validators.length ? h("span", { class: "muted" }, b.qc_signers.length + " of " + validators.length + " (quorum " + quorum(validators.length) + ")") : null,
              ),
            ],
            ["State root", b.state_root ? mono(b.state_root) : h("span", { class: "muted" }, "not executed yet"), "state-root"],
            ["Transactions", fmt(b.tx_count), "tx-count"],
          ]),
        ),
        h(
          "div",
          { class: "card section" },
          h("div", { class: "card-head" }, h("h2", {}, "Transactions"), h("div", { class: "right" }, fmt(b.tx_count) + " in order of execution")),
          h("table", { class: "txlist" }, h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "Transaction id"))), txBody),
          txPager,
        ),
      ),
    );
  }

  async function renderTx(app, id, token) {
    loading(app, "transaction");
    let t;
    try {
      t = await api("/v1/transactions/" + encodeURIComponent(id));
    } catch (e) {
      if (token === state.routeToken) app.replaceChildren(errorBox(e, "Transaction " + short(id)));
      return;
    }
    if (token !== state.routeToken) return;
    const body = t.tx && t.tx.tx;
    const pay = body && body.payload;
    const rows = [
      ["Status", h("span", { class: "badge " + t.status, id: "tx-status", "data-status": t.status }, t.status)],
      ["Transaction id", mono(t.tx_id, "tx-id")],
    ];
    if (t.height !== null && t.height !== undefined) {
      rows.push(["Block", h("span", {}, blockLink(t.height, "#" + fmt(t.height), "block-link"), h("span", { class: "muted" }, " · position " + t.index))]);
    }
    if (body) {
      rows.push(["Sender", accountLink(body.sender, "sender-link")]);
      if (pay && pay.type === "transfer") {
        rows.push(["Recipient", accountLink(pay.to, "recipient-link")]);
        rows.push(["Amount", h("span", { class: "amount", id: "tx-amount" }, fmt(pay.amount))]);
      } else if (pay) {
        rows.push(["Operation", pay.type + " · " + (pay.op || "–")]);
        const cur = pay.currency || (pay.request && pay.request.currency) || (pay.authorization && pay.authorization.currency);
        if (cur) rows.push(["Currency", currencyLink(cur)]);
        rows.push(["Payload", mono(JSON.stringify(pay))]);
      }
      rows.push(["Nonce", fmt(body.nonce), "tx-nonce"]);
      rows.push(["Chain", mono(body.chain_id)]);
      rows.push(["Signature", mono(t.tx.signature)]);
    }
    if (t.status === "rejected") {
      rows.push(["Rejection code", h("span", { class: "badge rejected", id: "tx-code" }, t.code || "–")]);
      rows.push(["Reason", t.message || "–"]);
    }
    app.replaceChildren(
      h(
        "section",
        { id: "tx-page", "data-status": t.status },
        h("h1", {}, "Transaction ", h("span", { class: "muted mono" }, short(t.tx_id, 10, 8))),
        t.status === "pending" ? h("div", { class: "ok-box" }, "In the mempool; this page refreshes until it is committed.") : null,
        h("div", { class: "card" }, kv(rows)),
      ),
    );
    if (t.status === "pending") {
      setTimeout(() => {
        if (token === state.routeToken) renderTx(app, id, token);
      }, 2000);
    }
  }

  async function renderAccount(app, key, token) {
    loading(app, "account");
    let a;
    try {
      [a] = await Promise.all([api("/v1/accounts/" + encodeURIComponent(key)), ensureStatus()]);
    } catch (e) {
      if (token === state.routeToken) app.replaceChildren(errorBox(e, "Account " + short(key)));
      return;
    }
    if (token !== state.routeToken) return;
    const proofBox = h("div", { id: "proof" }, h("p", { class: "muted" }, "Fetch a Merkle proof of this account against the newest checkpoint signed by a quorum of validators."));
    const button = h("button", { class: "btn", id: "verify-proof" }, "Verify proof");
    button.addEventListener("click", () => loadProof(key, proofBox, button, token));
    const validatorIdx = state.status ? state.status.validators.findIndex((v) => v.public_key === a.public_key) : -1;
    app.replaceChildren(
      h(
        "section",
        { id: "account-page", "data-key": a.public_key },
        h("h1", {}, "Account ", validatorIdx >= 0 ? h("span", { class: "badge plain" }, "validator #" + validatorIdx) : null),
        h(
          "div",
          { class: "card" },
          kv([
            ["Public key", mono(a.public_key), "account-key"],
            ["Balance", h("span", { class: "amount", id: "account-balance" }, fmt(a.balance))],
            ["Nonce", fmt(a.nonce), "account-nonce"],
            ["As of height", blockLink(a.height, fmt(a.height))],
          ]),
        ),
        h("div", { class: "card section" }, h("div", { class: "card-head" }, h("h2", {}, "Proof"), button), proofBox),
      ),
    );
  }

  async function loadProof(key, box, button, token) {
    button.disabled = true;
    box.replaceChildren(h("div", { class: "loading" }, "Fetching the proof…"));
    try {
      // A checkpoint can be certified a moment before this node has executed its height:
      // a server error here is usually gone on the next try.
      let a;
      for (let attempt = 1; ; attempt++) {
        try {
          a = await api("/v1/accounts/" + encodeURIComponent(key) + "?proof=true");
          break;
        } catch (e) {
          if (attempt >= 3 || !(e.status >= 500)) throw e;
          await new Promise((r) => setTimeout(r, 500 * attempt));
        }
      }
      if (token !== state.routeToken) return;
      const p = a.proof;
      const cp = p.checkpoint;
      const signers = cp.signatures.map((s) => s[0]);
      const n = state.status ? state.status.validators.length : 0;
      const enough = n > 0 && signers.length >= quorum(n);
      box.replaceChildren(
        h(
          "div",
          { class: enough ? "ok-box" : "error-box" },
          enough
            ? "Certified checkpoint at height " + fmt(p.height) + ", signed by " + signers.length + " of " + n + " validators (quorum " + quorum(n) + ")."
            : "The checkpoint carries " + signers.length + " signatures; a quorum of " + (n ? quorum(n) : "?") + " is needed.",
        ),
        kv([
          ["Checkpoint height", blockLink(p.height, fmt(p.height)), "proof-height"],
          ["Checkpoint block", blockLink(cp.checkpoint.block_id, cp.checkpoint.block_id, "mono")],
          ["Certified state root", mono(cp.checkpoint.state_root)],
          ["Signers", h("div", { class: "signers", id: "proof-signers", "data-count": signers.length }, ...signers.map((i) => h("span", { class: "badge plain" }, "#" + i)))],
          ["Proves", p.account_hex ? "the account's value at that height" : "that the account did not exist at that height"],
          ["Merkle proof", fmt(p.state_proof_hex.length / 2) + " bytes"],
        ]),
        h(
          "p",
          { class: "muted" },
          "The explorer shows the certificate as this node serves it. To check the validators' signatures and the Merkle path against the committee in genesis.json yourself, run ",
          h("code", {}, "netchain verify --account " + short(key, 8, 4)),
          ".",
        ),
      );
    } catch (e) {
      if (token !== state.routeToken) return;
      box.replaceChildren(h("div", { class: "error-box" }, "No proof: " + e.message));
    } finally {
      button.disabled = false;
    }
  }

  // ---------- search ----------

  async function search(raw) {
    const q = raw.trim();
    if (!q) return;
    if (/^\d+$/.test(q)) {
      location.hash = "#/block/" + q;
      return;
    }
    const hex = q.replace(/^0x/i, "").toLowerCase();
    if (!isHex64(hex)) {
      setError("search", "Search takes a block height, a 64-hex block or transaction id, or an account key.");
      setTimeout(() => setError("search", null), 5000);
      return;
    }
    setError("search", null);
    for (const [path, target] of [
      ["/v1/transactions/", "#/tx/"],
      ["/v1/blocks/", "#/block/"],
    ]) {
      try {
        await api(path + hex);
        location.hash = target + hex;
        return;
      } catch (e) {
        if (e.status !== 404) {
          setError("search", "Search failed: " + e.message);
          setTimeout(() => setError("search", null), 5000);
          return;
        }
      }
    }
    // Neither a transaction nor a block: every 32-byte key names an account (maybe empty).
    location.hash = "#/account/" + hex;
  }

  // ---------- local currency ----------

  function fmtSpan(secs) {
    for (const [unit, n] of [["d", 86400], ["h", 3600], ["min", 60]]) {
      if (secs >= n && secs % n === 0) return fmt(secs / n) + " " + unit;
    }
    return fmt(secs) + " s";
  }

  const currencyLink = (id) => h("a", { href: "#/currency/" + encodeURIComponent(id), class: "mono" }, id);

  function booksBadge(balanced) {
    return h("span", { class: "badge " + (balanced ? "committed" : "rejected"), "data-balanced": String(balanced) }, balanced ? "books balance" : "books do NOT balance");
  }

  async function renderCurrencies(app, token) {
    loading(app, "currencies");
    let list;
    try {
      list = await api("/v1/currencies");
    } catch (e) {
      if (token === state.routeToken) app.replaceChildren(errorBox(e, "The currency list"));
      return;
    }
    if (token !== state.routeToken) return;
    const rows = list.map((c) => {
      const t = c.totals;
      const minted = t.minted_principal + t.minted_bonus + t.vouchers_issued;
      const balanced = minted === t.circulating + t.redeemed + t.expired_returned;
      return h(
        "tr",
        {},
        h("td", {}, currencyLink(c.id)),
        h("td", { class: "num" }, fmt(minted)),
        h("td", { class: "num" }, fmt(t.circulating)),
        h("td", { class: "num" }, fmt(t.payments)),
        h("td", {}, booksBadge(balanced)),
      );
    });
    app.replaceChildren(
      h(
        "section",
        { id: "currencies-page" },
        h("h1", {}, "Local currencies"),
        h(
          "div",
          { class: "card" },
          list.length === 0
            ? h("p", { class: "empty" }, "No currency is defined on this chain yet (netchain currency define, or netchain demo local-currency).")
            : h(
                "table",
                { id: "currency-table" },
                h("thead", {}, h("tr", {}, h("th", {}, "Currency"), h("th", { class: "num" }, "Minted"), h("th", { class: "num" }, "Circulating"), h("th", { class: "num" }, "Payments"), h("th", {}, "Books"))),
                h("tbody", {}, ...rows),
              ),
        ),
      ),
    );
  }

  async function renderCurrency(app, id, token) {
    loading(app, "currency " + id);
    let c, rec, settlements;
    try {
      const base = "/v1/currencies/" + encodeURIComponent(id);
      [c, rec, settlements] = await Promise.all([api(base), api(base + "/reconciliation"), api(base + "/settlements?limit=10")]);
    } catch (e) {
      if (token === state.routeToken) app.replaceChildren(errorBox(e, "Currency " + id));
      return;
    }
    if (token !== state.routeToken) return;
    const t = c.totals;
    const r = c.rules;
    const walletForm = h(
      "form",
      { class: "search", id: "wallet-form" },
      h("input", { id: "wallet-key", placeholder: "Wallet or merchant key (64 hex)", spellcheck: "false", autocomplete: "off" }),
      h("button", { type: "submit" }, "Look up"),
    );
    const walletBox = h("div", { id: "wallet-box" });
    walletForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const key = $("wallet-key").value.trim().toLowerCase();
      const base = "/v1/currencies/" + encodeURIComponent(id);
      try {
        const w = await api(base + "/wallets/" + encodeURIComponent(key));
        let m = null;
        try {
          m = await api(base + "/merchants/" + encodeURIComponent(key));
        } catch (_) {
          m = null;
        }
        const rows = [
          ["Key", accountLink(key)],
          ["Spendable", h("span", { class: "amount", id: "wallet-spendable" }, fmt(w.spendable))],
          ["Expired, not yet swept", fmt(w.expired)],
          ["Verified by the bank", w.verified ? "yes" : "no"],
          ["Charged this month", fmt(w.month_charged)],
          ["Lots (spending order)", w.lots.length ? w.lots.map((l) => fmt(l.amount) + " until " + fmtTime(l.expires_at_ms)).join(" · ") : "–"],
        ];
        if (m) {
          rows.push(["Merchant", m.region + " · " + m.category + (m.active ? "" : " · suspended")]);
          rows.push(["Merchant balance", fmt(m.balance)]);
          rows.push(["Received · refunded · redeemed", fmt(m.received) + " · " + fmt(m.refunded) + " · " + fmt(m.redeemed)]);
        }
        walletBox.replaceChildren(kv(rows));
      } catch (e) {
        walletBox.replaceChildren(h("p", { class: "error-box" }, e.message));
      }
    });
    const settlementRows = settlements.map((s) =>
      h(
        "tr",
        {},
        h("td", { class: "num" }, fmt(s.seq)),
        h("td", {}, accountLink(s.merchant)),
        h("td", { class: "mono" }, s.settlement_account),
        h("td", { class: "num" }, fmt(s.amount)),
        h("td", {}, blockLink(s.height, fmt(s.height))),
        h("td", {}, h("span", { class: "badge " + (s.paid ? "committed" : "pending") }, s.paid ? "paid" : "due")),
      ),
    );
    app.replaceChildren(
      h(
        "section",
        { id: "currency-page", "data-currency": c.id },
        h("h1", {}, "Currency ", h("span", { class: "mono" }, c.id), " ", booksBadge(rec.balanced)),
        h(
          "div",
          { class: "card" },
          kv([
            ["Issuer", accountLink(c.issuer)],
            ["Bank", accountLink(c.bank)],
            ["Regions", r.regions.join(", ")],
            ["Categories", r.categories.join(", ")],
            ["Limits", "balance " + fmt(r.wallet_balance_max) + " · monthly charge " + fmt(r.monthly_charge_max) + (r.require_verified ? " · verified wallets only" : "")],
            ["Bonus on charging", (r.bonus_bps / 100).toFixed(2) + " %"],
            ["Validity of a charge", fmtSpan(c.expiry_secs)],
            ["Defined at height", blockLink(c.created_height, fmt(c.created_height))],
          ]),
        ),
        h(
          "div",
          { class: "card section" },
          h("div", { class: "card-head" }, h("h2", {}, "Books at height " + fmt(rec.height))),
          kv([
            ["Minted", h("span", { class: "amount", id: "books-minted" }, fmt(rec.minted)), null],
            ["  deposits · bonus · vouchers", fmt(rec.minted_principal) + " · " + fmt(rec.minted_bonus) + " · " + fmt(rec.vouchers_issued)],
            ["Circulating", h("span", { id: "books-circulating" }, fmt(rec.circulating))],
            ["Redeemed by merchants", fmt(rec.redeemed)],
            ["Expired, returned to the issuer", fmt(rec.expired_returned)],
            ["Payments", fmt(t.payments) + " (volume " + fmt(t.payment_volume) + ", refunded " + fmt(t.refunded) + ")"],
            ["Settlements paid out", fmt(t.settlements_paid)],
            ["Expiry queue", fmt(c.expiry_queue) + " wallets"],
          ]),
        ),
        h("div", { class: "card section" }, h("div", { class: "card-head" }, h("h2", {}, "Wallet or merchant")), walletForm, walletBox),
        h(
          "div",
          { class: "card section" },
          h("div", { class: "card-head" }, h("h2", {}, "Latest settlements")),
          settlements.length === 0
            ? h("p", { class: "empty" }, "No merchant has redeemed yet.")
            : h(
                "table",
                { id: "settlement-table" },
                h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "Merchant"), h("th", {}, "Account"), h("th", { class: "num" }, "Amount"), h("th", {}, "Height"), h("th", {}, "Status"))),
                h("tbody", {}, ...settlementRows),
              ),
        ),
      ),
    );
  }

  // ---------- root chain registry ----------

  async function renderChains(app, token) {
    loading(app, "service chains");
    let list;
    try {
      list = await api("/v1/chains");
    } catch (e) {
      if (token === state.routeToken) app.replaceChildren(errorBox(e, "The chain registry"));
      return;
    }
    if (token !== state.routeToken) return;
    const rows = list.map((c) => {
      const epoch = c.epochs[c.epochs.length - 1];
      const last = c.last_anchor;
      return h(
        "tr",
        { "data-chain": c.chain.chain_id },
        h("td", { class: "mono" }, c.chain.chain_id),
        h("td", {}, c.chain.purpose),
        h("td", { class: "num" }, fmt(epoch.epoch) + " (" + epoch.validators.length + " validators)"),
        h("td", { class: "num", id: "anchored-" + c.chain.chain_id }, last ? fmt(last.height) : "–"),
        h("td", {}, last ? blockLink(last.root_height, fmt(last.root_height)) : "–"),
        h("td", { class: "num" }, fmt(c.anchors)),
        h("td", {}, h("span", { class: "badge " + (c.flagged ? "rejected" : "committed") }, c.flagged ? "flagged: conflicting checkpoints" : "ok")),
      );
    });
    app.replaceChildren(
      h(
        "section",
        { id: "chains-page" },
        h("h1", {}, "Service chains"),
        h(
          "div",
          { class: "card" },
          list.length === 0
            ? h("p", { class: "empty" }, "No service chain is registered here (this is not a root chain, or none joined yet: netchain testnet --service-chains 3).")
            : h(
                "table",
                { id: "chain-table" },
                h("thead", {}, h("tr", {}, h("th", {}, "Chain"), h("th", {}, "Purpose"), h("th", { class: "num" }, "Epoch"), h("th", { class: "num" }, "Anchored height"), h("th", {}, "At root height"), h("th", { class: "num" }, "Anchors"), h("th", {}, "Status"))),
                h("tbody", {}, ...rows),
              ),
        ),
      ),
    );
  }

  // ---------- routing ----------

  function parseRoute() {
    const parts = (location.hash || "#/").replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    const [name, arg] = parts;
    if (name === "block" && arg) return { name: "block", arg: arg.toLowerCase() };
    if (name === "tx" && arg) return { name: "tx", arg: arg.toLowerCase() };
    if (name === "account" && arg) return { name: "account", arg: arg.toLowerCase() };
    if (name === "currencies") return { name: "currencies" };
    if (name === "chains") return { name: "chains" };
    if (name === "currency" && arg) return { name: "currency", arg: arg.toUpperCase() };
    return { name: "overview" };
  }

  function route() {
    const app = $("app");
    state.route = parseRoute();
    const token = ++state.routeToken;
    document.title = "netchain explorer" + (state.route.arg ? " · " + state.route.name + " " + short(state.route.arg) : "");
    window.scrollTo(0, 0);
    switch (state.route.name) {
      case "block":
        renderBlock(app, state.route.arg, token);
        break;
      case "tx":
        renderTx(app, state.route.arg, token);
        break;
      case "account":
        renderAccount(app, state.route.arg, token);
        break;
      case "currencies":
        renderCurrencies(app, token);
        break;
      case "chains":
        renderChains(app, token);
        break;
      case "currency":
        renderCurrency(app, state.route.arg, token);
        break;
      default:
        renderOverview(app);
    }
  }

  function start() {
    $("search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      search($("search").value);
    });
    window.addEventListener("hashchange", route);
    window.addEventListener("resize", () => drawChart());
    route();
    tick();
    setInterval(tick, SAMPLE_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
