/* wattmesh dashboard: the page's frame: formats, HTTP, the hash router, login and the
 * live socket. The pages register themselves in WM.views (views-market.js: overview and
 * market; views-records.js: households, ledger and proofs, health).
 *
 * Each page fetches its JSON endpoints once when it opens; after that it changes only
 * on WebSocket events from /ws (no polling of the API). The socket reconnects with
 * exponential backoff; after a reconnect the open page fetches once more (it may have
 * missed events). The one timer is the countdown to the interval's close, which reads
 * the clock, not the API.
 *
 * Hooks for tests: <main id="view" data-view="NAME" data-route="#/..." data-ready="1">
 * once a page has rendered; charts carry data-chart / data-series / data-points
 * (charts.js); #ov-last[data-interval] is the last closed interval on the overview;
 * #proof-result[data-result="valid"|"invalid"]; #live[data-state][data-events].
 */
(function () {
  "use strict";

  const state = {
    view: null, // {name, onEvent(evt), dispose()}
    seq: 0, // render generation: answers for an older route are dropped
    currency: "\u00a4",
    session: { role: "anonymous", household: null },
    socket: null,
    retries: 0,
    events: 0,
    connectedOnce: false,
  };
  const view = () => document.getElementById("view");

  /* ------------------------------------------------------------------ DOM and formats */

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    append(el, kids);
    return el;
  }

  function append(el, kids) {
    for (const kid of kids) {
      if (kid === null || kid === undefined || kid === false) continue;
      if (Array.isArray(kid)) append(el, kid);
      else el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
  }

  const nf = (digits) =>
    new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const NF0 = nf(0), NF1 = nf(1), NF2 = nf(2), NF3 = nf(3);
  const isNum = (v) => typeof v === "number" && isFinite(v);

  function kwh(wh) {
    return isNum(wh) ? NF3.format(wh / 1000) + " kWh" : "\u2013";
  }
  function money(micro) {
    return isNum(micro) ? NF2.format(micro / 1e6) + " " + state.currency : "\u2013";
  }
  function price(microPerKwh) {
    return isNum(microPerKwh) ? NF3.format(microPerKwh / 1e6) + " " + state.currency + "/kWh" : "no clearing";
  }
  function pct(ratio) {
    return isNum(ratio) ? NF1.format(100 * ratio) + " %" : "\u2013";
  }
  function int(n) {
    return isNum(n) ? NF0.format(n) : "\u2013";
  }
  function when(epochS) {
    if (!isNum(epochS)) return "\u2013";
    return new Date(epochS * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }
  function clock(epochS) {
    return new Date(epochS * 1000).toISOString().slice(11, 16);
  }

  function tile(title, value, ...rest) {
    return h("section", { class: "tile" }, h("h3", { text: title }), h("div", { class: "big" }, value), rest);
  }
  function kv(rows) {
    return h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
  }
  function table(columns, rows, attrs) {
    return h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        attrs || {},
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((cell) => h("td", {}, cell))))),
      ),
    );
  }
  function message(cls, text, ...more) {
    return h("p", { class: cls }, text, more);
  }

  /* ------------------------------------------------------------------ HTTP */

  async function getJSON(url, options) {
    let res;
    try {
      res = await fetch(url, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options));
    } catch (err) {
      return { ok: false, status: 0, body: { error: { status: 0, reason: "network", message: "the dashboard server cannot be reached" } } };
    }
    let body = null;
    try {
      body = await res.json();
    } catch (err) {
      body = { error: { status: res.status, reason: "bad_response", message: "the answer is not JSON" } };
    }
    return { ok: res.ok, status: res.status, body: body };
  }

  function postJSON(url, obj) {
    return getJSON(url, { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(obj) });
  }

  /* An error answer as a paragraph; 401 and 403 say who may see the page. */
  function errorBox(res) {
    const err = (res.body && res.body.error) || {};
    const text = err.message || "request failed with status " + res.status;
    if (res.status === 401) {
      return h("div", { class: "forbidden", "data-status": "401" }, h("strong", { text: "Log in to see this page. " }), text, " ", h("a", { href: "#/login", text: "How to log in" }));
    }
    if (res.status === 403) {
      const who = state.session.household ? "household " + state.session.household : state.session.role;
      return h("div", { class: "forbidden", "data-status": "403" }, h("strong", { text: "Forbidden. " }), text, " (logged in as " + who + ")");
    }
    return h("div", { class: "error", "data-status": String(res.status) }, h("strong", { text: "Error " + res.status + ". " }), text);
  }

  /* ------------------------------------------------------------------ router */

  function parseRoute() {
    const parts = (location.hash || "#/overview").replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    return parts.length ? parts : ["overview"];
  }

  async function render() {
    const parts = parseRoute();
    const name = parts[0];
    const seq = ++state.seq;
    if (state.view && state.view.dispose) state.view.dispose();
    state.view = null;
    const main = view();
    main.replaceChildren();
    main.dataset.ready = "0";
    main.dataset.route = location.hash;
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.route === name);
      if (a.dataset.route === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const fn = Object.prototype.hasOwnProperty.call(WM.views, name) ? WM.views[name] : null;
    const ctx = { seq: seq, main: main, timers: [], live: () => seq === state.seq };
    main.dataset.view = fn ? viewName(parts) : "missing";
    if (!fn) {
      main.append(h("h1", { text: "Page not found" }), message("error", "No page " + location.hash + "."));
      main.dataset.ready = "1";
      return;
    }
    try {
      const v = await fn(ctx, parts.slice(1));
      if (!ctx.live()) return;
      state.view = Object.assign({ name: name, dispose: () => ctx.timers.forEach(clearInterval) }, v || {});
    } catch (err) {
      if (!ctx.live()) return;
      main.append(message("error", "This page failed: " + (err && err.message)));
    }
    main.dataset.ready = "1";
  }

  function viewName(parts) {
    if (parts[0] === "households" && parts[1]) return "household";
    if (parts[0] === "ledger" && parts[1] === "proof") return "proof";
    if (parts[0] === "market" && parts[1]) return "interval";
    return parts[0];
  }

  function noteCurrency(obj) {
    if (obj && typeof obj.currency === "string" && obj.currency) state.currency = obj.currency;
  }

  function proofLink(idx) {
    return h("a", { class: "btn", href: "#/ledger/proof/" + idx, "data-idx": idx, text: "check proof" });
  }

  function tradesTable(trades, withInterval) {
    if (!trades || !trades.length) return message("muted", "No trades.");
    const cols = ["entry", withInterval ? "interval" : null, "buyer", "seller", "quantity", "price", ""].filter((c) => c !== null);
    return table(cols, trades.map((t) => [
      h("a", { class: "mono", href: "#/ledger/proof/" + t.idx, title: "check this entry's proof", text: "#" + t.idx }),
      withInterval ? h("a", { href: "#/market/" + t.interval, text: when(t.interval) }) : null,
      t.buyer, t.seller, kwh(t.quantity_wh), price(t.price_micro_per_kwh), proofLink(t.idx),
    ].filter((c) => c !== null)), { class: "trades" });
  }

  /* ------------------------------------------------------------------ login and session */

  async function loginView(ctx) {
    const origin = location.origin + "/";
    const out = h("p", { id: "login-message", role: "status" });
    const form = h("form", { id: "operator-form", class: "row" },
      h("label", { for: "operator-token", text: "Operator token:" }),
      h("input", { id: "operator-token", type: "password", autocomplete: "current-password", required: true }),
      h("button", { type: "submit", text: "log in" }));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const res = await postJSON("/api/login/operator", { token: document.getElementById("operator-token").value });
      out.textContent = res.ok ? "Logged in as the operator." : ((res.body && res.body.error && res.body.error.message) || "login failed");
      out.className = res.ok ? "ok" : "bad";
      await loadSession();
    });
    ctx.main.append(
      h("h1", { text: "Log in" }),
      h("section", { class: "panel" }, h("h2", { text: "Now" }), h("p", { id: "login-who", text: sessionText() }),
        h("button", { type: "button", id: "login-logout", onclick: logout, hidden: state.session.role === "anonymous", text: "log out" })),
      h("section", { class: "panel" }, h("h2", { text: "As a household" }),
        h("p", { text: "A household logs in with its own signing key: the command signs a challenge from this server and prints a one-time login link (valid for two minutes). Open it in this browser." }),
        h("pre", { class: "cmd", text: "wattmesh dashboard login --key household.pem --household H1 --url " + origin }),
        h("p", { class: "muted", text: "The key never leaves your machine. Your own page shows your consumption, trades and statement; other households cannot see it." })),
      h("section", { class: "panel" }, h("h2", { text: "As the operator" }),
        h("p", { text: "The operator's token is in the file that operator_token_file names in dashboard.toml." }), form, out),
    );
    return {};
  }

  function sessionText() {
    const s = state.session;
    if (s.role === "household") return "Logged in as household " + s.household + ".";
    if (s.role === "operator") return "Logged in as the operator.";
    return "Not logged in: you see the neighbourhood's figures only.";
  }

  async function loadSession() {
    const res = await getJSON("/api/session");
    if (res.ok && res.body) state.session = { role: res.body.role || "anonymous", household: res.body.household || null };
    noteCurrency(res.body);
    const el = document.getElementById("session");
    el.dataset.role = state.session.role;
    el.replaceChildren(state.session.role === "anonymous" ? "not logged in"
      : state.session.role === "operator" ? "operator" : "household " + state.session.household);
    if (state.session.role !== "anonymous") el.append(" ", h("button", { type: "button", class: "logout", id: "logout", onclick: logout, text: "log out" }));
    const who = document.getElementById("login-who");
    if (who) who.textContent = sessionText();
    const out = document.getElementById("login-logout");
    if (out) out.hidden = state.session.role === "anonymous";
  }

  async function logout() {
    await postJSON("/api/logout", {});
    await loadSession();
    render();
  }

  /* ------------------------------------------------------------------ live socket */

  function setLive(stateName, text) {
    const el = document.getElementById("live");
    el.dataset.state = stateName;
    el.textContent = text;
  }

  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (err) {
      return reconnectLater();
    }
    state.socket = socket;
    setLive("connecting", "connecting");
    socket.addEventListener("open", () => {
      const wasDown = state.connectedOnce;
      state.connectedOnce = true;
      state.retries = 0;
      setLive("live", "live");
      if (wasDown) render(); // events may have been missed while the socket was down
    });
    socket.addEventListener("message", (msg) => {
      let evt;
      try {
        evt = JSON.parse(msg.data);
      } catch (err) {
        return;
      }
      state.events++;
      const el = document.getElementById("live");
      el.dataset.events = String(state.events);
      if (evt.type === "interval") el.dataset.lastInterval = String(evt.interval);
      if (state.view && state.view.onEvent) {
        try {
          state.view.onEvent(evt);
        } catch (err) {
          console.error("live update failed", err);
        }
      }
    });
    socket.addEventListener("close", () => {
      if (state.socket === socket) reconnectLater();
    });
  }

  function reconnectLater() {
    state.socket = null;
    const delay = Math.min(30, 0.5 * 2 ** state.retries) * (0.75 + Math.random() / 2);
    state.retries = Math.min(state.retries + 1, 10);
    setLive("reconnecting", "reconnecting in " + Math.ceil(delay) + " s");
    setTimeout(connect, delay * 1000);
  }

  /* ------------------------------------------------------------------ for the pages */

  const WM = (window.WM = {
    views: { login: loginView },
    state: state,
    h: h,
    append: append,
    kv: kv,
    tile: tile,
    table: table,
    message: message,
    getJSON: getJSON,
    postJSON: postJSON,
    errorBox: errorBox,
    isNum: isNum,
    kwh: kwh,
    money: money,
    price: price,
    pct: pct,
    int: int,
    when: when,
    clock: clock,
    NF1: NF1,
    noteCurrency: noteCurrency,
    proofLink: proofLink,
    tradesTable: tradesTable,
  });

  /* ------------------------------------------------------------------ start */

  function start() {
    window.addEventListener("hashchange", render);
    if (!location.hash) history.replaceState(null, "", "#/overview");
    loadSession().then(render);
    connect();
  }

  // The page scripts are deferred and run after this one, before DOMContentLoaded.
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
