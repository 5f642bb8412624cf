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
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#c7c7c7", "#dbdb8d", "#9edae5"];
  const S = { part: "cluster", layer: -1, group: null, cluster: null, neuron: null, query: "",
    matrixColumn: Object.keys(D.groups)[0] || null, causalFact: "avg", causalKind: "mlp" };
  const cache = {};
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
  function color(c) { return PALETTE[c % PALETTE.length]; }
  function part() { return D.partitions[S.part]; }
  function nClusters() { return part().size.length; }
  function neuronCluster(i) { return S.part === "merged" ? D.neurons.merged[i] : D.neurons.cluster[i]; }
  function neuronName(i) { return "L" + D.neurons.layer[i] + "/" + D.neurons.neuron[i]; }
  // Found clusters whose top tokens pass the coherence test (drawn as stars on the map).
  function isCoherent(c) { const p = part(); return !!(p.coherent && p.coherent[c]); }
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
  function neuronsOf(c) {
    return memo("neurons|" + S.part + "|" + c, () => {
      const out = [];
      for (let i = 0; i < D.neurons.layer.length; i++) if (neuronCluster(i) === c) out.push(i);
      return out.sort((a, b) => D.neurons.strength[b] - D.neurons.strength[a] || a - b);
    });
  }
  function clusterTopTokens(c, n) {
    return part().tokens[c].slice(0, n).map((r) => tok(D.tokens[r[0]])).join(" ");
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
      C.text[ref], el("mark", {}, C.exact || C.target[ref].startsWith(" ") || /\s$/.test(C.text[ref]) ? C.target[ref] : " " + C.target[ref]));
  }

  // ---- views -----------------------------------------------------------------------------------------
  function renderMap() {
    const p = part(), values = clusterValues(), ids = [];
    for (let c = 0; c < values.length; c++) if (values[c] > 0) ids.push(c);
    const max = Math.max(1e-12, ...ids.map((c) => values[c]));
    const what = S.group ? "score mass" : "neurons";
    const trace = {
      type: "scatter", mode: "markers", x: ids.map((c) => p.x[c]), y: ids.map((c) => p.y[c]),
      customdata: ids,
      marker: { size: ids.map((c) => 6 + 34 * Math.sqrt(values[c] / max)), color: ids.map(color),
        opacity: 0.8, symbol: ids.map((c) => (isCoherent(c) ? "star" : "circle")),
        line: { width: ids.map((c) => (c === S.cluster ? 3 : 0.5)), color: "#111" } },
      hoverinfo: "text",
      hovertext: ids.map((c) => esc(clusterName(c) + " · " + p.size[c] + " neurons · " + what + " " + fmt(values[c]) +
        (isCoherent(c) ? " · coherent tokens" : "")) +
        "<br>" + esc(clusterTopTokens(c, 8))),
    };
    const axis = { showgrid: false, zeroline: false, showticklabels: false };
    plot("nm-map", [trace], { xaxis: axis, yaxis: axis, margin: { l: 10, r: 10, t: 10, b: 10 } });
  }

  function renderLayers() {
    const K = nClusters(), p = part(), z = [], grid = S.group ? massGrid() : null;
    for (let l = 0; l < NL; l++) {
      const row = new Array(K);
      for (let c = 0; c < K; c++) row[c] = grid ? grid[l * K + c] : p.hist[c][l];
      z.push(row);
    }
    const shapes = [];
    if (S.cluster !== null) shapes.push({ type: "rect", xref: "x", yref: "paper", x0: S.cluster - 0.5, x1: S.cluster + 0.5,
      y0: 0, y1: 1, line: { color: "#d62728", width: 2 } });
    if (S.layer >= 0) shapes.push({ type: "rect", xref: "paper", yref: "y", x0: 0, x1: 1, y0: S.layer - 0.5,
      y1: S.layer + 0.5, line: { color: "#111", width: 1.5 } });
    plot("nm-layers", [{ type: "heatmap", z: z, x: [...Array(K).keys()], y: [...Array(NL).keys()],
      colorscale: "Blues", reversescale: true, hovertemplate: "cluster %{x}, layer %{y}: %{z}<extra></extra>",
      colorbar: { title: { text: S.group ? "mass" : "neurons" }, thickness: 10 } }],
    { xaxis: { title: { text: "cluster" } }, yaxis: { title: { text: "layer" }, dtick: NL > 12 ? 2 : 1 }, shapes: shapes });
  }

  function renderMatrix() {
    const col = S.matrixColumn, box = document.getElementById("nm-matrix");
    if (!col) { Plotly.purge(box); clear(box, el("p", { className: "empty" }, "This run has no context groups (add group columns to the contexts, or use trace --group-by pos|sense).")); return; }
    const K = nClusters(), values = D.groups[col], m = part().mass[col];
    const z = values.map(() => new Array(K).fill(0));
    for (let i = 0; i < m.m.length; i++) {
      if (S.layer >= 0 && m.l[i] !== S.layer) continue;
      z[m.v[i]][m.c[i]] += m.m[i];
    }
    for (const row of z) { const s = row.reduce((a, b) => a + b, 0) || 1; for (let c = 0; c < K; c++) row[c] /= s; }
    const labels = values.map((v, i) => esc(v) + " (" + D.groupCounts[col][i] + ")");
    const shapes = S.cluster === null ? [] : [{ type: "rect", xref: "x", yref: "paper", x0: S.cluster - 0.5,
      x1: S.cluster + 0.5, y0: 0, y1: 1, line: { color: "#d62728", width: 2 } }];
    box.style.height = Math.max(240, 60 + 18 * values.length) + "px";
    plot("nm-matrix", [{ type: "heatmap", z: z, x: [...Array(K).keys()], y: [...values.keys()],
      colorscale: "YlOrRd", reversescale: true, hovertext: z.map((row, v) => row.map((s, c) =>
        labels[v] + " · " + esc(clusterName(c)) + ": " + fmt(100 * s) + "%")), hoverinfo: "text",
      colorbar: { title: { text: "share" }, thickness: 10 } }],
    { xaxis: { title: { text: "cluster" } },
      yaxis: { tickvals: [...values.keys()], ticktext: labels, automargin: true, autorange: "reversed" },
      margin: { l: 10, r: 10, t: 10, b: 40 }, shapes: shapes });
  }

  function renderCluster() {
    const box = document.getElementById("nm-cluster"), c = S.cluster, p = part();
    if (c === null || c >= nClusters()) { clear(box, el("p", { className: "empty" }, "Click a cluster on the map, the heatmaps or a search result.")); return; }
    const filters = [S.layer >= 0 ? "layer " + S.layer : null, S.group ? groupLabel(S.group) : null].filter((x) => x);
    const head = el("h3", { id: "nm-cluster-title" }, clusterName(c) + " · " + p.size[c] + " neurons · token specificity " + fmt(p.bits[c]) + " bits" +
      (p.coherenceQ && p.coherenceQ[c] !== null ? " · token coherence q " + fmt(p.coherenceQ[c]) + (p.coherent[c] ? " (coherent)" : " (not coherent)") : ""));
    const kids = [head];
    if (S.part === "merged" && p.members[c].length > 1) kids.push(el("p", { className: "stats" }, "merges clusters " + p.members[c].map((x) => "#" + x).join(", ")));
    if (filters.length) kids.push(el("p", { className: "stats" }, "filtered by " + filters.join(", ")));
    // Tokens: the cluster's own (all layers) or those of its neurons in the chosen layer; a group keeps its targets.
    let rows = S.layer >= 0 ? (p.layerTokens[c][String(S.layer)] || []).map((r) => [r[0], r[1], null, null]) : p.tokens[c];
    const allowed = groupTokens();
    if (allowed) rows = rows.filter((r) => allowed.has(r[0]));
    rows = rows.slice(0, 15);
    kids.push(el("h3", {}, "tokens (weight; lift = share in the cluster / share overall)"));
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
        el("td", {}, D.neurons.tokens[i].map((r) => el("span", { className: "tok" }, tok(D.tokens[r[0]]))))));
    }
    kids.push(el("div", { className: "scroll" }, table));
    if (members.length > 200) kids.push(el("p", { className: "stats" }, (members.length - 200) + " more not listed"));
    const ctx = p.contexts[c].filter((r) => contextInGroup(r[0]));
    kids.push(el("h3", {}, "contexts where it mattered most (score mass of its neurons)"));
    kids.push(ctx.length ? el("div", { className: "scroll" }, ctx.slice(0, 12).map((r) => contextLine(r[0], r[1])))
      : el("p", { className: "empty" }, "none of its strongest contexts is in " + groupLabel(S.group)));
    clear(box, kids);
    if (rows.length) {
      const r = rows.slice().reverse(), height = Math.max(160, 30 + 17 * r.length);
      tokensDiv.style.height = height + "px";
      plot(tokensDiv, [{ type: "bar", orientation: "h", x: r.map((x) => x[1]), y: r.map((x, i) => i),
        marker: { color: color(c) }, text: r.map((x) => (x[2] === null ? "" : "lift " + fmt(x[2]))), textposition: "auto",
        hoverinfo: "text", hovertext: r.map((x) => esc(tok(D.tokens[x[0]])) + ": weight " + fmt(x[1]) +
          (x[2] === null ? "" : ", lift " + fmt(x[2]) + ", share " + fmt(100 * x[3]) + "%")) }],
      { yaxis: { tickvals: r.map((x, i) => i), ticktext: r.map((x) => esc(tok(D.tokens[x[0]]))), automargin: true },
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
      el("h3", {}, "top tokens"), el("div", {}, N.tokens[i].map((r) => el("span", { className: "tok", title: "weight " + fmt(r[1]) }, tok(D.tokens[r[0]]))))];
    const ctx = N.contexts[i].filter((r) => contextInGroup(r[0]));
    kids.push(el("h3", {}, "contexts where it scored highest" + (S.group ? " (" + groupLabel(S.group) + ")" : "")));
    kids.push(ctx.length ? el("div", { className: "scroll" }, ctx.map((r) => contextLine(r[0], r[1])))
      : el("p", { className: "empty" }, "none of its top contexts is in " + groupLabel(S.group)));
    kids.push(el("h3", {}, "score distribution (contexts where it was kept)"));
    const histDiv = el("div", { id: "nm-neuron-hist", className: "plot small" });
    kids.push(histDiv);
    clear(box, kids);
    const B = N.hist.length / N.layer.length, lo = N.lo[i], hi = N.hi[i], w = (hi - lo) / B || 1;
    const centers = [...Array(B).keys()].map((b) => lo + (b + 0.5) * w);
    plot(histDiv, [{ type: "bar", x: centers, y: N.hist.slice(i * B, (i + 1) * B), width: w * 0.95,
      marker: { color: color(c) }, hovertemplate: "score ≈ %{x:.3g}: %{y} contexts<extra></extra>" }],
    { xaxis: { title: { text: "score" } }, yaxis: { title: { text: "contexts" } }, margin: { l: 45, r: 10, t: 5, b: 35 } });
  }

  function renderTokenGroups() {
    const box = document.getElementById("nm-token-groups"), allowed = groupTokens(), p = part(), cards = [];
    for (let g = 0; g < D.tokenGroups.length; g++) {
      const G = D.tokenGroups[g];
      const tokens = G.tokens.filter((t) => !allowed || allowed.has(t));
      if (!tokens.length) continue;
      const clusters = p.tokenGroupClusters[g].filter((r) => S.layer < 0 || p.hist[r[0]][S.layer] > 0);
      cards.push(el("div", { className: "card" }, el("b", {}, "group " + G.group + " · " + G.size + " tokens"),
        el("div", {}, tokens.slice(0, 25).map((t) => el("span", { className: "tok" }, tok(D.tokens[t])))),
        el("div", {}, "carried by: ", clusters.length ? clusters.map((r) => clusterChip(r[0], fmt(100 * r[1]) + "%")) : "no cluster under these filters")));
    }
    clear(box, cards.length ? cards : [el("p", { className: "empty" }, "no token group under these filters")]);
  }

  function normal(s) { return String(s).trim().toLowerCase(); }
  function renderSearch() {
    const box = document.getElementById("nm-results"), q = normal(S.query);
    box.dataset.query = S.query;
    if (!q) { clear(box, el("p", { className: "empty" }, "Type a token above to see which clusters and neurons carry it.")); return; }
    const keys = memo("searchKeys", () => D.tokens.map(normal)), hits = [];
    for (let t = 0; t < keys.length; t++) {
      const k = keys[t], rank = k === q ? 0 : k.startsWith(q) ? 1 : k.includes(q) ? 2 : -1;
      if (rank >= 0) hits.push([rank, k.length, t]);
    }
    hits.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
    if (!hits.length) { clear(box, el("p", { className: "empty" }, "no token of the map matches this")); return; }
    const out = [];
    for (const [, , t] of hits.slice(0, 12)) {
      const weights = new Map();
      for (const [c, w] of D.search.clusters[t]) {
        const k = S.part === "merged" ? D.partitions.cluster.parent[c] : c;
        if (S.layer < 0 || part().hist[k][S.layer] > 0) weights.set(k, (weights.get(k) || 0) + w);
      }
      const clusters = [...weights.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      const neurons = D.search.neurons[t].filter((r) => S.layer < 0 || D.neurons.layer[r[0]] === S.layer);
      out.push(el("div", { className: "result" }, el("span", { className: "tok" }, tok(D.tokens[t])), " clusters: ",
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
    const shapes = S.layer >= 0 && C.layers.includes(S.layer) ? [{ type: "rect", xref: "x", yref: "paper",
      x0: S.layer - 0.5, x1: S.layer + 0.5, y0: 0, y1: 1, line: { color: "#111", width: 1.5 } }] : [];
    box.style.height = Math.max(240, 80 + 22 * labels.length) + "px";
    plot("nm-causal", [{ type: "heatmap", z: z, x: C.layers, y: [...labels.keys()], colorscale: [[0, "#ffffff"],
      [1, CAUSAL_COLORS[S.causalKind] || "#54278f"]],
      hovertext: z.map((row, p) => row.map((v, l) => labels[p] + " · layer " + C.layers[l] + ": " + fmt(v))),
      hoverinfo: "text", colorbar: { title: { text: "P(target)" }, thickness: 10 } }],
    { xaxis: { title: { text: "layer restored (" + S.causalKind + ")" }, dtick: C.layers.length > 12 ? 2 : 1 },
      yaxis: { tickvals: [...labels.keys()], ticktext: labels, automargin: true, autorange: "reversed" },
      margin: { l: 10, r: 10, t: 10, b: 40 }, shapes: shapes });
  }

  function selectCluster(c) { S.cluster = c; renderMap(); renderCluster(); renderLayers(); renderMatrix(); }
  function selectNeuron(i) { S.neuron = i; renderNeuron(); }
  function renderAll() { renderMap(); renderCluster(); renderNeuron(); renderLayers(); renderMatrix(); renderTokenGroups(); renderSearch(); renderCausal(); }

  function setup() {
    document.getElementById("nm-title").textContent = "neuronmap · " + M.run;
    const counts = M.counts || {};
    document.getElementById("nm-summary").textContent = [M.model + " (" + NL + " layers × " + M.dMlp + " neurons)",
      (M.trace.method || "?") + " on " + M.contexts + " contexts (" + (M.trace.contexts || "?") + ")",
      (counts.clusters || 0) + " clusters (" + (counts.merged_clusters || 0) + " merged) of " + (counts.neurons || 0) +
        " neurons by " + M.map.method + ", " + M.map.scope,
      "modularity " + fmt(M.modularityFull) + " (full projection) / " + fmt(M.modularityPruned) + " (pruned, clustered)",
      "clusterability " + M.clusterability, M.coherence, M.groupsAmi,
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
      renderAll();
    });

    const layerSel = document.getElementById("nm-layer");
    layerSel.appendChild(el("option", { value: "-1" }, "all layers"));
    for (let l = 0; l < NL; l++) layerSel.appendChild(el("option", { value: String(l) }, "layer " + l));
    layerSel.addEventListener("change", () => { S.layer = +layerSel.value; renderAll(); });

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
      renderAll();
    });

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

    renderAll();
    const map = document.getElementById("nm-map");
    map.on("plotly_click", (ev) => ev.points.length && selectCluster(ev.points[0].customdata));
    document.getElementById("nm-layers").on("plotly_click", (ev) => ev.points.length && selectCluster(ev.points[0].x));
    const matrix = document.getElementById("nm-matrix");
    if (matrix.on) matrix.on("plotly_click", (ev) => {
      if (!ev.points.length) return;
      const pt = ev.points[0];
      S.group = { col: S.matrixColumn, v: pt.y };
      groupSel.value = JSON.stringify([S.group.col, S.group.v]);
      S.cluster = pt.x;
      renderAll();
    });
    const causal = document.getElementById("nm-causal");
    if (C && C.kinds) causal.on("plotly_click", (ev) => {
      if (!ev.points.length) return;
      S.layer = ev.points[0].x;
      layerSel.value = String(S.layer);
      renderAll();
    });
    document.body.dataset.ready = "1";
  }
  setup();
})();
