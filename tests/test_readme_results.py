"""Numbers the README quotes from result files in the repository (and from the built-in data): each is read here
from its source, so a number copied by hand cannot drift from what was measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@pytest.fixture(scope="module")
def readme() -> str:
    return " ".join((ROOT / "README.md").read_text().split())  # line breaks fall anywhere in a paragraph


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"the README no longer says {pattern!r}"
    return float(match.group(1).replace(",", ""))


def _result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def test_each_token_speed_matches_its_result_file(readme: str) -> None:
    result = _result("events.json")
    assert _number(r"\*\*([\d.,]+) events/s\*\*", readme) == result["events_per_second"]
    assert _number(r"\*\*([\d.,]+) contexts/s\*\*", readme) == result["contexts_per_second"]
    assert _number(r"a ratio of \*\*([\d.]+)\*\*", readme) == result["ratio"]
    assert _number(r"\(`bench/results/events.json`, (\d+) paragraphs", readme) == result["documents"]
    assert _number(r"median of (\d+) alternated repeats", readme) == result["repeats"]
    hours = 1e6 / result["events_per_second"] / 3600
    assert _number(r"a million events take about ([\d.]+) hours", readme) == round(hours, 1)


def test_the_million_event_run_matches_its_result_file(readme: str) -> None:
    """The each-token section's sentence on the large run: its size, last stretch and map, from the study's file."""
    big = max(
        (e for e in _result("data_scaling.json")["entries"] if "events" in e), key=lambda e: e["events"]
    )
    stretch, mapped = big["trace"], big["map"]
    events = big["events"] - stretch["events_before"]
    expected = (
        f"A run of {big['events']:,} events (all {big['documents']:,} paragraphs) was made here, in stretches "
        f"(stopped and resumed across sessions): its last stretch traced {events:,} events in "
        f"{round(stretch['seconds']):,} s ({events / stretch['seconds']:.0f} events/s, sharing the machine with an "
        f"edit benchmark) at a peak of {stretch['peak_mb']:,} MB, and its map took {mapped['seconds']:.0f} s at a "
        f"peak of {mapped['peak_mb']:,} MB."
    )
    assert big["events"] >= 1_000_000 and expected in " ".join(readme.split())


def test_peers_table_matches_its_result_file(readme: str) -> None:
    rows = {(r["benchmark"], r["case"].split(" (")[0]): r["value"] for r in _result("peers.json")["rows"]}
    speedup = {
        "attribution vs TransformerLens": rows["attribution", "speed-up vs TransformerLens"],
        "attribution vs nnsight": rows["attribution", "speed-up vs nnsight"],
        "neuronmap's defaults": rows["integrated-gradients", "speed-up neuronmap vs knowledge-neurons"],
        "neuronmap with its definition": rows[
            "integrated-gradients", "speed-up neuronmap, knowledge-neurons' definition vs knowledge-neurons"
        ],
    }
    table = {line.split(" | ")[0]: line for line in re.findall(r"\| [^|]+ \|[^|]+\| [\d.]+x \|", readme)}
    for key, value in speedup.items():
        row = next(line for name, line in table.items() if key in name)
        assert _number(r"\| ([\d.]+)x \|$", row) == round(value, 2), key
    assert _number(r"Pearson ([\d.]+) \(different metric", readme) == round(
        rows["integrated-gradients", "Pearson neuronmap vs knowledge-neurons"], 2
    )
    assert _number(r"modularity ([\d.]+) vs [\d.]+ \|", readme) == round(
        rows["map", "neuronmap modularity"], 3
    )
    assert _number(r"modularity [\d.]+ vs ([\d.]+) \|", readme) == round(
        rows["map", "original modularity"], 3
    )
    assert _number(r"\| (\d+)x \(([\d.]+) s vs", readme) == round(
        rows["map", "speed-up vs networkx + python-louvain"]
    )
    assert _number(r"x \(([\d.]+) s vs [\d.]+ s\)", readme) == round(rows["map", "neuronmap time"], 2)
    assert _number(r"x \([\d.]+ s vs ([\d.]+) s\)", readme) == round(rows["map", "original time"], 1)
    assert _number(r"met in both \(([\d.]+)x,", readme) == round(speedup["neuronmap's defaults"], 1)
    assert _number(r"met in both \([\d.]+x, ([\d.]+)x,", readme) == round(
        speedup["neuronmap with its definition"], 1
    )
    assert re.search(re.escape(_result("peers.json")["meta"]["when"]), readme)


def test_builtin_data_counts() -> None:
    """The sizes of the built-in data sets the README gives (read from the installed data packages)."""
    from neuronmap.contexts.builtin import _wiki_articles
    from neuronmap.outliers.data import load_labelled

    text = " ".join((ROOT / "README.md").read_text().split())
    assert _number(r"`builtin:wiki`, the ([\d,]+) Wikipedia lead paragraphs", text) == len(_wiki_articles())
    topics = load_labelled("builtin:wiki-topics")
    assert _number(r"\| `builtin:wiki-topics` \| ([\d,]+) Wikipedia", text) == len(topics.texts)
    assert _number(r"labelled by topic: (\d+) classes", text) == len(set(topics.labels))
    assert _number(r"\| `builtin:sentiment` \| ([\d,]+) IMDB", text) == len(
        load_labelled("builtin:sentiment").texts
    )


NUMBER = re.compile(r"(?<![\w.+-])[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")


def test_data_scaling_study_matches_its_result_file() -> None:
    """The study's table is made from its result file, and every number of its prose is one of the table's, the
    file's, or a setting of the study."""
    from bench.study_data_scaling import SIZES, TRACE, readme_table
    from neuronmap.graph.meaning import COHERENCE_ALPHA, GROUP_PERMUTATIONS

    raw = (ROOT / "README.md").read_text()
    entries = [e for e in _result("data_scaling.json")["entries"] if "events" in e]
    table = readme_table(entries)
    assert table in raw
    assert "](bench/results/data_scaling.png)" in raw and (RESULTS / "data_scaling.png").is_file()
    start = raw.index("### More data, more meaning?")
    section = raw[start : re.search(r"\n##+ ", raw[start + 4 :]).start() + start + 4]  # to the next heading
    prose = "\n".join(line for line in section.splitlines() if not line.startswith("|"))
    allowed = set(NUMBER.findall(table))
    for e in entries:
        allowed |= {
            f"{e['documents']:,}",
            f"{round(e['trace_seconds_recorded']):,}",
            f"{e['map']['seconds']:.0f}",
        }
        allowed |= {f"{e['map']['peak_mb']:,}", str(e["map"]["null_samples"])}
        stretch = e.get("trace") or {}
        if stretch.get(
            "resumed"
        ):  # a trace resumed after stops: its last stretch's events, time, rate, memory
            events = e["events"] - stretch["events_before"]
            allowed |= {f"{events:,}", f"{round(stretch['seconds']):,}", f"{stretch['peak_mb']:,}"}
            rate = events / stretch["seconds"]
            allowed |= {f"{rate:.0f}", f"{1e6 / rate / 3600:.1f}", f"{stretch['peak_mb']:,}"}
        allowed.add(f"{e['clusterability']['p']:.3f}")
        allowed |= {f"{c['size']:,}" for c in e["largest_clusters"]}
        allowed |= {f"{c['size']:,}" for c in e["largest_clusters"]}
    # the study's settings: sizes, --min-prefix, --batch-size, Leiden's resolution 1, 5 stability seeds
    allowed |= {f"{n:,}" for n in SIZES} | {
        TRACE[TRACE.index(o) + 1] for o in ("--min-prefix", "--batch-size")
    }
    allowed |= {"1", "5"}
    allowed |= {str(GROUP_PERMUTATIONS), str(COHERENCE_ALPHA), str(round(1 / (GROUP_PERMUTATIONS + 1), 3))}
    hours = 1e6 / _result("events.json")["events_per_second"] / 3600  # a million events at the bench's rate
    allowed.add(str(round(hours, 1)))
    stray = [n for n in NUMBER.findall(prose) if n.lstrip("+") not in {a.lstrip("+") for a in allowed}]
    assert not stray, f"numbers in the study's prose found in no result: {stray}"


