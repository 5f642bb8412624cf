"""Edit hyper-parameters: small frozen dataclasses, one JSON file per model family and algorithm.

Per-architecture defaults are data, not code: ``load_hparams`` picks ROME's ``hparams/<model>.json`` from the
model's name (``gpt2-xl``, ``smollm2-135m``...) and falls back to ``default.json``; ``load_memit_hparams`` does the
same in ``hparams/memit/`` (MEMIT's fields differ: a range of layers, the covariance weight). Keys starting with
``_`` are comments; any other unknown key is an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from neuronmap.errors import NeuronmapError

KL_DIRECTIONS = ("edited-clean", "clean-edited")  # KL(p_edited || p_clean), ROME's; or the reverse
ALGORITHMS = ("rome", "memit")

_H = TypeVar("_H", bound="_HparamsFile")


def check_algorithm(name: str) -> str:
    """The algorithm's name, or a one-line error (checked before any model loads)."""
    if name not in ALGORITHMS:
        raise NeuronmapError(f"unknown edit algorithm {name!r} (choose {' or '.join(ALGORITHMS)})")
    return name


def check_batch(batch: int) -> int:
    """``--batch``, the records edited together, or a one-line error."""
    if batch < 1:
        raise NeuronmapError(f"--batch must be at least 1 (got {batch})")
    return batch


def edit_layers(algorithm: str, layers: list[int] | None) -> list[int] | None:
    """The layers one edit is given (None: the hparams'); ROME edits one layer, MEMIT a range."""
    if check_algorithm(algorithm) == "rome" and layers is not None and len(layers) > 1:
        raise NeuronmapError(f"ROME edits one layer, got {layers} (several layers are for --algorithm memit)")
    return layers or None


class _HparamsFile:
    """What the hparams dataclasses share: JSON in and out, ``replace``, and the checks of the value search,
    the context prefixes and the statistics, which ROME and MEMIT run alike. No fields, so each dataclass keeps
    its own field order (and its files their key order)."""

    ALGORITHM: ClassVar[str]
    _TUPLES: ClassVar[tuple[str, ...]] = ("kl_prompts",)

    def replace(self: _H, **changes: Any) -> _H:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        source = data.pop("source")
        if source:
            data = {"_source": source, **data}
        return {k: _listed(v) for k, v in data.items()}

    @classmethod
    def from_dict(cls: type[_H], data: dict[str, Any], origin: str = "hparams") -> _H:
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}  # type: ignore[arg-type]
        unknown = sorted(k for k in data if k not in known and not k.startswith("_"))
        if unknown:
            raise NeuronmapError(
                f"{origin}: unknown {cls.ALGORITHM} hparams {unknown} (known: {sorted(known)})"
            )
        values = {k: v for k, v in data.items() if k in known}
        if "context_template_length_params" in values:
            values["context_template_length_params"] = tuple(
                tuple(int(x) for x in pair) for pair in values["context_template_length_params"]
            )
        for name in cls._TUPLES:
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        try:
            return cls(**values, source=str(data.get("_source", origin)))  # type: ignore[call-arg]
        except TypeError as exc:
            raise NeuronmapError(f"{origin}: {exc}") from None

    def _check_shared(self, not_negative: tuple[str, ...]) -> None:
        hp: Any = self
        if hp.v_num_grad_steps < 1:
            raise NeuronmapError("v_num_grad_steps must be at least 1")
        if hp.v_lr <= 0 or hp.clamp_norm_factor <= 0:
            raise NeuronmapError("v_lr and clamp_norm_factor must be positive")
        if any(getattr(hp, name) < 0 for name in not_negative):
            names = ", ".join(not_negative[:-1]) + f" and {not_negative[-1]}"
            raise NeuronmapError(f"{names} must not be negative")
        if hp.mom2_n_tokens < 1 or hp.mom2_max_length < 2:
            raise NeuronmapError("mom2_n_tokens must be positive and mom2_max_length at least 2")
        if hp.kl_direction not in KL_DIRECTIONS:
            raise NeuronmapError(
                f"kl_direction must be one of {', '.join(KL_DIRECTIONS)}, got {hp.kl_direction!r}"
            )
        if hp.context_templates not in ("rome", "memit"):
            raise NeuronmapError(f"context_templates must be 'rome' or 'memit', got {hp.context_templates!r}")
        for prompt in hp.kl_prompts:
            if prompt.count("{}") != 1:
                raise NeuronmapError(f"KL prompt {prompt!r} needs exactly one '{{}}' for the subject")
        for pair in hp.context_template_length_params:
            if len(pair) != 2 or min(pair) < 1:
                raise NeuronmapError(
                    f"context_template_length_params entries are [tokens, count], got {pair}"
                )


