"""PEFT/LoRA adapter checkpoints through ``hf:ADAPTER_DIR``: base + adapter, merged, safe."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from recaudit.cli import main
from recaudit.errors import ModelRuntimeError, ModelSpecError
from recaudit.recommenders import Decoding, Request, load_recommender
from recaudit.recommenders.hf import HFRecommender

from . import tiny_models as tm
from .test_hf import assert_batch_composition_never_matters

PROMPTS = [("I am a male user who likes horror. " * (i % 3 + 1)) + f"Recommend {i + 2} movies."
           for i in range(8)]
TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


def make_lora(base_dir: Path, path: Path, seed: int = 1, safe: bool = True,
              tokenizer: Any = None) -> Path:
    """A rank-4 LoRA on the tiny Llama's attention and MLP projections, with random (non-zero)
    A and B so that it changes the output, saved with ``save_pretrained``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    torch.manual_seed(seed)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS,
                     init_lora_weights=False, task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft reads a transformers attribute deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(str(path), safe_serialization=safe)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    return path


def _edit_config(d: Path, **changes: Any) -> None:
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg.update(changes)
    (d / "adapter_config.json").write_text(json.dumps(cfg))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prompts(rec: HFRecommender) -> list[list[int]]:
    return [rec.prompt_ids(Request.from_prompt(p)) for p in PROMPTS]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_lora")
    base = tm.make_causal(root / "base")
    return {"root": root, "base": base, "lora": make_lora(base, root / "lora")}


@pytest.fixture(scope="module")
def recs(dirs) -> dict[str, HFRecommender]:
    dec = Decoding(max_new_tokens=12)
    return {"base": load_recommender(f"hf:{dirs['base']}", dec, batch_size=3),
            "lora": load_recommender(f"hf:{dirs['lora']}", dec, batch_size=3)}