def test_editability_study_matches_its_result_files() -> None:
    """The study's measured results are ``section`` of its committed folder, word for word, and every number of
    the prose around them is one of the section's or the bench command's."""
    from bench.study_editability import section

    raw = (ROOT / "README.md").read_text()
    made = section(RESULTS / "study-smollm2-135m")
    assert made in raw
    start = raw.index("### Measured results (`smollm2-135m`")
    prose = raw[start : raw.index("\n## ", start)].replace(made, "")
    allowed = set(NUMBER.findall(made)) | {"2"}  # --threads 2 --workers 2
    stray = [n for n in NUMBER.findall(prose) if n.lstrip("+") not in {a.lstrip("+") for a in allowed}]
    assert not stray, f"numbers in the study's prose found in no result: {stray}"
    summary = json.loads((RESULTS / "study-smollm2-135m" / "summary.json").read_text())
    assert f"### Measured results (`smollm2-135m`, {summary['studied']} facts)" in raw
    # the relations the prose names as the hardest and easiest to flip (median flip norm)
    import pandas as pd

    medians = pd.read_parquet(RESULTS / "study-smollm2-135m" / "facts.parquet").groupby("relation")[
        "flip_norm"
    ]
    order = [r.replace("_", " ") for r in medians.median().sort_values().index]
    words = " ".join(prose.split())
    assert f"({order[-1]}, {order[-2]} and {order[-3]} have the largest median flip norms" in words
    assert f"{order[0]}, {order[1]} and {order[2]} the smallest)" in words


