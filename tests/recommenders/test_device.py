"""``model_options.device`` (issue 21): auto|cpu|cuda for ``hf:`` and ``gguf:``/``smollm2``.

On this machine (no CUDA) ``cpu`` and ``auto`` run on the CPU with today's numerics and
fingerprint; ``cuda`` is refused in one line before anything loads. Where a GPU is needed the
tests patch ``torch.cuda.is_available`` only to reach the decisions (auto's choice, the bf16
default, the fingerprint's device entry); no tensor is ever moved to a faked GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recaudit.errors import EXIT_RUNTIME, EXIT_USAGE, ModelRuntimeError, ModelSpecError
from recaudit.recommenders import load_recommender
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.gguf import GGUFRecommender
from recaudit.recommenders.hf import HFRecommender, adapter
from recaudit.recommenders.hf.device import default_dtype, device_label, resolve_device

from . import tiny_models as tm

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
PROMPTS = ["I am a female user who likes romance. Recommend 3 movies.",
           "I am a male user who likes horror and thriller movies. Recommend 5 movies."]


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory) -> Path:
    return tm.make_causal(tmp_path_factory.mktemp("tiny_device") / "causal")


@pytest.fixture(scope="module")
def on_cpu(causal_dir) -> HFRecommender:
    return HFRecommender(str(causal_dir), Decoding(max_new_tokens=6), batch_size=2,
                         device="cpu")


@pytest.fixture
def fake_cuda_available(monkeypatch):
    """``torch.cuda.is_available()`` says True; nothing else about CUDA is faked."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_cpu_runs_on_the_cpu_with_todays_numerics_and_fingerprint(on_cpu, causal_dir):
    assert on_cpu.device == "cpu"
    assert {p.device.type for p in on_cpu.model.parameters()} == {"cpu"}
    assert next(on_cpu.model.parameters()).dtype == torch.float32  # the CPU default is unchanged
    payload = on_cpu._fingerprint_payload()
    assert "device" not in payload and payload["dtype"] == "torch.float32"
    assert "device" not in on_cpu.batch_invariance()
    reqs = [Request.from_prompt(p) for p in PROMPTS]
    answers = on_cpu.recommend(reqs)
    assert all(a.n_output_tokens > 0 for a in answers)
    # the tiles were verified on the CPU and batching stays bit-exact there
    assert on_cpu.exact_batching
    ids = [on_cpu.prompt_ids(r) for r in reqs]
    assert on_cpu.generate_ids(ids) == [on_cpu.generate_ids([p])[0] for p in ids]


@no_cuda
def test_auto_resolves_to_the_cpu_here_with_the_same_fingerprint(on_cpu, causal_dir):
    assert resolve_device("auto") == "cpu"
    auto = HFRecommender(str(causal_dir), Decoding(max_new_tokens=6), batch_size=2)  # default
    assert auto.device == "cpu"
    assert auto.fingerprint() == on_cpu.fingerprint()
    assert auto.batch_invariance() == on_cpu.batch_invariance()


@no_cuda
def test_cuda_without_cuda_is_one_line_exit_2_before_loading(causal_dir, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the device was checked")

    monkeypatch.setattr(adapter, "load_checkpoint", no_load)
    with pytest.raises(ModelSpecError) as err:
        HFRecommender(str(causal_dir), device="cuda")
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == EXIT_USAGE
    assert "device is cuda" in message and "torch.cuda.is_available() is False" in message
    # the same through the spec loader (model_options.device)
    with pytest.raises(ModelSpecError, match="device is cuda"):
        load_recommender(f"hf:{causal_dir}", device="cuda")


def test_unknown_device_is_one_line_with_the_choices(causal_dir):
    with pytest.raises(ModelSpecError, match=r"device must be one of auto, cpu, cuda, got 'gpu'"):
        HFRecommender(str(causal_dir), device="gpu")


@no_cuda
def test_gguf_and_smollm2_take_the_device_option(tmp_path):
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"nope")
    # the device is refused before the file is read (else: "bad magic bytes")
    with pytest.raises(ModelSpecError, match="device is cuda"):
        GGUFRecommender(str(not_gguf), device="cuda")
    with pytest.raises(ModelSpecError, match="device is cuda"):
        load_recommender(f"gguf:{not_gguf}", device="cuda")
    with pytest.raises(ModelSpecError, match="device is cuda"):
        load_recommender("smollm2", device="cuda")
    with pytest.raises(ModelSpecError, match="bad magic bytes"):  # cpu: on to the file checks
        GGUFRecommender(str(not_gguf), device="cpu")