def _listed(value: Any) -> Any:
    """Tuples (of tuples) as JSON writes them: lists."""
    return [_listed(v) for v in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class RomeHparams(_HparamsFile):
    """What ROME needs beyond the request. Field names follow the ROME paper's code where one exists."""

    ALGORITHM: ClassVar[str] = "ROME"

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
        self._check_shared(("kl_factor", "v_weight_decay", "mom2_ridge"))
        if self.key_constraint not in ("prompt", "mean"):
            raise NeuronmapError(f"key_constraint must be 'prompt' or 'mean', got {self.key_constraint!r}")

    def resolve_layer(self, n_layers: int) -> int:
        """The edited layer for a model with ``n_layers`` layers (checked by the caller's adapter). A relative
        layer is never the last one when there are two or more: the last layer's output at the subject reaches
        no later position, so an edit there cannot change the prediction at the prompt's end."""
        if self.layer is not None:
            return self.layer + n_layers if self.layer < 0 else self.layer
        assert self.relative_layer is not None
        return _relative(self.relative_layer, n_layers)

    def resolve_layers(self, n_layers: int) -> list[int]:
        """The edited layer as a list, as MEMIT's hparams give theirs."""
        return [self.resolve_layer(n_layers)]


def _relative(depth: float, n_layers: int) -> int:
    """The layer at ``depth`` (a fraction) of the model, never the last one (see ``resolve_layer``)."""
    return max(0, min(n_layers - 2, round(depth * n_layers)))


@dataclass(frozen=True)
class MemitHparams(_HparamsFile):
    """What MEMIT (Meng et al. 2023) needs beyond the requests. The value search, prefixes and statistics fields
    mean what they mean for ROME, with two differences from the paper's code: ``clamp_norm_factor`` and the
    weight decay are relative to the residual stream at the subject (MEMIT's z), not the MLP output; and
    ``mom2_update_weight`` is the paper's lambda, weighing C = E[k k^T] against the new keys."""

    ALGORITHM: ClassVar[str] = "MEMIT"
    _TUPLES: ClassVar[tuple[str, ...]] = ("kl_prompts", "layers", "relative_layers")

    layers: tuple[int, ...] | None = None  # the edited layers, increasing; z is set at the last one
    relative_layers: tuple[float, float] | None = None  # [first, last] by depth, when ``layers`` is None
    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_weight_decay: float = 0.5  # times |delta| / |h|^2, h the residual stream at the subject
    clamp_norm_factor: float = 0.75  # |delta| <= factor * |h| (MEMIT's 0.75)
    kl_factor: float = 0.0625
    kl_direction: str = "edited-clean"
    early_stop_loss: float = 0.05
    context_template_length_params: tuple[tuple[int, int], ...] = ((10, 5),)  # MEMIT's: 5 texts of 10 tokens
    kl_prompts: tuple[str, ...] = ("{} is a",)
    context_seed: int = 0
    context_templates: str = "memit"
    document_start: bool = False
    mom2_adjustment: bool = True  # False: C = identity
    mom2_corpus: str = "builtin:wiki"
    mom2_n_tokens: int = 100_000
    mom2_max_length: int = 256
    mom2_update_weight: float = 15_000.0  # lambda in (lambda C + K K^T)^-1
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.layers is None and self.relative_layers is None:
            raise NeuronmapError("MEMIT hparams need 'layers' or 'relative_layers'")
        if self.layers is not None and (not self.layers or any(not isinstance(x, int) for x in self.layers)):
            raise NeuronmapError(f"MEMIT's layers are a non-empty list of integers, got {list(self.layers)}")
        if self.relative_layers is not None:
            pair = self.relative_layers
            if len(pair) != 2 or not 0.0 <= pair[0] <= pair[1] < 1.0:
                raise NeuronmapError(
                    f"relative_layers is [first, last] with 0 <= first <= last < 1, got {list(pair)}"
                )
        self._check_shared(("kl_factor", "v_weight_decay"))
        if not self.mom2_update_weight > 0:
            raise NeuronmapError(f"mom2_update_weight must be positive, got {self.mom2_update_weight}")

    def resolve_layers(self, n_layers: int) -> list[int]:
        """The edited layers, increasing (negative ones count from the end; the caller's adapter checks the
        range). A relative range never reaches the last layer (see ``RomeHparams.resolve_layer``)."""
        if self.layers is not None:
            chosen = [x + n_layers if x < 0 else x for x in self.layers]
            if any(b <= a for a, b in zip(chosen, chosen[1:], strict=False)):
                raise NeuronmapError(f"MEMIT's layers must increase, got {list(self.layers)}")
            return chosen
        assert self.relative_layers is not None
        first, last = (_relative(x, n_layers) for x in self.relative_layers)
        return list(range(first, last + 1))


EditHparams = RomeHparams | MemitHparams


def hparams_names(algorithm: str = "rome") -> list[str]:
    """The model families with their own file."""
    folder = _folder(algorithm)
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def _folder(algorithm: str) -> Any:
    root = files("neuronmap.edit").joinpath("hparams")
    return root if check_algorithm(algorithm) == "rome" else root.joinpath(algorithm)


def _family_name(spec: str) -> str:
    """``openai-community/gpt2-xl`` -> ``gpt2-xl``; a local folder -> its last component."""
    return spec.rstrip("/").split("/")[-1].lower()


def load_hparams(spec: str | Path | None = None, *, model: str | None = None) -> RomeHparams:
    """ROME's hyper-parameters from a JSON file path, a family name (``gpt2-xl``), or, with ``spec`` None, the
    file of ``model`` (a model spec such as ``smollm2-135m`` or ``openai-community/gpt2-xl``), else ``default``."""
    return _load(RomeHparams, "rome", spec, model)


def load_memit_hparams(spec: str | Path | None = None, *, model: str | None = None) -> MemitHparams:
    """MEMIT's, as ``load_hparams`` does ROME's, from ``hparams/memit/``."""
    return _load(MemitHparams, "memit", spec, model)


def load_edit_hparams(
    algorithm: str, spec: str | Path | None = None, *, model: str | None = None
) -> EditHparams:
    """The hyper-parameters of ``algorithm`` (``rome`` or ``memit``)."""
    if check_algorithm(algorithm) == "memit":
        return load_memit_hparams(spec, model=model)
    return load_hparams(spec, model=model)


def _load(cls: type[_H], algorithm: str, spec: str | Path | None, model: str | None) -> _H:
    what = cls.ALGORITHM
    if spec is not None and (str(spec).endswith(".json") or Path(spec).is_file()):
        path = Path(spec).expanduser()
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise NeuronmapError(f"{path}: cannot read {what} hparams ({exc})") from None
        return cls.from_dict(data, origin=str(path))
    names = hparams_names(algorithm)
    if spec is not None:
        name = str(spec)
        if name not in names:
            raise NeuronmapError(
                f"no {what} hparams named '{name}' (available: {', '.join(names)}, or a .json path)"
            )
    else:
        family = _family_name(model) if model else ""
        name = family if family in names else "default"
    text = _folder(algorithm).joinpath(f"{name}.json").read_text("utf-8")
    where = "hparams/" if algorithm == "rome" else f"hparams/{algorithm}/"
    return cls.from_dict(json.loads(text), origin=f"{where}{name}.json")
