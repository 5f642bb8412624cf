"""What the map knows beyond its partition: generic neurons, token coherence per cluster, and how the clusters
line up with the contexts' groups.

Generic neurons
    A neuron is *generic* when the trace scored it (a non-zero edge value after ``--edge-score``) in more than
    ``GENERIC_CONTEXT_SHARE`` (25%) of the run's contexts, spread over more than ``GENERIC_MIN_TOKENS`` (10)
    distinct tokens. Why these numbers: a trace keeps a context's top few dozen neurons out of tens of
    thousands (SmolLM2: top 32 of 46,080, 0.07%), so a neuron that is in a quarter of all contexts is there
    hundreds of times more often than a neuron picked at random; and a neuron specific to one token can only
    reach a quarter of the contexts when a quarter of them share that token, which the token count rules out.
    Such neurons (SmolLM2's L29/N1413, which pushes up frequent tokens and tops every run) join every token
    and so glue clusters together; ``neuronmap map --drop-generic`` leaves them out of the graph.

Coherence
    A cluster's ``coherence`` is the mean pairwise cosine similarity of the embedding vectors of its top
    ``COHERENCE_TOKENS`` tokens (by the score that ranks them, :mod:`neuronmap.graph.tokens`), counting only
    tokens over-represented in the cluster (lift > 1, score > 0): a small cluster's list otherwise runs on into
    tokens it carries less than the average cluster does, which say nothing about it. The vectors are
    the model's own: the unembedding (``lm_head``) rows for target tokens, since a neuron acts on the target
    through them, falling back to the input embeddings when they are tied (SmolLM2, Gemma); the input embeddings
    for ``--token-field input``. They are read from the model's safetensors file with safetensors' numpy API,
    so the map stage still never imports torch and the trace need not store a vocabulary-sized table in every
    run: only the rows of the run's tokens are read. ``coherence_p_raw`` is the share of ``COHERENCE_DRAWS``
    random sets of as many tokens, drawn without replacement from the run's tokens (the graph's token
    columns), at least as coherent: (r + 1) / (n + 1). ``coherence_p`` is that p adjusted over the tested
    clusters by Benjamini-Hochberg (``scipy.stats.false_discovery_control``), and a cluster is ``coherent``
    when ``coherence_p <= COHERENCE_ALPHA``. Clusters with fewer than ``COHERENCE_MIN_TOKENS`` embedded top
    tokens are not tested (NaN).

Groups
    Each context's *dominant cluster* is the cluster holding the largest share of its score mass (the scores
    of the graph's neurons, made non-negative as the edges were). For each group column of the contexts
    (relation, topic, pos, ...; those :func:`group_columns` finds), ``ami`` is scikit-learn's adjusted mutual
    information between dominant cluster and group value over the contexts that have both, and ``p`` is
    (r + 1) / (n + 1) against ``GROUP_PERMUTATIONS`` shuffles of the group labels. The events of an each-token
    run are not exchangeable: those of one document share its topic and its words, and their dominant clusters
    lean on the document too. So there a label that is constant within every document (topic, title) is shuffled
    between documents (each document keeps its events, and takes another document's label), and any other label
    (pos) is shuffled among the events of each document, which keeps what a document's make-up alone explains
    out of the test. Shuffling events freely would count every event as independent and give p values smaller
    than the data support.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GENERIC_CONTEXT_SHARE = 0.25
GENERIC_MIN_TOKENS = 10
GENERIC_RULE = (
    f"scored in more than {GENERIC_CONTEXT_SHARE:.0%} of the contexts, across more than "
    f"{GENERIC_MIN_TOKENS} distinct tokens"
)
COHERENCE_TOKENS = 10
COHERENCE_MIN_TOKENS = 3
COHERENCE_DRAWS = 999
COHERENCE_ALPHA = 0.05
# The coherence null matches frequency: each top token is replaced by a random token of the same decile of the
# run's tokens ranked by how many contexts carry them. Frequent tokens (function words, digits, punctuation)
# have embeddings unlike rare ones, so uniform draws would compare a cluster's frequent tokens with mostly rare
# ones and pass or fail it for its frequency, not its meaning.
FREQUENCY_BINS = 10
# ... and no fewer than this many tokens a bin, so a null set has room to differ from the cluster's own tokens
# (a run with few tokens gets fewer bins; under 2 x this, one bin: draws from all of the run's tokens).
MIN_BIN_TOKENS = 50
GROUP_PERMUTATIONS = 199

# Columns the trace writes into contexts.parquet; every other column with few enough values is a group.
TRACE_COLUMNS = frozenset(
    {
        "context_id",
        "text",
        "target",
        "target_ids",
        "subject",
        "p_target",
        "known",
        "kept",
        "input_ids",
        "tokens",
        "target_tokens",
        "position",
        "p_corrupted",
        "doc_id",  # each-token events: their document, and the target's characters in it
        "char_start",
        "char_end",
    }
)
MAX_GROUP_VALUES = 200
# Embedding tensors in safetensors files, output side first. A target token is scored through the unembedding.
UNEMBEDDING_KEYS = ("lm_head.weight", "embed_out.weight", "cls.predictions.decoder.weight")
EMBEDDING_KEYS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")


# ---- generic neurons ---------------------------------------------------------------------------------------
def generic_neurons(edges: pd.DataFrame, n_contexts: int) -> pd.DataFrame:
    """Per neuron of ``edges`` (sorted by layer, neuron): ``contexts`` (contexts with an edge: the per-edge
    counts add up because a context gives a neuron one token; with per-position scores of input tokens a context
    counts once per distinct token), ``n_tokens`` and ``generic`` (the module's rule)."""
    per = edges.groupby(["layer", "neuron"], sort=True).agg(
        contexts=("contexts", "sum"), n_tokens=("token_id", "nunique")
    )
    per["generic"] = (per["contexts"] > GENERIC_CONTEXT_SHARE * max(n_contexts, 1)) & (
        per["n_tokens"] > GENERIC_MIN_TOKENS
    )
    return per.reset_index()


# ---- groups ------------------------------------------------------------------------------------------------
def group_columns(contexts: pd.DataFrame) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """The group columns of the contexts: column -> its values (most frequent first), and column -> the value
    index of each context row (-1: none). A group column is one the trace did not write with at most
    ``MAX_GROUP_VALUES`` distinct values and fewer than half as many values as contexts (a column that names
    each context, such as an id or a title, groups nothing)."""
    limit = min(MAX_GROUP_VALUES, max(2, len(contexts) // 2))
    groups, codes = {}, {}
    for column in contexts.columns:
        if column in TRACE_COLUMNS:
            continue
        values = contexts[column].map(lambda v: None if v is None or v is pd.NA or v != v else str(v))
        counts = values.value_counts()
        if not 1 <= len(counts) <= limit:
            continue
        order = sorted(counts.index, key=lambda v: (-counts[v], v))
        groups[column] = order
        codes[column] = pd.Categorical(values, categories=order).codes.astype(np.int64)
    return groups, codes


def graph_scores(
    scores: pd.DataFrame, neurons: pd.DataFrame, contexts: pd.DataFrame, edge_score: str
) -> pd.DataFrame:
    """The scores of the graph's neurons (``neurons``: the map's rows), in the order of ``scores``, with their
    neuron row, context row and ``magnitude``: the score made non-negative as the map made its edges,
    max(score, 0) for ``positive``, |score| otherwise. The one definition of a context's weight on a neuron, for
    the map's dominant clusters and for what explore draws."""
    span = int(max(neurons["neuron"].max(), scores["neuron"].max())) + 1
    neuron_key = neurons["layer"].to_numpy(np.int64) * span + neurons["neuron"].to_numpy(np.int64)
    key = scores["layer"].to_numpy(np.int64) * span + scores["neuron"].to_numpy(np.int64)
    row = np.searchsorted(neuron_key, key)
    ctx = pd.Index(contexts["context_id"]).get_indexer(scores["context_id"])
    keep = (row < len(neuron_key)) & (neuron_key[np.minimum(row, len(neuron_key) - 1)] == key) & (ctx >= 0)
    value = scores["score"].to_numpy(np.float64)[keep]
    return pd.DataFrame(
        {
            "row": row[keep],
            "ctx": ctx[keep],
            "context_id": scores["context_id"].to_numpy()[keep],
            "score": value,
            "magnitude": np.maximum(value, 0.0) if edge_score == "positive" else np.abs(value),
        }
    )


def dominant_clusters(
    scores: pd.DataFrame,
    contexts: pd.DataFrame,
    neurons: pd.DataFrame,
    labels: np.ndarray,
    edge_score: str,
) -> np.ndarray:
    """The cluster with the largest score mass (the :func:`graph_scores` magnitudes) of each context row (-1: none of its
    scores is on a graph neuron); ties go to the lower cluster."""
    found = graph_scores(scores, neurons, contexts, edge_score)
    found = found[found["magnitude"].to_numpy() > 0]
    ctx, row, mass = (found[c].to_numpy() for c in ("ctx", "row", "magnitude"))
    n_clusters = int(labels.max()) + 1
    cell = ctx.astype(np.int64) * n_clusters + labels[row]
    cells, summed = np.unique(cell, return_inverse=True)
    total = np.bincount(summed, mass)
    ctx_of, cluster_of = cells // n_clusters, cells % n_clusters
    order = np.lexsort((cluster_of, -total, ctx_of))  # per context: largest mass first, then lower cluster
    first = order[np.r_[True, ctx_of[order][1:] != ctx_of[order][:-1]]] if len(order) else order
    dominant = np.full(len(contexts), -1, np.int64)
    dominant[ctx_of[first]] = cluster_of[first]
    return dominant


def label_shuffle(
    values: np.ndarray, blocks: np.ndarray | None
) -> tuple[str, Callable[[np.random.Generator], np.ndarray]]:
    """The label-shuffle null of one group column: its kind, ``contexts`` (no documents), ``documents`` (the
    label is constant within each document: documents trade labels) or ``within documents`` (events trade labels
    within their document), and a function drawing one shuffle. What does not change between draws (the
    documents' labels, the rows grouped by document) is computed once."""
    if blocks is None:
        return "contexts", lambda rng: rng.permutation(values)
    order = np.lexsort((values, blocks))
    varies = np.any((blocks[order][1:] == blocks[order][:-1]) & (values[order][1:] != values[order][:-1]))
    if not varies:
        names, index = np.unique(blocks, return_inverse=True)
        label = np.empty(len(names), values.dtype)
        label[index] = values  # constant within a block, so any of its rows gives it
        return "documents", lambda rng: label[rng.permutation(len(names))][index]
    grouped = np.argsort(blocks, kind="stable")  # rows block by block

    def within(rng: np.random.Generator) -> np.ndarray:
        mixed = np.lexsort(
            (rng.random(len(values)), blocks)
        )  # the same blocks, rows in random order within each
        out = np.empty_like(values)
        out[grouped] = values[mixed]
        return out

    return "within documents", within


def group_alignment(
    dominant: np.ndarray,
    codes: dict[str, np.ndarray],
    n_permutations: int,
    seed: int,
    blocks: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Per group column: AMI between dominant cluster and group value, and its label-shuffle null; ``blocks``
    (each row's document, each-token runs) makes the shuffle respect documents (module docstring)."""
    from sklearn.metrics import adjusted_mutual_info_score

    out = {}
    for i, (column, code) in enumerate(codes.items()):
        ok = (dominant >= 0) & (code >= 0)
        clusters, values = dominant[ok], code[ok]
        block = None if blocks is None else blocks[ok]
        kind, draw = label_shuffle(values, block)
        entry: dict[str, Any] = {
            "contexts": int(ok.sum()),
            "values": int(len(np.unique(values))),
            "clusters": int(len(np.unique(clusters))),
            "ami": None,
            "null_mean": None,
            "null_std": None,
            "p": None,
            "samples": 0,
            "p_floor": None,
            "shuffle": kind,
        }
        # AMI needs two labellings that both vary; a constant one says nothing (sklearn would report 0 or 1)
        if entry["values"] >= 2 and entry["clusters"] >= 2:
            real = float(adjusted_mutual_info_score(values, clusters))
            # a label that names the document (a title) is only relabelled by a shuffle between documents
            names_document = (
                kind == "documents" and block is not None and entry["values"] == len(np.unique(block))
            )
            draws = 0 if names_document else n_permutations
            rng = np.random.default_rng(np.random.SeedSequence([seed, 2, i]))
            null = np.array([adjusted_mutual_info_score(draw(rng), clusters) for _ in range(draws)])
            entry |= {"ami": real, "samples": draws}
            if names_document:
                entry["note"] = "one value per document: no shuffle of documents can test it"
            if draws:
                entry |= {
                    "null_mean": float(null.mean()),
                    "null_std": float(null.std(ddof=1)) if draws > 1 else 0.0,
                    "p": (int((null >= real).sum()) + 1) / (draws + 1),
                    "p_floor": 1 / (draws + 1),
                }
        out[column] = entry
    return out


# ---- embeddings and coherence ------------------------------------------------------------------------------
def _weights_folder(manifest: dict[str, Any]) -> Path | None:
    """The folder of the traced model's safetensors weights, found without loading the model: an embedded
    model's prepared folder or a local folder. None for hub ids, random tiny models, or weights not found."""
    from neuronmap.models.registry import EMBEDDED, _require_package, is_prepared, model_cache_dir

    spec = str((manifest.get("model") or {}).get("spec") or "")
    if spec in EMBEDDED:
        entry = EMBEDDED[spec]
        try:
            if not is_prepared(spec):
                return None
            return _require_package(entry) / entry.folder if entry.folder else model_cache_dir(spec)
        except Exception:  # noqa: BLE001 - a carrier package gone since the trace: no embeddings, not an error
            return None
    path = Path(spec).expanduser()
    return path if spec and path.is_dir() else None


def _recorded_hash(folder: Path) -> str | None:
    """The weights hash neuronmap recorded beside a model folder (the embedded marker or the memo), if any."""
    for name, key in (("neuronmap.json", "weights_sha256"), (".neuronmap-hash.json", "sha256")):
        marker = folder / name
        if marker.is_file():
            try:
                return json.loads(marker.read_text()).get(key)
            except (OSError, ValueError):
                return None
    return None


def load_embeddings(
    manifest: dict[str, Any], token_ids: np.ndarray, token_field: str, path: str | None = None
) -> tuple[np.ndarray | None, str]:
    """The embedding rows of ``token_ids`` (float64, one row per id) and where they came from, or (None,
    why not). ``path``: a ``.npy`` (vocabulary x dim) or ``.safetensors`` file chosen by the user; otherwise
    the traced model's own weights (see the module docstring)."""
    from safetensors import safe_open

    token_ids = np.asarray(token_ids, np.int64)
    if path is not None:
        file = Path(path).expanduser()
        if file.suffix == ".npy":
            table = np.load(file, mmap_mode="r")
            if token_ids.max(initial=-1) >= table.shape[0]:
                return None, f"{file}: has {table.shape[0]} rows, fewer than the run's token ids need"
            return np.asarray(table[token_ids], np.float64), f"{file}"
        files = [file]
    else:
        folder = _weights_folder(manifest)
        if folder is None:
            return None, "the traced model's safetensors weights were not found (pass --embeddings FILE)"
        recorded = _recorded_hash(folder)
        expected = (manifest.get("model") or {}).get("weights_hash")
        if recorded and expected and recorded != expected:
            return None, f"{folder}: its weights are not those the run was traced with"
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            return None, f"{folder}: has no safetensors weights"
    keys = (UNEMBEDDING_KEYS + EMBEDDING_KEYS) if token_field == "target" else EMBEDDING_KEYS
    for wanted in keys:
        for file in files:
            with safe_open(str(file), framework="np") as handle:
                names = handle.keys()  # a safetensors handle is not iterable
                name = next((k for k in names if k == wanted or k.endswith("." + wanted)), None)
                if name is None:
                    continue
                sliced = handle.get_slice(name)
                rows = sliced.get_shape()[0]
                if token_ids.max(initial=-1) >= rows:
                    return None, f"{file}: {name} has {rows} rows, fewer than the run's token ids need"
                if len(token_ids) * 8 > rows:  # many tokens: the whole table costs less than slices
                    table = np.asarray(handle.get_tensor(name))[token_ids]
                else:  # a few rows of a vocabulary-sized table
                    table = np.stack([np.asarray(sliced[int(t) : int(t) + 1])[0] for t in token_ids])
                return table.astype(np.float64), f"{file.name}:{name}"
    return None, "no embedding tensor found in the weights (pass --embeddings FILE)"


def mean_pairwise_cosine(vectors: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine similarity of the rows of ``vectors`` (..., m, d), over the m(m-1)/2 pairs."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    summed = unit.sum(axis=-2)
    m = vectors.shape[-2]
    # |sum u|^2 = sum_i |u_i|^2 + 2 sum_{i<j} u_i.u_j
    self_terms = (unit * unit).sum(axis=(-1, -2))
    return ((summed * summed).sum(axis=-1) - self_terms) / (m * (m - 1))


def token_frequency(contexts: pd.DataFrame, token_ids: np.ndarray, token_field: str) -> np.ndarray:
    """How many contexts carry each of ``token_ids`` (sorted) as their graph token: the first target token, or
    with ``token_field`` input the token at the scored position."""
    if token_field == "input":
        carried = [int(ids[p]) for ids, p in zip(contexts["input_ids"], contexts["position"], strict=True)]
    else:
        carried = [int(t[0]) for t in contexts["target_ids"] if len(t)]
    counts = pd.Series(carried, dtype=np.int64).value_counts()
    return counts.reindex(token_ids, fill_value=0).to_numpy(np.int64)


def n_frequency_bins(pool_size: int) -> int:
    return max(1, min(FREQUENCY_BINS, pool_size // MIN_BIN_TOKENS))


def frequency_bins(frequency: np.ndarray, pool: np.ndarray, n_bins: int | None = None) -> np.ndarray:
    """Each token's frequency bin (-1 outside ``pool``): ``n_bins`` (default :func:`n_frequency_bins`)
    equal-count bins of the pool ranked by frequency, most frequent first, ties by index."""
    n_bins = n_frequency_bins(len(pool)) if n_bins is None else n_bins
    bins = np.full(len(frequency), -1, dtype=np.int64)
    ranked = pool[np.lexsort((pool, -frequency[pool]))]
    bins[ranked] = np.arange(len(ranked)) * n_bins // max(len(ranked), 1)
    return bins


def matched_draws(cols: np.ndarray, bins: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """(n_draws, len(cols)) random token sets: each of ``cols`` replaced by a token of its bin, the tokens of a
    set distinct (a row that repeats one is drawn again)."""
    out = np.empty((n_draws, len(cols)), dtype=np.int64)
    for b in np.unique(bins[cols]):
        slots = np.flatnonzero(bins[cols] == b)
        candidates = np.flatnonzero(bins == b)
        picks = rng.integers(0, len(candidates), size=(n_draws, len(slots)))
        while len(slots) > 1:
            repeats = (np.diff(np.sort(picks, axis=1), axis=1) == 0).any(axis=1)
            if not repeats.any():
                break
            picks[repeats] = rng.integers(0, len(candidates), size=(int(repeats.sum()), len(slots)))
        out[:, slots] = candidates[picks]
    return out


def cluster_coherence(
    top_tokens: list[np.ndarray],
    embeddings: np.ndarray,
    n_draws: int,
    seed: int,
    frequency: np.ndarray | None = None,
) -> pd.DataFrame:
    """Coherence of each cluster's top tokens (column indices into ``embeddings``, the rows of the run's
    tokens), its permutation p against random token sets, the Benjamini-Hochberg adjusted p and whether it
    passes. With ``frequency`` (contexts per token) and tokens enough for two bins, each cluster has its own null
    of frequency-matched sets (:func:`matched_draws`, seeded by the cluster's index); otherwise sets drawn
    uniformly from the run's tokens, one null per set size (seeded by it), shared by the clusters of that size."""
    from scipy.stats import false_discovery_control

    n = len(top_tokens)
    coherence = np.full(n, np.nan)
    p_raw = np.full(n, np.nan)
    usable = np.isfinite(embeddings).all(axis=1) & (np.linalg.norm(embeddings, axis=1) > 0)
    nulls: dict[int, np.ndarray] = {}
    pool = np.flatnonzero(usable)
    # one bin is no matching: the uniform null (the same draws as without ``frequency``)
    bins = None if frequency is None or n_frequency_bins(len(pool)) == 1 else frequency_bins(frequency, pool)
    for c, cols in enumerate(top_tokens):
        cols = np.asarray(cols, np.int64)
        cols = cols[usable[cols]]
        m = len(cols)
        if m < COHERENCE_MIN_TOKENS or m > len(pool):
            continue
        coherence[c] = float(mean_pairwise_cosine(embeddings[cols]))
        if not n_draws:
            continue
        if bins is not None:
            draws = matched_draws(
                cols, bins, n_draws, np.random.default_rng(np.random.SeedSequence([seed, 4, c]))
            )
            null = mean_pairwise_cosine(embeddings[draws])
            p_raw[c] = (int((null >= coherence[c]).sum()) + 1) / (n_draws + 1)
            continue
        if m not in nulls:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 3, m]))
            draws = np.stack([rng.choice(len(pool), m, replace=False) for _ in range(n_draws)])
            nulls[m] = mean_pairwise_cosine(embeddings[pool[draws]])
        p_raw[c] = (int((nulls[m] >= coherence[c]).sum()) + 1) / (n_draws + 1)
    tested = np.isfinite(p_raw)
    adjusted = np.full(n, np.nan)
    if tested.any():
        adjusted[tested] = false_discovery_control(p_raw[tested], method="bh")
    return pd.DataFrame(
        {
            "coherence": coherence,
            "coherence_p_raw": p_raw,
            "coherence_p": adjusted,
            "coherent": tested & (np.nan_to_num(adjusted, nan=1.0) <= COHERENCE_ALPHA),
        }
    )
