"""Hugging Face adapter: a local checkpoint directory (or an offline hub id), run by transformers.

Capabilities: ``generate`` (free-text recommendation lists) and ``score`` (sum of candidate
log-probabilities given the prompt).

Batch invariance
----------------
The engine caches responses per request, so a request's output must not depend on which other
requests shared its batch. Plain batched generation on CPU does not give that: BLAS picks different
kernels (different summation orders) for a 1-row and a 16-row matmul, and a left-padded attention
row reduces over more (masked) positions than the same prompt alone. Greedy argmax then flips where
the two best logits are within ~1e-5 of each other, which happens on real prompts.

So this adapter runs the model in a *batch-invariant* mode (``exact_batching``):

* every ``nn.Linear`` pads its input to at least ``min_rows`` rows (16 where the BLAS on this
  machine passes a self-check at load time), above which a row's result does not depend on how
  many rows the matmul has;
* attention runs row by row on the row's unpadded keys (a registered ``AttentionInterface``
  function), so each row makes exactly the call it would make alone;
* everything else (norms, rotary, activations, argmax) is row-wise already.

Batched and one-at-a-time generation are then bit-identical, not just close. Sampling
(temperature > 0) uses one ``torch.Generator`` per prompt, seeded from ``decoding.seed`` and the
prompt's token ids, so it is reproducible and batch-invariant too. Models whose attention needs
more than padding masks (sliding windows, chunked attention) or that do not use the attention
interface fall back to plain left-padded batching (``exact_batching = False``), where identity
is likely but not guaranteed.
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import json
import os
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from recaudit.errors import ModelRuntimeError, ModelSpecError
from recaudit.paths import cache_dir, sha256_file
from recaudit.recommenders.base import (
    GENERATE,
    SCORE,
    Decoding,
    Recommender,
    Request,
    Response,
)

__all__ = ["HFRecommender", "ADAPTER_VERSION"]

ADAPTER_VERSION = "hf-1"

PICKLE_SUFFIXES = (".bin", ".pt", ".pkl", ".pth")
_EXACT_ATTN = "recaudit_rowwise"
_MIN_ROWS_CHOICES = (16, 32, 64)
_CROSS_ATTN_NAMES = {"encoder_attn", "EncDecAttention", "crossattention", "cross_attn",
                     "cross_attention"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SCORE_CHUNK = 32  # candidates per forward pass when scoring


# --------------------------------------------------------------------------- batch invariance
@dataclass
class _RowLayout:
    """Which positions of each batch row are real, for the row-wise attention function.

    ``left_pad``: per row, left padding of the (causal) decoder self-attention keys.
    ``enc_len``: per row, length of the right-padded encoder input (encoder self-attention and
    cross-attention). ``in_encoder`` is True while the encoder stack runs.
    """

    left_pad: list[int] | None = None
    enc_len: list[int] | None = None
    in_encoder: bool = False


_LAYOUT: contextvars.ContextVar[_RowLayout | None] = contextvars.ContextVar(
    "recaudit_row_layout", default=None)
_REGISTERED = False


def _rowwise_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention computed row by row on each row's unpadded keys (see module docstring).

    Outside a generation loop of this adapter (no layout set) it is plain SDPA with the mask.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout = _LAYOUT.get()
    if layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bias = kwargs.pop("position_bias", None)
    n_rows, _, q_len, _ = query.shape
    kv_len = key.shape[2]
    cross = getattr(module, "_recaudit_cross", False)
    out = query.new_zeros(n_rows, q_len, query.shape[1], value.shape[-1])
    for b in range(n_rows):
        if cross:
            k_lo, k_hi, q_lo, q_hi = 0, layout.enc_len[b], 0, q_len
        elif layout.in_encoder:
            n = layout.enc_len[b]
            k_lo, k_hi, q_lo, q_hi = 0, n, 0, n
        else:
            pad = layout.left_pad[b] if layout.left_pad is not None else 0
            k_lo, k_hi = pad, kv_len
            q_lo, q_hi = q_len - min(q_len, kv_len - pad), q_len
        qb = query[b:b + 1, :, q_lo:q_hi].contiguous()
        kb = key[b:b + 1, :, k_lo:k_hi].contiguous()
        vb = value[b:b + 1, :, k_lo:k_hi].contiguous()
        extra = dict(kwargs)
        if bias is not None:
            rb = b if bias.shape[0] > 1 else 0
            extra["position_bias"] = bias[rb:rb + 1, :, q_lo:q_hi, k_lo:k_hi].contiguous()
        ob, _ = sdpa_attention_forward(module, qb, kb, vb, None, **extra)
        out[b, q_lo:q_hi] = ob[0]
    return out, None


def _register_attention() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(_EXACT_ATTN, _rowwise_attention)
    AttentionMaskInterface.register(_EXACT_ATTN, sdpa_mask)
    _REGISTERED = True


def _invariant_linear_forward(self, x):
    """``nn.Linear.forward`` that never hands BLAS fewer than ``min_rows`` rows."""
    import torch
    import torch.nn.functional as F

    k = x.shape[-1]
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    min_rows = self._recaudit_min_rows
    if m < min_rows:
        x2 = torch.cat([x2, x2.new_zeros(min_rows - m, k)])
    y = F.linear(x2, self.weight, self.bias)
    if m < min_rows:
        y = y[:m]
    return y.reshape(*lead, y.shape[-1])


def _pick_min_rows(linears: list[Any]) -> int | None:
    """Smallest row count above which this BLAS computes each row independently of the others.

    Checked on the model's own weights: rows of an ``m``-row product must equal the same rows of
    a larger product, for a few ``m`` at and above the threshold. ``None`` if no choice passes.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    for min_rows in _MIN_ROWS_CHOICES:
        ok = True
        for lin in linears:
            x = torch.randn(4 * min_rows + 3, lin.in_features, generator=gen,
                            dtype=lin.weight.dtype)
            ref = F.linear(x, lin.weight, lin.bias)
            for m in (min_rows, min_rows + 1, 2 * min_rows + 3):
                if not torch.equal(F.linear(x[:m], lin.weight, lin.bias), ref[:m]):
                    ok = False
                    break
            if not ok:
                break
        if ok:
            return min_rows
    return None


