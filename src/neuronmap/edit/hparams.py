"""ROME hyper-parameters: a small frozen dataclass, one JSON file per model family under ``hparams/``.

Per-architecture defaults are data, not code: ``load_hparams`` picks ``hparams/<model>.json`` from
the model's name (``gpt2-xl``, ``smollm2-135m``...) and falls back to ``default.json``. Keys starting with ``_``
are comments; any other unknown key is an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from neuronmap.errors import NeuronmapError

KL_DIRECTIONS = ("edited-clean", "clean-edited")  # KL(p_edited || p_clean), ROME's; or the reverse


@dataclass(frozen=True)
class RomeHparams:
    """What ROME needs beyond the request. Field names follow the ROME paper's code where one exists."""

    layer: int | None = None  # the edited layer; None: round(relative_layer * n_layers)
    relative_layer: float | None = None
    v_num_grad_steps: int = 20  # Adam steps on the added vector delta
    v_lr: float = 0.5
    v_weight_decay: float = 0.5  # times |delta| / |v_init|^2, as ROME's code
    clamp_norm_factor: float = 4.0  # |delta| <= factor * |v_init|
    kl_factor: float = 0.0625  # weight of the KL term on the KL prompts
    kl_direction: str = "edited-clean"  # KL(p_edited || p_clean) as ROME's compute_v; or "clean-edited"
    early_stop_loss: float = 0.05  # stop once the total loss falls below this
    context_template_length_params: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))  # (tokens, count)
    kl_prompts: tuple[str, ...] = ("{} is a",)
    context_seed: int = 0  # seeds the generated prefixes
    context_templates: str = "rome"  # "rome": sampled from the document start; "memit": from start words
    document_start: bool = (
        False  # prompts open a document (SmolLM2: <|endoftext|> first); False: ROME's GPT-2
    )
    key_constraint: str = "prompt"  # which key maps exactly to its output + delta: "prompt" or "mean"
    mom2_adjustment: bool = True  # False: C = identity (no statistics needed)
    mom2_corpus: str = "builtin:wiki"
    mom2_n_tokens: int = 100_000
    mom2_max_length: int = 256  # tokens per text when collecting statistics
    mom2_ridge: float = 0.0  # C + ridge * mean(diag C) * I, for ill-conditioned estimates
    source: str = field(default="", compare=False)  # where the values come from (the file's "_source")

    def __post_init__(self) -> None:
        if self.layer is None and self.relative_layer is None:
            raise NeuronmapError("ROME hparams need 'layer' or 'relative_layer'")
        if self.relative_layer is not None and not 0.0 <= self.relative_layer < 1.0:
            raise NeuronmapError(f"relative_layer must be in [0, 1), got {self.relative_layer}")
        if self.v_num_grad_steps < 1:
            raise NeuronmapError("v_num_grad_steps must be at least 1")
        if self.v_lr <= 0 or self.clamp_norm_factor <= 0:
            raise NeuronmapError("v_lr and clamp_norm_factor must be positive")
        if self.kl_factor < 0 or self.v_weight_decay < 0 or self.mom2_ridge < 0:
            raise NeuronmapError("kl_factor, v_weight_decay and mom2_ridge must not be negative")
        if self.mom2_n_tokens < 1 or self.mom2_max_length < 2:
            raise NeuronmapError("mom2_n_tokens must be positive and mom2_max_length at least 2")
        if self.kl_direction not in KL_DIRECTIONS:
            raise NeuronmapError(
                f"kl_direction must be one of {', '.join(KL_DIRECTIONS)}, got {self.kl_direction!r}"
            )
        if self.context_templates not in ("rome", "memit"):
            raise NeuronmapError(
                f"context_templates must be 'rome' or 'memit', got {self.context_templates!r}"
            )
        if self.key_constraint not in ("prompt", "mean"):
            raise NeuronmapError(f"key_constraint must be 'prompt' or 'mean', got {self.key_constraint!r}")
        for prompt in self.kl_prompts:
            if prompt.count("{}") != 1:
                raise NeuronmapError(f"KL prompt {prompt!r} needs exactly one '{{}}' for the subject")
        for pair in self.context_template_length_params:
            if len(pair) != 2 or min(pair) < 1:
                raise NeuronmapError(
                    f"context_template_length_params entries are [tokens, count], got {pair}"
                )

    def resolve_layer(self, n_layers: int) -> int:
        """The edited layer for a model with ``n_layers`` layers (checked by the caller's adapter). A relative
        layer is never the last one when there are two or more: the last layer's output at the subject reaches
        no later position, so an edit there cannot change the prediction at the prompt's end."""
        if self.layer is not None:
            return self.layer + n_layers if self.layer < 0 else self.layer
        assert self.relative_layer is not None
        return max(0, min(n_layers - 2, round(self.relative_layer * n_layers)))

    def replace(self, **changes: Any) -> RomeHparams:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        source = data.pop("source")
        if source:
            data = {"_source": source, **data}
        data["context_template_length_params"] = [list(p) for p in self.context_template_length_params]
        data["kl_prompts"] = list(self.kl_prompts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "hparams") -> RomeHparams:
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = sorted(k for k in data if k not in known and not k.startswith("_"))
        if unknown:
            raise NeuronmapError(f"{origin}: unknown ROME hparams {unknown} (known: {sorted(known)})")
        values = {k: v for k, v in data.items() if k in known}
        if "context_template_length_params" in values:
            values["context_template_length_params"] = tuple(
                tuple(int(x) for x in pair) for pair in values["context_template_length_params"]
            )
        if "kl_prompts" in values:
            values["kl_prompts"] = tuple(values["kl_prompts"])
        try:
            return cls(**values, source=str(data.get("_source", origin)))
        except TypeError as exc:
            raise NeuronmapError(f"{origin}: {exc}") from None


def hparams_names() -> list[str]:
    """The model families with their own file."""
    folder = files("neuronmap.edit").joinpath("hparams")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def _family_name(spec: str) -> str:
    """``openai-community/gpt2-xl`` -> ``gpt2-xl``; a local folder -> its last component."""
    return spec.rstrip("/").split("/")[-1].lower()


def load_hparams(spec: str | Path | None = None, *, model: str | None = None) -> RomeHparams:
    """Hyper-parameters from a JSON file path, a family name (``gpt2-xl``), or, with ``spec`` None, the file of
    ``model`` (a model spec such as ``smollm2-135m`` or ``openai-community/gpt2-xl``), else ``default``."""
    if spec is not None and (str(spec).endswith(".json") or Path(spec).is_file()):
        path = Path(spec).expanduser()
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise NeuronmapError(f"{path}: cannot read ROME hparams ({exc})") from None
        return RomeHparams.from_dict(data, origin=str(path))
    names = hparams_names()
    if spec is not None:
        name = str(spec)
        if name not in names:
            raise NeuronmapError(
                f"no ROME hparams named '{name}' (available: {', '.join(names)}, or a .json path)"
            )
    else:
        family = _family_name(model) if model else ""
        name = family if family in names else "default"
    text = files("neuronmap.edit").joinpath(f"hparams/{name}.json").read_text("utf-8")
    return RomeHparams.from_dict(json.loads(text), origin=f"hparams/{name}.json")
