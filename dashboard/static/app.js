/* wattmesh dashboard: the single page (hash routes), its views and the live socket.
 *
 * Each view fetches its JSON endpoints once when it opens; after that it changes only
 * on WebSocket events from /ws (no polling of the API). The socket reconnects with
 * exponential backoff; after a reconnect the open view fetches once more (it may have
 * missed events). The one timer is the countdown to the interval's close, which reads
 * the clock, not the API.
 *
 * Hooks for tests: <main id="view" data-view="NAME" data-ready="1"> once a view has
 * rendered; charts carry data-chart / data-series / data-points (charts.js);
 * #ov-last[data-interval] is the last closed interval on the overview;
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
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.route === name);
    const views = { overview: overviewView, market: marketView, households: householdsView, ledger: ledgerView, health: healthView, login: loginView };
    const fn = views[name];
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

  /* ------------------------------------------------------------------ overview */

  async function overviewView(ctx) {
    const res = await getJSON("/api/overview");
    if (!ctx.live()) return;
    if (!res.ok) return void ctx.main.append(errorBox(res));
    let ov = res.body;
    noteCurrency(ov);
    const start = ov.last && isNum(ov.last.interval) ? ov.last.interval - 86400 + ov.interval_s : null;
    const mres = await getJSON("/api/market" + (start === null ? "" : "?start=" + start));
    if (!ctx.live()) return;
    const tiles = h("div", { class: "tiles", id: "ov-tiles" });
    const feed = h("ul", { class: "feed", id: "ov-rejections" });
    const anomalies = h("ul", { class: "feed", id: "ov-anomalies" });
    const priceEl = h("div", { id: "ov-price" });
    const volumeEl = h("div", { id: "ov-volume" });
    ctx.main.append(
      h("h1", {}, "Neighbourhood ", h("span", { class: "muted", text: ov.market_id || "" })),
      tiles,
      h("div", { class: "charts" }, priceEl, volumeEl),
      h("div", { class: "cols" },
        h("section", { class: "panel" }, h("h2", { text: "Rejections by reason, as they happen" }), feed),
        h("section", { class: "panel" }, h("h2", { text: "Anomaly flags" }), anomalies)),
    );
    let market = mres.ok ? mres.body : emptyMarket();
    const charts = [WMCharts.priceChart(priceEl, market, state.currency), WMCharts.volumeChart(volumeEl, market)];
    const skew = ov.now_s - Date.now() / 1000; // the server's clock, for the countdown
    function draw() {
      tiles.replaceChildren(...overviewTiles(ov));
      renderFeed(feed, ov.rejections);
      anomalies.replaceChildren(...(ov.anomalies.length ? ov.anomalies.map(anomalyItem) : [h("li", { class: "muted", text: "none" })]));
      tick();
    }
    function tick() {
      const el = document.getElementById("ov-countdown");
      if (!el || !isNum(ov.next_close_s)) return;
      const left = Math.max(0, Math.round(ov.next_close_s - (Date.now() / 1000 + skew)));
      el.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    }
    draw();
    ctx.timers.push(setInterval(tick, 1000));
    return {
      onEvent(evt) {
        if (evt.type === "interval" && evt.overview) {
          ov = evt.overview;
          noteCurrency(ov);
          followMarket(ctx, () => market, ov, 96, (m) => {
            market = m;
            charts[0].set(WMCharts.priceData(market));
            charts[1].set(WMCharts.volumeData(market));
          });
          draw();
        } else if (evt.type === "rejections") {
          const fresh = Object.entries(evt.counts || {}).map(([reason, count]) => ({ interval: evt.interval, reason: reason, count: count, fresh: true }));
          ov.rejections = fresh.concat(ov.rejections.filter((r) => r.interval !== evt.interval)).slice(0, 30);
          renderFeed(feed, ov.rejections);
        } else if (evt.type === "presence") {
          ov.agents = { online: evt.online, known: evt.known };
          draw();
        } else if (evt.type === "health" && evt.last_verify) {
          ov.ledger = Object.assign({}, ov.ledger, { last_verify: evt.last_verify });
          draw();
        }
      },
    };
  }

  function overviewTiles(ov) {
    const last = ov.last || {};
    const meter = isNum(last.price_micro_per_kwh)
      ? h("meter", { min: last.feed_in_micro_per_kwh, max: last.retail_micro_per_kwh, value: last.price_micro_per_kwh, title: "the price between the feed-in and the retail tariff" })
      : null;
    const l = ov.ledger || {};
    const agents = ov.agents || {};
    const span = isNum(ov.current_interval) ? clock(ov.current_interval) + "\u2013" + clock(ov.current_interval + ov.interval_s) + " UTC" : "\u2013";
    return [
      tile("Interval " + span, h("span", {}, h("small", { text: "closes in " }), h("span", { id: "ov-countdown", class: "mono", text: "\u2013" })),
        kv([["trading interval", int(ov.interval_s / 60) + " min"], ["last closed", isNum(last.interval) ? clock(last.interval) + " UTC" : "\u2013"]])),
      tile("Last clearing price", h("span", { id: "ov-last", "data-interval": isNum(last.interval) ? last.interval : "", text: price(last.price_micro_per_kwh) }),
        meter, kv([["retail tariff", price(last.retail_micro_per_kwh)], ["feed-in tariff", price(last.feed_in_micro_per_kwh)]])),
      tile("Last interval: P2P vs grid", h("span", {}, kwh(last.volume_wh), h("small", { text: " P2P" })),
        kv([["grid import", kwh(last.grid_import_wh)], ["grid export", kwh(last.grid_export_wh)], ["trades", int(last.trades)]])),
      tile("Agents online", h("span", { id: "ov-agents", text: int(agents.online) + " / " + int(agents.known) }),
        h("p", { class: "muted small", text: "households online on the bus, of those with a key in the log" })),
      kpiTile("Today (UTC)", ov.today, "ov-today"),
      kpiTile("Whole run", ov.run, "ov-run"),
      h("section", { class: "tile span2", id: "ov-ledger" }, h("h3", { text: "Ledger" }),
        kv([
          ["signed checkpoint", h("span", { id: "ov-tree-size", text: int(l.tree_size) + " entries" })],
          ["root hash", h("code", { id: "ov-root", class: "hash", text: l.root_hex || "\u2013" })],
          ["operator key id", h("code", { class: "hash", text: l.kid ? l.kid.slice(0, 16) + "\u2026" : "\u2013" })],
          ["trades", h("span", { id: "ov-trades", text: int(l.trades) })],
          ["last verify", verifyText(l.last_verify)],
        ])),
    ];
  }

  function kpiTile(title, k, id) {
    k = k || {};
    return h("section", { class: "tile", id: id }, h("h3", { text: title }), h("div", { class: "big" }, h("span", {}, pct(k.self_sufficiency), h("small", { text: " self-sufficient" }))),
      kv([
        ["savings vs grid only", money(k.savings_micro) + " (" + (isNum(k.savings_pct) ? NF1.format(k.savings_pct) : "\u2013") + " %)"],
        ["cost", money(k.cost_micro)],
        ["grid-only cost", money(k.grid_only_cost_micro)],
        ["P2P traded", kwh(k.p2p_wh)],
        ["P2P share of import", pct(k.p2p_share)],
        ["grid import", kwh(k.grid_import_wh)],
        ["grid export", kwh(k.grid_export_wh)],
      ]));
  }

  function verifyText(v) {
    if (!v) return h("span", { class: "muted", text: "not verified yet" });
    const cls = v.ok ? "ok" : "bad";
    return h("span", { class: cls, id: "ov-verify", "data-ok": v.ok ? "1" : "0" },
      v.ok ? "ok" : "FAILED: " + (v.problem || "?"), " ", h("span", { class: "muted", text: "(" + int(v.tree_size) + " entries, " + when(v.at_s) + ")" }));
  }

  function renderFeed(el, rows) {
    el.replaceChildren(...(rows && rows.length
      ? rows.map((r) => h("li", { class: r.fresh ? "fresh" : null }, h("span", { class: "mono", text: clock(r.interval) }), " ", h("strong", { text: r.reason }), " \u00d7 " + int(r.count)))
      : [h("li", { class: "muted", text: "no rejections" })]));
  }

  function anomalyItem(a) {
    return h("li", {}, h("span", { class: "mono", text: when(a.interval) }), " ", h("strong", { text: a.kind }), a.household ? " \u2013 " + a.household : "");
  }

  function noteCurrency(obj) {
    if (obj && typeof obj.currency === "string" && obj.currency) state.currency = obj.currency;
  }

  function emptyMarket() {
    return { intervals: [], price_micro_per_kwh: [], retail_micro_per_kwh: [], feed_in_micro_per_kwh: [], p2p_wh: [], grid_import_wh: [], grid_export_wh: [] };
  }

  /* Follow the market on an interval event: append the event's interval to the columns,
   * or, when the event skips intervals (several closed between two events), fetch the
   * columns once from the first missing one. `keep` > 0 keeps only the latest `keep`. */
  function followMarket(ctx, current, ov, keep, apply) {
    // one at a time, in event order, each on the columns the previous one left
    ctx.chain = (ctx.chain || Promise.resolve()).then(() => followOnce(ctx, current(), ov, keep, apply))
      .catch((err) => console.error("live update failed", err));
  }

  async function followOnce(ctx, m, ov, keep, apply) {
    const last = ov.last;
    if (!last || !isNum(last.interval)) return;
    const n = m.intervals.length;
    const known = n ? m.intervals[n - 1] : null;
    if (known === null || last.interval <= known + ov.interval_s) return void apply(appendInterval(m, last, keep));
    const res = await getJSON("/api/market?start=" + (known + ov.interval_s));
    if (!ctx.live() || !res.ok) return;
    const merged = {};
    for (const k of Object.keys(res.body)) {
      const col = (m[k] || []).concat(res.body[k]);
      merged[k] = keep && col.length > keep ? col.slice(col.length - keep) : col;
    }
    apply(appendInterval(merged, last, keep));
  }

  /* The market columns with the overview's last interval added (or replaced). */
  function appendInterval(m, last, keep) {
    if (!last || !isNum(last.interval)) return m;
    const cols = {
      intervals: last.interval,
      price_micro_per_kwh: last.price_micro_per_kwh,
      retail_micro_per_kwh: last.retail_micro_per_kwh,
      feed_in_micro_per_kwh: last.feed_in_micro_per_kwh,
      p2p_wh: last.volume_wh,
      grid_import_wh: last.grid_import_wh,
      grid_export_wh: last.grid_export_wh,
    };
    const out = {};
    const n = m.intervals.length;
    const replace = n && m.intervals[n - 1] === last.interval;
    for (const [k, v] of Object.entries(cols)) {
      const col = (m[k] || []).slice(0, replace ? n - 1 : n);
      col.push(v === undefined ? null : v);
      out[k] = keep && col.length > keep ? col.slice(col.length - keep) : col;
    }
    return out;
  }

  /* ------------------------------------------------------------------ market */

  async function marketView(ctx, args) {
    const res = await getJSON("/api/market");
    if (!ctx.live()) return;
    if (!res.ok) return void ctx.main.append(errorBox(res));
    let market = res.body;
    const priceEl = h("div", { id: "market-price" });
    const volumeEl = h("div", { id: "market-volume" });
    const picker = h("select", { id: "interval-picker", "aria-label": "interval" });
    const detail = h("div", { id: "interval-detail" });
    ctx.main.append(
      h("h1", { text: "Market" }),
      h("div", { class: "charts" }, priceEl, volumeEl),
      h("p", { class: "muted", text: "Click a chart to open that interval's order book." }),
      h("section", { class: "panel" },
        h("div", { class: "row" }, h("h2", { text: "Interval" }), picker,
          h("button", { type: "button", onclick: () => step(-1), text: "\u2190 earlier" }),
          h("button", { type: "button", onclick: () => step(1), text: "later \u2192" })),
        detail),
    );
    const charts = [WMCharts.priceChart(priceEl, market, state.currency), WMCharts.volumeChart(volumeEl, market)];
    for (const c of charts) {
      c.plot.over.addEventListener("click", () => {
        const idx = c.plot.cursor.idx;
        if (idx !== null && idx !== undefined) location.hash = "#/market/" + c.data[0][idx];
      });
    }
    function fillPicker() {
      const chosen = picker.value;
      picker.replaceChildren(...market.intervals.slice().reverse().map((t) => h("option", { value: t, text: when(t) })));
      if (chosen) picker.value = chosen;
    }
    function step(d) {
      const i = market.intervals.indexOf(Number(picker.value));
      const next = market.intervals[i + d];
      if (next !== undefined) location.hash = "#/market/" + next;
    }
    picker.addEventListener("change", () => (location.hash = "#/market/" + picker.value));
    fillPicker();
    let chosen = args[0] !== undefined ? Number(args[0]) : lastCleared(market);
    if (isNum(chosen)) {
      picker.value = String(chosen);
      await showInterval(ctx, detail, chosen);
    } else {
      detail.append(message("muted", "No interval has closed yet."));
    }
    return {
      onEvent(evt) {
        if (evt.type !== "interval" || !evt.overview) return;
        noteCurrency(evt.overview);
        followMarket(ctx, () => market, evt.overview, 0, (m) => {
          market = m;
          charts[0].set(WMCharts.priceData(market));
          charts[1].set(WMCharts.volumeData(market));
          fillPicker();
        });
      },
    };
  }

  function lastCleared(m) {
    for (let i = m.intervals.length - 1; i >= 0; i--) if (m.price_micro_per_kwh[i] !== null) return m.intervals[i];
    return m.intervals.length ? m.intervals[m.intervals.length - 1] : null;
  }

  async function showInterval(ctx, el, interval) {
    const res = await getJSON("/api/market/intervals/" + encodeURIComponent(interval));
    if (!ctx.live()) return;
    if (!res.ok) return void el.append(errorBox(res));
    const d = res.body;
    const bookEl = h("div", { id: "interval-book" });
    el.append(
      kv([
        ["interval", when(d.interval)],
        ["mechanism", d.mechanism || "\u2013"],
        ["clearing price", price(d.price_micro_per_kwh)],
        ["volume", kwh((d.clearing || {}).volume_wh)],
        ["orders", int(d.supply.length + d.demand.length) + " (" + d.supply.length + " sell, " + d.demand.length + " buy)"],
      ]),
      bookEl,
      h("h3", { text: "Trades" }),
      h("div", { class: "scroll" }, tradesTable(d.trades, false)),
    );
    if (d.supply.length || d.demand.length) WMCharts.bookChart(bookEl, d, state.currency);
    else bookEl.append(message("muted", "No orders in this interval."));
  }

  function proofLink(idx) {
    return h("a", { class: "btn", href: "#/ledger/proof/" + idx, "data-idx": idx, text: "check proof" });
  }

  function tradesTable(trades, withInterval) {
    if (!trades || !trades.length) return message("muted", "No trades.");
    const cols = ["entry", withInterval ? "interval" : null, "buyer", "seller", "quantity", "price", ""].filter((c) => c !== null);
    return table(cols, trades.map((t) => [
      h("span", { class: "mono", text: "#" + t.idx }),
      withInterval ? h("a", { href: "#/market/" + t.interval, text: when(t.interval) }) : null,
      t.buyer, t.seller, kwh(t.quantity_wh), price(t.price_micro_per_kwh), proofLink(t.idx),
    ].filter((c) => c !== null)), { class: "trades" });
  }

  /* ------------------------------------------------------------------ households */

  const HH_COLUMNS = [
    ["household", "household", (r) => h("a", { href: "#/households/" + encodeURIComponent(r.household), text: r.household })],
    ["bill", "bill_micro", (r) => money(r.bill_micro)],
    ["grid-only bill", "grid_only_bill_micro", (r) => money(r.grid_only_bill_micro)],
    ["savings", "savings_micro", (r) => money(r.savings_micro)],
    ["P2P bought", "bought_wh", (r) => kwh(r.bought_wh)],
    ["P2P sold", "sold_wh", (r) => kwh(r.sold_wh)],
    ["import", "import_wh", (r) => kwh(r.import_wh)],
    ["export", "export_wh", (r) => kwh(r.export_wh)],
    ["self-sufficiency", "self_sufficiency", (r) => pct(r.self_sufficiency)],
  ];

  async function householdsView(ctx, args) {
    if (args[0] !== undefined) return householdView(ctx, args[0]);
    ctx.main.append(h("h1", { text: "Households" }));
    const holder = h("div", {});
    ctx.main.append(holder);
    const sort = { key: "household", dir: 1 };
    let rows = [];
    async function load() {
      const res = await getJSON("/api/households");
      if (!ctx.live()) return;
      if (!res.ok) return void holder.replaceChildren(errorBox(res));
      rows = res.body.households;
      draw();
    }
    function draw() {
      const sorted = rows.slice().sort((a, b) => {
        const x = a[sort.key], y = b[sort.key];
        return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
      });
      const head = HH_COLUMNS.map(([label, key]) => h("th", {
        scope: "col", class: "sortable", "data-key": key,
        "aria-sort": sort.key === key ? (sort.dir > 0 ? "ascending" : "descending") : "none",
        onclick: () => { sort.dir = sort.key === key ? -sort.dir : 1; sort.key = key; draw(); },
      }, h("button", { type: "button", text: label + (sort.key === key ? (sort.dir > 0 ? " \u25b2" : " \u25bc") : "") })));
      holder.replaceChildren(
        message("muted", "Money in " + state.currency + "; energy in kWh. Click a heading to sort."),
        h("div", { class: "table-wrap" }, h("table", { id: "households-table" },
          h("thead", {}, h("tr", {}, head)),
          h("tbody", {}, sorted.map((r) => h("tr", { "data-household": r.household }, HH_COLUMNS.map(([, , cell]) => h("td", {}, cell(r)))))))),
      );
    }
    await load();
    return { onEvent: (evt) => evt.type === "interval" && load() };
  }

  async function householdView(ctx, id) {
    ctx.main.dataset.view = "household";
    ctx.main.append(h("h1", {}, "Household ", h("span", { class: "mono", text: id })));
    const holder = h("div", { id: "household" });
    ctx.main.append(holder);
    let charts = null;
    async function load() {
      const res = await getJSON("/api/households/" + encodeURIComponent(id));
      if (!ctx.live()) return;
      if (!res.ok) return void holder.replaceChildren(errorBox(res));
      const d = res.body;
      if (charts) {
        holder.querySelector("#hh-totals").replaceWith(totalsTiles(d.totals));
        holder.querySelector("#hh-trades").replaceChildren(tradesTable(d.trades.slice(-200).reverse(), true));
        return void (charts = drawCharts(d));
      }
      const base = "/api/households/" + encodeURIComponent(id) + "/statement";
      holder.replaceChildren(
        totalsTiles(d.totals),
        h("p", { class: "downloads" },
          h("a", { class: "btn", id: "statement-csv", href: base + ".csv", download: "statement-" + id + ".csv", text: "Download the statement (CSV)" }), " ",
          h("a", { href: base, text: "statement as JSON" })),
        h("div", { class: "charts" }, h("div", { id: "hh-energy" }), h("div", { id: "hh-forecast" })),
        h("h2", { text: "Trades" }),
        h("div", { id: "hh-trades", class: "scroll" }, tradesTable(d.trades.slice(-200).reverse(), true)),
      );
      charts = drawCharts(d);
    }
    function drawCharts(d) {
      return [WMCharts.householdEnergyChart(document.getElementById("hh-energy"), d.series), WMCharts.forecastChart(document.getElementById("hh-forecast"), d.series)];
    }
    await load();
    return { onEvent: (evt) => evt.type === "interval" && load() };
  }

  function totalsTiles(t) {
    t = t || {};
    return h("div", { class: "tiles", id: "hh-totals" },
      tile("Bill", money(t.cost_micro), kv([["with the grid only", money(t.grid_only_cost_micro)], ["savings", money(t.savings_micro)], ["posted", money(t.posted_micro)]])),
      tile("Metered", kwh(t.import_wh), kv([["import", kwh(t.import_wh)], ["export", kwh(t.export_wh)]])),
      tile("Local market", kwh(t.bought_wh), kv([["bought (P2P)", kwh(t.bought_wh)], ["sold (P2P)", kwh(t.sold_wh)]])),
      tile("Intervals", int(t.metered_intervals), kv([["metered", int(t.metered_intervals)], ["estimated", int(t.estimated_intervals)], ["flagged", int(t.flagged_intervals)], ["unsettled", int(t.unsettled_intervals)]])),
    );
  }

  /* ------------------------------------------------------------------ ledger and proofs */

  async function ledgerView(ctx, args) {
    if (args[0] === "proof") return proofView(ctx, args[1]);
    ctx.main.append(h("h1", { text: "Ledger" }));
    const box = h("form", { class: "row", id: "entry-form" },
      h("label", { for: "entry-idx", text: "Check any log entry by index:" }),
      h("input", { id: "entry-idx", type: "number", min: "0", step: "1", required: true, placeholder: "entry index" }),
      h("button", { type: "submit", text: "check proof" }));
    box.addEventListener("submit", (e) => {
      e.preventDefault();
      location.hash = "#/ledger/proof/" + document.getElementById("entry-idx").value;
    });
    const holder = h("div", {});
    ctx.main.append(h("section", { class: "panel" }, box, message("muted", "Trades, clearings, checkpoints and keys are public; a household's readings, orders and settlements need its login.")), holder);
    async function load() {
      const [cres, tres] = await Promise.all([getJSON("/api/ledger/checkpoints?limit=20"), getJSON("/api/ledger/trades?limit=200")]);
      if (!ctx.live()) return;
      if (!cres.ok) return void holder.replaceChildren(errorBox(cres));
      if (!tres.ok) return void holder.replaceChildren(errorBox(tres));
      const op = cres.body.operator || {};
      holder.replaceChildren(
        h("section", { class: "panel" }, h("h2", { text: "Trades (latest first)" }), h("div", { class: "scroll" }, tradesTable(tres.body.trades, true))),
        h("section", { class: "panel" }, h("h2", { text: "Signed checkpoints (latest first)" }),
          kv([["log", op.origin || "\u2013"], ["operator key id", h("code", { class: "hash", text: op.kid || "\u2013" })]]),
          h("div", { class: "scroll" }, table(["tree size", "interval", "root hash", "key id"], cres.body.checkpoints.map((c) => [
            int(c.tree_size), when(c.interval), h("code", { class: "hash", text: c.root_hex }), h("code", { text: (c.kid || "").slice(0, 8) }),
          ]), { id: "checkpoints-table" }))),
      );
    }
    await load();
    return { onEvent: (evt) => evt.type === "interval" && load() };
  }

  async function proofView(ctx, idxText) {
    ctx.main.dataset.view = "proof";
    const idx = Number(idxText);
    ctx.main.append(h("h1", {}, "Inclusion proof of entry ", h("span", { class: "mono", text: "#" + idxText })),
      h("p", {}, h("a", { href: "#/ledger", text: "\u2190 ledger" })));
    if (!Number.isSafeInteger(idx) || idx < 0) return void ctx.main.append(message("error", "An entry index is a whole number from 0."));
    const res = await getJSON("/api/ledger/entries/" + idx + "/proof");
    if (!ctx.live()) return;
    if (!res.ok) return void ctx.main.append(errorBox(res));
    const p = res.body;
    const result = await WMProof.checkProof(p);
    if (!ctx.live()) return;
    ctx.main.append(
      h("section", { id: "proof-result", class: "verdict " + (result.valid ? "valid" : "invalid"), "data-result": result.valid ? "valid" : "invalid" },
        h("div", { class: "big", text: result.valid ? "valid" : "invalid" }), h("p", { text: result.reason })),
      h("p", { class: "muted", text: "Checked in this browser with Web Crypto: nothing the server computed is trusted except the operator's public key, whose key id is recomputed below." }),
      h("ol", { class: "steps" }, result.steps.map((s) => h("li", { class: s.ok ? "ok" : "bad" }, h("strong", { text: (s.ok ? "\u2713 " : "\u2717 ") + s.name + ": " }), h("span", { class: "wrap", text: s.detail })))),
      h("section", { class: "panel" }, h("h2", { text: "What was checked" }),
        kv([
          ["entry", "#" + p.idx + " (" + p.kind + ")"],
          ["entry bytes", h("pre", { class: "wrap", text: entryText(p.entry_b64) })],
          ["leaf hash", h("code", { class: "hash", text: p.leaf_hash_hex })],
          ["tree size", int(p.tree_size)],
          ["inclusion path", h("ol", { class: "path" }, p.path_hex.map((x) => h("li", {}, h("code", { class: "hash", text: x }))))],
          ["root hash", h("code", { class: "hash", text: p.root_hex })],
          ["checkpoint text", h("pre", { text: p.checkpoint_text })],
          ["signature (DER, base64)", h("code", { class: "hash", text: p.signature_der_b64 })],
          ["operator key id", h("code", { class: "hash", text: (p.operator || {}).kid })],
        ])),
    );
  }

  function entryText(b64) {
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(WMProof.b64ToBytes(b64));
      try {
        return JSON.stringify(JSON.parse(text), null, 2);
      } catch (err) {
        return text;
      }
    } catch (err) {
      return "(not UTF-8 text) " + b64;
    }
  }

  /* ------------------------------------------------------------------ health */

  async function healthView(ctx) {
    ctx.main.append(h("h1", { text: "Health" }));
    const holder = h("div", { id: "health" });
    ctx.main.append(holder);
    function draw(hl) {
      if (hl.error) return void holder.replaceChildren(errorBox({ status: hl.error.status, body: hl }));
      const led = hl.ledger || {}, rm = hl.read_model || {}, br = hl.broker || {};
      holder.replaceChildren(
        h("div", { class: "tiles" },
          tile("Status", h("span", { id: "health-status", class: hl.status === "ok" ? "ok" : "bad", text: hl.status })),
          tile("Ledger database", h("span", { class: led.ok ? "ok" : "bad", text: led.ok ? "reachable" : "unreachable" }),
            kv([["entries", int(led.tree_size)], ["problem", led.problem || "none"]])),
          tile("Data lag", int(rm.lag_entries) + " entries", kv([["read model folded", int(rm.applied_size) + " entries"], ["lag", isNum(rm.lag_s) ? NF1.format(rm.lag_s) + " s" : "\u2013"]])),
          tile("Broker", h("span", { class: !br.configured ? "muted" : br.connected ? "ok" : "bad", text: !br.configured ? "not configured" : br.connected ? "connected" : "disconnected" })),
          tile("Last interval closed", when(hl.last_interval_closed), kv([["server time", when(hl.now_s)]])),
        ),
      );
    }
    async function load() {
      const res = await getJSON("/api/health"); // 503 carries the same shape
      if (!ctx.live()) return;
      draw(res.body || { error: { status: res.status, message: "no answer" } });
    }
    await load();
    return {
      onEvent(evt) {
        if (evt.type === "health" || evt.type === "interval") load(); // an event says only what changed
      },
    };
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

  /* ------------------------------------------------------------------ start */

  function start() {
    window.addEventListener("hashchange", render);
    if (!location.hash) history.replaceState(null, "", "#/overview");
    loadSession().then(render);
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
