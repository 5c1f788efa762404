"""Bad model specs through ``recaudit recommend --model SPEC``: one stderr line, exit 2 for a
spec or path that is wrong, exit 3 for weights that exist but cannot be loaded (damaged files).
Checkpoints are built from the tiny Llama of tests/support/tiny_lm.py; hostile ones leave a
marker file if their code runs, and no test ever finds one."""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil

import pytest

from .bad_input import assert_cli_error



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.support.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


class _Hostile:
    """Unpickling this writes ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "unpickled")


def _copy(tiny, dest):
    shutil.copytree(tiny, dest)
    return dest


def _remote_code(tiny, dest, model_type, marker):
    """A checkpoint whose config maps to its own modelling code (``auto_map``)."""
    d = _copy(tiny, dest)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig",
                                                 "AutoModelForCausalLM": "evil.EvilModel"})
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as EvilModel\n")
    return d


def make_case(kind, tiny, tmp_path):
    """(spec, path for the message) of one bad checkpoint."""
    d = tmp_path / "model"
    if kind == "nonexistent":
        return f"hf:{d}", d
    if kind == "no weights":
        d = _copy(tiny, d)
        (d / "model.safetensors").unlink()
        return f"hf:{d}", d
    if kind == "no config":
        d = _copy(tiny, d)
        (d / "config.json").unlink()
        return f"hf:{d}", d
    if kind == "pickle only":
        d = _copy(tiny, d)
        (d / "model.safetensors").unlink()
        (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Hostile(tmp_path / "MARKER")))
        return f"hf:{d}", d
    if kind == "remote code":
        d = _remote_code(tiny, d, "evilmodel", tmp_path / "MARKER")
        return f"hf:{d}", d
    if kind.endswith(("corrupt safetensors", "truncated safetensors")):
        d = _copy(tiny, d)
        f = d / "model.safetensors"
        data = f.read_bytes()
        f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + b"\0" * 64
                      if "corrupt" in kind else data[: len(data) // 2])
        return f"{'embedding' if kind.startswith('embedding') else 'hf'}:{d}", f
    if kind == "hf: a file":
        f = tmp_path / "model.gguf"
        f.write_bytes(b"GGUF")
        return f"hf:{f}", f
    g = tmp_path / "model.gguf"
    if kind == "gguf: header only":
        g.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x05" * 20)
    elif kind == "gguf: truncated real file":
        from recaudit.recommenders.gguf import bundled_smollm2_path

        with open(bundled_smollm2_path(), "rb") as fh:
            g.write_bytes(fh.read(4096))
    elif kind == "gguf: bad magic":
        g.write_bytes(b"GGML this is not gguf")
    elif kind == "gguf: empty":
        g.write_bytes(b"")
    elif kind == "gguf: a directory":
        g.mkdir()
    elif kind == "embedding: no weights":
        d = _copy(tiny, d)
        (d / "model.safetensors").unlink()
        return f"embedding:{d}", d
    elif kind == "embedding: nonexistent":
        return f"embedding:{d}", d
    return f"gguf:{g}", g


# (case, exit code, expected line after "recaudit: error: "; {path} from make_case)
CASES = [
    ("nonexistent", 2, "model path not found: {path}"),
    ("no weights", 2, "no model weights (.safetensors) found in {path}"),
    ("pickle only", 2, "{path} has only pickle weights (pytorch_model.bin); pickle files can run "
                       "arbitrary code when loaded; pass --allow-pickle to load them"),
    ("remote code", 2, "{path} needs custom model code; pass --trust-remote-code to run it"),
    ("corrupt safetensors", 3, "damaged safetensors file {path}: SafetensorError: Error while "
                               "deserializing header: <ANY>"),
    ("truncated safetensors", 3, "damaged safetensors file {path}: SafetensorError: Error while "
                                 "deserializing header: incomplete metadata, file not fully "
                                 "covered"),
    ("no config", 3, "could not load the model in {path}: <ANY>"),
    ("hf: a file", 2, "model path is not a directory: {path} (for a .gguf file use gguf:{path})"),
    ("gguf: header only", 3, "damaged or truncated GGUF file {path}: ValueError: <ANY>"),
    ("gguf: truncated real file", 3, "damaged or truncated GGUF file {path}: ValueError: <ANY>"),
    ("gguf: bad magic", 2, "not a GGUF file (bad magic bytes): {path}"),
    ("gguf: empty", 2, "not a GGUF file (bad magic bytes): {path}"),
    ("gguf: a directory", 2, "not a GGUF file (a directory): {path}"),
    ("gguf: nonexistent", 2, "GGUF file not found: {path}"),
    ("embedding: nonexistent", 2, "embedding model directory {path} not found"),
    ("embedding: no weights", 2, "embedding model directory {path} has no weights "
                                 "(*.safetensors)"),
    ("embedding: truncated safetensors", 3, "damaged safetensors file {path}: SafetensorError: "
                                            "Error while deserializing header: incomplete "
                                            "metadata, file not fully covered"),
]


@pytest.mark.parametrize("kind, exit_code, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_checkpoint(tiny, tmp_path, capsys, kind, exit_code, expected):
    spec, path = make_case(kind, tiny, tmp_path)
    assert_cli_error(capsys, ["recommend", "--model", spec, "--prompt", "hi"], exit_code,
                     expected, path=path)
    assert not (tmp_path / "MARKER").exists(), "checkpoint code ran"


SPEC_CASES = [
    (["--model", "bogus:x"],
     "unknown model kind 'bogus' in 'bogus:x'; known: hf, gguf, embedding, openai, python, replay, "
     "vllm, rankings"),
    (["--model", " "], "empty model spec; try 'smollm2', 'minilm', 'hf:PATH', ..."),
    (["--model", "hf:"], "unknown model spec 'hf:'; expected one of smollm2, minilm, hf:..., "
                         "gguf:..., embedding:..., openai:..., python:..., replay:..., vllm:..., "
                         "rankings:..."),
    (["--model", "openai:http://127.0.0.1:9/v1"],
     "openai spec needs a model name: openai:URL#MODEL (got 'openai:http://127.0.0.1:9/v1')"),
    (["--model", "gguf:x.gguf", "--trust-remote-code"],
     "--trust-remote-code applies to hf: checkpoints only"),
    (["--model", "python:no_such_module_here:fn"],
     "python recommender 'no_such_module_here:fn': module 'no_such_module_here' not found"),
    (["--model", "python:os:no_such_function"],
     "python recommender 'os:no_such_function': os has no attribute 'no_such_function'"),
    (["--model", "python:tests.cli_recommenders:constant", "--batch-size", "4"],
     "model_options: unknown option 'batch_size' for python models; known: none"),
]


@pytest.mark.parametrize("args, expected", SPEC_CASES, ids=[" ".join(c[0]) for c in SPEC_CASES])
def test_bad_spec(capsys, args, expected):
    assert_cli_error(capsys, ["recommend", *args, "--prompt", "hi"], 2, expected)


def test_replay_of_a_missing_file(tmp_path, capsys):
    path = tmp_path / "answers.jsonl"
    assert_cli_error(capsys, ["recommend", "--model", f"replay:{path}", "--prompt", "hi"], 2,
                     "replay: {path} does not exist", path=path)


def test_remote_code_on_a_known_architecture_loads_natively(tiny, tmp_path):
    """``auto_map`` on a Llama config: transformers' own Llama class is used, the checkpoint's
    module is never imported (no marker), and the model generates."""
    from recaudit.recommenders import Decoding, Request, load_recommender

    from . import tally

    tally.add("bad inputs")
    marker = tmp_path / "MARKER"
    d = _remote_code(tiny, tmp_path / "model", "llama", marker)
    rec = load_recommender(f"hf:{d}", Decoding(max_new_tokens=4))
    assert type(rec.model).__module__ == "transformers.models.llama.modeling_llama"
    [response] = rec.recommend([Request.from_prompt("Recommend movies", k=3)])
    assert response.error is None
    assert not marker.exists(), "remote code ran"


def test_the_markers_would_catch_code_that_ran(tiny, tmp_path):
    """The traps are live: unpickling the hostile weights, or running the checkpoint's module,
    does write the marker (so its absence above means nothing ran)."""
    import runpy

    marker = tmp_path / "MARKER"
    pickle.loads(pickle.dumps(_Hostile(marker)))
    assert marker.read_text() == "unpickled"
    marker.unlink()
    d = _remote_code(tiny, tmp_path / "model", "evilmodel", marker)
    runpy.run_path(str(d / "evil.py"))
    assert marker.read_text() == "remote code ran"
