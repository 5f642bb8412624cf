"""The neurons stage's tables in ``RUN/graph/`` (torch-free, so the page can name them without the model)."""

from __future__ import annotations

STAGE = "neurons"
LOGITS = "neuron_logits.parquet"  # layer, neuron, token_id, token, weight, rank, sign
EXAMPLES = (
    "neuron_examples.parquet"  # layer, neuron, rank, context_id, doc_id, position, activation, tokens, ...
)
HISTOGRAMS = "neuron_hist.parquet"  # layer, neuron, lo, hi, counts, total, max
OUTPUTS = (LOGITS, EXAMPLES, HISTOGRAMS)
