/* neuronmap explorer: links the views of one run. Charts are plotly.js; this file only wires them.
 * Safety: text reaches the DOM only through text nodes (el(), never innerHTML), and plotly labels only
 * through esc(), which HTML-escapes (plotly turns its entities back into plain characters). */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("nm-data").textContent);
  const M = D.meta;
  const NL = M.nLayers;
  const PLOT_CONFIG = { displaylogo: false, responsive: true, typesetMath: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"] };
  const S = { part: "cluster", layer: -1, group: null, cluster: null, neuron: null, query: "", substring: false,
    matrixColumn: Object.keys(D.groups)[0] || null, causalFact: "avg", causalKind: "mlp",
    heatPage: 0, heatAll: false, listPage: 0, pFilter: "" };
  const MAP_LABELS = 30;  // map marks labelled with their top tokens: the largest under the filters (all on hover)
  const HEAT_COLUMNS = 60;  // heatmap columns at once when clusters are more; the rest summed as "others"
  const LIST_ROWS = 25;  // cluster list rows per page
  const cache = {};
  const TOKEN_RULE = "A cluster's tokens are ranked by share × min(lift, 10): the token's share of the cluster's weight times " +
    "its lift (share in the cluster / share overall), the lift capped at 10, so that the tokens typical of the cluster come " +
    "first and a token rare in it (lift far below 1, or a rare token with a high lift) does not outrank them.";
  const CAUSAL_COLORS = { hidden: "#54278f", mlp: "#006d2c", attn: "#a50f15" };  // ROME's purple, green, red

  // ---- helpers ---------------------------------------------------------------------------------------
  function el(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "onclick") node.addEventListener("click", v);
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined) continue;
      node.appendChild(typeof kid === "string" || typeof kid === "number" ? document.createTextNode(String(kid)) : kid);
    }
    return node;
  }
  function clear(node, ...kids) { node.replaceChildren(...kids.flat().filter((k) => k)); }
  const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ENTITIES[c]); }
  function tok(s) { return String(s).replace(/ /g, "\u2423").replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5"); }
  function fmt(x) {
    if (x === null || x === undefined) return "-";
    const a = Math.abs(x);
    return a !== 0 && (a < 0.001 || a >= 1e5) ? x.toExponential(2) : String(+x.toPrecision(3));
  }
  // A cluster is drawn in the colour of its mean layer (viridis: early layers purple, late ones yellow), a
  // property it has, not an identity colour that ten clusters would share.
  const VIRIDIS = ["#440154", "#482878", "#3e4a89", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
  function meanLayer(c) {
    const h = part().hist[c]; let s = 0, n = 0;
    for (let l = 0; l < h.length; l++) { s += l * h[l]; n += h[l]; }
    return n ? s / n : 0;
  }
  function color(c) { const x = NL > 1 ? meanLayer(c) / (NL - 1) : 0; return VIRIDIS[Math.min(9, Math.max(0, Math.round(9 * x)))]; }
  // Whole targets: a first token that stands for longer targets (" y" for " yen") is shown with them.
  function words(t) { return (D.words && D.words[t]) || null; }
  function tokw(t) { const w = words(t); return tok(D.tokens[t]) + (w ? " → " + w.join(" / ") : ""); }
  function tokShort(t) { const w = words(t); return w ? w[0] : String(D.tokens[t]).trim() || tok(D.tokens[t]); }
  function part() { return D.partitions[S.part]; }
  function nClusters() { return part().size.length; }
  function neuronCluster(i) { return S.part === "merged" ? D.neurons.merged[i] : D.neurons.cluster[i]; }
  function neuronName(i) { return "L" + D.neurons.layer[i] + "/" + D.neurons.neuron[i]; }
  // Found clusters whose top tokens pass the coherence test (drawn as stars on the map).
  function isCoherent(c) { const p = part(); return !!(p.coherent && p.coherent[c]); }
  function verifyPasses(c) { const p = part(); return !!(p.verify && p.verify[c] && p.verify[c][5]); }
  // Pass marks: ✓ its tokens pass the coherence test, ✦ it passes the causal check (neuronmap verify).
  function marks(c) { return (isCoherent(c) ? "✓" : "") + (verifyPasses(c) ? "✦" : ""); }
  function clusterLabel(c, n) {
    const m = marks(c);
    return part().tokens[c].slice(0, n).map((r) => tokShort(r[0])).join(", ") + (m ? " " + m : "");
  }
  function clusterName(c) { return (S.part === "merged" ? "merged #" : "#") + c; }
  function groupLabel(g) { return g ? g.col + " = " + D.groups[g.col][g.v] : "all contexts"; }
  function plot(id, data, layout) {
    const base = { margin: { l: 50, r: 10, t: 10, b: 40 }, font: { size: 11 }, hovermode: "closest",
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" };
    return Plotly.react(id, data, Object.assign(base, layout), PLOT_CONFIG);
  }
  function memo(key, make) { if (!(key in cache)) cache[key] = make(); return cache[key]; }

  // Score mass of (layer, cluster) cells of the current partition, for all contexts or the chosen group.
  function massGrid() {
    const key = "mass|" + S.part + "|" + (S.group ? S.group.col + "|" + S.group.v : "");
    return memo(key, () => {
      const K = nClusters(), grid = new Float64Array(NL * K), m = part().mass;
      const t = S.group ? m[S.group.col] : m.all;
      for (let i = 0; i < t.m.length; i++) {
        if (S.group && t.v[i] !== S.group.v) continue;
        grid[t.l[i] * K + t.c[i]] += t.m[i];
      }
      return grid;
    });
  }
  // The value a cluster is drawn with under the filters: neurons (no group) or score mass (a group).
  function clusterValues() {
    const K = nClusters(), out = new Float64Array(K), p = part();
    if (!S.group) {
      for (let c = 0; c < K; c++) out[c] = S.layer < 0 ? p.size[c] : p.hist[c][S.layer];
      return out;
    }
    const grid = massGrid();
    for (let l = 0; l < NL; l++) {
      if (S.layer >= 0 && l !== S.layer) continue;
      for (let c = 0; c < K; c++) out[c] += grid[l * K + c];
    }
    return out;
  }
  // Tokens that are targets of the chosen group's contexts (null: no group filter).
  function groupTokens() {
    if (!S.group) return null;
    return memo("tokens|" + S.group.col + "|" + S.group.v, () => {
      const t = D.search.values[S.group.col], set = new Set();
      for (let i = 0; i < t.t.length; i++) if (t.v[i] === S.group.v) set.add(t.t[i]);
      return set;
    });
  }
  function contextInGroup(ref) { return !S.group || D.contexts.codes[S.group.col][ref] === S.group.v; }
  // The p filter of the context lists: p(target) at least a bound, or only targets the model predicts top-1.
  function contextPassesP(ref) {
    const C = D.contexts, f = S.pFilter;
    if (!f) return true;
    if (f === "top1") return !!C.known[ref];
    return C.p.length ? C.p[ref] >= +f : true;
  }
  function contextShown(ref) { return contextInGroup(ref) && contextPassesP(ref); }
  function contextFilterLabel() {
    return [S.group ? groupLabel(S.group) : null, !S.pFilter ? null : S.pFilter === "top1" ? "targets predicted top-1" :
      "p(target) ≥ " + S.pFilter].filter((x) => x).join(", ");
  }
  function neuronsOf(c) {
    return memo("neurons|" + S.part + "|" + c, () => {
      const out = [];
      for (let i = 0; i < D.neurons.layer.length; i++) if (neuronCluster(i) === c) out.push(i);
      return out.sort((a, b) => D.neurons.strength[b] - D.neurons.strength[a] || a - b);
    });
  }
  function clusterTopTokens(c, n) {
    return part().tokens[c].slice(0, n).map((r) => tokw(r[0])).join("  ");
  }
  function clusterChip(c, extra) {
    return el("span", { className: "chip", onclick: () => selectCluster(c), title: clusterTopTokens(c, 8) },
      clusterName(c) + (extra ? " " + extra : ""));
  }
  function neuronChip(i, extra) {
    return el("span", { className: "chip", onclick: () => selectNeuron(i) }, neuronName(i) + (extra ? " " + extra : ""));
  }
  function contextLine(ref, score) {
    const C = D.contexts;
    return el("div", { className: "ctx" }, el("span", { className: "score" }, fmt(score)),
      C.p.length ? el("span", { className: "p", title: "p(target): the model's probability of the target" +
        (C.known.length ? (C.known[ref] ? " (predicted top-1)" : " (not its top-1 prediction)") : "") }, "p " + fmt(C.p[ref])) : null,
      C.text[ref], el("mark", {}, C.exact || C.target[ref].startsWith(" ") || /\s$/.test(C.text[ref]) ? C.target[ref] : " " + C.target[ref]));
  }

  // ---- views -----------------------------------------------------------------------------------------
  function renderMap() {
    const p = part(), values = clusterValues(), ids = [];
    for (let c = 0; c < values.length; c++) if (values[c] > 0) ids.push(c);
    const max = Math.max(1e-12, ...ids.map((c) => values[c]));
    // Labels: the top tokens (and pass marks) of the largest clusters under the filters, and of the one open.
    const labelled = new Set(ids.slice().sort((a, b) => values[b] - values[a] || a - b).slice(0, MAP_LABELS));
    if (S.cluster !== null) labelled.add(S.cluster);
    const about = (c) => [p.size[c] + " neurons", S.layer >= 0 ? p.hist[c][S.layer] + " in layer " + S.layer : null,
      S.group ? "score mass " + fmt(values[c]) + " in " + groupLabel(S.group) : null, "mean layer " + fmt(meanLayer(c)),
      isCoherent(c) ? "✓ coherent tokens" : null, verifyPasses(c) ? "✦ passes the causal check" : null].filter((x) => x).join(" · ");
    const trace = {
      type: "scatter", mode: "markers+text", x: ids.map((c) => p.x[c]), y: ids.map((c) => p.y[c]),
      customdata: ids, text: ids.map((c) => (labelled.has(c) ? esc(clusterLabel(c, 3)) : "")),
      textposition: "top center", textfont: { size: 10, color: "#333" }, cliponaxis: false,
      marker: { size: ids.map((c) => 6 + 34 * Math.sqrt(values[c] / max)), color: ids.map(meanLayer),
        colorscale: "Viridis", cmin: 0, cmax: Math.max(1, NL - 1), showscale: true,
        colorbar: { title: { text: "mean layer" }, thickness: 10, len: 0.6 },
        opacity: 0.8, symbol: ids.map((c) => (isCoherent(c) ? "star" : "circle")),
        line: { width: ids.map((c) => (c === S.cluster ? 3 : 0.5)), color: "#111" } },
      hoverinfo: "text",
      hovertext: ids.map((c) => esc(clusterName(c) + " · " + about(c)) + "<br>" + esc(clusterTopTokens(c, 8))),
    };
    const axis = { showgrid: false, zeroline: false, showticklabels: false };
    plot("nm-map", [trace], { xaxis: axis, yaxis: axis, margin: { l: 10, r: 10, t: 10, b: 10 } });
    renderList();
  }

  // Clusters in the order of their value under the filters (neurons, or the group's score mass), largest first.
  function clusterOrder() {
    return memo("order|" + S.part + "|" + S.layer + "|" + (S.group ? S.group.col + "|" + S.group.v : ""), () => {
      const v = clusterValues();
      return [...Array(nClusters()).keys()].sort((a, b) => v[b] - v[a] || a - b);
    });
  }
  function orderLabel() { return S.group ? "by score mass in " + groupLabel(S.group) : S.layer >= 0 ? "by neurons in layer " + S.layer : "by neurons"; }
  // The cluster list: every cluster, a page at a time, with its label, marks and size.
  function renderList() {
    const box = document.getElementById("nm-cluster-list"), order = clusterOrder(), K = order.length;
    const pages = Math.max(1, Math.ceil(K / LIST_ROWS));
    S.listPage = Math.min(Math.max(0, S.listPage), pages - 1);
    const start = S.listPage * LIST_ROWS, values = clusterValues();
    const table = el("table", {}, el("tr", {}, el("th", {}, "cluster"), el("th", {}, S.group ? "score mass" : "neurons"),
      el("th", {}, "mean layer"), el("th", {}, "top tokens")));
    for (const c of order.slice(start, start + LIST_ROWS)) {
      table.appendChild(el("tr", { className: "link" + (c === S.cluster ? " selected" : ""), "data-cluster": String(c), onclick: () => selectCluster(c) },
        el("td", {}, clusterName(c) + (marks(c) ? " " + marks(c) : "")), el("td", {}, fmt(values[c])), el("td", {}, fmt(meanLayer(c))),
        el("td", {}, part().tokens[c].slice(0, 5).map((r) => el("span", { className: "tok" }, tokw(r[0]))))));
    }
    const pager = el("div", { className: "pager", id: "nm-list-pager" },
      el("button", { className: "prev", onclick: () => { S.listPage--; renderList(); } }, "‹ prev"),
      el("span", {}, " clusters " + (start + 1) + "–" + Math.min(K, start + LIST_ROWS) + " of " + K + " " + orderLabel() + " "),
      el("button", { className: "next", onclick: () => { S.listPage++; renderList(); } }, "next ›"));
    pager.querySelector(".prev").disabled = S.listPage === 0;
    pager.querySelector(".next").disabled = S.listPage >= pages - 1;
    clear(box, pager, table);
  }

  // Heatmap columns: every cluster when they are few (or "show all"); else a page of HEAT_COLUMNS clusters in
  // clusterOrder() and one "others" column that sums the rest.
  function heatColumns() {
    const K = nClusters();
    if (K <= HEAT_COLUMNS || S.heatAll) return { ids: [...Array(K).keys()], others: null, K: K };
    const order = clusterOrder(), pages = Math.ceil(K / HEAT_COLUMNS);
    S.heatPage = Math.min(Math.max(0, S.heatPage), pages - 1);
    const start = S.heatPage * HEAT_COLUMNS, ids = order.slice(start, start + HEAT_COLUMNS), on = new Set(ids);
    return { ids: ids, others: order.filter((c) => !on.has(c)), K: K, start: start, pages: pages };
  }
  function heatAxis(cols) {  // x values, axis and the label of each column
    if (!cols.others) return { x: cols.ids, axis: { title: { text: "cluster" } }, names: cols.ids.map(clusterName) };
    const x = [...Array(cols.ids.length + 1).keys()];
    const names = cols.ids.map(clusterName).concat(["others (" + cols.others.length + " clusters)"]);
    return { x: x, names: names, axis: { title: { text: "cluster (" + orderLabel() + "; the rest summed in \"others\")" },
      tickvals: x, ticktext: cols.ids.map((c) => "#" + c).concat(["others"]), tickfont: { size: 9 }, tickangle: -90 } };
  }
  // The colour scale spans the page's own columns: "others" (a sum of many) saturates instead of washing them out.
  function heatRange(z, cols) {
    if (!cols.others) return {};
    let top = 0;
    for (const row of z) for (let j = 0; j < cols.ids.length; j++) top = Math.max(top, row[j]);
    return { zauto: false, zmin: 0, zmax: top || 1 };
  }
  function heatColumnOf(cols, x) { return cols.others ? (x < cols.ids.length ? cols.ids[x] : null) : x; }
  function heatSelected(cols) {
    const at = S.cluster === null ? -1 : cols.others ? cols.ids.indexOf(S.cluster) : S.cluster;
    return at < 0 ? [] : [{ type: "rect", xref: "x", yref: "paper", x0: at - 0.5, x1: at + 0.5, y0: 0, y1: 1,
      line: { color: "#d62728", width: 2 } }];
  }
  function renderPager(id, cols) {
    const box = document.getElementById(id);
    if (cols.K <= HEAT_COLUMNS) { clear(box); return; }
    const rerender = () => { renderLayers(); renderMatrix(); };
    if (!cols.others) {
      clear(box, el("span", {}, "all " + cols.K + " clusters "), el("button", { className: "all", onclick: () => { S.heatAll = false; rerender(); } },
        "show " + HEAT_COLUMNS + " at a time"));
      return;
    }
    const prev = el("button", { className: "prev", onclick: () => { S.heatPage--; rerender(); } }, "‹ prev");
    const next = el("button", { className: "next", onclick: () => { S.heatPage++; rerender(); } }, "next ›");
    prev.disabled = S.heatPage === 0;
    next.disabled = S.heatPage >= cols.pages - 1;
    clear(box, prev, el("span", {}, " clusters " + (cols.start + 1) + "–" + (cols.start + cols.ids.length) + " of " + cols.K + " " +
      orderLabel() + ", others summed "), next, " ", el("button", { className: "all", onclick: () => { S.heatAll = true; rerender(); } }, "show all"));
  }

  function renderLayers() {
    const K = nClusters(), p = part(), z = [], grid = S.group ? massGrid() : null;
    const cols = heatColumns(), ax = heatAxis(cols);
    S.layerCols = cols;
    const cell = (l, c) => (grid ? grid[l * K + c] : p.hist[c][l]);
    for (let l = 0; l < NL; l++) {
      const row = cols.ids.map((c) => cell(l, c));
      if (cols.others) row.push(cols.others.reduce((a, c) => a + cell(l, c), 0));
      z.push(row);
    }
    const shapes = heatSelected(cols);
    if (S.layer >= 0) shapes.push({ type: "rect", xref: "paper", yref: "y", x0: 0, x1: 1, y0: S.layer - 0.5,
      y1: S.layer + 0.5, line: { color: "#111", width: 1.5 } });
    renderPager("nm-layers-pager", cols);
    plot("nm-layers", [Object.assign({ type: "heatmap", z: z, x: ax.x, y: [...Array(NL).keys()],
      colorscale: "Blues", reversescale: true, hoverinfo: "text",
      hovertext: z.map((row, l) => row.map((v, j) => esc(ax.names[j]) + ", layer " + l + ": " + fmt(v))),
      colorbar: { title: { text: S.group ? "mass" : "neurons" }, thickness: 10 } }, heatRange(z, cols))],
    { xaxis: ax.axis, yaxis: { title: { text: "layer" }, dtick: NL > 12 ? 2 : 1 }, shapes: shapes,
      margin: { l: 50, r: 10, t: 10, b: cols.others ? 70 : 40 } });
  }

  function renderMatrix() {
    const col = S.matrixColumn, box = document.getElementById("nm-matrix");
    if (!col) { Plotly.purge(box); clear(box, el("p", { className: "empty" }, "This run has no context groups (add group columns to the contexts, or use trace --group-by pos|sense).")); return; }
    const K = nClusters(), values = D.groups[col], m = part().mass[col];
    const full = values.map(() => new Float64Array(K));
    for (let i = 0; i < m.m.length; i++) {
      if (S.layer >= 0 && m.l[i] !== S.layer) continue;
      full[m.v[i]][m.c[i]] += m.m[i];
    }
    const cols = heatColumns(), ax = heatAxis(cols);
    S.matrixCols = cols;
    const z = full.map((row) => {
      const s = row.reduce((a, b) => a + b, 0) || 1, out = cols.ids.map((c) => row[c] / s);
      if (cols.others) out.push(cols.others.reduce((a, c) => a + row[c], 0) / s);
      return out;
    });
    const labels = values.map((v, i) => esc(v) + " (" + D.groupCounts[col][i] + ")");
    box.style.height = Math.max(240, 60 + 18 * values.length + (cols.others ? 30 : 0)) + "px";
    renderPager("nm-matrix-pager", cols);
    plot("nm-matrix", [Object.assign({ type: "heatmap", z: z, x: ax.x, y: [...values.keys()],
      colorscale: "YlOrRd", reversescale: true, hovertext: z.map((row, v) => row.map((s, j) =>
        labels[v] + " · " + esc(ax.names[j]) + ": " + fmt(100 * s) + "%")), hoverinfo: "text",
      colorbar: { title: { text: "share" }, thickness: 10 } }, heatRange(z, cols))],
    { xaxis: ax.axis,
      yaxis: { tickvals: [...values.keys()], ticktext: labels, automargin: true, autorange: "reversed" },
      margin: { l: 10, r: 10, t: 10, b: cols.others ? 70 : 40 }, shapes: heatSelected(cols) });
  }

  function renderCluster() {
    const box = document.getElementById("nm-cluster"), c = S.cluster, p = part();
    if (c === null || c >= nClusters()) { clear(box, el("p", { className: "empty" }, "Click a cluster on the map, the heatmaps or a search result.")); return; }
    const filters = [S.layer >= 0 ? "layer " + S.layer : null, S.group ? groupLabel(S.group) : null].filter((x) => x);
    const head = el("h3", { id: "nm-cluster-title" }, clusterName(c) + " · " + p.size[c] + " neurons · token specificity " + fmt(p.bits[c]) + " bits" +
      (p.coherenceQ && p.coherenceQ[c] !== null ? " · token coherence q " + fmt(p.coherenceQ[c]) + (p.coherent[c] ? " (coherent)" : " (not coherent)") : "") +
      (marks(c) ? " · " + marks(c) : ""));
    const kids = [head, el("p", { className: "stats", id: "nm-cluster-export" }, "export as CSV: ",
      el("button", { id: "nm-export-neurons", onclick: () => exportNeurons(c) }, "its neurons"), " ",
      el("button", { id: "nm-export-contexts", onclick: () => exportContexts(c) }, "its contexts"))];
    // The causal check (neuronmap verify): how much more the cluster's own tokens lose when it is ablated.
    const v = p.verify && p.verify[c];
    if (v) kids.push(el("p", { id: "nm-cluster-verify", className: "stats" }, "causal check: ablated, its tokens' log p changes by " +
      fmt(v[0]) + " more than the others' (95% CI " + fmt(v[1]) + " to " + fmt(v[2]) + "; random sets " + fmt(v[3]) +
      "; q " + fmt(v[4]) + "; " + v[6] + " / " + v[7] + " events) · " + (v[5] ? "passes" : "does not pass")));
    if (S.part === "merged" && p.members[c].length > 1) kids.push(el("p", { className: "stats" }, "merges clusters " + p.members[c].map((x) => "#" + x).join(", ")));
    if (filters.length) kids.push(el("p", { className: "stats" }, "filtered by " + filters.join(", ")));
    // Tokens: the cluster's own (all layers) or those of its neurons in the chosen layer; a group keeps its targets.
    let rows = S.layer >= 0 ? (p.layerTokens[c][String(S.layer)] || []).map((r) => [r[0], r[1], null, null]) : p.tokens[c];
    const allowed = groupTokens();
    if (allowed) rows = rows.filter((r) => allowed.has(r[0]));
    rows = rows.slice(0, 15);
    kids.push(el("h3", { title: TOKEN_RULE }, S.layer >= 0 ? "tokens of its neurons in layer " + S.layer + " (by weight)"
      : "tokens (ranked by share × min(lift, 10); bars: weight; lift = share in the cluster / share overall)"));
    const tokensDiv = el("div", { id: "nm-cluster-tokens", className: "plot small" });
    kids.push(rows.length ? tokensDiv : el("p", { className: "empty" }, "no tokens under these filters"));
    kids.push(el("h3", {}, "neurons per layer"));
    const histDiv = el("div", { id: "nm-cluster-hist", className: "plot small" });
    kids.push(histDiv);
    let members = neuronsOf(c);
    if (S.layer >= 0) members = members.filter((i) => D.neurons.layer[i] === S.layer);
    kids.push(el("h3", {}, "neurons (" + members.length + ", strongest first)"));
    const table = el("table", {}, el("tr", {}, el("th", {}, "neuron"), el("th", {}, "strength"), el("th", {}, "degree"), el("th", {}, "top tokens")));
    for (const i of members.slice(0, 200)) {
      table.appendChild(el("tr", { className: "link", onclick: () => selectNeuron(i) }, el("td", {}, neuronName(i)),
        el("td", {}, fmt(D.neurons.strength[i])), el("td", {}, D.neurons.degree[i] === null ? "-" : String(D.neurons.degree[i])),
        el("td", {}, D.neurons.tokens[i].map((r) => el("span", { className: "tok" }, tokw(r[0]))))));
    }
    kids.push(el("div", { className: "scroll" }, table));
    if (members.length > 200) kids.push(el("p", { className: "stats" }, (members.length - 200) + " more not listed"));
    const ctx = p.contexts[c].filter((r) => contextShown(r[0]));
    kids.push(el("h3", {}, "contexts where it mattered most (score mass of its neurons; p: p(target))" +
      (contextFilterLabel() ? " · " + contextFilterLabel() : "")));
    kids.push(ctx.length ? el("div", { className: "scroll", id: "nm-cluster-contexts" }, ctx.slice(0, 12).map((r) => contextLine(r[0], r[1])))
      : el("p", { className: "empty" }, "none of its " + p.contexts[c].length + " strongest contexts is in " + contextFilterLabel()));
    clear(box, kids);
    if (rows.length) {
      const r = rows.slice().reverse(), height = Math.max(160, 30 + 17 * r.length);
      tokensDiv.style.height = height + "px";
      plot(tokensDiv, [{ type: "bar", orientation: "h", x: r.map((x) => x[1]), y: r.map((x, i) => i),
        marker: { color: color(c) }, text: r.map((x) => (x[2] === null ? "" : "lift " + fmt(x[2]))), textposition: "auto",
        hoverinfo: "text", hovertext: r.map((x) => esc(tokw(x[0])) + ": weight " + fmt(x[1]) +
          (x[2] === null ? "" : ", lift " + fmt(x[2]) + ", share " + fmt(100 * x[3]) + "%")) }],
      { yaxis: { tickvals: r.map((x, i) => i), ticktext: r.map((x) => esc(tokw(x[0]))), automargin: true },
        margin: { l: 10, r: 10, t: 5, b: 25 } });
    }
    plot(histDiv, [{ type: "bar", x: [...Array(NL).keys()], y: p.hist[c],
      marker: { color: [...Array(NL).keys()].map((l) => (l === S.layer ? "#d62728" : color(c))) },
      hovertemplate: "layer %{x}: %{y} neurons<extra></extra>" }],
    { xaxis: { title: { text: "layer" }, dtick: NL > 12 ? 2 : 1 }, margin: { l: 35, r: 10, t: 5, b: 35 } });
  }

  function renderNeuron() {
    const box = document.getElementById("nm-neuron"), i = S.neuron, N = D.neurons;
    if (i === null) { clear(box, el("p", { className: "empty" }, "Click a neuron in a cluster's list or a search result.")); return; }
    const c = neuronCluster(i);
    const kids = [el("h3", { id: "nm-neuron-title" }, "neuron " + neuronName(i) + " (layer " + N.layer[i] + ", index " + N.neuron[i] + ")"),
      el("p", { className: "stats" }, "in ", clusterChip(c), " · strength " + fmt(N.strength[i]) + " · degree " +
        (N.degree[i] === null ? "-" : N.degree[i])),
      genericLine(i),
      el("h3", {}, "top tokens"), el("div", {}, N.tokens[i].map((r) => el("span", { className: "tok", title: "weight " + fmt(r[1]) }, tokw(r[0]))))];
    const dash = dashboardParts(i);
    kids.push(...dash.logits);
    const ctx = N.contexts[i].filter((r) => contextShown(r[0]));
    kids.push(el("h3", {}, "contexts where it scored highest (p: p(target))" + (contextFilterLabel() ? " · " + contextFilterLabel() : "")));
    kids.push(ctx.length ? el("div", { className: "scroll" }, ctx.map((r) => contextLine(r[0], r[1])))
      : el("p", { className: "empty" }, "none of its top contexts is in " + contextFilterLabel()));
    kids.push(el("h3", {}, "score distribution (contexts where it was kept)"));
    const histDiv = el("div", { id: "nm-neuron-hist", className: "plot small" });
    kids.push(histDiv);
    kids.push(...dash.examples);
    clear(box, kids);
    if (dash.plot) dash.plot(color(c));
    const B = N.hist.length / N.layer.length, lo = N.lo[i], hi = N.hi[i], w = (hi - lo) / B || 1;
    const centers = [...Array(B).keys()].map((b) => lo + (b + 0.5) * w);
    plot(histDiv, [{ type: "bar", x: centers, y: N.hist.slice(i * B, (i + 1) * B), width: w * 0.95,
      marker: { color: color(c) }, hovertemplate: "score ≈ %{x:.3g}: %{y} contexts<extra></extra>" }],
    { xaxis: { title: { text: "score" } }, yaxis: { title: { text: "contexts" } }, margin: { l: 45, r: 10, t: 5, b: 35 } });
  }

  // ---- neuron dashboards (neuronmap neurons): generic flag, output tokens, top-activating examples ----------
  function genericLine(i) {
    const generic = D.neurons.generic && D.neurons.generic[i];
    return el("p", { id: "nm-neuron-generic", className: "stats" + (generic ? " generic" : "") },
      (generic ? "generic neuron" : "not generic") + " (the map's rule: " + M.genericRule + ")" +
      (generic ? "; such neurons join every token and glue clusters together (map --drop-generic leaves them out)" : ""));
  }
  function text(s) { return String(s).replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5"); }
  // Background of a token: orange for a positive activation, blue for a negative one, opacity |a| / top
  // (top: the neuron's highest example activation; stronger tokens saturate).
  function shade(a, top) {
    const x = top > 0 ? Math.min(1, Math.abs(a) / top) : 0;
    return (a >= 0 ? "rgba(255,140,0," : "rgba(31,119,180,") + (0.85 * x).toFixed(3) + ")";
  }
  function exampleLine(ex, top) {  // ex: [activation, token refs, activations, index of its position, target]
    const [act, toks, acts, at, target] = ex, strings = D.dashboards.strings;
    const spans = toks.map((t, j) => el("span", { className: "t" + (j === at ? " at" : "") + (j === at + 1 ? " target" : ""),
      style: "background-color: " + shade(acts[j], top), "data-a": String(acts[j]),
      title: "activation " + fmt(acts[j]) + (j === at ? " (this example's position)" : j === at + 1 ? " (its target)" : "") }, text(strings[t])));
    return el("div", { className: "ex" }, el("span", { className: "score" }, fmt(act)), spans,
      at + 1 >= toks.length ? el("mark", { className: "target", title: "the target it predicts" }, text(target)) : null);
  }
  function dashboardParts(i) {
    const Q = D.dashboards, out = { logits: [], examples: [], plot: null };
    if (!Q) return out;
    if (!Q.up[i] && !Q.examples[i] && !Q.actHist[i]) {
      out.logits.push(el("p", { className: "empty" }, "The page carries the dashboards of " + Q.carried + " neurons (generic, then strongest); " +
        "this one's are in graph/neuron_logits.parquet and graph/neuron_examples.parquet."));
      return out;
    }
    if (Q.up[i]) {
      const chips = (rows) => rows.map((r) => el("span", { className: "tok", title: "weight " + fmt(r[1]) }, tok(Q.strings[r[0]]), el("small", {}, " " + fmt(r[1]))));
      out.logits.push(el("h3", {}, "output tokens (direct logit weight: unembedding · final-norm gain · its output weights)"),
        el("div", { id: "nm-neuron-logits" },
          el("div", { className: "up" }, el("b", {}, "promotes "), chips(Q.up[i])),
          el("div", { className: "down" }, el("b", {}, "suppresses "), chips(Q.down[i] || []))));
    }
    if (Q.examples[i]) {
      const top = Math.max(1e-12, ...Q.examples[i].map((e) => e[0]));
      out.examples.push(el("h3", {}, "top-activating examples (shading: activation / its top; outlined: the position, underlined or marked: its target)"),
        el("div", { id: "nm-neuron-examples", className: "scroll" }, Q.examples[i].map((e) => exampleLine(e, top))));
    }
    if (Q.actHist[i]) {
      const [lo, hi, counts] = Q.actHist[i], div = el("div", { id: "nm-neuron-acthist", className: "plot small" });
      out.examples.push(el("h3", {}, "activation distribution (every position the examples were drawn from)"), div);
      out.plot = (col) => {
        const w = (hi - lo) / counts.length || 1, x = counts.map((_, b) => lo + (b + 0.5) * w);
        plot(div, [{ type: "bar", x: x, y: counts, width: w * 0.95, marker: { color: col },
          hovertemplate: "activation ≈ %{x:.3g}: %{y} positions<extra></extra>" }],
        { xaxis: { title: { text: "activation" } }, yaxis: { title: { text: "positions" }, type: "log" }, margin: { l: 45, r: 10, t: 5, b: 35 } });
      };
    }
    return out;
  }

  function renderTokenGroups() {
    const box = document.getElementById("nm-token-groups"), allowed = groupTokens(), p = part(), cards = [];
    for (let g = 0; g < D.tokenGroups.length; g++) {
      const G = D.tokenGroups[g];
      const tokens = G.tokens.filter((t) => !allowed || allowed.has(t));
      if (!tokens.length) continue;
      const clusters = p.tokenGroupClusters[g].filter((r) => S.layer < 0 || p.hist[r[0]][S.layer] > 0);
      cards.push(el("div", { className: "card" }, el("b", {}, "group " + G.group + " · " + G.size + " tokens"),
        el("div", {}, tokens.slice(0, 25).map((t) => el("span", { className: "tok" }, tokw(t)))),
        el("div", {}, "carried by: ", clusters.length ? clusters.map((r) => clusterChip(r[0], fmt(100 * r[1]) + "%")) : "no cluster under these filters")));
    }
    clear(box, cards.length ? cards : [el("p", { className: "empty" }, "no token group under these filters")]);
  }

  // Token search: a token matches when it equals the query, surrounding spaces ignored and in any case (exact
  // case first), or when one of the whole targets it stands for does; with "substring", tokens that contain
  // the query match too, after the exact ones.
  function renderSearch() {
    const box = document.getElementById("nm-results"), raw = S.query.trim(), q = raw.toLowerCase();
    box.dataset.query = S.query;
    box.dataset.substring = S.substring ? "1" : "";
    if (!q) { clear(box, el("p", { className: "empty" }, "Type a token above to see which clusters and neurons carry it.")); return; }
    const keys = memo("searchKeys", () => D.tokens.map((t, i) => [String(t).trim(), ...(words(i) || [])].map((k) => [k, k.toLowerCase()]))), hits = [];
    for (let t = 0; t < keys.length; t++) {
      let rank = -1;
      for (const [k, low] of keys[t]) {
        const r = k === raw ? 0 : low === q ? 1 : !S.substring ? -1 : low.startsWith(q) ? 2 : low.includes(q) ? 3 : -1;
        if (r >= 0 && (rank < 0 || r < rank)) rank = r;
      }
      if (rank >= 0) hits.push([rank, D.tokens[t].length, t]);
    }
    hits.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
    if (!hits.length) { clear(box, el("p", { className: "empty" }, "no token of the map is " + (S.substring ? "or contains " : "") + "this" +
      (S.substring ? "" : " (tick \"substring\" to find tokens that contain it)"))); return; }
    const out = [];
    for (const [, , t] of hits.slice(0, 12)) {
      const weights = new Map();
      for (const [c, w] of D.search.clusters[t]) {
        const k = S.part === "merged" ? D.partitions.cluster.parent[c] : c;
        if (S.layer < 0 || part().hist[k][S.layer] > 0) weights.set(k, (weights.get(k) || 0) + w);
      }
      const clusters = [...weights.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      const neurons = D.search.neurons[t].filter((r) => S.layer < 0 || D.neurons.layer[r[0]] === S.layer);
      out.push(el("div", { className: "result" }, el("span", { className: "tok" }, tokw(t)), " clusters: ",
        clusters.length ? clusters.map(([c, w]) => clusterChip(c, fmt(w))) : "none here",
        el("br"), " neurons: ", neurons.length ? neurons.map((r) => neuronChip(r[0], fmt(r[1]))) : "none here"));
    }
    clear(box, out);
  }

  // ---- state changes -------------------------------------------------------------------------------------
  function renderCausal() {
    const C = D.causal, box = document.getElementById("nm-causal");
    if (!C || !C.kinds) return;
    const avg = S.causalFact === "avg" && C.average, f = avg ? null : C.facts[+S.causalFact];
    const z = avg ? C.average.z[S.causalKind] : f.z[S.causalKind];
    const labels = avg ? C.average.classes.map(esc)
      : f.tokens.map((t, i) => esc(tok(t)) + (i >= f.span[0] && i < f.span[1] ? "*" : ""));
    clear(document.getElementById("nm-causal-info"), avg
      ? "average over " + C.average.facts + " facts by position class (ROME's figure)"
      : f.subject + " · " + f.prompt.replace("{}", f.subject) + " → " + f.target + " · P clean " + fmt(f.pClean) +
        ", corrupted " + fmt(f.pCorrupted) + " · * subject tokens");
    const at = C.layers.indexOf(S.layer), xs = [...C.layers.keys()], step = C.layers.length > 16 ? 2 : 1;
    const shapes = S.layer >= 0 && at >= 0 ? [{ type: "rect", xref: "x", yref: "paper",
      x0: at - 0.5, x1: at + 0.5, y0: 0, y1: 1, line: { color: "#111", width: 1.5 } }] : [];
    box.style.height = Math.max(240, 80 + 22 * labels.length) + "px";
    plot("nm-causal", [{ type: "heatmap", z: z, x: xs, y: [...labels.keys()], colorscale: [[0, "#ffffff"],
      [1, CAUSAL_COLORS[S.causalKind] || "#54278f"]],
      hovertext: z.map((row, p) => row.map((v, l) => labels[p] + " · layer " + C.layers[l] + ": " + fmt(v))),
      hoverinfo: "text", colorbar: { title: { text: "P(target)" }, thickness: 10 } }],
    { xaxis: { title: { text: "layer restored (" + S.causalKind + ")" }, tickvals: xs.filter((i) => i % step === 0),
      ticktext: C.layers.filter((_, i) => i % step === 0).map(String) },
      yaxis: { tickvals: [...labels.keys()], ticktext: labels, automargin: true, autorange: "reversed" },
      margin: { l: 10, r: 10, t: 10, b: 40 }, shapes: shapes });
  }

  // Opening a cluster turns the cluster list and the heatmaps to the page that holds it.
  function selectCluster(c) {
    S.cluster = c;
    if (c !== null) {
      const k = clusterOrder().indexOf(c);
      S.listPage = Math.floor(k / LIST_ROWS);
      if (!S.heatAll) S.heatPage = Math.floor(k / HEAT_COLUMNS);
    }
    renderMap(); renderCluster(); renderLayers(); renderMatrix(); setHash();
  }
  function selectNeuron(i) { S.neuron = i; renderNeuron(); setHash(); }
  // Deep links: #cluster=5 (found clusters), #merged=3, #neuron=L29/1413; the page keeps its address in step.
  function setHash() {
    const parts = [];
    if (S.cluster !== null) parts.push((S.part === "merged" ? "merged=" : "cluster=") + S.cluster);
    if (S.neuron !== null) parts.push("neuron=" + neuronName(S.neuron));
    const url = location.href.split("#")[0] + (parts.length ? "#" + parts.join("&") : "");
    if (url !== location.href) history.replaceState(null, "", url);
  }
  function neuronByName(name) {
    const byName = memo("neuronNames", () => new Map(D.neurons.layer.map((_, i) => [neuronName(i), i])));
    return byName.has(name) ? byName.get(name) : null;
  }

  // ---- CSV export (a download made in the page: nothing leaves it over the network) -------------------------
  function csvCell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function csvText(header, rows) { return [header].concat(rows).map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n"; }
  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    const a = el("a", { href: url, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  function fileName(c, what) { return (M.run + "-" + (S.part === "merged" ? "merged" : "cluster") + "-" + c + "-" + what + ".csv").replace(/[^\w.-]+/g, "_"); }
  // All of its neurons (strongest first), whatever the filters.
  function exportNeurons(c) {
    const N = D.neurons;
    download(fileName(c, "neurons"), csvText(["layer", "neuron", S.part, "strength", "degree", "top_tokens"],
      neuronsOf(c).map((i) => [N.layer[i], N.neuron[i], c, N.strength[i], N.degree[i],
        JSON.stringify(N.tokens[i].map((r) => D.tokens[r[0]]))])));
  }
  // Its contexts as the list shows them (the page carries its strongest ones), under the group and p filters.
  function exportContexts(c) {
    const C = D.contexts, rows = part().contexts[c].filter((r) => contextShown(r[0]));
    download(fileName(c, "contexts"), csvText(["context_id", "score_mass", "p_target", "known", "target", "text"],
      rows.map(([ref, mass]) => [C.id[ref], mass, C.p.length ? C.p[ref] : "", C.known.length ? C.known[ref] : "", C.target[ref], C.text[ref]])));
  }
  function renderAll() { renderMap(); renderCluster(); renderNeuron(); renderLayers(); renderMatrix(); renderTokenGroups(); renderSearch(); renderCausal(); }

  function setup() {
    document.getElementById("nm-title").textContent = "neuronmap · " + M.run;
    const counts = M.counts || {};
    document.getElementById("nm-summary").textContent = [M.model + " (" + NL + " layers × " + M.dMlp + " neurons)",
      (M.trace.method || "?") + " on " + M.contexts + " contexts (" + (M.trace.contexts || "?") + ")",
      (counts.clusters || 0) + " clusters (" + (counts.merged_clusters || 0) + " merged) of " + (counts.neurons || 0) +
        " neurons by " + M.map.method + ", " + M.map.scope,
      "modularity " + fmt(M.modularityFull) + " (full projection) / " + fmt(M.modularityPruned) + " (pruned, clustered)",
      "clusterability " + M.clusterability, M.coherence, M.verify, M.groupsAmi, M.targets ? M.targets.line : null,
      M.stability === null ? null : "stability (ARI) " + fmt(M.stability)].filter((x) => x).join(" · ");
    document.getElementById("nm-footer").textContent = "neuronmap " + M.version + " · edges from " + M.edgeScore +
      " scores of the " + M.tokenField + " token" + (M.notes.length ? " · notes: " + M.notes.join("; ") : "");

    // The merged partition's parents, so that views of found clusters can be summed into merged ones.
    const parent = new Array(D.partitions.cluster.size.length);
    for (let i = 0; i < D.neurons.cluster.length; i++) parent[D.neurons.cluster[i]] = D.neurons.merged[i];
    D.partitions.cluster.parent = parent;

    const partSel = document.getElementById("nm-partition");
    if (D.partitions.merged.size.length === D.partitions.cluster.size.length) {
      partSel.disabled = true;
      partSel.title = "no clusters were merged";
    }
    partSel.addEventListener("change", () => {
      const old = S.part;
      S.part = partSel.value;
      if (S.cluster !== null) S.cluster = old === "cluster" && S.part === "merged" ? parent[S.cluster] : null;
      S.heatPage = S.listPage = 0;
      renderAll();
      setHash();
    });

    const layerSel = document.getElementById("nm-layer");
    layerSel.appendChild(el("option", { value: "-1" }, "all layers"));
    for (let l = 0; l < NL; l++) layerSel.appendChild(el("option", { value: String(l) }, "layer " + l));
    layerSel.addEventListener("change", () => { S.layer = +layerSel.value; S.heatPage = S.listPage = 0; renderAll(); });

    const groupSel = document.getElementById("nm-group");
    groupSel.appendChild(el("option", { value: "" }, "all contexts"));
    for (const [col, values] of Object.entries(D.groups)) {
      const og = el("optgroup", { label: col });
      values.forEach((v, i) => og.appendChild(el("option", { value: JSON.stringify([col, i]) }, v + " (" + D.groupCounts[col][i] + ")")));
      groupSel.appendChild(og);
    }
    groupSel.addEventListener("change", () => {
      const v = groupSel.value ? JSON.parse(groupSel.value) : null;
      S.group = v ? { col: v[0], v: v[1] } : null;
      S.heatPage = S.listPage = 0;
      renderAll();
    });

    // The p filter of the context lists (p(target) from contexts.parquet; top-1: its `known` column).
    const pSel = document.getElementById("nm-pfilter");
    if (D.contexts.p.length) {
      pSel.appendChild(el("option", { value: "" }, "all"));
      for (const b of ["0.01", "0.1", "0.5"]) pSel.appendChild(el("option", { value: b }, "p(target) ≥ " + b));
      if (D.contexts.known.length) pSel.appendChild(el("option", { value: "top1" }, "predicted top-1"));
      pSel.addEventListener("change", () => { S.pFilter = pSel.value; renderCluster(); renderNeuron(); });
    } else pSel.parentNode.hidden = true;

    const colSel = document.getElementById("nm-matrix-column");
    for (const col of Object.keys(D.groups)) colSel.appendChild(el("option", { value: col }, col));
    colSel.hidden = !S.matrixColumn;
    colSel.addEventListener("change", () => { S.matrixColumn = colSel.value; renderMatrix(); });

    const C = D.causal;
    if (C) {
      document.getElementById("nm-causal-panel").hidden = false;
      if (!C.kinds) clear(document.getElementById("nm-causal-info"), C.note);
      else {
        const factSel = document.getElementById("nm-causal-fact"), kindSel = document.getElementById("nm-causal-kind");
        if (C.average) factSel.appendChild(el("option", { value: "avg" }, "average over " + C.average.facts + " facts"));
        C.facts.forEach((f, i) => factSel.appendChild(el("option", { value: String(i) }, f.subject + " → " + f.target)));
        if (C.nFacts > C.facts.length) factSel.appendChild(el("option", { disabled: true }, "(first " + C.facts.length + " of " + C.nFacts + " facts)"));
        if (!C.average) S.causalFact = "0";
        for (const k of C.kinds) kindSel.appendChild(el("option", { value: k }, k));
        if (!C.kinds.includes(S.causalKind)) S.causalKind = C.kinds[0];
        kindSel.value = S.causalKind;
        factSel.addEventListener("change", () => { S.causalFact = factSel.value; renderCausal(); });
        kindSel.addEventListener("change", () => { S.causalKind = kindSel.value; renderCausal(); });
      }
    }

    let timer = null;
    document.getElementById("nm-search").addEventListener("input", (ev) => {
      clearTimeout(timer);
      timer = setTimeout(() => { S.query = ev.target.value; renderSearch(); }, 120);
    });
    document.getElementById("nm-substring").addEventListener("change", (ev) => { S.substring = ev.target.checked; renderSearch(); });

    renderAll();
    const map = document.getElementById("nm-map");
    map.on("plotly_click", (ev) => ev.points.length && selectCluster(ev.points[0].customdata));
    // A heatmap column opens its cluster; the "others" column turns to the next page.
    const openColumn = (cols, x) => {
      const c = heatColumnOf(cols, x);
      if (c !== null) selectCluster(c);
      else { S.heatPage++; renderLayers(); renderMatrix(); }
    };
    document.getElementById("nm-layers").on("plotly_click", (ev) => ev.points.length && openColumn(S.layerCols, ev.points[0].x));
    const matrix = document.getElementById("nm-matrix");
    if (matrix.on) matrix.on("plotly_click", (ev) => {
      if (!ev.points.length) return;
      const pt = ev.points[0];
      const c = heatColumnOf(S.matrixCols, pt.x);
      S.group = { col: S.matrixColumn, v: pt.y };
      groupSel.value = JSON.stringify([S.group.col, S.group.v]);
      renderAll();
      if (c !== null) selectCluster(c);
    });
    const causal = document.getElementById("nm-causal");
    if (C && C.kinds) causal.on("plotly_click", (ev) => {
      if (!ev.points.length) return;
      S.layer = C.layers[ev.points[0].x];
      layerSel.value = String(S.layer);
      renderAll();
    });
    // Deep links: open what the address names (#cluster=5, #merged=3, #neuron=L29/1413), now and when it changes.
    const applyHash = () => {
      const args = new URLSearchParams(location.hash.slice(1));
      const merged = args.has("merged"), c = +(merged ? args.get("merged") : args.get("cluster"));
      const n = args.has("neuron") ? neuronByName(args.get("neuron")) : null;
      if ((merged ? "merged" : "cluster") !== S.part && (args.has("merged") || args.has("cluster")) && !partSel.disabled) {
        S.part = partSel.value = merged ? "merged" : "cluster";
        renderAll();
      }
      if ((args.has("cluster") || merged) && Number.isInteger(c) && c >= 0 && c < nClusters()) selectCluster(c);
      else if (n !== null) selectCluster(neuronCluster(n));
      if (n !== null) selectNeuron(n);
    };
    applyHash();
    window.addEventListener("hashchange", applyHash);
    document.body.dataset.ready = "1";
  }
  setup();
})();