def test_auto_picks_cuda_and_bf16_where_cuda_is_available(fake_cuda_available):
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"  # an explicit cpu stays on the cpu
    assert default_dtype("cuda") == "bfloat16"
    assert default_dtype("cpu") == "float32"


def test_a_cuda_request_loads_bf16_and_never_falls_back_to_the_cpu(causal_dir, monkeypatch,
                                                                   fake_cuda_available):
    """With CUDA reported but no GPU to move to, the load goes to bf16 then fails in one line.

    (Where torch has a GPU the move succeeds; here it cannot, and the run must stop, not go on
    quietly on the CPU.)
    """
    loaded = {}
    real = adapter.load_checkpoint

    def spy(*args, **kwargs):
        loaded["dtype"] = kwargs.get("dtype")
        loaded["model"], tok = real(*args, **kwargs)
        return loaded["model"], tok

    monkeypatch.setattr(adapter, "load_checkpoint", spy)
    try:
        torch.zeros(1, device="cuda")
        pytest.skip("this torch can allocate on cuda: the move would succeed")
    except (AssertionError, RuntimeError):
        pass
    with pytest.raises(ModelRuntimeError) as err:
        HFRecommender(str(causal_dir), device="auto")
    assert loaded["dtype"] == "bfloat16"
    assert next(loaded["model"].parameters()).dtype == torch.bfloat16
    assert "could not move the model to cuda" in str(err.value)
    assert "\n" not in str(err.value) and err.value.exit_code == EXIT_RUNTIME
    # an explicit dtype wins over the GPU default
    with pytest.raises(ModelRuntimeError):
        HFRecommender(str(causal_dir), device="cuda", dtype="float32")
    assert loaded["dtype"] == "float32"


def test_the_fingerprint_and_model_line_record_a_gpu_device(on_cpu, monkeypatch,
                                                            fake_cuda_available):
    """The payload gains a device entry exactly when the device is not the CPU.

    The adapter's ``device`` is set by hand to read the payload a GPU load would give; nothing
    runs on it.
    """
    cpu_print = on_cpu.fingerprint()
    assert device_label("cpu") == "cpu"
    label = device_label("cuda")  # no GPU to name here: the kind alone
    assert label.startswith("cuda")
    monkeypatch.setattr(on_cpu, "device", "cuda")
    monkeypatch.setattr(on_cpu, "_fingerprint", None)
    payload = on_cpu._fingerprint_payload()
    assert payload["device"] == label
    assert on_cpu.fingerprint() != cpu_print
    assert f"device {label}, weights float32" in on_cpu.batch_invariance()


def test_auto_batch_size_on_a_gpu_is_bounded_by_the_gpus_memory(on_cpu, monkeypatch):
    from recaudit.recommenders.hf import sizing

    m_d = on_cpu.batching.decode_rows or 1  # None: decode on verified heights
    rows, why = sizing.auto_batch_size(on_cpu.model, m_d, 8, "cuda")
    assert rows % m_d == 0 and rows >= sizing._GPU_ROWS and "cuda" in why
    monkeypatch.setattr(sizing, "_free_memory_bytes", lambda: 1)  # host memory plays no part
    assert sizing.auto_batch_size(on_cpu.model, m_d, 8, "cuda")[0] == rows
    monkeypatch.setattr(sizing, "_free_gpu_memory_bytes", lambda: 1)  # a full GPU: one row
    assert sizing.auto_batch_size(on_cpu.model, m_d, 8, "cuda") == (
        1, "auto: cuda, 64 rows wanted, capped by free memory")
