/* wattmesh dashboard: the overview and market pages (app.js is the frame they live in). */
(function () {
  "use strict";

  const { h, kv, tile, message, getJSON, errorBox, isNum, kwh, money, price, pct, int, when, clock, NF1, state, noteCurrency, tradesTable } = window.WM;

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
    let skew = ov.now_s - Date.now() / 1000; // the server's clock (simulated time too)
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
          if (isNum(ov.now_s)) skew = ov.now_s - Date.now() / 1000;
          noteCurrency(ov);
          followMarket(ctx, () => market, ov, Math.round(86400 / ov.interval_s), (m) => {
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
        } else if (evt.type === "health" && evt.market) {
          const m = evt.market;
          Object.assign(ov, { current_interval: m.current_interval, next_close_s: m.next_close_s, interval_s: m.interval_s, market: { state: m.state, clock: m.clock } });
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
    const span = isNum(ov.current_interval) ? when(ov.current_interval).slice(5, 16) + "\u2013" + clock(ov.current_interval + ov.interval_s) + " UTC" : "\u2013";
    const mk = ov.market || {};
    // a countdown only for a market on the wall clock; a simulation's time is not now
    const head = mk.clock === "wall" ? h("span", {}, h("span", { id: "ov-countdown", class: "mono", text: "\u2013" }), h("small", { text: " to its close" }))
      : mk.state === "open" ? h("span", { id: "ov-market", "data-state": "simulated", text: "simulated time" })
      : h("span", { id: "ov-market", "data-state": "idle", text: "market idle" + (isNum(last.interval) ? " since " + when(last.interval) : "") });
    return [
      tile("Current interval", head,
        kv([["interval", span], ["length", int(ov.interval_s / 60) + " min"], ["last closed", when(last.interval)]])),
      tile("Last clearing price", h("span", { id: "ov-last", "data-interval": isNum(last.interval) ? last.interval : "", text: price(last.price_micro_per_kwh) }),
        meter, kv([["retail tariff", price(last.retail_micro_per_kwh)], ["feed-in tariff", price(last.feed_in_micro_per_kwh)]])),
      tile("Last interval: P2P vs grid", h("span", {}, kwh(last.volume_wh), h("small", { text: " P2P" })),
        kv([["grid import", kwh(last.grid_import_wh)], ["grid export", kwh(last.grid_export_wh)], ["trades", int(last.trades)]]),
        h("p", { class: "muted small", text: "grid figures settle with the next meter reading" })),
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
      v.ok ? "ok" : "FAILED: " + (v.problem || "?"), " ", h("span", { class: "muted", text: "(" + int(v.tree_size) + " entries, " + when(v.at_s) + ")" }),
      v.anchored === false ? h("span", { class: "bad", id: "ov-unanchored", text: " against the ledger's own stored key: not anchored (configure operator_key_file)" }) : null);
  }

  function renderFeed(el, rows) {
    el.replaceChildren(...(rows && rows.length
      ? rows.map((r) => h("li", { class: r.fresh ? "fresh" : null }, h("span", { class: "mono", text: clock(r.interval) }), " ", h("strong", { text: r.reason }), " \u00d7 " + int(r.count)))
      : [h("li", { class: "muted", text: "no rejections" })]));
  }

  function anomalyItem(a) {
    return h("li", {}, h("span", { class: "mono", text: when(a.interval) }), " ", h("strong", { text: a.kind }), a.household ? " \u2013 " + a.household : "");
  }

  function emptyMarket() {
    return { intervals: [], price_micro_per_kwh: [], retail_micro_per_kwh: [], feed_in_micro_per_kwh: [], p2p_wh: [], grid_import_wh: [], grid_export_wh: [], metered_net_wh: [], forecast_net_wh: [], forecast_households: [] };
  }

  /* Follow the market on an interval event: fetch the market columns from a few
   * intervals before the newest one shown (an interval's grid figures settle with the
   * next reading, and one event may stand for several closed intervals) and put them in
   * place of that tail. One at a time, in event order. `keep` > 0 keeps the latest
   * `keep` intervals only. */
  const REFRESH_TAIL = 4;

  function followMarket(ctx, current, ov, keep, apply) {
    ctx.chain = (ctx.chain || Promise.resolve())
      .then(() => followOnce(ctx, current(), ov, keep, apply))
      .catch((err) => console.error("live update failed", err));
  }

  async function followOnce(ctx, m, ov, keep, apply) {
    const last = ov.last;
    if (!last || !isNum(last.interval)) return;
    const n = m.intervals.length;
    const start = n ? m.intervals[Math.max(0, n - REFRESH_TAIL)] : keep ? last.interval - (keep - 1) * ov.interval_s : null;
    const res = await getJSON("/api/market" + (start === null ? "" : "?start=" + start));
    if (!ctx.live() || !res.ok) return;
    const cut = start === null ? 0 : m.intervals.findIndex((t) => t >= start);
    const merged = {};
    for (const k of Object.keys(res.body)) {
      const col = (m[k] || []).slice(0, cut < 0 ? n : cut).concat(res.body[k]);
      merged[k] = keep && col.length > keep ? col.slice(col.length - keep) : col;
    }
    apply(merged);
  }

  /* ------------------------------------------------------------------ market */

  async function marketView(ctx, args) {
    const res = await getJSON("/api/market");
    if (!ctx.live()) return;
    if (!res.ok) return void ctx.main.append(errorBox(res));
    let market = res.body;
    const priceEl = h("div", { id: "market-price" });
    const volumeEl = h("div", { id: "market-volume" });
    const forecastEl = h("div", { id: "market-forecast" });
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
      h("h2", { text: "Forecast against metered" }),
      h("div", { class: "charts" }, forecastEl, h("div", { id: "market-forecast-note" }, forecastNote(market))),
    );
    const charts = [WMCharts.priceChart(priceEl, market, state.currency), WMCharts.volumeChart(volumeEl, market), neighbourhoodForecast(forecastEl, market)];
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
          charts[2].set(neighbourhoodData(market));
          document.getElementById("market-forecast-note").replaceChildren(forecastNote(market));
          fillPicker();
        });
      },
    };
  }

  /* The neighbourhood's net import: the sum of the household forecasts heard against
   * what the meters said (the market clears on the aggregate). */
  const kwhs = (col) => (col || []).map((v) => (isNum(v) ? v / 1000 : null));
  function neighbourhoodData(m) {
    return [m.intervals.slice(), kwhs(m.forecast_net_wh), kwhs(m.metered_net_wh)];
  }
  function neighbourhoodForecast(el, m) {
    return WMCharts.lineChart(el, "market-forecast", "Neighbourhood net import: forecast against metered", "kWh", m.intervals, [
      { label: "forecast (sum of households)", values: kwhs(m.forecast_net_wh), color: WMCharts.COLORS.forecast },
      { label: "metered", values: kwhs(m.metered_net_wh), color: WMCharts.COLORS.actual },
    ]);
  }

  /* Mean absolute error of that sum over the intervals every household forecast. */
  function forecastNote(m) {
    const known = Math.max(0, ...(m.forecast_households || []));
    let n = 0, err = 0, total = 0;
    (m.forecast_net_wh || []).forEach((f, i) => {
      if (!isNum(f) || m.forecast_households[i] < known) return;
      n++;
      err += Math.abs(f - m.metered_net_wh[i]);
      total += Math.abs(m.metered_net_wh[i]);
    });
    if (!n) return message("muted", "No forecast heard for these intervals.");
    return kv([
      ["intervals forecast", h("span", { id: "market-forecast-n", text: int(n) })],
      ["households per interval", int(known)],
      ["mean absolute error", kwh(err / n)],
      ["normalised MAE", pct(total ? err / total : null)],
    ]);
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
        ["trades", int(d.trades.length)],
      ]),
      bookEl,
      h("h3", { text: "Trades" }),
      h("div", { class: "scroll" }, tradesTable(d.trades, false)),
    );
    if (d.supply.length || d.demand.length) WMCharts.bookChart(bookEl, d, state.currency);
    else bookEl.append(message("muted", "No orders in this interval."));
  }

  Object.assign(window.WM.views, { overview: overviewView, market: marketView });
})();