def _attention_is_padding_only(config: Any) -> bool:
    """True when the model's attention masks are only causal/padding (no sliding windows)."""
    cfgs = [config]
    for name in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, name, None)
        if sub is not None:
            cfgs.append(sub)
    for cfg in cfgs:
        types_ = getattr(cfg, "layer_types", None)
        if types_ and any(t != "full_attention" for t in types_):
            return False
        if getattr(cfg, "sliding_window", None) is not None and getattr(
                cfg, "use_sliding_window", True):
            return False
        if getattr(cfg, "attention_chunk_size", None) is not None:
            return False
    return True


# --------------------------------------------------------------------------- file helpers
def _cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered in the cache dir by (path, size, mtime) for big files."""
    st = path.stat()
    if st.st_size < (64 << 20):
        return sha256_file(path)
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    memo = cache_dir("hashes") / key
    try:
        value = memo.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{64}", value):
            return value
    except OSError:
        pass
    value = sha256_file(path)
    try:
        tmp = memo.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(value)
        os.replace(tmp, memo)
    except OSError:
        pass
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _resolve_model_dir(path: str) -> Path:
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


# --------------------------------------------------------------------------- the adapter
class HFRecommender(Recommender):
    """A causal or seq2seq ``transformers`` model, greedy by default, batch-invariant batching.

    Parameters
    ----------
    path
        Local checkpoint directory or a hub id already in the offline cache.
    decoding
        Decoding parameters (``max_new_tokens``, ``temperature``, ``seed``).
    allow_pickle
        Load ``.bin``/``.pt`` pickle weights when no ``.safetensors`` exist (pickle can run code).
    trust_remote_code
        Allow model code shipped with the checkpoint. Off unless explicitly passed.
    batch_size
        Requests per generation batch (sorted by prompt length to reduce padding).
    spec
        The spec string the user wrote (for reports); defaults to ``hf:PATH``.
    model, tokenizer
        Already-loaded objects to use instead of loading from ``path`` (used by the GGUF adapter).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({GENERATE, SCORE})
    adapter_version: ClassVar[str] = ADAPTER_VERSION

    def __init__(self, path: str, decoding: Decoding | None = None, *, allow_pickle: bool = False,
                 trust_remote_code: bool = False, batch_size: int = 16, spec: str | None = None,
                 model: Any = None, tokenizer: Any = None) -> None:
        super().__init__(spec or f"hf:{path}", decoding)
        if batch_size < 1:
            raise ModelSpecError(f"batch_size must be >= 1, got {batch_size}")
        self.path = str(path)
        self.batch_size = int(batch_size)
        self.allow_pickle = bool(allow_pickle)
        self.trust_remote_code = bool(trust_remote_code)
        self._weights_sha: str | None = None
        self._keeps_logits: bool | None = None
        self.model_dir: Path | None = None
        self.weight_files: list[Path] = []
        if model is None or tokenizer is None:
            self.model_dir = _resolve_model_dir(self.path)
            self.weight_files = self._select_weight_files(self.model_dir)
            loaded_model, loaded_tok = self._load(self.model_dir)
            model = model if model is not None else loaded_model
            tokenizer = tokenizer if tokenizer is not None else loaded_tok
        else:
            p = Path(self.path)
            if p.is_dir():
                self.model_dir = p
                self.weight_files = sorted(f for f in p.iterdir()
                                           if f.suffix == ".safetensors" and f.is_file())
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        self._setup_tokens()
        self.min_rows: int | None = None
        self.exact_batching = self._enable_exact_batching()

    # ------------------------------------------------------------------ loading
    def _select_weight_files(self, d: Path) -> list[Path]:
        files = sorted(f for f in d.iterdir() if f.is_file())
        safe = [f for f in files if f.suffix == ".safetensors"]
        if safe:
            return safe
        pickles = [f for f in files if f.suffix in PICKLE_SUFFIXES]
        if pickles:
            if not self.allow_pickle:
                names = ", ".join(f.name for f in pickles[:3])
                raise ModelSpecError(
                    f"{d} has only pickle weights ({names}); pickle files can run arbitrary code "
                    "when loaded; pass --allow-pickle to load them")
            return pickles
        raise ModelSpecError(f"no model weights (.safetensors) found in {d}")

    def _load(self, d: Path) -> tuple[Any, Any]:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        trc = self.trust_remote_code
        try:
            from .base import quiet_transformers
            quiet_transformers()
            config = AutoConfig.from_pretrained(str(d), trust_remote_code=trc)
            auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) \
                else AutoModelForCausalLM
            model = auto.from_pretrained(
                str(d), config=config, trust_remote_code=trc, dtype=torch.float32,
                use_safetensors=self.weight_files[0].suffix == ".safetensors")
            tokenizer = AutoTokenizer.from_pretrained(str(d), trust_remote_code=trc)
        except Exception as exc:  # noqa: BLE001 - every load failure becomes a one-line error
            if isinstance(exc, ValueError) and "trust_remote_code" in str(exc):
                raise ModelSpecError(
                    f"{d} needs custom model code; pass --trust-remote-code to run it") from None
            raise ModelRuntimeError(f"could not load the model in {d}: {_first_line(exc)}") \
                from exc
        return model, tokenizer

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

    def _enable_exact_batching(self) -> bool:
        import torch

        model = self.model
        if not _attention_is_padding_only(model.config):
            return False
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        by_shape: dict[tuple[int, int, bool], Any] = {}
        for lin in linears:
            by_shape.setdefault((lin.in_features, lin.out_features, lin.bias is not None), lin)
        with torch.inference_mode():
            min_rows = _pick_min_rows(list(by_shape.values()))
        if min_rows is None:
            return False
        _register_attention()
        try:
            model.set_attn_implementation(_EXACT_ATTN)
        except Exception:  # noqa: BLE001 - model cannot switch: plain batching
            return False
        impls = {getattr(m.config, "_attn_implementation", None)
                 for m in model.modules() if hasattr(m, "config")}
        if impls != {_EXACT_ATTN}:
            return False
        for name, mod in model.named_modules():
            if name.rsplit(".", 1)[-1] in _CROSS_ATTN_NAMES:
                mod._recaudit_cross = True
        for lin in linears:
            lin._recaudit_min_rows = min_rows
            lin.forward = types.MethodType(_invariant_linear_forward, lin)
        self.min_rows = min_rows
        return True

    # ------------------------------------------------------------------ identity
    def weights_sha256(self) -> str | None:
        if self._weights_sha is None and self.weight_files:
            shas = [(f.name, _cached_sha256(f)) for f in self.weight_files]
            if len(shas) == 1:
                self._weights_sha = shas[0][1]
            else:
                blob = "".join(f"{name}  {sha}\n" for name, sha in shas)
                self._weights_sha = hashlib.sha256(blob.encode()).hexdigest()
        return self._weights_sha

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
        return {"adapter": self.adapter_version, "class": type(self).__name__,
                "weights": weights, "config": cfg,
                "tokenizer": self._tokenizer_digest(),
                "numerics": f"rowwise-min{self.min_rows}" if self.exact_batching else "plain",
                "dtype": str(next(self.model.parameters()).dtype)}

    def _tokenizer_digest(self) -> str:
        tok = self.tokenizer
        blob = json.dumps({"template": getattr(tok, "chat_template", None),
                           "vocab": sorted(tok.get_vocab().items()),
                           "special": {k: str(v) for k, v in tok.special_tokens_map.items()}},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def fingerprint(self) -> str:
        """sha256 of adapter, weights, config, tokenizer and numerics; computed once per load."""
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

    # ------------------------------------------------------------------ generation
    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        requests = list(requests)
        prompts = [self.prompt_ids(r) for r in requests]
        responses = []
        for p, (tokens, _) in zip(prompts, self.generate_ids(prompts)):
            body = tokens[:-1] if tokens and tokens[-1] in self.eos_ids else tokens
            text = self.tokenizer.decode(body, skip_special_tokens=True)
            responses.append(Response(text=text.strip(), n_prompt_tokens=len(p),
                                      n_output_tokens=len(tokens)))
        return responses

    def generate_ids(self, prompts: Sequence[Sequence[int]]
                     ) -> list[tuple[list[int], list[float]]]:
        """Generate from token-id prompts: per prompt, the new token ids (ending with EOS when
        the model stopped) and each chosen token's log-probability.

        Prompts are sorted by length and run ``batch_size`` at a time; results come back in input
        order and, with ``exact_batching``, are bit-identical to running each prompt alone.
        """
        import torch

        prompts = [list(p) or [self._fallback_token()] for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        results: list[tuple[list[int], list[float]] | None] = [None] * len(prompts)
        try:
            with torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    batch = [prompts[i] for i in idx]
                    gen = self._generate_seq2seq if self.is_seq2seq else self._generate_causal
                    for i, out in zip(idx, gen(batch)):
                        results[i] = out
        except ModelRuntimeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"generation failed: {_first_line(exc)}") from exc
        return [r for r in results if r is not None]

    def _fallback_token(self) -> int:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return int(bos) if bos is not None else self.pad_id

    def _row_generators(self, prompts: list[list[int]]) -> list[Any] | None:
        """One generator per row, seeded from ``decoding.seed`` and the prompt (batch-invariant)."""
        if self.decoding.temperature <= 0:
            return None
        import torch

        gens = []
        for p in prompts:
            digest = hashlib.sha256(f"{self.decoding.seed}:{p}".encode()).hexdigest()
            gens.append(torch.Generator().manual_seed(int(digest[:15], 16)))
        return gens

    def _pick(self, logits: Any, rows: list[int], gens: list[Any] | None,
              tokens: list[list[int]], logprobs: list[list[float]]) -> tuple[Any, list[int]]:
        """Choose the next token of each active row (argmax, or a sample from the row's own
        generator), record it and its log-probability; return the tokens and the rows (indices
        into ``rows``) that have not emitted EOS."""
        import torch

        logits = logits.float()
        if gens is None:
            nxt = logits.argmax(dim=-1)
        else:
            t = float(self.decoding.temperature)
            nxt = torch.cat([torch.multinomial(torch.softmax(logits[j] / t, dim=-1), 1,
                                               generator=gens[row])
                             for j, row in enumerate(rows)])
        keep = []
        for j, row in enumerate(rows):
            tok = int(nxt[j])
            tokens[row].append(tok)
            logprobs[row].append(float(torch.log_softmax(logits[j], dim=-1)[tok]))
            if tok not in self.eos_ids:
                keep.append(j)
        return nxt, keep

    def _forward_kwargs(self) -> dict[str, Any]:
        """``logits_to_keep=1`` where the model supports it (prefill needs the last logits only)."""
        if self._keeps_logits is None:
            import inspect

            params = inspect.signature(self.model.forward).parameters
            self._keeps_logits = "logits_to_keep" in params
        return {"logits_to_keep": 1} if self._keeps_logits else {}

    def _generate_causal(self, prompts: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        import torch

        n = len(prompts)
        width = max(len(p) for p in prompts)
        pads = [width - len(p) for p in prompts]
        ids = torch.tensor([[self.pad_id] * pad + p for pad, p in zip(pads, prompts)])
        mask = torch.tensor([[0] * pad + [1] * len(p) for pad, p in zip(pads, prompts)])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        next_pos = torch.tensor([len(p) for p in prompts])
        gens = self._row_generators(prompts)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        active = list(range(n))
        layout = _RowLayout(left_pad=list(pads))
        ctx = _LAYOUT.set(layout if self.exact_batching else None)
        try:
            max_new = self.decoding.max_new_tokens
            if max_new <= 0:
                return [([], []) for _ in range(n)]
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=True, **self._forward_kwargs())
            cache = out.cache
            for step in range(max_new):
                nxt, keep = self._pick(out.logits[:, -1, :], active, gens, tokens, logprobs)
                if not keep or step == max_new - 1:
                    break
                if len(keep) < len(active):
                    sel = torch.tensor(keep)
                    cache.batch_select_indices(sel)
                    mask, nxt, next_pos = mask[sel], nxt[sel], next_pos[sel]
                    active = [active[j] for j in keep]
                    layout.left_pad = [layout.left_pad[j] for j in keep]
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                out = self.model(input_ids=nxt[:, None], attention_mask=mask,
                                 position_ids=next_pos[:, None], cache=cache, use_cache=True)
                cache = out.cache
                next_pos = next_pos + 1
        finally:
            _LAYOUT.reset(ctx)
        return list(zip(tokens, logprobs))

    def _encode(self, prompts: list[list[int]], layout: _RowLayout) -> tuple[Any, Any]:
        """Run the encoder once on right-padded prompts; returns (encoder outputs, mask)."""
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.tensor([p + [self.pad_id] * (width - len(p)) for p in prompts])
        mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
        layout.enc_len = [len(p) for p in prompts]
        layout.in_encoder = True
        try:
            enc = self.model.get_encoder()(input_ids=ids, attention_mask=mask)
        finally:
            layout.in_encoder = False
        return enc, mask

    def _generate_seq2seq(self, prompts: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        n = len(prompts)
        layout = _RowLayout(left_pad=[0] * n)
        ctx = _LAYOUT.set(layout if self.exact_batching else None)
        gens = self._row_generators(prompts)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        active = list(range(n))
        try:
            enc, enc_mask = self._encode(prompts, layout)
            hidden = enc.last_hidden_state
            nxt = torch.full((n,), self.decoder_start_id, dtype=torch.long)
            cache = None
            for _ in range(self.decoding.max_new_tokens):
                out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                 attention_mask=enc_mask, decoder_input_ids=nxt[:, None],
                                 cache=cache, use_cache=True)
                cache = out.cache
                nxt, keep = self._pick(out.logits[:, -1, :], active, gens, tokens, logprobs)
                if not keep:
                    break
                if len(keep) < len(active):
                    sel = torch.tensor(keep)
                    cache.batch_select_indices(sel)
                    hidden, enc_mask, nxt = hidden[sel], enc_mask[sel], nxt[sel]
                    active = [active[j] for j in keep]
                    layout.enc_len = [layout.enc_len[j] for j in keep]
                    layout.left_pad = [0] * len(active)
        finally:
            _LAYOUT.reset(ctx)
        return list(zip(tokens, logprobs))

    # ------------------------------------------------------------------ scoring
    def score(self, requests: Sequence[Request]) -> list[list[float]]:
        """Sum of candidate-token log-probabilities after the prompt, prompt computed once."""
        return self._score_all(requests, naive=False)

    def score_naive(self, requests: Sequence[Request]) -> list[list[float]]:
        """Reference scoring: one full forward pass over ``prompt + candidate`` per candidate."""
        return self._score_all(requests, naive=True)

    def _score_all(self, requests: Sequence[Request], naive: bool) -> list[list[float]]:
        import torch

        results = []
        try:
            with torch.inference_mode():
                for r in requests:
                    if not r.candidates:
                        results.append([])
                        continue
                    p = self.prompt_ids(r) or [self._fallback_token()]
                    cands = [self.candidate_ids(c) for c in r.candidates]
                    if self.is_seq2seq:
                        fn = self._score_s2s_naive if naive else self._score_s2s
                    else:
                        fn = self._score_causal_naive if naive else self._score_causal
                    results.append(fn(p, cands))
        except ModelRuntimeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"scoring failed: {_first_line(exc)}") from exc
        return results

    @staticmethod
    def _gather(logprobs: Any, targets: list[list[int]]) -> list[float]:
        """Sum over rows of ``logprobs[j, i, targets[j][i]]`` for the real (unpadded) tokens."""
        import torch

        sums = []
        for j, tgt in enumerate(targets):
            if not tgt:
                sums.append(0.0)
                continue
            idx = torch.tensor(tgt, dtype=torch.long)
            rows = logprobs[j, : len(tgt)]
            sums.append(float(rows.gather(-1, idx[:, None]).sum()))
        return sums

    def _score_causal(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch

        out = self.model(input_ids=torch.tensor([prompt]), use_cache=True,
                         **self._forward_kwargs())
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        prompt_cache = out.cache
        scores: list[float] = []
        for start in range(0, len(cands), _SCORE_CHUNK):
            chunk = cands[start:start + _SCORE_CHUNK]
            width = max(1, max(len(c) for c in chunk))
            ids = torch.tensor([c + [self.pad_id] * (width - len(c)) for c in chunk])
            cache = copy.deepcopy(prompt_cache)
            cache.batch_repeat_interleave(len(chunk))
            # right padding: real tokens never attend to the pads after them (causal)
            logits = self.model(input_ids=ids, cache=cache, use_cache=True).logits
            lp = torch.log_softmax(logits.float(), dim=-1)
            rest = self._gather(lp, [c[1:] for c in chunk])
            for c, r in zip(chunk, rest):
                scores.append(float(first[c[0]]) + r if c else 0.0)
        return scores

    def _score_causal_naive(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch

        scores = []
        for c in cands:
            if not c:
                scores.append(0.0)
                continue
            # logits only where the candidate's tokens are predicted (a fair baseline)
            keep = {"logits_to_keep": len(c) + 1} if self._forward_kwargs() else {}
            logits = self.model(input_ids=torch.tensor([prompt + c]), use_cache=False,
                                **keep).logits
            lp = torch.log_softmax(logits[0, -len(c) - 1:-1].float(), dim=-1)
            scores.append(float(lp.gather(-1, torch.tensor(c)[:, None]).sum()))
        return scores

    def _score_s2s(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        enc = self.model.get_encoder()(input_ids=torch.tensor([prompt]))
        hidden = enc.last_hidden_state
        scores: list[float] = []
        for start in range(0, len(cands), _SCORE_CHUNK):
            chunk = cands[start:start + _SCORE_CHUNK]
            width = max(1, max(len(c) for c in chunk))
            dec = torch.tensor([[self.decoder_start_id] + c[:-1] + [self.pad_id] * (width - len(c))
                                if c else [self.decoder_start_id] + [self.pad_id] * (width - 1)
                                for c in chunk])
            h = hidden.expand(len(chunk), -1, -1)
            logits = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=h),
                                decoder_input_ids=dec, use_cache=False).logits
            scores.extend(self._gather(torch.log_softmax(logits.float(), dim=-1), chunk))
        return scores

    def _score_s2s_naive(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch

        scores = []
        for c in cands:
            if not c:
                scores.append(0.0)
                continue
            dec = torch.tensor([[self.decoder_start_id] + c[:-1]])
            logits = self.model(input_ids=torch.tensor([prompt]), decoder_input_ids=dec,
                                use_cache=False).logits
            lp = torch.log_softmax(logits[0].float(), dim=-1)
            scores.append(float(lp.gather(-1, torch.tensor(c)[:, None]).sum()))
        return scores
