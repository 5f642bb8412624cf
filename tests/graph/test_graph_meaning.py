"""Maps that say what they know: full vs pruned modularity, a clusterability test that survives the choice of k,
coherence per cluster, group alignment and generic neurons; each against an independent reference."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file
from sklearn.metrics import adjusted_mutual_info_score

from neuronmap.errors import NeuronmapError
from neuronmap.graph import map_run
from neuronmap.graph.bipartite import bipartite_matrix
from neuronmap.graph.clusterability import null_statistics
from neuronmap.graph.communities import SpectralSweep, to_networkx
from neuronmap.graph.meaning import (
    COHERENCE_MIN_TOKENS,
    FREQUENCY_BINS,
    MIN_BIN_TOKENS,
    cluster_coherence,
    frequency_bins,
    generic_neurons,
    matched_draws,
    mean_pairwise_cosine,
    n_frequency_bins,
    token_frequency,
)
from neuronmap.graph.projection import gram_factor, gram_graph, project_matrix
from neuronmap.rundir import RunDir, atomic_write_parquet

FAST = {"null_samples": 3, "stability_seeds": 0}


def _nx_modularity(graph, labels, resolution=1.0) -> float:
    parts = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    return nx.community.modularity(to_networkx(graph), parts, weight="weight", resolution=resolution)


# ---- modularity on the full and on the pruned projection ---------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {"neighbors": 8},
        {"projection": "collaboration", "neighbors": 8},
        {"neighbors": 8, "edge_score": "signed", "resolution": 1.5},
        {"neighbors": 0},
    ],
)
def test_full_and_pruned_modularity_equal_networkx(planted_run, options):
    run, _ = planted_run()
    result = map_run(run, **FAST, **options)
    matrix, _, _ = bipartite_matrix(result.edges)
    labels = result.neurons["cluster"].to_numpy()
    resolution = options.get("resolution", 1.0)
    projection = options.get("projection", "weighted")
    full = project_matrix(matrix, projection, neighbors=None)  # the unpruned projection, positive weights
    pruned = project_matrix(matrix, projection, neighbors=options["neighbors"] or None)
    s = result.summary
    assert s["modularity_full"] == pytest.approx(_nx_modularity(full, labels, resolution), abs=1e-9)
    assert s["modularity_pruned"] == pytest.approx(_nx_modularity(pruned, labels, resolution), abs=1e-9)
    assert s["units"][0]["modularity_full"] == pytest.approx(s["modularity_full"])
    assert result.clusters["modularity_full"].sum() == pytest.approx(s["modularity_full"])
    if options["neighbors"]:
        assert s["modularity_full"] != pytest.approx(s["modularity_pruned"], abs=1e-6)
    else:
        assert s["modularity_full"] == pytest.approx(s["modularity_pruned"])


def test_full_modularity_within_layer_is_that_of_the_block_diagonal_graph(planted_run):
    run, _ = planted_run()
    result = map_run(run, scope="within-layer", neighbors=8, **FAST)
    matrix, neurons, _ = bipartite_matrix(result.edges)
    labels = result.neurons["cluster"].to_numpy()
    layers = neurons["layer"].to_numpy()
    blocks = [project_matrix(matrix[layers == layer], "weighted", neighbors=None) for layer in range(3)]
    import scipy.sparse as sp

    whole = sp.block_diag(blocks, format="csr")
    assert result.summary["modularity_full"] == pytest.approx(_nx_modularity(whole, labels), abs=1e-9)
    for layer, unit in enumerate(result.summary["units"]):
        local = labels[layers == layer]
        assert unit["modularity_full"] == pytest.approx(_nx_modularity(blocks[layer], local), abs=1e-9)


# ---- clusterability that survives the choice of k ----------------------------------------------------------
def test_spectral_p_and_z_come_from_fresh_nulls_at_the_chosen_k(planted_run):
    run, _ = planted_run()
    result = map_run(run, method="spectral", k_range="2..6", null_samples=4, stability_seeds=0)
    unit = result.summary["units"][0]
    test = result.summary["clusterability"]
    assert {k: v for k, v in test.items() if k != "p_floor_note"} == unit["test"]
    k = unit["k"]
    assert test["k"] == k == 4 and test["null"] == "swaps" and test["samples"] == 4
    assert test["selection"].startswith("held-out") and test["p_floor"] == pytest.approx(1 / 5)
    assert "p_floor_note" in test and test["cost"] == {"selection_networks": 12, "test_networks": 12}
    # Reference: the same nulls drawn again from the test's own seeds, clustered at k alone.
    matrix, neurons, _ = bipartite_matrix(result.edges)
    layers = neurons["layer"].to_numpy()

    def at_k(null, seed):
        return SpectralSweep([k], random_state=seed).fit(gram_graph(gram_factor(null, "weighted"), 64)).ncut_

    fresh = null_statistics(matrix, layers, at_k, kinds=["swaps"], n_samples=4, seed=(0, 0, 1))["swaps"][:, 0]
    real = [point["ncut"] for point in unit["ncut_curve"] if point["k"] == k][0]
    r = int((fresh <= real).sum())  # brute force: nulls at least as clusterable as the real graph
    assert test["p"] == pytest.approx((r + 1) / 5)
    assert test["z"] == pytest.approx((fresh.mean() - real) / fresh.std(ddof=1))
    # ... and they are not the samples that chose k
    chosen_with = [point["swaps"] for point in unit["ncut_curve"] if point["k"] == k][0]
    assert chosen_with["null_mean"] != pytest.approx(float(fresh.mean()), rel=1e-12)
    assert unit["clusterability"]["swaps"]["null_mean"] == pytest.approx(float(fresh.mean()))


def test_spectral_with_one_k_and_leiden_say_no_k_was_chosen(planted_run):
    run, _ = planted_run()
    one = map_run(run, method="spectral", k_range="4", **FAST).summary["clusterability"]
    assert one["selection"].startswith("fixed") and one["cost"]["selection_networks"] == 0
    leiden = map_run(run, force=True, **FAST).summary
    test = leiden["clusterability"]
    assert test["selection"].startswith("community method: leiden") and test["k"] == 4
    assert test["p"] == leiden["units"][0]["clusterability"]["swaps"]["p"] == pytest.approx(1 / 4)
    within = map_run(run, scope="within-layer", force=True, **FAST).summary["clusterability"]
    assert within["p"] is None and [x["layer"] for x in within["layers"]] == [0, 1, 2]
    assert all(x["p"] == pytest.approx(1 / 4) for x in within["layers"])
    assert RunDir(run).stage("map")["timing"]["null_seconds"] >= 0


def test_enough_samples_leave_no_floor_note(planted_run):
    run, _ = planted_run(n_layers=1, d_mlp=24, contexts_per_group=10, neurons_per_context=4)
    test = map_run(run, null_samples=99, stability_seeds=0, export="none").summary["clusterability"]
    assert test["p_floor"] == pytest.approx(0.01) and "p_floor_note" not in test


# ---- coherence ---------------------------------------------------------------------------------------------
def test_mean_pairwise_cosine_equals_brute_force():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 7))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = [unit[i] @ unit[j] for i, j in itertools.combinations(range(5), 2)]
    assert mean_pairwise_cosine(vectors) == pytest.approx(np.mean(pairs))
    stacked = rng.normal(size=(3, 4, 7))
    np.testing.assert_allclose(mean_pairwise_cosine(stacked), [mean_pairwise_cosine(v) for v in stacked])


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg by its definition (the test's reference; the code uses scipy)."""
    m = len(p)
    return np.array(
        [
            min(1.0, min(p[j] * m / (rank + 1) for rank, j in enumerate(np.argsort(p)) if p[j] >= p[i]))
            for i in range(m)
        ]
    )


