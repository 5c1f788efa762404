"""Generation: static and continuous batches over the fixed-shape tiles, causal and seq2seq.

Continuous batching and batched scoring
---------------------------------------
Causal models in ``"tiles"`` mode decode at most ``batch_size`` rows at a time and refill the
slots of finished rows with the next waiting prompts (prefilled together on the prefill tiles,
then merged into the running KV cache with more left padding, which the row-wise attention never
reads); outputs are bit-identical to static batches and to one at a time
(``continuous_batching: false`` runs static batches). Candidate scoring prefills the prompts of
several requests together and runs the candidates of all of them in shared passes, each row
continuing its own prompt's KV rows; a request's scores do not depend on its companions. Measured
on SmolLM2 (benchmarks/bench_inference.py ``run``, 1 thread, loaded 2-core Xeon): continuous /
static 1.17x at batch 4 and 1.03x at batch 16 (rows ending at different steps; the per-row
attention calls and the newcomers' prefill tiles stay), batched / per-request scoring 0.94-1.02x
(the same matmul rows; the tiles only pad them), bf16 / fp32 1.74x (AVX512-BF16).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from recaudit.errors import ModelRuntimeError, first_line
from recaudit.recommenders.base import Request, Response, sample_seed

from .chosen_logprobs import chosen_log_probs
from .early_stop import _ListWatch
from .decode_attention import KEY_BLOCK
from .invariance import _LAYOUT, _TILE_ROWS, _RowLayout
from .kv import _kv_concat_rows, _kv_left_pad, _kv_trim_left, output_cache

__all__ = ["GenerationMixin"]


class GenerationMixin:
    """The generation half of :class:`~recaudit.recommenders.hf.adapter.HFRecommender`.

    Reads the adapter's model, tokenizer, decoding, batching and token ids, and its forward-pass
    primitives (``_run``, ``_rows``, ``_prefill_causal``, ``_fallback_token``).
    """

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        """Generate one answer per request, in order (see :meth:`generate_ids`)."""
        requests = list(requests)
        prompts = [self.prompt_ids(r) for r in requests]
        ks = [r.k for r in requests] if self.early_stop else None
        max_new = self.decoding.max_new_tokens
        responses = []
        samples = [r.sample for r in requests]
        for p, (tokens, _) in zip(prompts, self.generate_ids(prompts, ks, samples), strict=True):
            eos = bool(tokens) and tokens[-1] in self.eos_ids
            body = tokens[:-1] if eos else tokens
            text = self.tokenizer.decode(body, skip_special_tokens=True)
            # ended before max_new_tokens without EOS: the list was complete
            meta = {"early_stop": True} if ks and not eos and len(tokens) < max_new else {}
            responses.append(Response(text=text.strip(), n_prompt_tokens=len(p),
                                      n_output_tokens=len(tokens), meta=meta))
        return responses

    def generate_ids(self, prompts: Sequence[Sequence[int]],
                     ks: Sequence[int | None] | None = None,
                     samples: Sequence[int] | None = None
                     ) -> list[tuple[list[int], list[float]]]:
        """Generate from token-id prompts.

        Returns, per prompt, the new token ids (ending with EOS when the model stopped) and each
        chosen token's log-probability.

        ``ks``: per prompt, the number of list entries asked for; a prompt's generation stops
        once its text holds that many (see :mod:`.early_stop`). ``None`` (the
        default, whatever :attr:`early_stop` says), or ``None`` for a prompt: up to EOS or
        ``max_new_tokens``.

        ``samples``: per prompt, its repeated-sample index (``Request.sample``); a sampled row
        (temperature > 0) draws from a generator seeded by ``sample_seed(decoding.seed, j)``
        and the prompt, so sample 0 is what it was without samples. ``None``: all 0.

        Prompts are sorted by length and run ``batch_size`` at a time (one at a time when batch
        invariance could not be established, unless ``batching: plain``); results come back in
        input order and, with fixed-shape tiles, are bit-identical to running each prompt alone.
        """
        import torch

        prompts = [list(p) or [self._fallback_token()] for p in prompts]
        if ks is not None and len(ks) != len(prompts):
            raise ValueError(f"{len(ks)} ks for {len(prompts)} prompts")
        seeds = ([sample_seed(self.decoding.seed, j) for j in samples]
                 if samples is not None else [self.decoding.seed] * len(prompts))
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        results: list[tuple[list[int], list[float]] | None] = [None] * len(prompts)
        step = 1 if self.batching.mode == "sequential" else self.batch_size
        continuous = (self.continuous_batching and self.exact_batching
                      and not self.is_seq2seq)
        try:
            with torch.inference_mode():
                if continuous:
                    outs = self._generate_continuous(
                        [prompts[i] for i in order],
                        None if ks is None else [ks[i] for i in order],
                        [seeds[i] for i in order])
                    for i, out in zip(order, outs, strict=True):
                        results[i] = out
                    order = []
                for start in range(0, len(order), step):
                    idx = order[start:start + step]
                    batch = [prompts[i] for i in idx]
                    gen = self._generate_seq2seq if self.is_seq2seq else self._generate_causal
                    watch = None if ks is None else _ListWatch(
                        self.tokenizer, [ks[i] for i in idx], self._newline_tokens)
                    for i, out in zip(idx, gen(batch, watch, [seeds[i] for i in idx]), strict=True):
                        results[i] = out
        except ModelRuntimeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelRuntimeError(f"generation failed: {first_line(exc)}") from exc
        return [r for r in results if r is not None]

    def _row_generators(self, prompts: list[list[int]], seeds: Sequence[int] | None = None
                        ) -> list[Any] | None:
        """One generator per row, seeded from the row's seed and its prompt (batch-invariant).

        ``seeds``: per row (a repeated sample's :func:`sample_seed`); default ``decoding.seed``.
        """
        if self.decoding.temperature <= 0:
            return None
        import torch

        gens = []
        for i, p in enumerate(prompts):
            seed = self.decoding.seed if seeds is None else seeds[i]
            digest = hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()
            gens.append(torch.Generator().manual_seed(int(digest[:15], 16)))
        return gens

    def _pick(self, logits: Any, rows: list[int], gens: list[Any] | None,
              tokens: list[list[int]], logprobs: list[list[float]],
              watch: _ListWatch | None = None) -> tuple[Any, list[int]]:
        """Choose, record and return the next token of each active row.

        The token is the argmax, or a sample from the row's own generator; it and its
        log-probability are recorded. Returns the tokens and the rows (indices into ``rows``)
        that go on: not at EOS, and (with ``watch``) list not yet complete.
        """
        import torch

        logits = logits.float()
        if gens is None:
            nxt = logits.argmax(dim=-1)
        else:
            # each row's generator lives on the CPU (seeded the same whatever the device), so
            # its probabilities are drawn from there
            t = float(self.decoding.temperature)
            nxt = torch.cat([torch.multinomial(torch.softmax(logits[j] / t, dim=-1).cpu(), 1,
                                               generator=gens[row])
                             for j, row in enumerate(rows)]).to(logits.device)
        picked = nxt.tolist()
        chosen = chosen_log_probs(logits, picked)
        keep = []
        for j, row in enumerate(rows):
            tok = picked[j]
            tokens[row].append(tok)
            logprobs[row].append(chosen[j])
            if tok not in self.eos_ids and not (watch is not None and watch.done(row, tokens[row])):
                keep.append(j)
        return nxt, keep

    def _generate_causal(self, prompts: list[list[int]], watch: _ListWatch | None = None,
                         seeds: Sequence[int] | None = None
                         ) -> list[tuple[list[int], list[float]]]:
        import torch

        n = len(prompts)
        next_pos = self._tensor([len(p) for p in prompts])
        gens = self._row_generators(prompts, seeds)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        active = list(range(n))
        layout = _RowLayout(left_pad=[])
        ctx = _LAYOUT.set(layout if self.exact_batching else None)
        try:
            max_new = self.decoding.max_new_tokens
            if max_new <= 0:
                return [([], []) for _ in range(n)]
            last, cache, mask, _ = self._prefill_causal(prompts, layout)
            for step in range(max_new):
                nxt, keep = self._pick(last, active, gens, tokens, logprobs, watch)
                if not keep or step == max_new - 1:
                    break
                if len(keep) < len(active):
                    sel = self._tensor(keep)
                    cache.batch_select_indices(sel)
                    mask, nxt, next_pos = mask[sel], nxt[sel], next_pos[sel]
                    active = [active[j] for j in keep]
                    layout.left_pad = [layout.left_pad[j] for j in keep]
                mask = self._key_margin(cache, mask, layout)
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                out = self._run("decode", input_ids=nxt[:, None], attention_mask=mask,
                                position_ids=next_pos[:, None], use_cache=True,
                                **self._cache_kwargs(cache))
                cache = output_cache(out)
                last = out.logits[:, -1, :]
                next_pos = next_pos + 1
        finally:
            _LAYOUT.reset(ctx)
        return list(zip(tokens, logprobs, strict=True))

    def _generate_continuous(self, prompts: list[list[int]], ks: Sequence[int | None] | None,
                             seeds: Sequence[int] | None = None
                             ) -> list[tuple[list[int], list[float]]]:
        """Continuous batching over fixed-shape tiles (causal models, ``"tiles"`` mode).

        At most ``batch_size`` rows decode together; when rows finish (EOS, early stop,
        ``max_new_tokens``) the next waiting prompts are prefilled together (prefill tiles; when
        :meth:`_refill_count` says so) and their KV rows are merged into the running cache: the
        shorter side is left-padded with zeros (more left pad, which the row-wise attention
        never reads) and padding common to all rows is trimmed. Each row keeps its own
        positions and unpadded keys, and every matmul runs on verified tiles, so each output is
        bit-identical to generating it alone.
        :attr:`generation_stats` counts the refills and decode steps of the last call.
        """
        import collections

        import torch

        n = len(prompts)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        stats = {"prompts": n, "refills": 0, "decode_steps": 0, "decode_rows": 0}
        self.generation_stats = stats
        max_new = self.decoding.max_new_tokens
        if max_new <= 0:
            return [([], []) for _ in range(n)]
        gens = self._row_generators(prompts, seeds)
        watch = None if ks is None else _ListWatch(self.tokenizer, ks, self._newline_tokens)
        waiting = collections.deque(range(n))
        active: list[int] = []  # prompt index of each batch row
        cache = mask = nxt = next_pos = None
        layout = _RowLayout(left_pad=[])
        ctx = _LAYOUT.set(layout)
        try:
            while waiting or active:
                n_new = self._refill_count(len(active), [prompts[i] for i in waiting]) \
                    if waiting else 0
                if n_new:
                    new = [waiting.popleft() for _ in range(n_new)]
                    stats["refills"] += len(new) if active else 0
                    running_pads = layout.left_pad
                    logits, new_cache, new_mask, new_pads = self._prefill_causal(
                        [prompts[i] for i in new], layout)
                    new_nxt, keep = self._pick(logits, new, gens, tokens, logprobs, watch)
                    keep = [j for j in keep if len(tokens[new[j]]) < max_new]
                    layout.left_pad = running_pads
                    if keep:
                        sel = self._tensor(keep)
                        if len(keep) < len(new):
                            new_cache.batch_select_indices(sel)
                        new_pos = self._tensor([len(prompts[new[j]]) for j in keep])
                        new_pads = [new_pads[j] for j in keep]
                        cache, mask = self._merge_rows(cache, mask, layout, new_cache,
                                                       new_mask[sel], new_pads)
                        nxt = new_nxt[sel] if nxt is None else torch.cat([nxt, new_nxt[sel]])
                        next_pos = new_pos if next_pos is None else torch.cat([next_pos, new_pos])
                        active += [new[j] for j in keep]
                    continue  # fill every free slot before the next decode step
                mask = self._key_margin(cache, mask, layout)
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                out = self._run("decode", input_ids=nxt[:, None], attention_mask=mask,
                                position_ids=next_pos[:, None], use_cache=True,
                                **self._cache_kwargs(cache))
                cache = output_cache(out)
                stats["decode_steps"] += 1
                stats["decode_rows"] += len(active)
                next_pos = next_pos + 1
                nxt, keep = self._pick(out.logits[:, -1, :], active, gens, tokens, logprobs,
                                       watch)
                keep = [j for j in keep if len(tokens[active[j]]) < max_new]
                if len(keep) < len(active):
                    active = [active[j] for j in keep]
                    if not active:
                        cache = mask = nxt = next_pos = None
                        layout.left_pad = []
                        continue
                    sel = self._tensor(keep)
                    cache.batch_select_indices(sel)
                    mask, nxt, next_pos = mask[sel], nxt[sel], next_pos[sel]
                    layout.left_pad = [layout.left_pad[j] for j in keep]
                    mask = self._trim_common_pad(cache, mask, layout)
        finally:
            _LAYOUT.reset(ctx)
        return list(zip(tokens, logprobs, strict=True))

    def _refill_count(self, n_active: int, waiting: list[list[int]]) -> int:
        """Return how many waiting prompts enter before the next decode step.

        Scheduling only: no output depends on it. A prefill costs whole tiles of M_p rows
        (prompts x the longest of them), so newcomers enter in whole tiles: all that fit when
        nothing decodes, when all the rest fit, or when half the slots are free; else as many
        as fill whole tiles (none while they fill less than one).
        """
        free = self.batch_size - n_active
        if free <= 0:
            return 0
        fit = waiting[:free]
        if n_active == 0 or len(waiting) <= free or 2 * free >= self.batch_size:
            return len(fit)
        rows = self._rows("prefill")
        m_p = rows if isinstance(rows, int) else 1  # verified heights: any row count is whole

        def rows(n: int) -> int:
            return n * max(len(p) for p in fit[:n])

        whole = rows(len(fit)) // m_p * m_p
        return max((n for n in range(1, len(fit) + 1) if rows(n) <= whole), default=0)

    def _key_margin(self, cache: Any, mask: Any, layout: _RowLayout) -> Any:
        """Give every row room before its keys for its next decode step's key block.

        Speed only: a row of L keys (after the step's append) is read as the last
        P = ceil(L / KEY_BLOCK) * KEY_BLOCK positions (:mod:`.decode_attention`); where its left
        pad is shorter than P - L the block is copied into zeros every layer. So when any row
        lacks it, :data:`KEY_BLOCK` zero positions are prepended to all rows (more left pad,
        which no row reads). Returns the mask; the cache and ``layout.left_pad`` are updated.
        """
        import torch.nn.functional as F

        if self.batching.mode != "tiles" or layout.left_pad is None:
            return mask
        width = mask.shape[1] + 1
        if all(pad >= (pad - width) % KEY_BLOCK for pad in layout.left_pad):
            return mask
        _kv_left_pad(cache, KEY_BLOCK)
        layout.left_pad = [pad + KEY_BLOCK for pad in layout.left_pad]
        return F.pad(mask, (KEY_BLOCK, 0))

    @staticmethod
    def _trim_common_pad(cache: Any, mask: Any, layout: _RowLayout) -> Any:
        """Drop the left padding all rows share (from the cache, the mask and the layout).

        Up to :data:`KEY_BLOCK` positions of it stay: the room the next key blocks need
        (:meth:`_key_margin`), so a finished row does not cost a copy of the cache twice.
        """
        cut = min(layout.left_pad) - KEY_BLOCK
        if cut > 0:
            _kv_trim_left(cache, cut)
            layout.left_pad = [p - cut for p in layout.left_pad]
            mask = mask[:, cut:]
        return mask

    def _merge_rows(self, cache: Any, mask: Any, layout: _RowLayout, new_cache: Any,
                    new_mask: Any, new_pads: list[int]) -> tuple[Any, Any]:
        """Append freshly prefilled rows to the running batch.

        See :meth:`_generate_continuous`. Returns the merged cache and mask;
        ``layout.left_pad`` is updated.
        """
        import torch
        import torch.nn.functional as F

        if cache is None:
            layout.left_pad = list(new_pads)
            return new_cache, new_mask
        old_len, new_len = mask.shape[1], new_mask.shape[1]
        width = max(old_len, new_len)
        _kv_left_pad(cache, width - old_len)
        _kv_left_pad(new_cache, width - new_len)
        _kv_concat_rows(cache, new_cache)
        mask = torch.cat([F.pad(mask, (width - old_len, 0)), F.pad(new_mask, (width - new_len, 0))])
        layout.left_pad = ([p + width - old_len for p in layout.left_pad]
                           + [p + width - new_len for p in new_pads])
        return cache, self._trim_common_pad(cache, mask, layout)

    def _encode(self, prompts: list[list[int]], layout: _RowLayout) -> tuple[Any, Any]:
        """Run the encoder once on right-padded prompts; returns (encoder outputs, mask)."""
        width = max(len(p) for p in prompts)
        ids = self._tensor([p + [self.pad_id] * (width - len(p)) for p in prompts])
        mask = self._tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
        layout.enc_len = [len(p) for p in prompts]
        layout.in_encoder = True
        token = _TILE_ROWS.set(self._rows("prefill"))
        try:
            enc = self.model.get_encoder()(input_ids=ids, attention_mask=mask)
        finally:
            layout.in_encoder = False
            _TILE_ROWS.reset(token)
        return enc, mask

    def _generate_seq2seq(self, prompts: list[list[int]], watch: _ListWatch | None = None,
                          seeds: Sequence[int] | None = None
                          ) -> list[tuple[list[int], list[float]]]:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        n = len(prompts)
        layout = _RowLayout(left_pad=[0] * n)
        ctx = _LAYOUT.set(layout if self.exact_batching else None)
        gens = self._row_generators(prompts, seeds)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        active = list(range(n))
        try:
            enc, enc_mask = self._encode(prompts, layout)
            hidden = enc.last_hidden_state
            nxt = torch.full((n,), self.decoder_start_id, dtype=torch.long, device=self.device)
            cache = None
            for _ in range(self.decoding.max_new_tokens):
                out = self._run("decode",
                                encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                attention_mask=enc_mask, decoder_input_ids=nxt[:, None],
                                use_cache=True, **self._cache_kwargs(cache))
                cache = output_cache(out)
                nxt, keep = self._pick(out.logits[:, -1, :], active, gens, tokens, logprobs,
                                       watch)
                if not keep:
                    break
                if len(keep) < len(active):
                    sel = self._tensor(keep)
                    cache.batch_select_indices(sel)
                    hidden, enc_mask, nxt = hidden[sel], enc_mask[sel], nxt[sel]
                    active = [active[j] for j in keep]
                    layout.enc_len = [layout.enc_len[j] for j in keep]
                    layout.left_pad = [0] * len(active)
        finally:
            _LAYOUT.reset(ctx)
        return list(zip(tokens, logprobs, strict=True))
