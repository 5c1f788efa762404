"""PythonRecommender: targets, return shapes, batching, scoring, errors and fingerprints."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from recaudit.errors import ModelRuntimeError, ModelSpecError
from recaudit.recommenders.base import Request, Response
from recaudit.recommenders.python import PythonRecommender, parse_target

USER_CODE = '''
__recaudit_version__ = "{version}"

def titles(messages, k):
    assert isinstance(messages, list) and messages[-1]["role"] == "user"
    return ["Alien (1979)", "Heat (1995)", "Jaws (1975)"][:k]

def raw(messages, k):
    return "Here you go:\\n1. Alien\\n2. Heat"

def ids(messages, k):
    return {{"item_ids": [1, 2, 3][:k]}}

def ids_and_text(messages, k):
    return {{"item_ids": ["a"], "text": "1. A"}}

def echo(messages, k):
    return " | ".join(m["role"] + ":" + m["content"] for m in messages) + f" k={{k}}"

def boom(messages, k):
    if "fail" in messages[-1]["content"]:
        raise ValueError("bad input\\nsecond line")
    return "ok"

def weird(messages, k):
    return 42

def bad_list(messages, k):
    return ["a", 3]

def batch(requests):
    return [f"{{r.k}}:{{r.messages[-1].content}}" for r in requests]
batch.batched = True

def bad_batch(requests):
    return ["only one"]
bad_batch.batched = True

def raising_batch(requests):
    raise RuntimeError("batch down")
raising_batch.batched = True

def scorer(messages, k):
    return "x"
def _score(messages, candidates):
    return [-float(len(c)) for c in candidates]
scorer.score = _score

class Ranker:
    def __call__(self, messages, k):
        return ["Callable"]
    def method(self, messages, k):
        return ["Method"]

ranker = Ranker()
not_callable = 3
'''


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / f"userrec_{uuid.uuid4().hex[:8]}.py"
    path.write_text(USER_CODE.format(version="1"))
    return path


def one(rec, prompt="Recommend movies", k=10, **kw):
    (resp,) = rec.recommend([Request.from_prompt(prompt, k=k, **kw)])
    return resp


def test_file_target_list_of_titles_is_rendered(user_file):
    rec = PythonRecommender(f"{user_file}:titles")
    assert rec.spec == f"python:{user_file}:titles"
    assert rec.capabilities == frozenset({"generate"})
    resp = one(rec, k=2)
    assert resp == Response(text="1. Alien (1979)\n2. Heat (1995)")


def test_module_target(tmp_path, monkeypatch):
    name = f"ra_usermod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_CODE.format(version="1"))
    monkeypatch.syspath_prepend(str(tmp_path))
    rec = PythonRecommender(f"{name}:raw")
    assert one(rec).text.startswith("Here you go")


def test_module_in_current_directory_is_found(tmp_path, monkeypatch):
    import sys

    name = f"ra_cwdmod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_CODE.format(version="1"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    rec = PythonRecommender(f"{name}:titles")
    assert one(rec, k=1).text == "1. Alien (1979)"
    assert str(tmp_path) not in sys.path  # no lasting side effect


def test_dict_with_item_ids(user_file):
    rec = PythonRecommender(f"{user_file}:ids")
    resp = one(rec, k=2)
    assert resp.item_ids == ["1", "2"] and resp.text == "" and resp.error is None
    resp = one(PythonRecommender(f"{user_file}:ids_and_text"))
    assert resp.item_ids == ["a"] and resp.text == "1. A"


def test_messages_and_k_are_passed(user_file):
    rec = PythonRecommender(f"{user_file}:echo")
    assert one(rec, "hi", k=3, system="sys").text == "system:sys | user:hi k=3"


def test_function_raising_gives_response_error_and_continues(user_file):
    rec = PythonRecommender(f"{user_file}:boom")
    out = rec.recommend([Request.from_prompt("please fail"), Request.from_prompt("fine")])
    assert out[0].error == "python recommender raised ValueError: bad input second line"
    assert out[1] == Response(text="ok")


@pytest.mark.parametrize("fn,fragment", [("weird", "returned int"),
                                         ("bad_list", "non-string")])
def test_unusable_return_gives_response_error(user_file, fn, fragment):
    resp = one(PythonRecommender(f"{user_file}:{fn}"))
    assert resp.error and fragment in resp.error


def test_batched_function(user_file):
    rec = PythonRecommender(f"{user_file}:batch")
    assert rec.batched
    out = rec.recommend([Request.from_prompt("a", k=2), Request.from_prompt("b", k=5)])
    assert [r.text for r in out] == ["2:a", "5:b"]
    assert rec.recommend([]) == []


def test_batched_errors(user_file):
    out = PythonRecommender(f"{user_file}:bad_batch").recommend(
        [Request.from_prompt("a"), Request.from_prompt("b")])
    assert all("returned 1 results for 2 requests" in r.error for r in out)
    out = PythonRecommender(f"{user_file}:raising_batch").recommend([Request.from_prompt("a")])
    assert out[0].error == "python recommender raised RuntimeError: batch down"


def test_score_capability(user_file):
    rec = PythonRecommender(f"{user_file}:scorer")
    assert rec.supports("score") and rec.supports("generate")
    scores = rec.score([Request([{"role": "user", "content": "x"}], candidates=["ab", "abcd"])])
    assert scores == [[-2.0, -4.0]]
    plain = PythonRecommender(f"{user_file}:titles")
    assert not plain.supports("score")
    assert PythonRecommender.capabilities == frozenset({"generate"})  # class untouched
    with pytest.raises(NotImplementedError):
        plain.score([Request.from_prompt("x")])


def test_callable_object_and_dotted_attribute(user_file):
    assert one(PythonRecommender(f"{user_file}:ranker")).text == "1. Callable"
    assert one(PythonRecommender(f"{user_file}:ranker.method")).text == "1. Method"
    assert len(PythonRecommender(f"{user_file}:ranker").fingerprint()) == 64


@pytest.mark.parametrize("target", ["nocolon", ":fn", "mod:", "mod:1bad", "my mod:fn",
                                    "mod:fn-x"])
def test_bad_target_syntax(target):
    with pytest.raises(ModelSpecError, match="malformed"):
        PythonRecommender(target)


def test_missing_module_file_and_attribute(user_file, tmp_path):
    with pytest.raises(ModelSpecError, match="module 'ra_no_such_module_x' not found"):
        PythonRecommender("ra_no_such_module_x:fn")
    with pytest.raises(ModelSpecError, match="not found"):
        PythonRecommender(f"{tmp_path / 'missing.py'}:fn")
    with pytest.raises(ModelSpecError, match="no attribute 'nope'"):
        PythonRecommender(f"{user_file}:nope")
    with pytest.raises(ModelSpecError, match="not a function"):
        PythonRecommender(f"{user_file}:not_callable")
    with pytest.raises(ModelSpecError, match="module 'json.nope_x' not found"):
        PythonRecommender("json.nope_x:fn")


def test_user_module_failing_at_import_is_a_runtime_error(tmp_path):
    bad = tmp_path / "badimport.py"
    bad.write_text("import ra_dependency_that_is_missing\n")
    with pytest.raises(ModelRuntimeError, match="ra_dependency_that_is_missing") as exc:
        PythonRecommender(f"{bad}:fn")
    assert "\n" not in str(exc.value)
    boom = tmp_path / "boomimport.py"
    boom.write_text("raise RuntimeError('nope')\n")
    with pytest.raises(ModelRuntimeError, match="RuntimeError: nope"):
        PythonRecommender(f"{boom}:fn")


def test_fingerprint_tracks_source_and_version(tmp_path):
    a = tmp_path / "a" / "rec.py"
    b = tmp_path / "b" / "rec.py"
    c = tmp_path / "c" / "rec.py"
    d = tmp_path / "d" / "rec.py"
    for p in (a, b, c, d):
        p.parent.mkdir()
    a.write_text(USER_CODE.format(version="1"))
    b.write_text(USER_CODE.format(version="1"))  # same code elsewhere: same fingerprint
    c.write_text(USER_CODE.format(version="2"))  # version bumped
    d.write_text(USER_CODE.format(version="1").replace('"Jaws (1975)"', '"Jaws (1976)"'))
    fa, fb, fc, fd = (PythonRecommender(f"{p}:titles").fingerprint() for p in (a, b, c, d))
    assert fa == fb and len({fa, fc, fd}) == 3
    assert fa == PythonRecommender(f"{a}:titles").fingerprint()
    assert PythonRecommender(f"{a}:raw").fingerprint() != fa
    # unchanged function, other function in the module edited: same fingerprint
    e = tmp_path / "e" / "rec.py"
    e.parent.mkdir()
    e.write_text(USER_CODE.format(version="1").replace("Here you go", "Voila"))
    assert PythonRecommender(f"{e}:titles").fingerprint() == fa


def test_function_level_version_overrides_module(tmp_path):
    p = tmp_path / "v.py"
    p.write_text(textwrap.dedent("""
        __recaudit_version__ = "mod"
        def f(messages, k):
            return "x"
    """))
    base = PythonRecommender(f"{p}:f")
    fp = base.fingerprint()
    base.fn.__recaudit_version__ = "fn-2"
    assert PythonRecommender(f"{p}:f").fingerprint() != fp


def test_parse_target_handles_paths_with_colons():
    assert parse_target("C:/x/rec.py:fn") == ("C:/x/rec.py", "fn")
    assert parse_target("pkg.mod:Cls.meth") == ("pkg.mod", "Cls.meth")


STREAMING = '''
calls = []


def counted(messages, k):
    calls.append(messages[-1]["content"])
    return ["Heat"]


def picky(messages, candidates):
    if "down" in messages[-1]["content"]:
        raise RuntimeError("scorer down")
    return [float("nan") if c == "nan" else 1.0 for c in candidates]


counted.score = picky
'''


@pytest.fixture
def streaming(tmp_path) -> PythonRecommender:
    path = tmp_path / f"streaming_{uuid.uuid4().hex}.py"
    path.write_text(STREAMING, encoding="utf-8")
    return PythonRecommender(f"{path}:counted")


def test_a_per_request_function_hands_each_answer_over_as_it_returns(streaming):
    from recaudit.recommenders.base import stream_recommender

    stream = stream_recommender(streaming, [Request.from_prompt("a"), Request.from_prompt("b")])
    first = next(stream)
    assert first[0] == 0 and first[1].text == "1. Heat" and streaming.module.calls == ["a"]
    assert next(stream)[0] == 1 and streaming.module.calls == ["a", "b"]


def test_a_failing_or_non_finite_score_fails_its_request_only(streaming):
    from recaudit.recommenders.base import call_recommender

    def ask(text: str, *candidates: str) -> Request:
        return Request([{"role": "user", "content": text}], candidates=candidates)

    reqs = [ask("ok", "x", "y"), ask("down", "x"), ask("ok", "nan", "y"), ask("ok", "z")]
    out = call_recommender(streaming, reqs)
    assert [r.scores for r in out] == [[1.0, 1.0], None, None, [1.0]]
    assert out[1].error == "python recommender score raised RuntimeError: scorer down"
    assert out[2].error == ("score returned nan for 1 of 2 candidates (first: 'nan'); scores "
                            "must be finite")
    with pytest.raises(ModelRuntimeError, match="score raised RuntimeError: scorer down"):
        streaming.score(reqs)  # the list API has no error field: it still raises


def test_repeated_samples_pass_the_sample_index_to_a_function_that_takes_it(tmp_path):
    path = tmp_path / f"sampled_{uuid.uuid4().hex}.py"
    path.write_text(textwrap.dedent('''
        def sampled(messages, k, sample):
            return f"sample {sample}"

        def keyword(messages, k, *, sample=0):
            return f"keyword {sample}"

        def plain(messages, k):
            return "same"

        def batch(requests):
            return [f"batch {r.sample}" for r in requests]
        batch.batched = True
    '''), encoding="utf-8")
    reqs = [Request.from_prompt("p").with_sample(j) for j in range(3)]
    for name, want in (("sampled", ["sample 0", "sample 1", "sample 2"]),
                       ("keyword", ["keyword 0", "keyword 1", "keyword 2"]),
                       ("plain", ["same"] * 3),
                       ("batch", ["batch 0", "batch 1", "batch 2"])):
        rec = PythonRecommender(f"{path}:{name}")
        assert [r.text for r in rec.recommend(reqs)] == want, name
    assert PythonRecommender(f"{path}:sampled").takes_sample
    assert not PythonRecommender(f"{path}:plain").takes_sample
