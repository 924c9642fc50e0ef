// Charts as inline SVG, built with the DOM. Each chart is a <figure> with a caption, an SVG marked as
// an image with a text description, and the same figures as a table (in a <details>) for people who
// cannot see the chart.

import { h, uid } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svgRoot(width, height, title, summary) {
  const titleId = uid("chart-title");
  const descId = uid("chart-desc");
  return s(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `${titleId} ${descId}`,
      class: "chart",
      preserveAspectRatio: "xMidYMid meet",
    },
    s("title", { id: titleId }, title),
    s("desc", { id: descId }, summary),
  );
}

function figure(title, svg, columns, rows, note) {
  return h(
    "figure",
    { class: "chart-figure" },
    h("figcaption", {}, title),
    svg,
    note ? h("p", { class: "hint" }, note) : null,
    h(
      "details",
      {},
      h("summary", {}, "Show the figures as a table"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows.map((r) => h("tr", {}, r.map((v) => h("td", {}, v))))),
        ),
      ),
    ),
  );
}

function niceMax(value) {
  if (value <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * exp) return m * exp;
  return 10 * exp;
}

// Vertical bars: data = [{label, value}], optionally {series: [{name, key}]} for grouped bars.
// Gridlines at whole numbers for counts: the number of steps divides the (rounded-up) maximum.
function ticksFor(max, integer) {
  if (!integer) return { max, ticks: 4 };
  const top = Math.max(1, Math.ceil(max));
  const ticks = [5, 4, 3, 2, 1].find((t) => top % t === 0 && top / t >= 1);
  return { max: top, ticks };
}