def test_adapter_is_applied_merged_and_changes_the_output(dirs, recs):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, lora = recs["base"], recs["lora"]
    assert lora.base_dir == dirs["base"] and lora.adapter_files == [
        dirs["lora"] / "adapter_model.safetensors"]
    # merged: only plain nn.Linear layers are left, no peft wrapper anywhere
    assert type(lora.model).__name__ == "LlamaForCausalLM"
    assert not [m for m in lora.model.modules() if type(m).__module__.startswith("peft")]
    prompts = _prompts(base)
    assert prompts == _prompts(lora)  # no tokenizer in the adapter dir: the base's is used
    out_base, out_lora = base.generate_ids(prompts), lora.generate_ids(prompts)
    assert [t for t, _ in out_base] != [t for t, _ in out_lora]
    # the merged weights compute what the unmerged PeftModel computes
    ids = torch.tensor([prompts[0]])
    ref_model = AutoModelForCausalLM.from_pretrained(str(dirs["base"]), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = PeftModel.from_pretrained(ref_model, str(dirs["lora"])).eval()
    with torch.inference_mode():
        want = ref(input_ids=ids).logits
        got = lora.model(input_ids=ids).logits
        plain = base.model(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(plain, want, atol=1e-2)


def test_fingerprint_covers_base_and_adapter_weights(dirs, recs):
    base, lora = recs["base"], recs["lora"]
    base_sha = _sha(dirs["base"] / "model.safetensors")
    adapter_sha = _sha(dirs["lora"] / "adapter_model.safetensors")
    assert base.weights_sha256() == base_sha and base.adapter_weights_sha256() is None
    assert lora.base_weights_sha256() == base_sha
    assert lora.adapter_weights_sha256() == adapter_sha
    assert lora.weights_sha256() == hashlib.sha256(
        f"base  {base_sha}\nadapter  {adapter_sha}\n".encode()).hexdigest()
    assert lora.fingerprint() != base.fingerprint() and len(lora.fingerprint()) == 64
    # one adapter weight changed by one step: another fingerprint
    from safetensors.torch import load_file, save_file

    edited = dirs["root"] / "lora-edited"
    shutil.copytree(dirs["lora"], edited)
    tensors = load_file(str(edited / "adapter_model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 0.25
    save_file(tensors, str(edited / "adapter_model.safetensors"), metadata={"format": "pt"})
    other = HFRecommender(str(edited), Decoding(max_new_tokens=12))
    assert other.base_weights_sha256() == base_sha
    assert other.adapter_weights_sha256() != adapter_sha
    assert other.fingerprint() not in (lora.fingerprint(), base.fingerprint())
    # the same weights with another lora_alpha (a scale on B @ A): another fingerprint too
    scaled = dirs["root"] / "lora-alpha"
    shutil.copytree(dirs["lora"], scaled)
    _edit_config(scaled, lora_alpha=16)
    assert HFRecommender(str(scaled)).fingerprint() != lora.fingerprint()


def test_base_option_overrides_the_config_path(dirs, recs):
    moved = dirs["root"] / "lora-moved"
    shutil.copytree(dirs["lora"], moved)
    _edit_config(moved, base_model_name_or_path=str(dirs["root"] / "gone" / "base"))
    copy_of_base = dirs["root"] / "base-copy"
    shutil.copytree(dirs["base"], copy_of_base)
    rec = load_recommender(f"hf:{moved}", Decoding(max_new_tokens=12), base=str(copy_of_base))
    assert rec.base_dir == copy_of_base
    # same bytes elsewhere: the same fingerprint and outputs (the base path is not identity)
    assert rec.fingerprint() == recs["lora"].fingerprint()
    prompts = _prompts(rec)[:2]
    assert rec.generate_ids(prompts) == recs["lora"].generate_ids(prompts)
    # the option wins over a config path that exists
    other_base = tm.make_causal(dirs["root"] / "base-seed1", seed=1)
    swapped = load_recommender(f"hf:{dirs['lora']}", Decoding(max_new_tokens=12),
                               base=str(other_base))
    assert swapped.base_dir == other_base
    assert swapped.base_weights_sha256() == _sha(other_base / "model.safetensors")
    assert swapped.fingerprint() != recs["lora"].fingerprint()
    with pytest.raises(ModelSpecError, match="applies to PEFT adapters only"):
        load_recommender(f"hf:{dirs['base']}", base=str(other_base))


def test_missing_base_is_a_one_line_spec_error_exit_2(dirs, capsys):
    orphan = dirs["root"] / "lora-orphan"
    shutil.copytree(dirs["lora"], orphan)
    missing = dirs["root"] / "no-such-base"
    _edit_config(orphan, base_model_name_or_path=str(missing))
    with pytest.raises(ModelSpecError) as exc:
        load_recommender(f"hf:{orphan}")
    msg = str(exc.value)
    assert str(missing) in msg and "model_options: {base: PATH}" in msg and "\n" not in msg
    assert exc.value.exit_code == 2
    capsys.readouterr()
    assert main(["recommend", "--model", f"hf:{orphan}", "--prompt", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recaudit: error: base model not found") and "\n" not in err
    assert str(missing) in err and "model_options: {base: PATH}" in err
    # a base option that points nowhere names that path
    with pytest.raises(ModelSpecError, match="model_options.base"):
        load_recommender(f"hf:{dirs['lora']}", base=str(missing))


def test_adapter_missing_weights_for_its_config_is_an_error(dirs):
    from safetensors.torch import load_file, save_file

    partial = dirs["root"] / "lora-partial"
    shutil.copytree(dirs["lora"], partial)
    tensors = load_file(str(partial / "adapter_model.safetensors"))
    dropped = sorted(tensors)[0]
    del tensors[dropped]  # a LoRA B left at its init would silently audit another model
    save_file(tensors, str(partial / "adapter_model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelRuntimeError) as exc:
        load_recommender(f"hf:{partial}")
    assert "missing adapter keys" in str(exc.value) and "\n" not in str(exc.value)
    assert exc.value.exit_code == 3


def test_pickle_adapter_needs_allow_pickle_and_adapter_tokenizer_wins(dirs, recs):
    tok = tm.build_tokenizer(chat_template="{% for m in messages %}{{ m['content'] }} "
                             "{% endfor %}")
    pickled = make_lora(dirs["base"], dirs["root"] / "lora-pickle", safe=False, tokenizer=tok)
    assert (pickled / "adapter_model.bin").exists()
    assert not (pickled / "adapter_model.safetensors").exists()
    with pytest.raises(ModelSpecError) as exc:
        load_recommender(f"hf:{pickled}")
    msg = str(exc.value)
    assert "pickle" in msg and "--allow-pickle" in msg and "adapter_model.bin" in msg
    assert "\n" not in msg
    rec = load_recommender(f"hf:{pickled}", Decoding(max_new_tokens=12), allow_pickle=True)
    assert rec.adapter_files == [pickled / "adapter_model.bin"]
    # the adapter directory's tokenizer (another chat template) is used, not the base's
    assert rec.tokenizer.chat_template == tok.chat_template
    assert rec.tokenizer.chat_template != recs["base"].tokenizer.chat_template
    # same seed as the safetensors adapter: the same weights, so the same merged model
    prompts = _prompts(recs["lora"])[:3]
    assert rec.generate_ids(prompts) == recs["lora"].generate_ids(prompts)


def test_adapted_model_batches_bit_identically_to_one_at_a_time(recs):
    rec = recs["lora"]
    assert rec.exact_batching and rec.batch_invariance().startswith("yes (fixed-shape tiles")
    prompts = _prompts(rec)
    assert len({len(p) for p in prompts}) > 2  # padding really happens
    batched = rec.generate_ids(prompts)  # batches of 3 sorted by length, the last one partial
    single = [rec.generate_ids([p])[0] for p in prompts]
    assert batched == single
    assert_batch_composition_never_matters(rec, [prompts[3]] + prompts[:3] + prompts[4:])