def _min_s(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def test_demo_numbers_match_their_result_file(readme: str) -> None:
    demo = _result("demo.json")
    timing, traced = demo["timing"], demo["trace_seconds"]
    assert f"{_min_s(timing['wall_seconds'])} wall and {_min_s(timing['cpu_seconds'])} of CPU" in readme
    assert f"(load average {demo['load_average']:.1f})" in readme
    assert (
        f"the facts trace {traced['facts']:.0f} s, the Wikipedia trace {traced['wiki']:.0f} s and the each-token "
        f"trace {traced['wiki-events']:.0f} s" in readme
    )
    facts, wiki, layers = demo["facts"], demo["wiki"], demo["wiki_layers"]
    assert f"traces {facts['candidates']} candidate facts" in readme
    assert f"keeping those the model knows: {facts['kept']})" in readme
    assert f"{demo['wiki_events']['events']:,} events, `runs/demo/wiki-events`" in readme
    assert (
        f"on the facts demo {facts['modularity_pruned']:.3f} pruned against {facts['modularity_full']:.3f} full"
        in (readme)
    )
    floor = f"p = 1/{wiki['null_samples'] + 1}"
    assert (
        f"On the demo's {wiki['contexts']} Wikipedia contexts the cross-layer map fails `pairs` (modularity "
        f"{wiki['modularity_pruned']:.3f} against {wiki['pairs_null_mean']:.3f}, z = −{-wiki['pairs_z']:g}:"
    ) in readme
    assert wiki["swaps_p"] == pytest.approx(1 / (wiki["null_samples"] + 1))
    assert (
        f"passes `swaps` (against {wiki['swaps_null_mean']:.3f}, z = +{wiki['swaps_z']:g}, {floor}, the least "
        f"that {wiki['null_samples']} samples allow)"
    ) in readme
    assert (
        f"{layers['at_p_floor']} of the {layers['layers']} layers reach {floor} against `swaps`, layers 28 and 29 "
        f"among them (z = {layers['z']['28']:g} and {layers['z']['29']:g})"
    ) in readme
    assert layers["p"]["28"] == layers["p"]["29"] == pytest.approx(1 / (wiki["null_samples"] + 1))
    assert all("L29/N1413" in demo["generic"][name] for name in ("facts", "wiki"))
    assert "L29/N1413 is one in the demo's facts and Wikipedia maps" in readme


def test_map_scale_numbers_match_their_result_file(readme: str) -> None:
    graph = _result("graph.json")
    rows = {r["case"]: r["value"] for r in graph["rows"]}
    big, small = "(100k contexts x top-100, 12x3072 neurons)", "(40k edges)"
    assert f"load average {graph['meta']['load_average']:.1f})" in readme
    assert (
        f"{rows['neurons ' + big]:,.0f} neurons, {rows['neuron-token edges ' + big]:,.0f} neuron-token edges"
        in (readme)
    )
    assert (
        f"plus Leiden in {rows['projection + leiden ' + big]:.1f} s wall "
        f"({rows['projection + leiden CPU time, all threads ' + big]:.1f} s of CPU), "
        f"{rows['projection + leiden peak memory ' + big]:,.0f} MB peak"
    ) in readme
    assert (
        f"end to end without nulls in {rows['map_run end to end, no nulls ' + big]:.1f} s, "
        f"{rows['map_run peak memory ' + big]:,.0f} MB peak"
    ) in readme
    assert f"is {rows['projection speed-up vs networkx ' + small]:.0f}x faster than networkx's" in readme
    assert f"(largest difference {rows['projection max |weight - networkx| ' + small]:.1e})" in readme
    assert (
        f"({rows['leiden modularity ' + small]:.3f} against {rows['original modularity ' + small]:.3f}) in "
        f"{rows['leiden time, projection included ' + small]:.2f} s against "
        f"{rows['original (networkx + python-louvain) time ' + small]:.1f} s"
    ) in readme


def test_causal_trace_replay_matches_its_result_file(readme: str) -> None:
    row = next(r for r in _result("edit.json")["rows"] if r["benchmark"] == "causal-trace")
    cells = int(re.search(r"(\d+) cells", row["case"]).group(1))
    assert (
        f"on SmolLM2 a fact's grid of {cells} cells takes {row['value']:g} times the time of one hooked pass per cell"
        in readme
    )


def test_verify_demo_share_matches_its_result_file(readme: str) -> None:
    result = _result("verify_demo.json")
    section, rows = result["verify"], result["clusters"]
    tested = [r for r in rows if r["p"] is not None]
    passing = [r for r in tested if r["passes"]]
    assert f"**{len(passing)} of {section['tested']}** clusters of the facts map pass" in readme
    assert f"({100 * section['passing_neuron_share']:.0f}% of its neurons)" in readme
    assert f"beats all {section['params']['null_samples']} of its null sets" in readme
    assert all(r["p"] == section["p_floor"] for r in passing)  # "each p sits at the floor"
    assert f"floor {section['p_floor']:g}" in readme
    minutes, peak = round(result["wall_seconds"] / 60), result["peak_rss_mb"]
    assert f"at the default: {minutes} min on this 2-core" in readme and f"peak memory {peak:,} MB" in readme
    own = sorted(-r["effect_in"] for r in tested)
    others = sorted(-r["effect_out"] for r in tested)
    assert (
        f"by {own[0]:.1f} to {own[-1]:.1f} nats on average, against {others[0]:.2f} to {others[-1]:.1f}"
        in readme
    )
    events = sorted(r["n_events_in"] for r in tested)
    assert f"its own {events[0]}-{events[-1]} facts" in readme
    smallest = min(tested, key=lambda r: r["n_neurons"])
    diffs = sorted(r["diff"] for r in tested)
    assert (
        f"`diff` runs from {diffs[-1]:.1f} (the smallest cluster, {smallest['n_neurons']} neurons" in readme
    )
    assert f"interval up to {smallest['ci_high']:.2f}) to {diffs[0]:.1f}" in readme
    positive = sum(r["null_mean"] > 0 for r in tested)
    assert f"positive for {positive} of {len(tested)} clusters" in readme
    sizes = sorted(r["n_neurons"] for r in tested)
    assert f"the clusters are large ({sizes[0]} to {sizes[-1]} neurons)" in readme


def test_memit_counterfact_lambda4800_matches_its_result_file(readme: str) -> None:
    """The first MEMIT table (lambda 4,800) is made from its result file, and its prose's numbers are the file's
    (and the hparams')."""
    from bench.memit_counterfact import table
    from neuronmap.edit.hparams import load_memit_hparams

    result = _result("memit_counterfact-lambda4800.json")  # the first measurement, kept
    assert table(result["entries"]) in (ROOT / "README.md").read_text() and result["fluency"]
    (entry,) = [e for e in result["entries"] if e["records"] == 10]
    memit, unedited, rome = entry["memit"], entry["unedited"], entry["rome_alone"]
    diagnostics = entry["memit_run"]["diagnostics"][0]
    lam = result["memit_settings"]["mom2_update_weight"]  # the file the runs used, kept in bench/hparams/
    assert load_memit_hparams(ROOT / result["memit_hparams"]).mom2_update_weight == lam
    for piece in (
        f"kept the neighbours ({100 * memit['neighborhood']:.1f} against {100 * unedited['neighborhood']:.1f} "
        f"unedited, where ROME alone lost ten points)",
        f"only {100 * memit['paraphrase']:.1f}% of the paraphrases to the new object, against ROME's "
        f"{100 * rome['paraphrase']:.1f}",
        f"fell from {diagnostics['z_gap'][0]:.1f} before the first layer's update to only "
        f"{diagnostics['z_gap_after']:.1f} after the last",
        f"lambda of {lam:,.0f}",
        f"the MEMIT file of its time, before the sweep below (`{result['memit_hparams']}`): layers "
        f"{result['memit_settings']['layers'][0]}-{result['memit_settings']['layers'][-1]} and lambda {lam:,.0f}",
        f"({memit['fluency']:.2f} bits against {unedited['fluency']:.2f}; ROME {rome['fluency']:.2f})",
        f"MEMIT took {entry['memit_run']['seconds']:.0f} s for the ten",
        f"ROME {entry['rome_alone_run']['chunks'][0]['seconds']:,.0f} s for its ten edits",
    ):
        assert piece in readme, piece
    assert round(100 * (unedited["neighborhood"] - rome["neighborhood"])) == 10  # "lost ten points"
    (big,) = [e for e in result["entries"] if e["records"] == 100]
    memit, unedited, rome = big["memit"], big["unedited"], big["rome_alone"]
    others = sorted(set(big["memit_relations"]) - {"continent"})
    run = big["memit_run"]
    for piece in (
        f"efficacy {100 * memit['efficacy']:.1f} for both, paraphrase {100 * memit['paraphrase']:.1f} against "
        f"{100 * rome['paraphrase']:.1f}, and the neighbourhood falls to {100 * memit['neighborhood']:.1f} against "
        f"{100 * unedited['neighborhood']:.1f} unedited (ROME alone {100 * rome['neighborhood']:.1f}): "
        f"{100 * (unedited['neighborhood'] - memit['neighborhood']):.1f} points",
        f"the other {100 - big['memit_relations']['continent']['records']} records' neighbours fall from "
        f"{100 * _pooled(big['memit_relations'], others, 'unedited', 'neighborhood'):.1f} to "
        f"{100 * _pooled(big['memit_relations'], others, 'edited', 'neighborhood'):.1f} (ROME alone: "
        f"{100 * _pooled(big['rome_alone_relations'], others, 'edited', 'neighborhood'):.1f})",
        f"({run['diagnostics'][0]['z_gap'][0]:.1f} -> {run['diagnostics'][0]['z_gap_after']:.1f})",
        f"MEMIT took {run['seconds']:,.0f} s for the hundred",
    ):
        assert piece in readme, piece
    assert memit["efficacy"] == rome["efficacy"] and memit["paraphrase"] < rome["paraphrase"]
    assert memit["neighborhood"] < rome["neighborhood"]  # "does worse than ROME alone"


def test_memit_counterfact_lambda500_matches_its_result_files(readme: str) -> None:
    """The re-measure with the shipped MEMIT file: its table from the result file, its prose's numbers from it and
    from the first measurement's file it is compared with."""
    from bench.memit_counterfact import table
    from neuronmap.edit.hparams import load_memit_hparams

    result, first = _result("memit_counterfact.json"), _result("memit_counterfact-lambda4800.json")
    assert table(result["entries"]) in (ROOT / "README.md").read_text()
    shipped = load_memit_hparams(None, model=result["model"])
    assert result["memit_settings"]["mom2_update_weight"] == shipped.mom2_update_weight == 500
    assert list(result["memit_settings"]["layers"]) == list(shipped.layers)
    entry = {e["records"]: e for e in result["entries"]}
    before = {e["records"]: e for e in first["entries"]}
    ten, ten_before = entry[10]["memit"], before[10]["memit"]
    big, big_before = entry[100], before[100]
    memit, unedited, rome = big["memit"], big["unedited"], big["rome_alone"]
    others = sorted(set(big["memit_relations"]) - {"continent"})
    diagnostics = big["memit_run"]["diagnostics"][0]
    seconds = sorted(c["seconds"] for c in big["rome_alone_run"]["chunks"])
    for piece in (
        f"carried {100 * ten['paraphrase']:.1f}% of the paraphrases to the new object "
        f"({100 * ten_before['paraphrase']:.1f} at 4,800) for one point of neighbourhood "
        f"({100 * ten['neighborhood']:.1f} against {100 * ten_before['neighborhood']:.1f})",
        f"efficacy {100 * memit['efficacy']:.1f}, paraphrase {100 * memit['paraphrase']:.1f} (ROME alone "
        f"{100 * rome['paraphrase']:.1f}), and the neighbourhood falls to {100 * memit['neighborhood']:.1f} against "
        f"{100 * unedited['neighborhood']:.1f} unedited, {_lost(big):.1f} points ({_lost(big_before):.1f} at "
        "lambda 4,800)",
        f"The other {100 - big['memit_relations']['continent']['records']} records' neighbours fall from "
        f"{100 * _pooled(big['memit_relations'], others, 'unedited', 'neighborhood'):.1f} to "
        f"{100 * _pooled(big['memit_relations'], others, 'edited', 'neighborhood'):.1f} (ROME alone: "
        f"{100 * _pooled(big['rome_alone_relations'], others, 'edited', 'neighborhood'):.1f})",
        f"({diagnostics['z_gap'][0]:.1f} -> {diagnostics['z_gap_after']:.1f}, against "
        f"{big_before['memit_run']['diagnostics'][0]['z_gap_after']:.1f} at 4,800)",
        f"({100 * memit['score']:.1f} against {100 * big_before['memit']['score']:.1f})",
        f"(score {100 * memit['score']:.1f} against {100 * rome['score']:.1f};",
        f"MEMIT took {big['memit_run']['seconds']:,.0f} s for the hundred",
        f"against {seconds[len(seconds) // 2 - 1] / 2 + seconds[len(seconds) // 2] / 2:.0f} s per ten records",
    ):
        assert piece in readme, piece
    assert abs(ten["neighborhood"] - ten_before["neighborhood"] - -0.01) < 1e-6  # "one point"
    assert (
        memit["score"] > big_before["memit"]["score"]
        and memit["neighborhood"] < big_before["memit"]["neighborhood"]
    )
    assert memit["score"] < rome["score"]  # "still does worse than ROME alone"
    assert unedited["neighborhood"] - memit["neighborhood"] > 0.1  # the rule keeps neither
    assert unedited["neighborhood"] - big_before["memit"]["neighborhood"] > 0.1


def test_memit_counterfact_all_records_matches_its_result_files(readme: str) -> None:
    """All 242 records written together: the table from its own result file, the prose's losses per size from it
    and the 10/100 file, and the claim that ROME alone's rerun repeats the hundred's scores exactly."""
    from bench.memit_counterfact import table

    result, smaller = _result("memit_counterfact-all.json"), _result("memit_counterfact.json")
    assert table(result["entries"]) in (ROOT / "README.md").read_text()
    assert (
        result["memit_settings"] == smaller["memit_settings"]
        and result["rome_settings"] == smaller["rome_settings"]
    )
    (entry,) = result["entries"]
    assert entry["records"] == result["records_available"] == 242 and not result["fluency"]
    sizes = {e["records"]: e for e in smaller["entries"]} | {242: entry}
    memit, unedited, rome = entry["memit"], entry["unedited"], entry["rome_alone"]

    memit_losses = [_lost(sizes[n]) for n in (10, 100, 242)]
    rome_losses = [_lost(sizes[n], "rome_alone", "rome_alone_unedited") for n in (10, 100, 242)]
    rel, alone_rel = entry["memit_relations"], entry["rome_alone_relations"]
    others = sorted(set(rel) - {"continent"})
    hundred_rel = sizes[100]["memit_relations"]
    diagnostics = entry["memit_run"]["diagnostics"][0]
    seconds = sum(c["seconds"] for c in entry["rome_alone_run"]["chunks"])
    for piece in (
        f"MEMIT wrote {100 * memit['efficacy']:.1f}% of the 242 facts and carried {100 * memit['paraphrase']:.1f}% "
        f"of the paraphrases to the new object (ROME alone {100 * rome['efficacy']:.1f} and "
        f"{100 * rome['paraphrase']:.1f}), but the neighbourhood falls to {100 * memit['neighborhood']:.1f} against "
        f"{100 * unedited['neighborhood']:.1f} unedited, {memit_losses[2]:.1f} points",
        f"(score {100 * memit['score']:.1f} against ROME alone's {100 * rome['score']:.1f}; a negative result)",
        f"{memit_losses[0]:.1f} points at ten, {memit_losses[1]:.1f} at a hundred and {memit_losses[2]:.1f} at 242, "
        f"while ROME alone loses {rome_losses[0]:.1f}, {rome_losses[1]:.1f} and {rome_losses[2]:.1f}",
        f"({rel['continent']['records']} of 242), and their neighbours fall from "
        f"{100 * rel['continent']['unedited']['neighborhood']:.1f} to {100 * rel['continent']['edited']['neighborhood']:.1f} "
        f"(ROME alone {100 * alone_rel['continent']['edited']['neighborhood']:.1f}); the other "
        f"{242 - rel['continent']['records']} records' neighbours fall from "
        f"{100 * _pooled(rel, others, 'unedited', 'neighborhood'):.1f} to "
        f"{100 * _pooled(rel, others, 'edited', 'neighborhood'):.1f} ("
        f"{100 * _pooled(hundred_rel, sorted(set(hundred_rel) - {'continent'}), 'edited', 'neighborhood'):.1f} at a "
        f"hundred; ROME alone {100 * _pooled(alone_rel, others, 'edited', 'neighborhood'):.1f})",
        f"close the gap to z from {diagnostics['z_gap'][0]:.1f} to {diagnostics['z_gap_after']:.1f}",
        f"took {entry['memit_run']['seconds']:,.0f} s for the 242 on one thread",
        f"ROME {seconds:,.0f} s for its 242 edits",
    ):
        assert piece in readme, piece
    assert memit_losses == sorted(memit_losses)  # "the loss grows"
    assert memit["score"] < rome["score"]
    assert len(entry["rome_alone_run"]["chunks"]) == 25
    # "repeat the hundred's efficacy, paraphrase and neighbourhood exactly": chunk by chunk, from both files
    rerun = {c["offset"]: c["edited"] for c in entry["rome_alone_chunks"]}
    for chunk in sizes[100]["rome_alone_chunks"]:
        for metric in ("efficacy", "paraphrase", "neighborhood"):
            assert rerun[chunk["offset"]][metric] == chunk["edited"][metric], (chunk["offset"], metric)


def test_memit_sweep_at_a_hundred_matches_its_result_files(readme: str) -> None:
    """The lambda sweep on a hundred held-out records written together: its table, its prose's numbers, and the
    file of the rule's lambda that the re-measure on records 0-99 uses."""
    from bench.edit_sweep import best, table
    from neuronmap.edit.hparams import load_memit_hparams

    result = _result("edit_sweep-memit-smollm2-135m-100.json")
    assert result["algorithm"] == "memit" and result["records"] == [100, 199] and not result["unfinished"]
    assert table(result) in (ROOT / "README.md").read_text()
    entries = {e["variant"]["mom2_update_weight"]: e for e in result["entries"]}
    assert sorted(entries) == [500, 1500, 4800, 15000, 48000, 150000]
    assert all(list(e["variant"].get("layers", [1, 2, 3, 4])) == [1, 2, 3, 4] for e in entries.values())
    unedited, chosen = result["unedited"], best(result["entries"])
    lost = {w: unedited["neighborhood"] - e["edited"]["neighborhood"] for w, e in entries.items()}
    rule = chosen["variant"]["mom2_update_weight"]
    shipped = load_memit_hparams(None, model="smollm2-135m")
    picked = load_memit_hparams(str(ROOT / "bench/hparams/memit-smollm2-135m-lambda15000.json"))
    assert rule == picked.mom2_update_weight == 15000 and shipped.mom2_update_weight == 500
    assert {k: v for k, v in picked.to_dict().items() if k not in ("_source", "mom2_update_weight")} == {
        k: v for k, v in shipped.to_dict().items() if k not in ("_source", "mom2_update_weight")
    }
    # "within 10 points only from 15,000 up"; "from 48,000 up fewer than half the facts are written"
    assert [w for w in sorted(lost) if lost[w] <= 0.1] == [15000, 48000, 150000]
    assert all(entries[w]["edited"]["efficacy"] < 0.5 for w in (48000, 150000))
    assert entries[15000]["edited"]["efficacy"] >= 0.5
    seconds = [e["run"]["seconds"] for e in result["entries"]]
    c = entries[15000]["edited"]
    for piece in (
        f"(unedited: efficacy {100 * unedited['efficacy']:.1f}, paraphrase {100 * unedited['paraphrase']:.1f}, "
        f"neighbourhood {100 * unedited['neighborhood']:.1f}; bold: the sweep's rule)",
        f"lambda 500, the ten-record choice, loses {100 * lost[500]:.1f} points of neighbourhood",
        f"({100 * c['neighborhood']:.1f} against {100 * unedited['neighborhood']:.1f}), at the price of efficacy "
        f"{100 * c['efficacy']:.1f} and paraphrase {100 * c['paraphrase']:.1f}",
        f"The six runs took {min(seconds):.0f}-{max(seconds):.0f} s each",
    ):
        assert piece in readme, piece


def test_memit_counterfact_lambda15000_matches_its_result_files(readme: str) -> None:
    """The sweep's lambda re-measured on records 0-99, ten and all: the table from its file, the prose against it
    and the lambda-500 files (no lambda's MEMIT score reaches ROME alone's at any size)."""
    from bench.memit_counterfact import table

    result = _result("memit_counterfact-lambda15000.json")
    shipped = {e["records"]: e for e in _result("memit_counterfact.json")["entries"]}
    shipped |= {e["records"]: e for e in _result("memit_counterfact-all.json")["entries"]}
    assert table(result["entries"]) in (ROOT / "README.md").read_text()
    assert result["memit_settings"]["mom2_update_weight"] == 15000 and not result["fluency"]
    entry = {e["records"]: e for e in result["entries"]}
    assert sorted(entry) == sorted(shipped) == [10, 100, 242]

    hundred, every = entry[100]["memit"], entry[242]
    for piece in (
        f"({100 * hundred['neighborhood']:.1f} against {100 * entry[100]['unedited']['neighborhood']:.1f} unedited, "
        f"{_lost(entry[100]):.1f} points; lambda 500: {_lost(shipped[100]):.1f})",
        f"efficacy {100 * hundred['efficacy']:.1f}, paraphrase {100 * hundred['paraphrase']:.1f}, score "
        f"{100 * hundred['score']:.1f} against 500's {100 * shipped[100]['memit']['score']:.1f}",
        f"loses {_lost(every):.1f} points of neighbourhood again ({100 * every['memit']['neighborhood']:.1f} against "
        f"{100 * every['unedited']['neighborhood']:.1f})",
        f"at ten it writes {round(10 * entry[10]['memit']['efficacy'])} facts of ten",
        f"(closest at ten with lambda 500: {100 * shipped[10]['memit']['score']:.1f} against "
        f"{100 * shipped[10]['rome_alone']['score']:.1f})",
    ):
        assert piece in readme, piece
    assert _lost(entry[100]) <= 10 < _lost(every)
    scores = [e["memit"]["score"] - e["rome_alone"]["score"] for e in (*entry.values(), *shipped.values())]
    assert (
        max(scores) < 0 and max(scores) == shipped[10]["memit"]["score"] - shipped[10]["rome_alone"]["score"]
    )
    # ROME's rows are the runs above: the same chunks
    assert [c["edited"] for c in every["rome_alone_chunks"]] == [
        c["edited"] for c in shipped[242]["rome_alone_chunks"]
    ]


def _lost(entry: dict, method: str = "memit", base: str = "unedited") -> float:
    """The points of neighbourhood an entry's ``method`` loses against its ``base`` scores."""
    return 100 * (entry[base]["neighborhood"] - entry[method]["neighborhood"])


def _pooled(relations: dict, names: list[str], state: str, metric: str) -> float:
    """A metric over the records of several relations (each relation's mean weighted by its records)."""
    n = sum(relations[r]["records"] for r in names)
    return sum(relations[r]["records"] * relations[r][state][metric] for r in names) / n


def test_rome_counterfact_table_matches_its_result_file(readme: str) -> None:
    """The edit wing's 100-record ROME table and its prose, from the ROME-alone runs of the MEMIT comparison."""
    from bench.memit_counterfact import rome_table

    result = _result("memit_counterfact.json")
    assert rome_table(result, 100) in (ROOT / "README.md").read_text()
    (entry,) = [e for e in result["entries"] if e["records"] == 100]
    rome, unedited, rel = entry["rome_alone"], entry["rome_alone_unedited"], entry["rome_alone_relations"]
    settings = result["rome_settings"]
    assert settings["kl_direction"] == "edited-clean" and settings["context_templates"] == "rome"
    others = sorted(set(rel) - {"continent"})
    losses = [_lost(c, "edited") for c in entry["rome_alone_chunks"]]
    missed = round(100 * (1 - rome["efficacy"]))
    for piece in (
        f"with the shipped `smollm2-135m.json` (layer {settings['layer']}, `clamp_norm_factor` "
        f"{settings['clamp_norm_factor']:g},",
        f"Magnitudes (mean probability differences, points): efficacy {100 * rome['efficacy_magnitude']:.1f} "
        f"(unedited {100 * unedited['efficacy_magnitude']:.1f}), paraphrase {100 * rome['paraphrase_magnitude']:.1f} "
        f"({100 * unedited['paraphrase_magnitude']:.1f}), neighbourhood {100 * rome['neighborhood_magnitude']:.1f} "
        f"({100 * unedited['neighborhood_magnitude']:.1f}).",
        f"efficacy {100 * rome['efficacy']:.1f} ({missed} records not flipped, all of them continent records)",
        f"neighbourhood {100 * (unedited['neighborhood'] - rome['neighborhood']):.1f} points below the unedited model",
        f"fluency {rome['fluency'] - unedited['fluency']:+.2f} bits",
        f"By chunk of {entry['rome_alone_run']['chunk']} records the neighbourhood loss ranged from "
        f"{min(losses):.1f} to {max(losses):.1f} points",
        f"The loss is in the {rel['continent']['records']} continent records",
        f"{100 * rel['continent']['unedited']['neighborhood']:.1f} unedited, "
        f"{100 * rel['continent']['edited']['neighborhood']:.1f} edited",
        f"the other {100 - rel['continent']['records']} records ({len(others)} relations) lost "
        f"{100 * (_pooled(rel, others, 'unedited', 'neighborhood') - _pooled(rel, others, 'edited', 'neighborhood')):.1f} "
        f"points ({100 * _pooled(rel, others, 'unedited', 'neighborhood'):.1f} -> "
        f"{100 * _pooled(rel, others, 'edited', 'neighborhood'):.1f})",
    ):
        assert piece in readme, piece
    seconds = sorted(c["seconds"] for c in entry["rome_alone_run"]["chunks"])
    middle = (seconds[(len(seconds) - 1) // 2] + seconds[len(seconds) // 2]) / 2
    assert f"a median of {middle:.0f} s per chunk of 10 records" in readme
    assert f"their times run from {seconds[0]:,.0f} to {seconds[-1]:,.0f} s" in readme
    continent_missed = round(rel["continent"]["records"] * (1 - rel["continent"]["edited"]["efficacy"]))
    assert continent_missed == missed  # "all of them continent records"


def test_gemma_sweep_matches_its_result_file(readme: str) -> None:
    """Gemma's ROME table from its held-out sweep's result file, and the shipped file is the sweep rule's row (its
    layer, clamp and early stop; every other field as the sweep's base)."""
    from bench.edit_sweep import NEIGHBOURHOOD_SLACK, best, table
    from neuronmap.edit.hparams import load_hparams

    result = _result("edit_sweep-gemma3-270m.json")
    assert result["model"] == "gemma3-270m" and result["records"] == [100, 107]
    assert table(result) in (ROOT / "README.md").read_text()
    chosen, unedited = best(result["entries"]), result["unedited"]
    assert unedited["neighborhood"] - chosen["edited"]["neighborhood"] <= NEIGHBOURHOOD_SLACK + 1e-12
    shipped = load_hparams(None, model="gemma3-270m").to_dict()
    assert shipped["layer"] == chosen["layer"]
    assert all(shipped[k] == v for k, v in chosen["variant"].items())
    varied = {*chosen["variant"], "layer", "_source"}
    assert {k: v for k, v in shipped.items() if k not in varied} == {
        k: v for k, v in result["base_hparams"].items() if k not in varied
    }
    variants = {json.dumps(e["variant"], sort_keys=True) for e in result["entries"]}
    provisional = next(
        x["edited"]
        for x in result["entries"]
        if x["variant"] == {"clamp_norm_factor": 1.5, "early_stop_loss": 0.1} and x["layer"] == 3
    )
    first = [x["edited"]["score"] for x in result["entries"] if x["layer"] == 1]  # fmt: skip
    seconds = sorted({e["run"]["seconds"] for e in result["entries"]})
    e = chosen["edited"]
    for piece in (
        f"{seconds[0]:,.0f} to {seconds[-1]:,.0f} s a variant",
        f"(unedited: efficacy {100 * unedited['efficacy']:.1f}, paraphrase {100 * unedited['paraphrase']:.1f}, "
        f"neighbourhood {100 * unedited['neighborhood']:.1f};",
        f"layer {chosen['layer']}, clamp {chosen['variant']['clamp_norm_factor']}, early stop at "
        f"{chosen['variant']['early_stop_loss']} (efficacy {100 * e['efficacy']:.1f}, paraphrase "
        f"{100 * e['paraphrase']:.1f}, neighbourhood {100 * e['neighborhood']:.1f} against "
        f"{100 * unedited['neighborhood']:.1f} unedited)",
        f"layer 3 with clamp 1.5, is a row of the table: neighbourhood {100 * provisional['neighborhood']:.1f}, for "
        f"paraphrase {100 * provisional['paraphrase']:.1f}",
        f"layer 1's six rows span {100 * min(first):.1f} to {100 * max(first):.1f} in score",
    ):
        assert piece in readme, piece
    assert len(variants) == 6 and not result["unfinished"]
    # the prose's reading: layer 1 keeps the most neighbours in every variant; a smaller clamp keeps more at every
    # layer and early stop; the early stop moves the neighbourhood both ways
    ns = {(x["variant"]["clamp_norm_factor"], x["variant"]["early_stop_loss"], x["layer"]): x["edited"]["neighborhood"]
          for x in result["entries"]}  # fmt: skip
    for clamp, stop in {(c, s) for c, s, _ in ns}:
        assert max(range(1, 7), key=lambda layer: ns[clamp, stop, layer]) == 1
    assert all(ns[0.75, s, la] > ns[1.0, s, la] > ns[1.5, s, la] for s in (0.1, 0.5) for la in range(1, 7))
    change = [ns[c, 0.5, la] - ns[c, 0.1, la] for c in (0.75, 1.0, 1.5) for la in range(1, 7)]
    assert min(change) < 0 < max(change)


def test_memit_sweep_matches_its_result_file(readme: str) -> None:
    """The MEMIT lambda x range table, its prose and the shipped lambda, from the sweep's result file."""
    from bench.edit_sweep import best, table
    from neuronmap.edit.hparams import load_memit_hparams

    result = _result("edit_sweep-memit-smollm2-135m.json")
    assert result["algorithm"] == "memit" and result["records"] == [100, 109]
    assert table(result) in (ROOT / "README.md").read_text()
    entries = {
        (e["variant"]["mom2_update_weight"], tuple(e["variant"]["layers"])): e for e in result["entries"]
    }
    unedited, chosen = result["unedited"], best(result["entries"])
    top = max(e["edited"]["score"] for e in result["entries"])
    shipped = load_memit_hparams(None, model="smollm2-135m")
    # the shipped file: the rule's lambda, over the widest range that ties for the best score (to 0.1 point)
    tied = [r for (w, r), e in entries.items() if w == shipped.mom2_update_weight
            and round(100 * e["edited"]["score"], 1) == round(100 * top, 1)]  # fmt: skip
    assert chosen["variant"]["mom2_update_weight"] == shipped.mom2_update_weight and len(tied) == 2
    assert shipped.layers == max(tied, key=len)
    seconds = [e["run"]["seconds"] for e in result["entries"]]
    old, new = entries[(4800, (1, 2, 3, 4))], entries[(500, (1, 2, 3, 4))]
    for piece in (
        f"(unedited: efficacy {100 * unedited['efficacy']:.1f}, paraphrase {100 * unedited['paraphrase']:.1f}, "
        f"neighbourhood {100 * unedited['neighborhood']:.1f};",
        f"over layers 1-4 it carried {100 * old['edited']['paraphrase']:.1f}% of the paraphrases against "
        f"{100 * new['edited']['paraphrase']:.1f}% at 500",
        f"The twelve runs took {sum(seconds):.0f} s on one thread: the first searched the ten targets "
        f"({max(seconds):.0f} s), the other eleven reused them ({min(seconds):.0f}-"
        f"{sorted(seconds)[-2]:.0f} s each)",
    ):
        assert piece in readme, piece
    assert len(seconds) == 12 and max(seconds) == entries[(1500, (1, 2, 3, 4))]["run"]["seconds"]
