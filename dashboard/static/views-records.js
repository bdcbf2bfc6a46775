/* wattmesh dashboard: the households, ledger (with the proof check) and health pages. */
(function () {
  "use strict";

  const { h, kv, tile, table, message, getJSON, errorBox, isNum, kwh, money, pct, int, when, NF1, state, tradesTable } = window.WM;

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
        h("div", { class: "charts" }, h("div", { id: "hh-energy" }), h("div", {}, h("div", { id: "hh-forecast" }), forecastNote(d.forecast))),
        h("h2", { text: "Trades" }),
        h("div", { id: "hh-trades", class: "scroll" }, tradesTable(d.trades.slice(-200).reverse(), true)),
      );
      charts = drawCharts(d);
    }
    function drawCharts(d) {
      const note = holder.querySelector("#hh-forecast-model");
      if (note) note.replaceWith(forecastNote(d.forecast));
      return [WMCharts.householdEnergyChart(document.getElementById("hh-energy"), d.series), WMCharts.forecastChart(document.getElementById("hh-forecast"), d.series, d.forecast)];
    }
    await load();
    return { onEvent: (evt) => evt.type === "interval" && load() };
  }

  /* Which model made the latest forecast, and on what training data. */
  function forecastNote(f) {
    if (!f) return h("p", { id: "hh-forecast-model", class: "muted", text: "No forecast heard for this household yet." });
    const trained = f.trained_on ? "trained on the log up to entry " + int(f.trained_on.tree_size) + " (root " + f.trained_on.root.slice(0, 12) + "…)" : "training checkpoint not given";
    return h("p", { id: "hh-forecast-model", class: "muted" },
      "Latest forecast: ", h("strong", { text: f.model }), (f.version ? " version " + f.version : "") + ", issued " + when(f.issued_s) + "; " + trained + ".");
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
    let current = null;
    function draw(hl) {
      current = hl;
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
          forecasterTiles(hl.forecaster || {}),
        ),
      );
    }
    /* The forecasting service's last signed health: its state, then its counters. */
    function forecasterTiles(fc) {
      const cls = fc.state === "ok" ? "ok" : fc.state === "starting" || !fc.heard ? "muted" : "bad";
      const c = fc.counters || {};
      const counted = ["forecasts_published", "fits", "fit_failures", "readings_verified", "readings_ignored", "logged_readings", "logged_refused"];
      return [
        tile("Forecaster", h("span", { id: "forecaster-state", class: cls, text: fc.state || "not heard" }),
          kv([
            ["households", int(fc.households)],
            ["last refit", when(fc.last_refit_s)],
            ["trained on", fc.trained_on ? int(fc.trained_on.tree_size) + " log entries" : "\u2013"],
            ["heard", isNum(fc.age_s) ? int(fc.age_s) + " s ago" : "never"],
          ])),
        fc.heard ? tile("Forecaster counters", int(c.forecasts_published) + " forecasts", h("div", { id: "forecaster" },
          kv(counted.map((k) => [k.replace(/_/g, " "), int(c[k])])))) : null,
      ].filter(Boolean);
    }
    async function load() {
      const res = await getJSON("/api/health"); // 503 carries the same shape
      if (!ctx.live()) return;
      draw(res.body || { error: { status: res.status, message: "no answer" } });
    }
    await load();
    return {
      onEvent(evt) {
        if (evt.type === "health" && current && !current.error) {
          // a partial health (e.g. {"broker": {...}}): merge it into what is shown
          const next = Object.assign({}, current);
          for (const [k, v] of Object.entries(evt)) if (k !== "type") next[k] = v;
          draw(next);
        }
        else if (evt.type === "interval") load();
      },
    };
  }

  Object.assign(window.WM.views, { households: householdsView, ledger: ledgerView, health: healthView });
})();
