"""Scoring: the log-likelihood of candidate texts after a prompt, the prompt computed once.

Score = log p(c_0 | prompt) + sum_i log p(c_i | prompt, c_<i) over the candidate's tokens. With
fixed-shape tiles the candidates of many requests share forward passes and a request's scores do
not depend on its companions; the naive reference runs one full pass per candidate.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

from recaudit.errors import ModelRuntimeError, first_line
from recaudit.recommenders.base import Request

from .invariance import _LAYOUT, _RowLayout
from .kv import _kv_rows, output_cache

__all__ = ["ScoringMixin"]

_SCORE_CHUNK = 32  # candidates per forward pass when scoring


class ScoringMixin:
    """The scoring half of :class:`~recaudit.recommenders.hf.adapter.HFRecommender`.

    Reads the adapter's model, tokenizer, batching and token ids, and its forward-pass
    primitives (``_run``, ``_rows``, ``_prefill_causal``, ``_forward_kwargs``,
    ``_fallback_token``).
    """

    def score(self, requests: Sequence[Request]) -> list[list[float]]:
        """Sum of candidate-token log-probabilities after the prompt, prompt computed once."""
        return self._score_all(requests, naive=False)

    def score_naive(self, requests: Sequence[Request]) -> list[list[float]]:
        """Score by reference: one full forward pass over ``prompt + candidate`` per candidate."""
        return self._score_all(requests, naive=True)

    def _score_all(self, requests: Sequence[Request], naive: bool) -> list[list[float]]:
        import torch

        results = []
        try:
            with torch.inference_mode():
                if not naive and self.exact_batching and not self.is_seq2seq:
                    return self._score_causal_batched(
                        [self.prompt_ids(r) or [self._fallback_token()] for r in requests],
                        [[self.candidate_ids(c) for c in r.candidates or ()] for r in requests])
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
            raise ModelRuntimeError(f"scoring failed: {first_line(exc)}") from exc
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
            idx = torch.tensor(tgt, dtype=torch.long, device=logprobs.device)
            rows = logprobs[j, : len(tgt)]
            sums.append(float(rows.gather(-1, idx[:, None]).sum()))
        return sums

    def _score_causal_batched(self, prompts: list[list[int]], cands: list[list[list[int]]]
                              ) -> list[list[float]]:
        """Candidate scores of many requests in shared forward passes, on fixed-shape tiles.

        Prompts (sorted by length, ``batch_size`` at a time) are prefilled together; then the
        candidates of all of them, sorted by length, run in chunks of up to two prefill tiles of
        tokens, each row continuing its own prompt's KV rows (right-padded; the row-wise
        attention reads the row's prompt and its own real tokens only, causal from the last
        key). Score = log p(c_0 | prompt) + sum_i log p(c_i | prompt, c_<i). Every matmul row and
        attention call is the one the request makes alone, so a request's scores are
        bit-identical whichever requests share its batch.
        """
        import torch

        scores: list[list[float]] = [[0.0] * len(c) for c in cands]
        order = sorted((i for i in range(len(prompts)) if cands[i]),
                       key=lambda i: (len(prompts[i]), i))
        tile = self._rows("prefill")
        budget = 2 * (tile if isinstance(tile, int) else 256)
        layout = _RowLayout(left_pad=[])
        ctx = _LAYOUT.set(layout)
        try:
            for start in range(0, len(order), self.batch_size):
                group = order[start:start + self.batch_size]
                logits, cache, mask, pads = self._prefill_causal([prompts[i] for i in group],
                                                                 layout)
                first = [torch.log_softmax(logits[j].float(), dim=-1) for j in range(len(group))]
                rows = sorted(((len(c), j, n) for j, i in enumerate(group)
                               for n, c in enumerate(cands[i]) if c))
                while rows:
                    width = rows[0][0]
                    take = 1
                    while take < len(rows) and (take + 1) * max(width, rows[take][0]) <= budget:
                        width = max(width, rows[take][0])
                        take += 1
                    chunk, rows = rows[:take], rows[take:]
                    seqs = [cands[group[j]][n] for _, j, n in chunk]
                    sel = self._tensor([j for _, j, _ in chunk])
                    ids = self._tensor([c + [self.pad_id] * (width - len(c)) for c in seqs])
                    real = self._tensor([[1] * len(c) + [0] * (width - len(c)) for c in seqs])
                    starts = self._tensor([len(prompts[group[j]]) for _, j, _ in chunk])
                    positions = starts[:, None] + torch.arange(width, device=self.device)
                    layout.left_pad = [pads[j] for _, j, _ in chunk]
                    layout.right_pad = [width - len(c) for c in seqs]
                    try:
                        out = self._run("prefill", input_ids=ids,
                                        attention_mask=torch.cat([mask[sel], real], dim=1),
                                        position_ids=positions,
                                        use_cache=True,
                                        **self._cache_kwargs(_kv_rows(cache, sel)))
                    finally:
                        layout.right_pad = None
                    for r, ((_, j, n), c) in enumerate(zip(chunk, seqs, strict=True)):
                        rest = 0.0
                        if len(c) > 1:
                            lp = torch.log_softmax(out.logits[r, :len(c) - 1].float(), dim=-1)
                            rest = float(lp.gather(-1, self._tensor(c[1:])[:, None]).sum())
                        scores[group[j]][n] = float(first[j][c[0]]) + rest
        finally:
            _LAYOUT.reset(ctx)
        return scores

    def _score_causal(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch

        out = self.model(input_ids=self._tensor([prompt]), use_cache=True,
                         **self._forward_kwargs())
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        prompt_cache = output_cache(out)
        scores: list[float] = []
        for start in range(0, len(cands), _SCORE_CHUNK):
            chunk = cands[start:start + _SCORE_CHUNK]
            width = max(1, max(len(c) for c in chunk))
            ids = self._tensor([c + [self.pad_id] * (width - len(c)) for c in chunk])
            cache = copy.deepcopy(prompt_cache)
            cache.batch_repeat_interleave(len(chunk))
            # right padding: real tokens never attend to the pads after them (causal)
            logits = self.model(input_ids=ids, use_cache=True, **self._cache_kwargs(cache)).logits
            lp = torch.log_softmax(logits.float(), dim=-1)
            rest = self._gather(lp, [c[1:] for c in chunk])
            for c, r in zip(chunk, rest, strict=True):
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
            logits = self.model(input_ids=self._tensor([prompt + c]), use_cache=False,
                                **keep).logits
            lp = torch.log_softmax(logits[0, -len(c) - 1:-1].float(), dim=-1)
            scores.append(float(lp.gather(-1, self._tensor(c)[:, None]).sum()))
        return scores

    def _score_s2s(self, prompt: list[int], cands: list[list[int]]) -> list[float]:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        enc = self.model.get_encoder()(input_ids=self._tensor([prompt]))
        hidden = enc.last_hidden_state
        scores: list[float] = []
        for start in range(0, len(cands), _SCORE_CHUNK):
            chunk = cands[start:start + _SCORE_CHUNK]
            width = max(1, max(len(c) for c in chunk))
            dec = self._tensor(
                [[self.decoder_start_id] + c[:-1] + [self.pad_id] * (width - len(c))
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
            dec = self._tensor([[self.decoder_start_id] + c[:-1]])
            logits = self.model(input_ids=self._tensor([prompt]), decoder_input_ids=dec,
                                use_cache=False).logits
            lp = torch.log_softmax(logits[0].float(), dim=-1)
            scores.append(float(lp.gather(-1, self._tensor(c)[:, None]).sum()))
        return scores
