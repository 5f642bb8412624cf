"""Padding token id lists into a batch: the one place every stage turns ragged id lists into tensors (model
inputs, and the target ids a metric reads).

Not ``tokenizer.pad``: it gives the same tensors for model inputs, but pads with the tokenizer's own pad token
only, where target ids are padded with 0 and the each-token traces and checks pad with 0 when a tokenizer has no
pad token (padded positions are masked, so any id serves); and the edit algorithms' prompts hold a pad id, not a
tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch


def pad(
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device | str = "cpu",
    side: Literal["right", "left"] = "right",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token id sequences padded with ``pad_id`` to the longest, both ``long``.

    Right padding keeps every position where it was (what scoring reads); left padding ends every row at the
    same position (what generation continues from)."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        cols = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        ids[row, cols] = torch.tensor(seq)
        mask[row, cols] = 1
    return ids.to(device), mask.to(device)