export function barChart(title, data, { format = String, series = null, note = null, integer = false, labels = 12 } = {}) {
  const keys = series || [{ name: "value", key: "value" }];
  const width = 640;
  const height = 260;
  const left = 48;
  const bottom = 40;
  const top = 16;
  const plotW = width - left - 12;
  const plotH = height - top - bottom;
  const { max, ticks } = ticksFor(niceMax(Math.max(0, ...data.flatMap((d) => keys.map((k) => Number(d[k.key]) || 0)))), integer);
  const summary = data.map((d) => `${d.label}: ${keys.map((k) => format(d[k.key])).join(" / ")}`).join("; ");
  const svg = svgRoot(width, height, title, summary || "no data");
  for (let i = 0; i <= ticks; i += 1) {
    const y = top + plotH - (plotH * i) / ticks;
    svg.append(
      s("line", { x1: left, x2: width - 12, y1: y, y2: y, class: "grid" }),
      s("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, format((max * i) / ticks)),
    );
  }
  const band = plotW / Math.max(1, data.length);
  const barW = Math.max(2, (band * 0.7) / keys.length);
  const every = Math.ceil(data.length / labels); // at most `labels` axis labels, so they never overlap
  data.forEach((d, i) => {
    keys.forEach((k, j) => {
      const v = Number(d[k.key]) || 0;
      const bh = (plotH * v) / max;
      const x = left + i * band + band * 0.15 + j * barW;
      svg.append(
        s(
          "rect",
          { x, y: top + plotH - bh, width: barW, height: bh, class: `bar series-${j}` },
          s("title", {}, `${d.label} — ${k.name}: ${format(v)}`),
        ),
      );
    });
    if (i % every === 0) {
      svg.append(
        s("text", { x: left + i * band + band / 2, y: height - bottom + 16, class: "axis", "text-anchor": "middle" }, d.label),
      );
    }
  });
  if (keys.length > 1) {
    keys.forEach((k, j) => {
      svg.append(
        s("rect", { x: left + j * 150, y: height - 14, width: 10, height: 10, class: `bar series-${j}` }),
        s("text", { x: left + j * 150 + 14, y: height - 5, class: "axis" }, k.name),
      );
    });
  }
  return figure(
    title,
    svg,
    ["", ...keys.map((k) => k.name)],
    data.map((d) => [d.label, ...keys.map((k) => format(d[k.key]))]),
    note,
  );
}

// Horizontal bars, widest first when used as a funnel.
export function hbarChart(title, data, { format = String, note = null } = {}) {
  const width = 640;
  const rowH = 30;
  const left = 130;
  const height = data.length * rowH + 16;
  const max = Math.max(1, ...data.map((d) => Number(d.value) || 0));
  const svg = svgRoot(width, height, title, data.map((d) => `${d.label}: ${format(d.value)}`).join("; "));
  data.forEach((d, i) => {
    const y = 8 + i * rowH;
    const w = ((width - left - 70) * (Number(d.value) || 0)) / max;
    svg.append(
      s("text", { x: left - 8, y: y + 18, class: "axis", "text-anchor": "end" }, d.label),
      s("rect", { x: left, y: y + 4, width: Math.max(w, 1), height: rowH - 8, class: "bar series-0" }),
      s("text", { x: left + w + 6, y: y + 18, class: "axis" }, format(d.value)),
    );
  });
  return figure(title, svg, ["", "value"], data.map((d) => [d.label, format(d.value)]), note);
}

// A grid of cells shaded by value: rows × columns, cells[r][c] a number (or null).
export function heatmap(title, rowLabels, colLabels, cells, { format = String, note = null, max = null } = {}) {
  const cellW = Math.max(28, Math.min(80, 520 / Math.max(1, colLabels.length)));
  const cellH = 28;
  const left = 110;
  const top = 28;
  const width = left + cellW * colLabels.length + 8;
  const height = top + cellH * rowLabels.length + 8;
  const top1 = max ?? Math.max(1e-9, ...cells.flat().filter((v) => v !== null && v !== undefined));
  const svg = svgRoot(
    width,
    height,
    title,
    rowLabels.map((r, i) => `${r}: ${cells[i].map((v) => (v === null ? "—" : format(v))).join(", ")}`).join("; "),
  );
  colLabels.forEach((c, j) => {
    svg.append(s("text", { x: left + j * cellW + cellW / 2, y: top - 10, class: "axis", "text-anchor": "middle" }, c));
  });
  rowLabels.forEach((r, i) => {
    const y = top + i * cellH;
    svg.append(s("text", { x: left - 8, y: y + 18, class: "axis", "text-anchor": "end" }, r));
    colLabels.forEach((c, j) => {
      const v = cells[i][j];
      const x = left + j * cellW;
      if (v === null || v === undefined) {
        svg.append(s("rect", { x, y, width: cellW - 2, height: cellH - 2, class: "cell-empty" }));
        return;
      }
      const level = Math.min(5, Math.round((5 * v) / top1));
      svg.append(
        s("rect", { x, y, width: cellW - 2, height: cellH - 2, class: `cell level-${level}` }, s("title", {}, `${r} × ${c}: ${format(v)}`)),
        s("text", { x: x + cellW / 2 - 1, y: y + 18, class: `cell-label level-${level}`, "text-anchor": "middle" }, format(v)),
      );
    });
  });
  return figure(
    title,
    svg,
    ["", ...colLabels],
    rowLabels.map((r, i) => [r, ...cells[i].map((v) => (v === null || v === undefined ? "—" : format(v)))]),
    note,
  );
}

// A line over time: points = [{label, value}].
export function lineChart(title, points, { format = String, note = null, max = null } = {}) {
  const width = 640;
  const height = 240;
  const left = 48;
  const top = 16;
  const bottom = 36;
  const plotW = width - left - 36;
  const plotH = height - top - bottom;
  const values = points.map((p) => p.value).filter((v) => v !== null && v !== undefined);
  const top1 = max ?? niceMax(Math.max(0, ...values));
  const svg = svgRoot(width, height, title, points.map((p) => `${p.label}: ${p.value === null ? "—" : format(p.value)}`).join("; "));
  for (let i = 0; i <= 4; i += 1) {
    const y = top + plotH - (plotH * i) / 4;
    svg.append(
      s("line", { x1: left, x2: width - 16, y1: y, y2: y, class: "grid" }),
      s("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, format((top1 * i) / 4)),
    );
  }
  const step = plotW / Math.max(1, points.length - 1);
  const coords = points.map((p, i) => [left + i * step, p.value === null || p.value === undefined ? null : top + plotH - (plotH * p.value) / top1]);
  const d = coords
    .filter(([, y]) => y !== null)
    .map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`)
    .join(" ");
  svg.append(s("path", { d, class: "line" }));
  const every = Math.ceil(points.length / 8);
  coords.forEach(([x, y], i) => {
    if (y !== null) svg.append(s("circle", { cx: x, cy: y, r: 3, class: "dot" }, s("title", {}, `${points[i].label}: ${format(points[i].value)}`)));
    if (i % every === 0) svg.append(s("text", { x, y: height - 12, class: "axis", "text-anchor": "middle" }, points[i].label));
  });
  return figure(title, svg, ["", "value"], points.map((p) => [p.label, p.value === null ? "—" : format(p.value)]), note);
}
