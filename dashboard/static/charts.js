/* wattmesh dashboard: chart helpers over the vendored uPlot (window.uPlot).
 *
 * Every chart exposes what it plots on its container element, since a canvas cannot
 * be inspected:
 *   data-chart   the chart's name (price, volume, book, household-energy, forecast)
 *   data-series  JSON {"labels": [x label, series labels...], "data": [[x...], [y...]...]}
 *                exactly the arrays given to uPlot (display units: kWh, currency/kWh)
 *   data-points  the number of non-null y values over all series
 * Tests read these attributes; they are updated whenever the chart's data changes.
 */
(function () {
  "use strict";

  const COLORS = {
    price: "#1f6feb",
    retail: "#d1242f",
    feedIn: "#1a7f37",
    p2p: "#8250df",
    gridImport: "#bc4c00",
    gridExport: "#0969da",
    supply: "#1a7f37",
    demand: "#d1242f",
    clearing: "#111111",
    forecast: "#9a6700",
    actual: "#1f6feb",
  };

  function fill(color) {
    return color + "33";
  }

  function countPoints(data) {
    let n = 0;
    for (let i = 1; i < data.length; i++) {
      for (const v of data[i]) if (v !== null && v !== undefined) n++;
    }
    return n;
  }

  function expose(el, labels, data) {
    el.dataset.series = JSON.stringify({ labels: labels, data: data });
    el.dataset.points = String(countPoints(data));
  }

  /* A uPlot chart in `el` that follows the element's width; returns {plot, set(data)}. */
  function makeChart(el, name, opts, labels, data) {
    el.replaceChildren();
    el.classList.add("chart");
    el.dataset.chart = name;
    const inner = () => {
      const cs = getComputedStyle(el);
      const pad = parseFloat(cs.paddingLeft) + parseFloat(cs.paddingRight) || 0;
      return Math.max((el.clientWidth || 600) - pad, 240);
    };
    const width = inner();
    const height = opts.height || 240;
    const plot = new window.uPlot(
      Object.assign({ width: width, height: height, legend: { live: true } }, opts),
      data,
      el,
    );
    expose(el, labels, data);
    if (window.ResizeObserver) {
      let last = width;
      new ResizeObserver(function () {
        const w = inner();
        if (Math.abs(w - last) > 2) {
          last = w;
          plot.setSize({ width: w, height: height });
        }
      }).observe(el);
    }
    return {
      plot: plot,
      data: data,
      set: function (next) {
        this.data = next;
        plot.setData(next);
        expose(el, labels, next);
      },
    };
  }

  const perKwh = (micro) => (micro === null || micro === undefined ? null : micro / 1e6);
  const kwh = (wh) => (wh === null || wh === undefined ? null : wh / 1000);

  /* Time axes and legends in UTC, 24 h, like the rest of the page. */
  const iso = (s) => new Date(s * 1000).toISOString();
  function timeAxis() {
    return {
      scale: "x",
      space: 60,
      values: (u, splits) =>
        splits.map((s) => (iso(s).slice(11, 16) === "00:00" ? iso(s).slice(5, 10) : iso(s).slice(11, 16))),
    };
  }
  function timeSeries() {
    return { label: "time (UTC)", value: (u, v) => (v === null || v === undefined ? "--" : iso(v).slice(0, 16).replace("T", " ")) };
  }
  const fromZero = { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] };

  function stepped() {
    return window.uPlot.paths.stepped ? window.uPlot.paths.stepped({ align: 1 }) : undefined;
  }

  /* Market columns (GET /api/market) -> the arrays of the price chart. */
  function priceData(m) {
    return [
      m.intervals.slice(),
      m.price_micro_per_kwh.map(perKwh),
      m.retail_micro_per_kwh.map(perKwh),
      m.feed_in_micro_per_kwh.map(perKwh),
    ];
  }

  function priceChart(el, market, currency) {
    const unit = currency + "/kWh";
    const labels = ["interval start (UTC)", "clearing price", "retail tariff", "feed-in tariff"];
    return makeChart(
      el,
      "price",
      {
        title: "Clearing price and the grid tariffs (" + unit + ")",
        scales: { x: { time: true }, y: fromZero },
        series: [
          timeSeries(),
          {
            label: labels[1],
            stroke: COLORS.price,
            width: 2,
            paths: stepped(),
            spanGaps: false,
            points: { show: true, size: 4 },
          },
          { label: labels[2], stroke: COLORS.retail, width: 1.5, dash: [6, 4], paths: stepped() },
          { label: labels[3], stroke: COLORS.feedIn, width: 1.5, dash: [6, 4], paths: stepped() },
        ],
        axes: [timeAxis(), { label: unit, size: 60 }],
      },
      labels,
      priceData(market),
    );
  }

  function volumeData(m) {
    return [
      m.intervals.slice(),
      m.p2p_wh.map(kwh),
      m.grid_import_wh.map(kwh),
      m.grid_export_wh.map(kwh),
    ];
  }

  function volumeChart(el, market) {
    const labels = ["interval start (UTC)", "P2P traded", "grid import", "grid export"];
    return makeChart(
      el,
      "volume",
      {
        title: "Energy per interval: P2P versus grid (kWh)",
        scales: { x: { time: true }, y: fromZero },
        series: [
          timeSeries(),
          { label: labels[1], stroke: COLORS.p2p, fill: fill(COLORS.p2p), width: 2, paths: stepped() },
          { label: labels[2], stroke: COLORS.gridImport, width: 1.5, paths: stepped() },
          { label: labels[3], stroke: COLORS.gridExport, width: 1.5, paths: stepped() },
        ],
        axes: [timeAxis(), { label: "kWh", size: 60 }],
      },
      labels,
      volumeData(market),
    );
  }

  /* Step curves on one shared x (cumulative kWh): each order's price holds from the
   * previous cumulative quantity up to its own (uPlot's stepped path, align 1). */
  function stepValue(curve, x) {
    if (!curve.length) return null;
    const total = curve[curve.length - 1][0];
    if (x > total) return null;
    for (const point of curve) if (x < point[0]) return point[1];
    return curve[curve.length - 1][1]; // x == total: close the last step
  }

  function bookData(detail) {
    const xs = new Set([0]);
    for (const p of detail.supply) xs.add(p[0]);
    for (const p of detail.demand) xs.add(p[0]);
    const c = detail.clearing || {};
    const hasPoint = c.price_micro_per_kwh !== null && c.price_micro_per_kwh !== undefined;
    if (hasPoint) xs.add(c.volume_wh);
    const wh = Array.from(xs).sort((a, b) => a - b);
    return [
      wh.map(kwh),
      wh.map((x) => perKwh(stepValue(detail.supply, x))),
      wh.map((x) => perKwh(stepValue(detail.demand, x))),
      wh.map((x) => (hasPoint && x === c.volume_wh ? perKwh(c.price_micro_per_kwh) : null)),
    ];
  }

  function bookChart(el, detail, currency) {
    const unit = currency + "/kWh";
    const labels = ["cumulative quantity (kWh)", "supply (sell orders)", "demand (buy orders)", "clearing point"];
    return makeChart(
      el,
      "book",
      {
        title: "Order book: supply and demand (" + unit + " against kWh)",
        scales: { x: { time: false }, y: fromZero },
        series: [
          { label: "kWh" },
          { label: labels[1], stroke: COLORS.supply, width: 2, paths: stepped(), spanGaps: false },
          { label: labels[2], stroke: COLORS.demand, width: 2, paths: stepped(), spanGaps: false },
          {
            label: labels[3],
            stroke: COLORS.clearing,
            fill: COLORS.clearing,
            width: 0,
            paths: () => null,
            points: { show: true, size: 12, width: 2, stroke: COLORS.clearing, fill: "#ffd33d" },
          },
        ],
        axes: [{ label: "cumulative kWh" }, { label: unit, size: 60 }],
      },
      labels,
      bookData(detail),
    );
  }

  function householdEnergyChart(el, series) {
    const labels = ["interval start (UTC)", "import", "export", "bought (P2P)", "sold (P2P)"];
    return makeChart(
      el,
      "household-energy",
      {
        title: "Metered import and export, P2P bought and sold (kWh)",
        scales: { x: { time: true }, y: fromZero },
        series: [
          timeSeries(),
          { label: labels[1], stroke: COLORS.gridImport, width: 1.5, paths: stepped() },
          { label: labels[2], stroke: COLORS.gridExport, width: 1.5, paths: stepped() },
          { label: labels[3], stroke: COLORS.p2p, fill: fill(COLORS.p2p), width: 1.5, paths: stepped() },
          { label: labels[4], stroke: COLORS.feedIn, fill: fill(COLORS.feedIn), width: 1.5, paths: stepped() },
        ],
        axes: [timeAxis(), { label: "kWh", size: 60 }],
      },
      labels,
      [
        series.intervals.slice(),
        series.import_wh.map(kwh),
        series.export_wh.map(kwh),
        series.bought_wh.map(kwh),
        series.sold_wh.map(kwh),
      ],
    );
  }

  /* Net import, forecast against metered, with the forecast's 10-90 % band (filled
   * between the two dashed band lines); `model` names the latest forecast's model. */
  function forecastChart(el, series, model) {
    const labels = ["interval start (UTC)", "forecast 90 %", "forecast net demand", "forecast 10 %", "actual net demand"];
    const none = series.intervals.map(() => null);
    const col = (name) => (series[name] || none).map(kwh);
    const named = model ? model.model + ", " : "";
    const band = { label: "", stroke: COLORS.forecast, width: 1, dash: [2, 3], spanGaps: false };
    return makeChart(
      el,
      "forecast",
      {
        title: "Net demand: forecast (" + named + "10-90 % band) against metered (kWh; negative = export)",
        scales: { x: { time: true }, y: fromZero },
        series: [
          timeSeries(),
          Object.assign({}, band, { label: labels[1] }),
          { label: labels[2], stroke: COLORS.forecast, width: 1.5, dash: [5, 3], spanGaps: false },
          Object.assign({}, band, { label: labels[3] }),
          { label: labels[4], stroke: COLORS.actual, width: 1.5 },
        ],
        bands: [{ series: [1, 3], fill: fill(COLORS.forecast) }],
        axes: [timeAxis(), { label: "kWh", size: 60 }],
      },
      labels,
      [series.intervals.slice(), col("forecast_net_p90_wh"), col("forecast_net_wh"), col("forecast_net_p10_wh"), series.actual_net_wh.map(kwh)],
    );
  }

  /* A time chart of any columns: lines = [{label, values, color, fill?}] in `unit`. */
  function lineChart(el, name, title, unit, x, lines) {
    const labels = ["interval start (UTC)"].concat(lines.map((l) => l.label));
    return makeChart(
      el,
      name,
      {
        title: title + " (" + unit + ")",
        scales: { x: { time: true }, y: fromZero },
        series: [timeSeries()].concat(
          lines.map((l) => ({ label: l.label, stroke: l.color, fill: l.fill ? fill(l.color) : undefined, width: 1.5, paths: stepped() })),
        ),
        axes: [timeAxis(), { label: unit, size: 60 }],
      },
      labels,
      [x.slice()].concat(lines.map((l) => l.values.slice())),
    );
  }

  window.WMCharts = {
    lineChart: lineChart,
    COLORS: COLORS,
    priceChart: priceChart,
    priceData: priceData,
    volumeChart: volumeChart,
    volumeData: volumeData,
    bookChart: bookChart,
    bookData: bookData,
    householdEnergyChart: householdEnergyChart,
    forecastChart: forecastChart,
    countPoints: countPoints,
  };
})();
