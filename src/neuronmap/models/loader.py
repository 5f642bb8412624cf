"""``load_model``: one call from a name to a model, its tokenizer and its neuron adapter."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from neuronmap.errors import NeuronmapError
from neuronmap.models.adapters import Adapter
from neuronmap.models.memory import Footprint
from neuronmap.models.registry import EMBEDDED, MARKER, prepare, sha256_file
from neuronmap.models.spec import hub_error, hub_reachable, looks_like_hub_id
from neuronmap.models.tiny import TINY, build_tiny

if TYPE_CHECKING:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass
class LoadedModel:
    """A model ready for neuron work: eval mode, frozen weights, with its tokenizer and adapter."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: Adapter
    spec: str
    weights_hash: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    @property
    def d_mlp(self) -> int:
        return self.adapter.d_mlp

    @property
    def footprint(self) -> Footprint:
        """The sizes memory estimates need (``models.memory``)."""
        return Footprint.of(self.model, self.n_layers, self.d_mlp)

    @property
    def window(self) -> int | None:
        """The most positions the model was built for (its position table or trained length), None if unstated."""
        return context_window(self.model.config)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """The text of one sequence of token ids."""
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        assert isinstance(text, str)  # typed str | list[str]: the tokenizer also decodes batches, into lists
        return text

    def describe(self) -> dict[str, object]:
        """The model's identity as recorded in a run manifest."""
        return {
            "spec": self.spec,
            "arch": self.adapter.family.name,
            "model_type": self.adapter.model_type,
            "n_layers": self.n_layers,
            "d_mlp": self.d_mlp,
            "weights_hash": self.weights_hash,
            "dtype": str(self.dtype).removeprefix("torch."),
        }


# Config fields that name a model's window: Llama/Gemma/NeoX/BERT, GPT-2, older GPT-style configs.
_WINDOW_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


def context_window(config: object) -> int | None:
    """The window a model config states, reading the text config of multi-part models (Gemma 3)."""
    text_config = getattr(config, "get_text_config", None)
    config = text_config() if callable(text_config) else config
    for name in _WINDOW_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise NeuronmapError(f"unknown device '{device}' (use cpu, cuda, cuda:N or auto)") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise NeuronmapError(f"device '{device}' asked for, but no CUDA GPU is available")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise NeuronmapError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _state_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _folder_hash(folder: Path) -> str:
    """Hash of a model folder's weight files, memoised beside them by (name, size, mtime) where writable."""
    marker = folder / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text()).get("weights_sha256")
        if recorded:
            return recorded
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    stamp = [(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]
    memo = folder / ".neuronmap-hash.json"
    if memo.is_file():
        data = json.loads(memo.read_text())
        if data.get("stamp") == [list(s) for s in stamp]:
            return data["sha256"]
    value = hashlib.sha256("".join(sha256_file(w) for w in weights).encode()).hexdigest()
    if os.access(folder, os.W_OK):
        memo.write_text(json.dumps({"stamp": stamp, "sha256": value}))
    return value


def _model_class(
    folder_or_id: str, local_files_only: bool
) -> type[AutoModelForCausalLM | AutoModelForMaskedLM | AutoModel]:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    config = AutoConfig.from_pretrained(folder_or_id, local_files_only=local_files_only)
    archs = config.architectures or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return AutoModelForCausalLM
    if any(a.endswith("ForMaskedLM") for a in archs):
        return AutoModelForMaskedLM
    if archs:
        return AutoModel
    return AutoModelForCausalLM


def _from_pretrained(
    source: str, dtype: torch.dtype, local_files_only: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # Loading takes about a second from a local folder; transformers' per-tensor bar is noise in our output.
    hf_logging.disable_progress_bar()
    cls = _model_class(source, local_files_only)
    model = cls.from_pretrained(source, dtype=dtype, local_files_only=local_files_only)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    return model, tokenizer


def _load_hub(spec: str, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        return _from_pretrained(spec, dtype, local_files_only=True)
    except (OSError, ValueError):
        pass  # not in the local hub cache: fetch it
    if not hub_reachable():
        raise hub_error(spec, "the Hugging Face hub is not reachable")
    try:
        return _from_pretrained(spec, dtype)
    except (OSError, ValueError) as exc:
        raise hub_error(spec, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


def load_model(
    spec: str | os.PathLike[str] = "smollm2-135m",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load an embedded model (``smollm2-135m``...), a tiny test model, a local folder, or a hub id.

    The model is put in eval mode with frozen weights: neuron work needs gradients with respect to activations,
    never weights, and freezing saves the memory autograd would keep for weight gradients.
    """
    spec = str(spec)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if spec in TINY:
        model, tokenizer = build_tiny(spec)
        # transformers wraps PreTrainedModel.to with functools.wraps, which mypy reads as an unbound function
        model = model.to(torch_dtype)  # type: ignore[arg-type]
        weights_hash = _state_hash(model)
    elif spec in EMBEDDED:
        folder = prepare(spec)
        model, tokenizer = _from_pretrained(str(folder), torch_dtype)
        weights_hash = _folder_hash(folder)
    elif Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise NeuronmapError(f"{folder}: not a Hugging Face model folder (no config.json)")
        try:
            model, tokenizer = _from_pretrained(str(folder), torch_dtype)
        except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused a pickled checkpoint
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NeuronmapError(
                f"{folder}: refused to load pickled weights that hold more than tensors ({first}); "
                "use safetensors weights"
            ) from None
        except (OSError, ValueError) as exc:
            raise NeuronmapError(f"{folder}: could not load the model ({exc})") from exc
        weights_hash = _folder_hash(folder)
    else:
        if Path(spec).suffix or os.sep in spec.rstrip("/") and not looks_like_hub_id(spec):
            raise NeuronmapError(f"'{spec}': no such model folder")
        model, tokenizer = _load_hub(spec, torch_dtype)
        weights_hash = _state_hash(model)
    model = model.to(torch_device).eval()  # type: ignore[arg-type]  # as above: the wrapped .to
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return LoadedModel(model, tokenizer, Adapter(model), spec, weights_hash)