def test_cluster_coherence_p_is_a_permutation_p_adjusted_by_bh():
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(60, 16))
    embeddings[:5] = rng.normal(size=16) + 0.2 * rng.normal(size=(5, 16))  # five near-identical tokens
    sets = [np.arange(5), np.arange(10, 14), np.array([20, 21]), np.arange(30, 36)]
    frame = cluster_coherence(sets, embeddings, n_draws=199, seed=0)
    assert frame["coherence"][2] != frame["coherence"][2] and COHERENCE_MIN_TOKENS == 3  # too few tokens
    for c in (0, 1, 3):
        assert frame["coherence"][c] == pytest.approx(mean_pairwise_cosine(embeddings[sets[c]]))
        # brute force: the same draws, coherence of each random set by loops
        m = len(sets[c])
        draws = np.random.default_rng(np.random.SeedSequence([0, 3, m]))
        null = [
            np.mean(
                [
                    (embeddings[a] @ embeddings[b])
                    / np.linalg.norm(embeddings[a])
                    / np.linalg.norm(embeddings[b])
                    for a, b in itertools.combinations(draws.choice(60, m, replace=False), 2)
                ]
            )
            for _ in range(199)
        ]
        r = sum(value >= frame["coherence"][c] - 1e-12 for value in null)
        assert frame["coherence_p_raw"][c] == pytest.approx((r + 1) / 200)
    tested = frame["coherence_p_raw"].notna().to_numpy()
    np.testing.assert_allclose(frame["coherence_p"][tested], _bh(frame["coherence_p_raw"][tested].to_numpy()))
    assert frame["coherent"].tolist() == [True, False, False, False]


