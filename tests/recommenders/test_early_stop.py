"""Early stop: each generated row stops once its list of k entries is complete (issue
"performance"), batch-invariantly, behind ``model_options: {early_stop: ...}``."""

from __future__ import annotations

import json
from pathlib import Path

import dataclasses

import pytest

from recaudit.errors import ModelSpecError
from recaudit.grounding import match_entry, parse_list
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender, list_is_complete

from . import tiny_models as tm

ROOT = Path(__file__).resolve().parents[2]
MAX_NEW = 96
# What the scripted models write: a preamble, a numbered list, chatter and a repeat of it all
BLOCK = ("Sure! Here are movies:\n1. Heat (1995)\n2. Alien (1979)\n3. Fargo\n4. Jaws\n"
         "5. Rocky - a boxer\n6. Psycho\nEnjoy these films!\n")
KS = [2, 3, 5, 4, 6, 50, 3]  # 50: never complete, runs to max_new_tokens


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_early_stop")
    return {"causal": tm.make_causal(root / "causal"), "bart": tm.make_bart(root / "bart")}


def _script(rec: HFRecommender) -> list[int]:
    ids = rec.tokenizer(BLOCK, add_special_tokens=False)["input_ids"]
    return ids * 12


def _force(rec: HFRecommender):
    """Make the model's greedy choice follow the script: at each step, the scripted token's
    logit is set just above the row's largest logit (the other logits stay the model's own, so
    log-probabilities still carry its numerics). Causal: the token at the row's position (each
    prompt length starts at its own place in the script); seq2seq: the token of the step."""
    import torch

    script = torch.tensor(_script(rec))
    state = {"step": 0}

    def bump(logits, tok):
        last = logits[:, -1]
        last[torch.arange(len(tok)), tok] = last.max(dim=-1).values + 1.0

    if rec.is_seq2seq:
        def reset(mod, args, kwargs):
            state["step"] = 0

        def hook(mod, args, kwargs, out):
            if "decoder_input_ids" in kwargs:
                n = kwargs["decoder_input_ids"].shape[0]
                bump(out.logits, script[state["step"]].repeat(n))
                state["step"] += 1

        return [rec.model.get_encoder().register_forward_pre_hook(reset, with_kwargs=True),
                rec.model.register_forward_hook(hook, with_kwargs=True)]

    def hook(mod, args, kwargs, out):
        bump(out.logits, script[kwargs["position_ids"][:, -1]])

    # decode steps through the model's forward, where the hook sees them (the lean decoder
    # calls the layers' weights directly)
    rec.batching = dataclasses.replace(rec.batching, lean_decoder=None)
    return [rec.model.register_forward_hook(hook, with_kwargs=True)]


@pytest.fixture(scope="module")
def scripted(tiny_dirs):
    recs = {name: HFRecommender(str(d), Decoding(max_new_tokens=MAX_NEW), batch_size=3,
                                early_stop=True)
            for name, d in tiny_dirs.items()}
    handles = [h for rec in recs.values() for h in _force(rec)]
    yield recs
    for h in handles:
        h.remove()


def _requests() -> list[Request]:
    return [Request.from_prompt("Recommend movies. " * (i % 4 + 1) + "Thanks" * (i % 3), k=k)
            for i, k in enumerate(KS)]


def _full_and_early(rec: HFRecommender, reqs: list[Request]):
    rec.early_stop = False
    full = rec.recommend(reqs)
    rec.early_stop = True
    early = rec.recommend(reqs)
    return full, early


def _complete_lines(text: str) -> str:
    return text[:text.rfind("\n")] if "\n" in text else ""


# ----------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("kind", ["causal", "bart"])
def test_rows_stop_once_their_k_entries_are_complete(scripted, kind):
    rec = scripted[kind]
    reqs = _requests()
    assert len({len(rec.prompt_ids(r)) for r in reqs}) > 2 or rec.is_seq2seq
    full, early = _full_and_early(rec, reqs)
    assert all(f.n_output_tokens == MAX_NEW for f in full)  # the script never emits EOS
    assert all(not f.meta for f in full)
    stopped = 0
    for r, f, e in zip(reqs, full, early):
        assert f.text.startswith(e.text)  # cut where generation stopped: a prefix
        assert e.n_output_tokens <= f.n_output_tokens
        assert parse_list(e.text)[:r.k] == parse_list(f.text)[:r.k]
        if e.n_output_tokens < MAX_NEW:
            stopped += 1
            assert e.meta == {"early_stop": True}
            assert len(parse_list(e.text)) >= r.k
            # ... and not one token later than needed: the text before its last token (the one
            # that ended the k-th entry's line) did not hold k complete entries yet
            ids = rec.generate_ids([rec.prompt_ids(r)], [r.k])[0][0]
            before = rec.tokenizer.decode(ids[:-1], skip_special_tokens=True)
            assert not list_is_complete(_complete_lines(before), r.k)
            assert "\n" in rec.tokenizer.decode(ids[-1:])
        else:
            assert e.text == f.text and r.k == 50 and not e.meta
    assert stopped == len(reqs) - 1
    saved = sum(f.n_output_tokens - e.n_output_tokens for f, e in zip(full, early))
    assert saved > MAX_NEW * 2  # tokens saved


