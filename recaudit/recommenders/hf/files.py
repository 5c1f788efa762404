"""Checkpoint files: find, check and load a model's weights safely, and PEFT adapters.

A checkpoint is a local directory or a hub id already in the offline cache (never a download).
Weights are loaded from ``.safetensors`` (their headers checked first); pickle weights only with
``allow_pickle``; custom modelling code only with ``trust_remote_code``. Every failure is a
one-line error (:class:`~recaudit.errors.ModelSpecError` for what the user can fix,
:class:`~recaudit.errors.ModelRuntimeError` for a model that exists but does not load).

PEFT / LoRA adapters
--------------------
A directory with ``adapter_config.json`` (``save_pretrained`` of a ``peft`` model, as TALLRec-style
fine-tunes ship) is an adapter: its base model is loaded from the local directory named by
``model_options: {base: PATH}`` or else by the config's ``base_model_name_or_path`` (never from a
hub), the adapter is applied with ``peft.PeftModel.from_pretrained`` and then merged into the base
weights with ``merge_and_unload()``. Merging leaves plain ``nn.Linear`` layers, so the fixed-shape
tiles above (and their load-time self-check) cover the adapted model exactly as they cover any
checkpoint; an unmerged ``lora.Linear`` would add extra matmuls (``lora_A``, ``lora_B``) beside
its base layer. Adapter weights follow the same policy as model weights: safetensors, pickle
(``adapter_model.bin``) only with ``allow_pickle``. The fingerprint and ``weights_sha256`` cover
both the base and the adapter weights (and the adapter config, whose ``lora_alpha`` scales them).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from recaudit.errors import ModelRuntimeError, ModelSpecError, first_line
from recaudit.paths import cached_sha256

__all__ = ["ADAPTER_CONFIG", "PeftFiles", "load_checkpoint", "load_peft", "resolve_model_dir",
           "select_weight_files"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pkl", ".pth")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "spiece.model")
# adapter_config.json keys that name or describe the files rather than change the numerics
_ADAPTER_CONFIG_INERT = ("base_model_name_or_path", "revision", "inference_mode", "peft_version",
                         "auto_mapping")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class PeftFiles:
    """Where a PEFT adapter's model came from.

    The base model's directory and weight files, the adapter's weight files and its config
    (``adapter_config.json``).
    """

    base_dir: Path
    adapter_files: list[Path]
    weight_files: list[Path]
    config: dict[str, Any]


def resolve_model_dir(path: str) -> Path:
    """Return the local directory of a model path or hub id (offline cache only)."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelSpecError(
                f"model path is not a directory: {path} (for a .gguf file use gguf:{path})")
        return p
    if _HUB_ID.match(path) and not path.startswith((".", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(path, local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure means "not available offline"
            raise ModelSpecError(
                f"model not found: {path} is neither a local directory nor in the offline "
                "Hugging Face cache") from None
    raise ModelSpecError(f"model path not found: {path}")


def files_sha256(files: Sequence[Path]) -> str | None:
    """sha256 of one weights file, or of the ``"name  sha"`` lines of several; None if none."""
    shas = [(f.name, cached_sha256(f)) for f in files]
    if not shas:
        return None
    if len(shas) == 1:
        return shas[0][1]
    blob = "".join(f"{name}  {sha}\n" for name, sha in shas)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelRuntimeError(f"could not read {adapter_dir / ADAPTER_CONFIG}: "
                                f"{first_line(exc)}") from None
    if not isinstance(cfg, dict):
        raise ModelRuntimeError(f"{adapter_dir / ADAPTER_CONFIG} is not a JSON object")
    return cfg


def _resolve_base_dir(adapter_dir: Path, named: str | None, from_options: bool) -> Path:
    """Return the base model directory of a PEFT adapter: local, never a hub download.

    ``named`` is ``model_options.base`` (``from_options``) or the adapter config's
    ``base_model_name_or_path``. A relative path is tried from the working directory, then (for
    the config's value) from the adapter directory. A hub id is accepted only when it is already
    in the offline Hugging Face cache (a local snapshot).
    """
    where = "model_options.base" if from_options else \
        f"base_model_name_or_path in {adapter_dir / ADAPTER_CONFIG}"
    hint = "set model_options: {base: PATH} to the base model's local directory"
    if not named or not isinstance(named, str):
        raise ModelSpecError(f"PEFT adapter {adapter_dir} names no base model ({where} is "
                             f"empty); {hint}")
    p = Path(named).expanduser()
    candidates = [p] if p.is_absolute() or from_options else [p, adapter_dir / p]
    for c in candidates:
        if c.is_dir():
            if (c / ADAPTER_CONFIG).is_file():
                raise ModelSpecError(f"base model {c} of PEFT adapter {adapter_dir} is itself an "
                                     f"adapter; {hint}")
            return c
    if _HUB_ID.match(named) and not named.startswith((".", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(named, local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure means "not available offline"
            pass
    raise ModelSpecError(f"base model not found for PEFT adapter {adapter_dir}: {named} ({where}) "
                         f"is not a local directory; {hint}")


def select_weight_files(d: Path, allow_pickle: bool = False) -> list[Path]:
    """Return the checkpoint's weight files: its safetensors, or with consent its pickle files.

    ``.safetensors`` files are checked first (:func:`~recaudit.recommenders.weights.
    check_safetensors`); pickle files (``.bin``, ``.pt``...) only with ``allow_pickle``; none
    of either is a one-line ModelSpecError.
    """
    files = sorted(f for f in d.iterdir() if f.is_file())
    safe = [f for f in files if f.suffix == ".safetensors"]
    if safe:
        from ..weights import check_safetensors
        check_safetensors(safe)
        return safe
    pickles = [f for f in files if f.suffix in PICKLE_SUFFIXES]
    if pickles:
        if not allow_pickle:
            names = ", ".join(f.name for f in pickles[:3])
            raise ModelSpecError(
                f"{d} has only pickle weights ({names}); pickle files can run arbitrary code "
                "when loaded; pass --allow-pickle to load them")
        return pickles
    raise ModelSpecError(f"no model weights (.safetensors) found in {d}")


def select_adapter_files(d: Path, allow_pickle: bool = False) -> list[Path]:
    """Return the adapter's weight file: ``adapter_model.safetensors`` first.

    With ``allow_pickle`` the pickle ``adapter_model.bin`` is taken when there is no safetensors
    file (the one peft would load: it prefers safetensors too).
    """
    safe, pickled = (d / name for name in ADAPTER_WEIGHTS)
    if safe.is_file():
        return [safe]
    if pickled.is_file():
        if not allow_pickle:
            raise ModelSpecError(
                f"{d} has only pickle adapter weights ({pickled.name}); pickle files can run "
                "arbitrary code when loaded; pass --allow-pickle to load them")
        return [pickled]
    raise ModelSpecError(f"no adapter weights ({safe.name}) found in {d}")


def load_checkpoint(d: Path, weight_files: Sequence[Path], trust_remote_code: bool = False,
                    tokenizer_dir: Path | None = None, dtype: str = "float32"
                    ) -> tuple[Any, Any]:
    """Model and tokenizer of the checkpoint directory ``d``, or a one-line error.

    Causal or seq2seq (from the config), in ``dtype`` (float32 unless asked); the tokenizer from
    ``tokenizer_dir`` when given. Custom model code runs only with ``trust_remote_code``.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
    )

    trc = trust_remote_code
    try:
        from ..base import quiet_transformers
        quiet_transformers()
        config = AutoConfig.from_pretrained(str(d), trust_remote_code=trc)
        auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) \
            else AutoModelForCausalLM
        model = auto.from_pretrained(
            str(d), config=config, trust_remote_code=trc, dtype=getattr(torch, dtype),
            use_safetensors=weight_files[0].suffix == ".safetensors")
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or d),
                                                  trust_remote_code=trc)
    except Exception as exc:  # noqa: BLE001 - every load failure becomes a one-line error
        if isinstance(exc, ValueError) and "trust_remote_code" in str(exc):
            raise ModelSpecError(
                f"{d} needs custom model code; pass --trust-remote-code to run it") from None
        raise ModelRuntimeError(f"could not load the model in {d}: {first_line(exc)}") \
            from exc
    return model, tokenizer


def load_peft(adapter_dir: Path, base: str | None, allow_pickle: bool = False,
              trust_remote_code: bool = False) -> tuple[Any, Any, PeftFiles]:
    """Load a base model with its PEFT adapter merged in.

    See "PEFT / LoRA adapters" in the module docstring. Every check that needs only the files
    (base found, pickle policy for both weight sets, adapter type) runs before anything is
    loaded. Returns the merged model, the tokenizer and the files they came from.
    """
    cfg = _read_adapter_config(adapter_dir)
    named = base if base is not None else cfg.get("base_model_name_or_path")
    base_dir = _resolve_base_dir(adapter_dir, named, from_options=base is not None)
    files = PeftFiles(base_dir=base_dir,
                      adapter_files=select_adapter_files(adapter_dir, allow_pickle),
                      weight_files=select_weight_files(base_dir, allow_pickle), config=cfg)
    try:
        from peft import PeftConfig, PeftModel
    except ImportError:
        raise ModelRuntimeError(f"{adapter_dir} is a PEFT adapter, which needs the peft "
                                "package (pip install peft)") from None
    try:
        peft_config = PeftConfig.from_pretrained(str(adapter_dir))
    except Exception as exc:  # noqa: BLE001
        raise ModelRuntimeError(f"could not read the PEFT adapter config in {adapter_dir}: "
                                f"{first_line(exc)}") from exc
    if peft_config.is_prompt_learning:
        kind = peft_config.peft_type
        raise ModelSpecError(
            f"PEFT adapter {adapter_dir} is {getattr(kind, 'value', kind)}, which adds virtual "
            "tokens and cannot be merged into the base weights; only adapters that merge "
            "(LoRA and its kin) are supported")
    has_tokenizer = any((adapter_dir / f).is_file() for f in TOKENIZER_FILES)
    model, tokenizer = load_checkpoint(base_dir, files.weight_files, trust_remote_code,
                                       adapter_dir if has_tokenizer else None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            peft_model = PeftModel.from_pretrained(model, str(adapter_dir),
                                                   config=peft_config, is_trainable=False)
        missing = [str(w.message) for w in caught if "missing adapter keys" in str(w.message)]
        if missing:
            raise ModelRuntimeError(f"PEFT adapter {adapter_dir} does not fit its base "
                                    f"{base_dir}: {missing[0].splitlines()[0][:300]}")
        # Merge: W + scale * B @ A becomes one plain nn.Linear again, so the fixed-shape tiles
        # (installed on nn.Linear layers by establish_batch_invariance, and self-checked there)
        # keep batched generation bit-identical to one-at-a-time for the adapted model.
        merged = peft_model.merge_and_unload(safe_merge=True)
    except ModelRuntimeError:
        raise
    except Exception as exc:  # noqa: BLE001 - every load failure becomes a one-line error
        raise ModelRuntimeError(f"could not apply the PEFT adapter in {adapter_dir} to "
                                f"{base_dir}: {first_line(exc)}") from exc
    return merged, tokenizer, files