def test_frequency_matched_null_keeps_each_token_in_its_decile():
    frequency = np.array([50, 1, 1, 7, 3, 3, 9, 0, 2, 40] * 10)  # 100 tokens
    pool = np.arange(100)
    bins = frequency_bins(frequency, pool, 10)
    # ranks by a loop: most frequent first, ties by index; ten tokens a bin
    ranked = sorted(pool, key=lambda t: (-frequency[t], t))
    assert [bins[t] for t in ranked] == [r // 10 for r in range(100)] and FREQUENCY_BINS == 10
    # by default no bin holds fewer than MIN_BIN_TOKENS tokens: 100 tokens make 2 bins, 40 one, 5,000 ten
    assert MIN_BIN_TOKENS == 50 and [n_frequency_bins(n) for n in (100, 40, 5000)] == [2, 1, 10]
    assert frequency_bins(frequency, pool).max() == 1
    cols = np.array([0, 9, 30, 13])
    draws = matched_draws(cols, bins, 500, np.random.default_rng(0))
    assert (bins[draws] == bins[cols]).all()  # each slot keeps its token's bin
    assert all(len(set(row)) == len(cols) for row in draws.tolist())  # distinct tokens, as a cluster's are
    assert len({tuple(row) for row in draws.tolist()}) > 400  # and random


def test_matched_coherence_p_by_brute_force():
    rng = np.random.default_rng(2)
    embeddings = rng.normal(size=(200, 8))
    frequency = rng.integers(0, 30, size=200)
    embeddings[:4] = rng.normal(size=8) + 0.1 * rng.normal(size=(4, 8))  # four near-identical tokens
    sets = [np.arange(4), np.arange(40, 46)]
    frame = cluster_coherence(sets, embeddings, n_draws=99, seed=5, frequency=frequency)
    bins = frequency_bins(frequency, np.arange(200))  # 200 tokens: four bins of 50
    assert bins.max() == 3
    for c, cols in enumerate(sets):
        draws = matched_draws(cols, bins, 99, np.random.default_rng(np.random.SeedSequence([5, 4, c])))
        null = [np.mean([embeddings[a] @ embeddings[b] / np.linalg.norm(embeddings[a]) / np.linalg.norm(embeddings[b])
                         for a, b in itertools.combinations(row, 2)]) for row in draws]  # fmt: skip
        r = sum(value >= frame["coherence"][c] - 1e-12 for value in null)
        assert frame["coherence_p_raw"][c] == pytest.approx((r + 1) / 100)
    assert frame["coherent"].tolist() == [True, False]
    # fewer tokens than two bins need: the uniform null, the very draws made without frequencies
    small = cluster_coherence(sets, embeddings[:80], n_draws=99, seed=5, frequency=frequency[:80])
    pd.testing.assert_frame_equal(small, cluster_coherence(sets, embeddings[:80], n_draws=99, seed=5))


def test_token_frequency_counts_the_graph_token_of_each_context():
    contexts = pd.DataFrame({"target_ids": [[5, 1], [7], [5], []], "input_ids": [[1, 2], [2, 3], [3, 5], [4]],
                             "position": [1, 0, 1, 0]})  # fmt: skip
    assert token_frequency(contexts, np.array([3, 5, 7]), "target").tolist() == [0, 2, 1]
    assert token_frequency(contexts, np.array([2, 4, 5]), "input").tolist() == [2, 1, 1]


def _group_embeddings(contexts: pd.DataFrame, dim: int = 32, seed: int = 0) -> np.ndarray:
    """A vocabulary whose tokens of each planted group lie close together, the others at random."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(1200, dim))
    for _, ids in contexts.groupby("relation")["target_ids"]:
        centre = rng.normal(size=dim) * 3
        for token in {int(t[0]) for t in ids}:
            table[token] = centre + rng.normal(size=dim) * 0.3
    return table.astype(np.float32)


@pytest.mark.parametrize("fmt", ["npy", "safetensors"])
def test_map_marks_coherent_clusters_from_an_embeddings_file(planted_run, tmp_path, fmt):
    run, _ = planted_run(tokens_per_group=8)
    contexts = pd.read_parquet(run / "contexts.parquet")
    table = _group_embeddings(contexts)
    path = tmp_path / f"emb.{fmt}"
    if fmt == "npy":
        np.save(path, table)
    else:
        save_file({"lm_head.weight": table}, str(path))
    result = map_run(run, embeddings=str(path), **FAST)
    clusters = result.clusters
    big = clusters[clusters["size"] >= 10]
    assert len(big) == 4 and big["coherent"].all() and (big["coherence"] > 0.4).all()
    coherence = result.summary["coherence"]
    assert coherence["coherent"] == big["cluster"].tolist() or set(big["cluster"]) <= set(
        coherence["coherent"]
    )
    assert coherence["coherent_neuron_share"] == pytest.approx(
        clusters.loc[clusters["coherent"], "size"].sum() / len(result.neurons)
    )
    # Random embeddings: nothing is coherent.
    np.save(tmp_path / "random.npy", np.random.default_rng(5).normal(size=(1200, 32)))
    noise = map_run(run, embeddings=str(tmp_path / "random.npy"), force=True, **FAST)
    assert not noise.clusters["coherent"].any()


def test_missing_embeddings_leave_coherence_empty_with_a_note(planted_run):
    run, _ = planted_run()
    result = map_run(run, **FAST)
    assert result.clusters["coherence"].isna().all() and not result.clusters["coherent"].any()
    assert "coherence not computed" in result.summary["coherence"]["note"]
    with pytest.raises(NeuronmapError, match="--embeddings"):
        map_run(run, embeddings="/nonexistent.npy", force=True, **FAST)


# ---- groups ------------------------------------------------------------------------------------------------
def test_group_ami_against_sklearn_and_a_brute_force_permutation(planted_run):
    run, _ = planted_run()
    contexts = pd.read_parquet(run / "contexts.parquet")
    rng = np.random.default_rng(3)
    contexts["noise"] = rng.choice(["a", "b", "c"], len(contexts))
    atomic_write_parquet(contexts, run / "contexts.parquet")
    result = map_run(run, **FAST)
    groups = result.summary["groups"]
    assert set(groups) == {"relation", "noise"}
    # Reference: each context's dominant cluster by pandas, from the raw scores.
    scores = pd.read_parquet(run / "scores.parquet")
    cluster = result.neurons.set_index(["layer", "neuron"])["cluster"]
    scores = scores.join(cluster, on=["layer", "neuron"], how="inner")
    scores["mass"] = scores["score"].clip(lower=0)
    scores = scores[scores["mass"] > 0]
    mass = scores.groupby(["context_id", "cluster"])["mass"].sum().reset_index()
    dominant = mass.sort_values(["context_id", "mass", "cluster"], ascending=[True, False, True])
    dominant = dominant.drop_duplicates("context_id").set_index("context_id")["cluster"]
    for column in ("relation", "noise"):
        values = contexts.set_index("context_id")[column].loc[dominant.index]
        expected = adjusted_mutual_info_score(values, dominant)
        entry = groups[column]
        assert entry["ami"] == pytest.approx(expected) and entry["contexts"] == len(dominant)
        assert entry["samples"] == 199 and entry["p_floor"] == pytest.approx(1 / 200)
    assert groups["relation"]["ami"] > 0.9 and groups["relation"]["p"] == pytest.approx(1 / 200)
    assert abs(groups["noise"]["ami"]) < 0.1 and groups["noise"]["p"] > 0.05
    # brute-force permutation p for the noise column, with the same shuffles
    codes = pd.Categorical(
        values.to_numpy(), categories=sorted(set(values), key=lambda v: (-list(values).count(v), v))
    )
    labels = codes.codes
    shuffle = np.random.default_rng(np.random.SeedSequence([0, 2, 1]))
    null = [adjusted_mutual_info_score(shuffle.permutation(labels), dominant.to_numpy()) for _ in range(199)]
    real = adjusted_mutual_info_score(labels, dominant.to_numpy())
    assert groups["noise"]["p"] == pytest.approx((sum(x >= real for x in null) + 1) / 200)


# ---- generic neurons ---------------------------------------------------------------------------------------
def _with_generic_neuron(run):
    """Add neuron (2, 39) to every context, weakly: it scores for every target token."""
    scores = pd.read_parquet(run / "scores.parquet")
    scores = scores[~((scores["layer"] == 2) & (scores["neuron"] == 39))]
    contexts = pd.read_parquet(run / "contexts.parquet")
    extra = pd.DataFrame(
        {"context_id": contexts["context_id"], "layer": 2, "neuron": 39, "score": 0.5}
    ).astype(scores.dtypes.to_dict())
    atomic_write_parquet(pd.concat([scores, extra], ignore_index=True), run / "scores.parquet")


def test_generic_neurons_are_flagged_and_can_be_dropped(planted_run):
    run, _ = planted_run()
    _with_generic_neuron(run)
    result = map_run(run, **FAST)
    flagged = result.neurons[result.neurons["generic"]]
    assert flagged[["layer", "neuron"]].values.tolist() == [[2, 39]]
    assert int(flagged["contexts"].iloc[0]) == 160
    # reference: the rule by hand from the edges
    per = result.edges.groupby(["layer", "neuron"]).agg(c=("contexts", "sum"), t=("token_id", "nunique"))
    assert per[(per["c"] > 0.25 * 160) & (per["t"] > 10)].index.tolist() == [(2, 39)]
    assert generic_neurons(result.edges, 160)["generic"].sum() == 1
    generic = result.summary["generic"]
    assert generic["neurons"] == [{"layer": 2, "neuron": 39, "contexts": 160, "tokens": 20}]
    assert not generic["dropped"] and "25%" in generic["rule"]
    # reuse and --force: the new option is a parameter like any other
    assert map_run(run, **FAST).reused
    with pytest.raises(NeuronmapError, match="other parameters; pass --force"):
        map_run(run, drop_generic=True, **FAST)
    dropped = map_run(run, drop_generic=True, force=True, **FAST)
    assert not ((dropped.neurons["layer"] == 2) & (dropped.neurons["neuron"] == 39)).any()
    assert not (dropped.edges["neuron"].eq(39) & dropped.edges["layer"].eq(2)).any()
    assert dropped.summary["generic"]["dropped"] and len(dropped.summary["generic"]["neurons"]) == 1
    assert not dropped.neurons["generic"].any() and len(dropped.neurons) == len(result.neurons) - 1


def test_a_map_from_before_the_new_options_needs_force_and_says_why(planted_run):
    run, _ = planted_run()
    map_run(run, **FAST)
    rd = RunDir(run)
    data = rd.manifest()
    for key in ("drop_generic", "embeddings"):
        del data["stages"]["map"]["params"][key]
    rd.write_manifest(data)
    with pytest.raises(NeuronmapError, match="already mapped with an older neuronmap"):
        map_run(run, **FAST)
    assert not map_run(run, force=True, **FAST).reused and map_run(run, **FAST).reused


def test_embeddings_come_from_the_traced_models_own_folder(tmp_path):
    """A local model folder (the run's model spec): its safetensors tensors are read with numpy, the unembedding
    first for target tokens and the input embeddings for input tokens; weights other than the traced ones are
    refused."""
    from neuronmap.graph.meaning import load_embeddings

    folder = tmp_path / "model"
    folder.mkdir()
    rng = np.random.default_rng(0)
    embed, unembed = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    save_file(
        {"model.embed_tokens.weight": embed, "lm_head.weight": unembed}, str(folder / "model.safetensors")
    )
    (folder / ".neuronmap-hash.json").write_text('{"stamp": [], "sha256": "abc"}')
    manifest = {"model": {"spec": str(folder), "weights_hash": "abc"}}
    ids = np.array([3, 7, 49])
    table, source = load_embeddings(manifest, ids, "target")
    np.testing.assert_array_equal(table, unembed[ids])
    assert source == "model.safetensors:lm_head.weight"
    table, source = load_embeddings(manifest, ids, "input")
    np.testing.assert_array_equal(table, embed[ids])
    assert load_embeddings(manifest, np.arange(50), "target")[0].shape == (50, 8)  # the whole-table path
    assert load_embeddings(manifest, np.array([50]), "target")[0] is None  # an id past the vocabulary
    other = {"model": {"spec": str(folder), "weights_hash": "def"}}
    assert "not those the run was traced with" in load_embeddings(other, ids, "target")[1]
    synthetic = {"model": {"spec": "synthetic"}}
    assert load_embeddings(synthetic, ids, "target")[0] is None


def test_no_torch_while_reading_embeddings(tmp_path):
    import subprocess
    import sys

    np.save(tmp_path / "e.npy", np.ones((4, 3)))
    code = (
        "import sys, numpy as np\n"
        "from neuronmap.graph.meaning import load_embeddings\n"
        f"load_embeddings({{'model': {{'spec': 'smollm2-135m'}}}}, np.array([1, 2]), 'target')\n"
        f"load_embeddings({{}}, np.array([1, 2]), 'target', {str(tmp_path / 'e.npy')!r})\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_group_alignment_needs_two_varying_labellings():
    from neuronmap.graph.meaning import group_alignment

    dominant = np.array([0, 0, 1, 1, -1])
    found = group_alignment(
        dominant, {"one": np.array([0, 0, 0, 0, 0]), "two": np.array([0, 0, 1, 1, 1])}, 9, 0
    )
    assert found["one"]["ami"] is None and found["one"]["contexts"] == 4
    assert found["two"]["ami"] == pytest.approx(1.0) and found["two"]["p_floor"] == pytest.approx(0.1)
    assert found["two"]["samples"] == 9 and 0.1 <= found["two"]["p"] <= 1


def test_shuffles_respect_documents():
    from neuronmap.graph.meaning import label_shuffle

    blocks = np.array([5, 5, 5, 2, 2, 9, 9, 9, 9])
    topic = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1])
    pos = np.array([0, 1, 2, 0, 3, 1, 1, 0, 2])
    assert label_shuffle(topic, None)[0] == "contexts"
    kind_topic, between = label_shuffle(topic, blocks)
    kind_pos, within = label_shuffle(pos, blocks)
    assert (kind_topic, kind_pos) == ("documents", "within documents")
    rng = np.random.default_rng(0)
    moved = False
    for _ in range(50):
        drawn = between(rng)
        # each document keeps one label, taken from some document: its rows agree, the labels' multiset per
        # document is a permutation of the documents' labels
        per_doc = {b: set(drawn[blocks == b]) for b in np.unique(blocks)}
        assert all(len(v) == 1 for v in per_doc.values())
        assert sorted(v.pop() for v in per_doc.values()) == [0, 1, 1]
        shuffled = within(rng)
        for b in np.unique(blocks):  # each document's labels are its own, reordered
            assert sorted(shuffled[blocks == b]) == sorted(pos[blocks == b])
        moved |= not np.array_equal(shuffled, pos)
    assert moved


def test_group_alignment_in_documents_names_its_shuffle_and_skips_a_document_name():
    from neuronmap.graph.meaning import group_alignment

    rng = np.random.default_rng(1)
    blocks = np.repeat(np.arange(20), 10)
    topic = np.repeat(rng.integers(0, 3, 20), 10)
    title = np.repeat(np.arange(20), 10)
    dominant = rng.integers(0, 4, 200)
    found = group_alignment(dominant, {"topic": topic, "title": title}, 19, 0, blocks)
    assert found["topic"]["shuffle"] == "documents" and found["topic"]["samples"] == 19
    assert (
        found["title"]["samples"] == 0
        and found["title"]["p"] is None
        and "document" in found["title"]["note"]
    )
    assert group_alignment(dominant, {"topic": topic}, 19, 0)["topic"]["shuffle"] == "contexts"


def test_document_shuffle_is_calibrated_where_the_event_shuffle_is_not():
    """Clusters that follow documents, topics unrelated to clusters: shuffling events calls the topic
    significant (every event counted as independent); shuffling documents does not."""
    from neuronmap.graph.meaning import group_alignment

    rng = np.random.default_rng(3)
    n_docs, per = 40, 25
    blocks = np.repeat(np.arange(n_docs), per)
    dominant = np.repeat(rng.integers(0, 4, n_docs), per)  # each document uses one cluster
    wrong, right = [], []
    for trial in range(10):
        # a topic per document, unrelated to the clusters
        topic = np.repeat(np.random.default_rng(100 + trial).integers(0, 3, n_docs), per)
        wrong.append(group_alignment(dominant, {"t": topic}, 49, trial)["t"]["p"])
        right.append(group_alignment(dominant, {"t": topic}, 49, trial, blocks)["t"]["p"])
    assert np.mean(np.array(wrong) <= 0.05) > 0.3  # the event shuffle rejects far more than 5%
    assert np.mean(np.array(right) <= 0.05) <= 0.2