@pytest.mark.parametrize("kind", ["causal", "bart"])
def test_batched_equals_one_at_a_time_with_early_stop(scripted, kind):
    rec = scripted[kind]
    reqs = _requests()
    prompts = [rec.prompt_ids(r) for r in reqs]
    ks = [r.k for r in reqs]
    # batches of 3 (sorted by length): rows leave their batch at different steps
    batched = rec.generate_ids(prompts, ks)
    single = [rec.generate_ids([p], [k])[0] for p, k in zip(prompts, ks)]
    assert batched == single  # tokens and log-probabilities, bit for bit
    assert len({len(t) for t, _ in batched}) > 3
    # the rows that go on after others stopped: bit-identical to a run without the others
    full = rec.generate_ids(prompts)
    for (t, lp), (ft, flp) in zip(batched, full):
        assert ft[:len(t)] == t and flp[:len(lp)] == lp
    rec.early_stop = True
    texts = [r.text for r in rec.recommend(reqs)]
    assert texts == [rec.recommend([r])[0].text for r in reqs]


def test_early_stop_off_is_the_full_generation(scripted):
    rec = scripted["causal"]
    reqs = _requests()
    prompts = [rec.prompt_ids(r) for r in reqs]
    rec.early_stop = False
    off = rec.recommend(reqs)
    full = rec.generate_ids(prompts)  # no ks: never stops early
    script = _script(rec)
    for p, resp, (tokens, _) in zip(prompts, off, full):
        assert tokens == script[len(p) - 1:len(p) - 1 + MAX_NEW]
        assert resp.text == rec.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        assert resp.n_output_tokens == MAX_NEW
    rec.early_stop = True


# ----------------------------------------------------------------------------- switch, identity
def test_switch_fingerprint_and_plan_line(tiny_dirs):
    d = str(tiny_dirs["causal"])
    on = HFRecommender(d, early_stop=True)
    off = HFRecommender(d)  # off by default
    assert on.early_stop and not off.early_stop
    assert on.fingerprint() != off.fingerprint()
    # off keeps the payload of the full generation (answers cached before the switch existed)
    assert "early_stop" not in off._fingerprint_payload()
    assert on._fingerprint_payload() == {**off._fingerprint_payload(),
                                         "early_stop": "k-list-entries-v1"}
    assert "early stop" in on.batch_invariance() and "early stop" not in off.batch_invariance()
    assert on.batch_invariance().startswith(off.batch_invariance())
    first = on.fingerprint()
    on.early_stop = False  # switching after load recomputes the fingerprint
    assert on.fingerprint() == off.fingerprint()
    on.early_stop = True
    assert on.fingerprint() == first
    with pytest.raises(ModelSpecError, match="early_stop must be true or false"):
        HFRecommender(d, early_stop="no")
    with pytest.raises(ModelSpecError, match="early_stop must be true or false"):
        on.early_stop = 1


def test_list_is_complete():
    text = "Sure! Here are 3:\n1. Heat (1995)\n2. Alien\n3. **Fargo** - a crime film"
    assert list_is_complete(text, 3) and not list_is_complete(text, 4)
    assert not list_is_complete("1. Heat\n2. Alien", 3)
    assert list_is_complete("- Heat\n- Alien\n- Fargo", 3)
    # formats that later lines can still change (one title per line, a comma line) never stop
    assert parse_list("Heat\nAlien\nFargo") == ["Heat", "Alien", "Fargo"]
    assert not list_is_complete("Heat\nAlien\nFargo", 3)
    assert not list_is_complete("Heat, Alien, Fargo, Jaws", 3)


def test_rule_on_recorded_smollm2_answers():
    """The recorded SmolLM2 answers of the demo audit (k=10, 120 new tokens), cut at the first
    newline where the rule fires: the first k entries are those of the whole answer."""
    answers = json.loads((ROOT / "tests/data/pinned/demo-answers.json").read_text())["smollm2"]
    texts = [a["text"] for a in answers.values() if a.get("text")]
    stops = 0
    for text in texts:
        for i, ch in enumerate(text):
            if ch == "\n" and list_is_complete(text[:i], 10):
                assert parse_list(text[:i + 1].strip())[:10] == parse_list(text)[:10]
                stops += 1
                break
    assert len(texts) > 150 and stops > 50


# ----------------------------------------------------------------------------- real SmolLM2
# Recorded prompts whose SmolLM2 answer completes its list and then goes on
SMOL_IDS = ("list-00", "profile-21", "fairllm-nosys-0")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return tm.load_smollm2(tmp_path_factory, 120, early_stop=True)


@pytest.mark.integration
def test_smollm2_early_stop(smollm2):
    from recaudit.catalog import Catalog

    rec = smollm2
    assert rec.exact_batching, rec.batch_invariance()
    records = {r["id"]: r for r in json.loads(
        (ROOT / "tests/data/smollm2_outputs.json").read_text())["records"]}
    reqs = [Request(records[i]["messages"], k=records[i]["k"]) for i in SMOL_IDS]
    prompts = [rec.prompt_ids(r) for r in reqs]
    ks = [r.k for r in reqs]
    full = rec.generate_ids(prompts)
    early = rec.generate_ids(prompts, ks)  # one batch: rows leave it at different steps
    assert early == [rec.generate_ids([p], [k])[0] for p, k in zip(prompts, ks)]  # bit for bit

    def text(tokens):
        body = tokens[:-1] if tokens and tokens[-1] in rec.eos_ids else tokens
        return rec.tokenizer.decode(body, skip_special_tokens=True).strip()

    catalog = Catalog.from_movielens()
    for k, (f, _), (e, _) in zip(ks, full, early):
        assert f[:len(e)] == e and len(e) < len(f)  # stopped early, only truncated
        assert text(f).startswith(text(e))
        gf, ge = catalog.ground(text(f)), catalog.ground(text(e))
        assert len(ge.entries) == k and ge.entries == gf.entries[:k]
        assert [match_entry(x, catalog.matcher) for x in ge.entries] == \
            [match_entry(x, catalog.matcher) for x in gf.entries[:k]]
