"""Gates: loading, selection, the four modes, errors, the CLI exit codes and the examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from recaudit.cli import main
from recaudit.errors import ConfigError, GateSpecError
from recaudit.gates import GateSpec, evaluate_gates, gate_name, load_gates, parse_gates

from .gate_recommenders import audit_result, metric, probe_result

ROOT = Path(__file__).resolve().parents[1]


def cf_result(alpha: float | None = None, **probe_extra):
    """A counterfactual run: SNSR at k=10 and 20 for gender and age, per-value Jaccard."""
    return audit_result([probe_result([
        metric("snsr_jaccard", 0.30, attribute="gender", k=10, ci=(0.05, 0.40)),
        metric("snsr_jaccard", 0.15, attribute="gender", k=20, ci=(0.12, 0.20), p=0.004,
               p_adj=0.008),
        metric("snsr_jaccard", 0.06, attribute="age", k=10, ci=(0.01, 0.12)),
        metric("snsr_jaccard", 0.05, attribute="age", k=20, ci=(0.00, 0.11), p=0.40,
               p_adj=0.40),
        metric("jaccard", 0.80, attribute="gender", value="a boy", k=20, ci=(0.7, 0.9)),
        metric("jaccard", 0.55, attribute="gender", value="a girl", k=20, ci=(0.45, 0.65)),
        metric("hallucination", 0.10, attribute="gender", value="a boy", ci=(0.05, 0.15)),
        metric("hallucination", 0.35, attribute="gender", value="a girl", ci=(0.25, 0.45)),
    ], **probe_extra)], alpha=alpha)


def gate(**kw) -> GateSpec:
    kw.setdefault("probe", "counterfactual")
    return GateSpec(**kw)


def one(result, **kw):
    (res,) = evaluate_gates(result, [gate(**kw)])
    return res


# -- loading -------------------------------------------------------------------------------------
def test_load_top_level_list_and_bare_list(tmp_path):
    body = [{"probe": "counterfactual", "metric": "snsr_jaccard", "max": 0.1, "k": 20}]
    a = tmp_path / "a.yaml"
    a.write_text(yaml.safe_dump({"gates": body}))
    b = tmp_path / "b.yaml"
    b.write_text(yaml.safe_dump(body))
    assert load_gates(a) == load_gates(b)
    (spec,) = load_gates(a)
    assert spec.mode == "ci" and spec.max == 0.1 and spec.k == 20
    assert gate_name(spec) == "counterfactual.snsr_jaccard.k20"
    (tmp_path / "empty.yaml").write_text("gates:\n")
    assert load_gates(tmp_path / "empty.yaml") == []


@pytest.mark.parametrize("text, needle", [
    ("gates:\n  - {probe: counterfactual, metric: snsr_jaccard, max: high}\n",
     "g.yaml: gates[0].max: the bound must be a number, got 'high'"),
    ("gates:\n  - {probe: counterfactual, metric: snsr_jaccard, max: '0.1'}\n",
     "gates[0].max: the bound must be a number, got '0.1'"),
    ("gates:\n  - {probe: counterfactual, metric: snsr_jaccard, min: true}\n",
     "gates[0].min: the bound must be a number"),
    ("gates:\n  - {probe: c, metric: m, max: 1}\n  - {probe: c, metric: m, maxx: 1}\n",
     "g.yaml: gates[1].maxx: unknown key"),
    ("gates:\n  - {probe: c, metric: m}\n", "gates[0]: a gate needs 'max:' or 'min:'"),
    ("gates:\n  - {probe: c, metric: m, max: 1, mode: strict}\n", "gates[0].mode:"),
    ("gates:\n  - {probe: c, metric: m, min: 2, max: 1}\n", "min 2 is greater than max 1"),
    ("gates:\n  - {probe: c, metric: m, max: 1, k: 0}\n", "gates[0].k: must be a positive"),
    ("gates:\n  - {probe: c, metric: m, max: 1, value: yes}\n", "gates[0].value: must be a str"),
    ("gates:\n  - {metric: m, max: 1}\n", "gates[0].probe: Field required"),
    ("gates:\n  - {probe: c, metric: m, max: 1}\n  - {probe: c, metric: m, max: 2}\n",
     "duplicate gate name 'c.m'"),
    ("gates: {probe: c}\n", "gates: expected a list of gates, got dict"),
    ("gatez: []\n", "expected a top-level 'gates:' list (found keys: gatez)"),
    ("gates:\n  - 3\n", "gates[0]: expected a mapping"),
])
def test_load_errors_are_one_line_with_file_and_key_path(tmp_path, text, needle):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(GateSpecError) as info:
        load_gates(path)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and str(path) in msg


def test_load_missing_file_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="gates file not found"):
        load_gates(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  - {probe: c, metric: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: malformed YAML"):
        load_gates(bad)


# -- selection -----------------------------------------------------------------------------------
def test_unset_k_uses_the_largest_k_and_unset_attribute_reports_the_worst():
    r = one(cf_result(), metric="snsr_jaccard", max=0.1, mode="point")
    assert not r.passed and r.selected == 2  # gender and age at k = 20, not k = 10
    assert r.observed == 0.15 and "gender" in r.message and "k=20" in r.message
    assert "1 of 2 selected records fail" in r.message
    r = one(cf_result(), metric="snsr_jaccard", max=0.2, mode="point")
    assert r.passed and r.observed == 0.15  # closest to the bound shown when all pass


def test_explicit_k_attribute_value_and_probe_id():
    r = one(cf_result(), metric="snsr_jaccard", attribute="gender", k=10, max=0.25, mode="point")
    assert not r.passed and r.selected == 1 and r.observed == 0.30
    r = one(cf_result(), probe="counterfactual:fairllm", metric="jaccard", value="a girl",
            min=0.6, mode="point")
    assert not r.passed and r.observed == 0.55 and "below the minimum 0.6" in r.message
    r = one(cf_result(), metric="jaccard", min=0.5, mode="point")
    assert r.passed and r.selected == 2


def test_records_without_k_and_min_max_together():
    r = one(cf_result(), metric="hallucination", max=0.3, mode="point")
    assert not r.passed and r.observed == 0.35 and r.selected == 2
    r = one(cf_result(), metric="jaccard", min=0.5, max=0.75, mode="point")
    assert not r.passed and r.observed == 0.80 and r.bound == "in [0.5, 0.75]"


def test_gate_applies_to_every_run_of_a_probe_name():
    res = cf_result()
    other = probe_result([metric("snsr_jaccard", 0.5, probe="counterfactual:music",
                                 attribute="gender", k=20, ci=(0.3, 0.7))],
                         id="counterfactual:music")
    res.probes.append(other)
    r = one(res, metric="snsr_jaccard", max=0.2, mode="ci")
    assert not r.passed and r.probe == "counterfactual:music" and r.selected == 3
    assert "counterfactual:music snsr_jaccard" in r.message
    r = one(res, probe="counterfactual:fairllm", metric="snsr_jaccard", max=0.2, mode="ci")
    assert r.passed and r.selected == 2


# -- modes ---------------------------------------------------------------------------------------
def test_point_mode_boundaries():
    assert one(cf_result(), metric="snsr_jaccard", attribute="gender", max=0.15,
               mode="point").passed  # inclusive bound
    assert not one(cf_result(), metric="snsr_jaccard", attribute="gender", max=0.149,
                   mode="point").passed


def test_ci_mode_fails_only_when_the_whole_interval_is_beyond():
    r = one(cf_result(), metric="snsr_jaccard", attribute="gender", max=0.1, mode="ci")
    assert not r.passed and (r.ci_low, r.ci_high) == (0.12, 0.20)
    assert "whole CI above the maximum 0.1" in r.message and "95% CI 0.120 to 0.200" in r.message
    r = one(cf_result(), metric="snsr_jaccard", attribute="gender", max=0.13, mode="ci")
    assert r.passed and "CI reaches it" in r.message  # estimate 0.15 > 0.13, CI low 0.12
    r = one(cf_result(), metric="jaccard", value="a girl", min=0.7, mode="ci")
    assert not r.passed and "whole CI below the minimum 0.7" in r.message
    assert one(cf_result(), metric="jaccard", value="a girl", min=0.6, mode="ci").passed


def test_ci_mode_without_a_ci_falls_back_to_point_and_says_so():
    res = audit_result([probe_result([metric("hallucination", 0.4, attribute="gender",
                                             value="a boy")])])
    r = one(res, metric="hallucination", max=0.3, mode="ci")
    assert not r.passed and "no CI recorded: judged on the point estimate" in r.message


def test_significant_mode():
    # gender: estimate above 0.1 and p_adj 0.008 < 0.05 -> fails
    r = one(cf_result(), metric="snsr_jaccard", max=0.1, mode="significant")
    assert not r.passed and r.p_adjusted == 0.008 and "p_adj=0.008" in r.message
    assert "above the maximum 0.1 and significant" in r.message
    assert "at alpha 0.05" in r.message
    # age: estimate 0.05 above 0.01 but p_adj 0.4 -> passes despite the point estimate
    r = one(cf_result(), metric="snsr_jaccard", attribute="age", max=0.01, mode="significant")
    assert r.passed and "not significant" in r.message
    # gender below the bound: passes even though significant
    assert one(cf_result(), metric="snsr_jaccard", attribute="gender", max=0.2,
               mode="significant").passed
    # alpha comes from the audit's stats config
    r = one(cf_result(alpha=0.005), metric="snsr_jaccard", max=0.1, mode="significant")
    assert r.passed and "at alpha 0.005" in r.message


def test_an_adjusted_p_of_zero_is_significant_and_p_values_use_the_one_format():
    res = audit_result([probe_result([
        metric("leakage_auc", 0.8, probe="leakage", attribute="gender", ci=(0.6, 0.9), p=0.5,
               p_adj=0.0),
        metric("leakage_auc", 0.8, probe="leakage", attribute="age", ci=(0.6, 0.9), p=0.5,
               p_adj=0.0004)], id="leakage", probe="leakage")])
    r = one(res, probe="leakage", attribute="gender", metric="leakage_auc", max=0.65,
            mode="significant")
    assert not r.passed and r.p_adjusted == 0.0 and "p_adj=<0.001" in r.message
    r = one(res, probe="leakage", attribute="age", metric="leakage_auc", max=0.65,
            mode="significant")
    assert "p_adj=<0.001" in r.message  # formatting.fmt_p, as in the report


def test_a_string_alpha_in_the_results_config_is_read_as_a_number():
    r = one(cf_result(alpha="0.005"), metric="snsr_jaccard", max=0.1, mode="significant")
    assert r.passed and "at alpha 0.005" in r.message


def test_estimates_use_the_one_number_format():
    res = audit_result([probe_result([metric("mean_popularity", 123.4567, attribute="g",
                                             ci=(0.00004, 250.0))])])
    r = one(res, metric="mean_popularity", max=100, mode="point")
    assert "= 123.457 (95% CI 4.0e-05 to 250.000)" in r.message  # formatting.fmt


def test_significant_mode_prefers_p_adjusted_then_p_value_then_ci():
    res = audit_result([probe_result([
        metric("leakage_auc", 0.8, probe="leakage", attribute="gender", ci=(0.6, 0.9), p=0.01,
               p_adj=0.2),
        metric("leakage_auc", 0.8, probe="leakage", attribute="age", ci=(0.6, 0.9), p=0.01),
        metric("leakage_auc", 0.8, probe="leakage", attribute="race", ci=(0.7, 0.9)),
    ], id="leakage", probe="leakage")])
    r = one(res, probe="leakage", attribute="gender", metric="leakage_auc", max=0.65,
            mode="significant")
    assert r.passed  # adjusted p 0.2 wins over raw 0.01
    r = one(res, probe="leakage", attribute="age", metric="leakage_auc", max=0.65,
            mode="significant")
    assert not r.passed and "raw p used" in r.message and r.p_adjusted == 0.01
    r = one(res, probe="leakage", attribute="race", metric="leakage_auc", max=0.65,
            mode="significant")
    assert not r.passed and "no p-value recorded: judged in ci mode" in r.message


def floored_result():
    """A position run: Cramér's V of a fair ranker (near its floor) and of a planted bias."""
    return audit_result([probe_result([
        metric("first_place_v", 0.12, probe="position", attribute="fair", ci=(0.08, 0.16),
               p=0.3, p_adj=0.3, null_mean=0.09, null_p95=0.13),
        metric("first_place_v", 0.40, probe="position", attribute="biased", ci=(0.3, 0.5),
               p=0.001, p_adj=0.002, null_mean=0.09, null_p95=0.13),
        metric("first_place_v", 0.12, probe="position", attribute="small", ci=(0.08, 0.16),
               p=0.001, p_adj=0.001, null_mean=0.09, null_p95=0.13),
        metric("first_place_v", 0.12, probe="position", attribute="no floor", ci=(0.08, 0.16),
               p=0.001, p_adj=0.001),
        metric("first_place_v", 0.12, probe="position", attribute="no p", ci=(0.08, 0.16),
               null_mean=0.09, null_p95=0.13),
        metric("hr", 0.3, probe="position", attribute="fair", ci=(0.2, 0.4)),
    ], id="position", probe="position")])


def test_floor_mode_fails_only_on_a_significant_excess_over_the_floor():
    res = floored_result()

    def judge(attribute, bound=0.05):
        return one(res, probe="position", metric="first_place_v", attribute=attribute,
                   max=bound, mode="floor")

    r = judge("fair")  # 0.12 - 0.09 = 0.03 <= 0.05, and p 0.3: passes (point mode fails it)
    assert r.passed and "within the bound after the floor" in r.message
    assert "floor 0.090 (null mean), 95th pct 0.130" in r.message
    assert not one(res, probe="position", metric="first_place_v", attribute="fair", max=0.05,
                   mode="point").passed
    r = judge("biased")  # 0.40 - 0.09 = 0.31 > 0.05 and p_adj 0.002
    assert not r.passed and "estimate less the floor (0.090) above the maximum 0.05 and " \
        "significant" in r.message and "floor mode at alpha 0.05" in r.message
    assert judge("small").passed  # significant, but the excess 0.03 is within the bound
    assert not judge("small", 0.02).passed
    r = judge("no floor")
    assert not r.passed and "no floor recorded: judged in significant mode" in r.message
    r = judge("no p")  # the floor-corrected CI [-0.01, 0.07] reaches the bound
    assert r.passed and "no p-value recorded: judged on the floor-corrected CI" in r.message


def test_floor_mode_on_a_metric_without_a_floor_is_a_one_line_error():
    with pytest.raises(GateSpecError, match="mode floor needs a metric whose declaration has a "
                                            "noise floor; 'hr' has none") as err:
        one(floored_result(), probe="position", metric="hr", max=0.5, mode="floor")
    assert "\n" not in str(err.value)


def test_ci_mode_on_a_floored_metric_judges_the_ci_of_the_excess_over_the_floor():
    res = floored_result()
    r = one(res, probe="position", metric="first_place_v", attribute="fair", max=0.05,
            mode="ci")  # 0.12 - 0.09 = 0.03 in [-0.01, 0.07]: within the bound
    assert r.passed and "within the bound after the floor" in r.message
    r = one(res, probe="position", metric="first_place_v", attribute="fair", max=0.02,
            mode="ci")  # 0.03 > 0.02, but the CI of the excess reaches the bound
    assert r.passed and "estimate less the floor (0.090) beyond the bound but the CI " \
        "reaches it" in r.message
    r = one(res, probe="position", metric="first_place_v", attribute="biased", max=0.05,
            mode="ci")  # [0.3, 0.5] - 0.09 = [0.21, 0.41]
    assert not r.passed and "whole CI less the floor (0.090) above the maximum" in r.message
    # a record without a floor is judged on its CI as recorded (0.08 > 0.05)
    assert not one(res, probe="position", metric="first_place_v", attribute="no floor",
                   max=0.05, mode="ci").passed


def test_missing_estimate_fails_the_gate():
    res = audit_result([probe_result([
        metric("hallucination", 0.1, attribute="age", value="an old", ci=(0.0, 0.2)),
        metric("hallucination", None, attribute="age", value="a young", n=0,
               warning="no responses")])])
    r = one(res, metric="hallucination", max=0.5, mode="point")
    assert not r.passed and "has no estimate" in r.message and "no responses" in r.message


def test_dict_specs_and_config_specs_are_accepted():
    (r,) = evaluate_gates(cf_result(), [{"probe": "counterfactual", "metric": "hallucination",
                                         "max": 0.5, "name": "halluc"}])
    assert r.passed and r.name == "halluc" and r.mode == "ci"
    with pytest.raises(GateSpecError, match=r"gates: \[0\]: a gate needs"):
        evaluate_gates(cf_result(), [{"probe": "counterfactual", "metric": "hallucination"}])
    with pytest.raises(GateSpecError, match="gate 'counterfactual.hallucination': a gate needs"):
        evaluate_gates(cf_result(), [gate(metric="hallucination")])


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, needle", [
    (dict(metric="snsr_jacard"), "gate 'counterfactual.snsr_jacard': no metric 'snsr_jacard' in "
     "probe counterfactual:fairllm; available: hallucination, jaccard, snsr_jaccard"),
    (dict(metric="snsr_jaccard", attribute="race"), "no attribute 'race' for metric "
     "'snsr_jaccard' in probe counterfactual:fairllm; available: age, gender"),
    (dict(metric="jaccard", attribute="gender", value="a man"), "no value 'a man' for metric "
     "'jaccard' for attribute 'gender' in probe counterfactual:fairllm; available: a boy, a girl"),
    (dict(metric="snsr_jaccard", k=5), "no k=5 for metric 'snsr_jaccard' in probe "
     "counterfactual:fairllm; available k: 10, 20"),
    (dict(probe="leakage", metric="leakage_auc"), "probe 'leakage' did not run in this audit; "
     "probe runs: counterfactual:fairllm"),
])
def test_selection_errors_list_what_exists(kw, needle):
    with pytest.raises(GateSpecError) as info:
        evaluate_gates(cf_result(), [gate(max=0.1, **kw)])
    assert needle in str(info.value)


@pytest.mark.parametrize("status", ["error", "skipped"])
def test_gate_on_a_probe_that_did_not_finish_is_an_error(status):
    res = cf_result(status=status, error="RuntimeError: boom")
    with pytest.raises(GateSpecError, match=f"probe counterfactual:fairllm has status {status}: "
                                            "RuntimeError: boom; a gate on it cannot pass"):
        evaluate_gates(res, [gate(metric="snsr_jaccard", max=0.1)])


# -- CLI -----------------------------------------------------------------------------------------
def _save(result, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(result.to_json(), encoding="utf-8")
    return path


def _gates_file(tmp_path: Path, bound: float) -> Path:
    path = tmp_path / f"gates-{bound}.yaml"
    path.write_text(yaml.safe_dump({"gates": [
        {"name": "gender-gap", "probe": "counterfactual", "metric": "snsr_jaccard",
         "attribute": "gender", "max": bound, "mode": "ci"}]}))
    return path


def test_cli_gate_exit_codes(tmp_path, capsys):
    results = _save(cf_result(), tmp_path / "out")
    assert main(["gate", str(results), "--gates", str(_gates_file(tmp_path, 0.1))]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL  gender-gap: snsr_jaccard (gender, k=20) = 0.150")
    assert main(["gate", str(results.parent), "--gates", str(_gates_file(tmp_path, 0.15))]) == 0
    assert capsys.readouterr().out.startswith("PASS  gender-gap:")


def test_cli_gate_uses_the_audits_own_gates(tmp_path):
    res = cf_result()
    res.config["gates"] = [{"probe": "counterfactual", "metric": "hallucination", "max": 0.2,
                            "mode": "ci"}]
    assert main(["gate", str(_save(res, tmp_path))]) == 1
    res.config["gates"][0]["max"] = 0.5
    assert main(["gate", str(_save(res, tmp_path))]) == 0


def test_cli_gate_errors_exit_2(tmp_path, capsys):
    results = _save(cf_result(), tmp_path / "out")
    data = json.loads(results.read_text())
    data["schema_version"] = "0.9"
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    assert main(["gate", str(old), "--gates", str(_gates_file(tmp_path, 0.1))]) == 2
    assert "schema version '0.9' is not supported" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  - {probe: counterfactual, metric: snsr_jacard, max: 0.1}\n")
    assert main(["gate", str(results), "--gates", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no metric 'snsr_jacard'" in err and "snsr_jaccard" in err
    bad.write_text("gates:\n  - {probe: counterfactual, metric: snsr_jaccard, max: high}\n")
    assert main(["gate", str(results), "--gates", str(bad)]) == 2
    assert "gates[0].max: the bound must be a number" in capsys.readouterr().err


# -- examples ------------------------------------------------------------------------------------
def test_example_gates_parse_and_name_real_metrics():
    specs = load_gates(ROOT / "examples" / "gates.yaml")
    assert {s.mode for s in specs} == {"point", "ci", "significant"}
    from recaudit.probes.counterfactual import SIMILARITIES

    cf_metrics = ({f"{a}_{s}" for a in ("snsr", "snsv") for s in SIMILARITIES}
                  | set(SIMILARITIES) | {"hallucination"})
    for s in specs:
        if s.probe.startswith("counterfactual"):
            assert s.metric in cf_metrics, s
    parse_gates(yaml.safe_load((ROOT / "examples" / "gates.yaml").read_text()))


def test_example_github_workflow():
    wf = yaml.safe_load((ROOT / "examples" / "github-actions.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "recaudit audit" in runs and "--out report/" in runs
    assert "download.pytorch.org/whl/cpu" in runs
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload and upload[0]["if"] == "always()" and upload[0]["with"]["path"] == "report/"
    summary = [s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert summary and summary[0]["if"] == "always()" and "report/summary.md" in summary[0]["run"]


# -- real audits of synthetic recommenders (engine, grounding, counterfactual probe, stats) ------
MODE_GATES = [
    {"name": "point", "probe": "counterfactual:fairllm", "metric": "snsr_jaccard", "max": 0.2,
     "mode": "point"},
    {"name": "ci", "probe": "counterfactual:fairllm", "metric": "snsr_jaccard", "max": 0.1,
     "mode": "ci"},
    {"name": "significant", "probe": "counterfactual:fairllm", "metric": "snsr_jaccard",
     "max": 0.1, "mode": "significant"},
    {"name": "floor", "probe": "counterfactual:fairllm", "metric": "snsr_jaccard",
     "max": 0.1, "mode": "floor"},
]


@pytest.fixture(scope="module")
def fair_and_planted(tmp_path_factory):
    from .gate_recommenders import run_synthetic_audit

    folder = tmp_path_factory.mktemp("audits")
    return (run_synthetic_audit(folder, "unbiased", seed=1, gates=MODE_GATES),
            run_synthetic_audit(folder, "biased", seed=1, gates=MODE_GATES))


def test_planted_bias_fails_and_unbiased_passes_in_each_mode(fair_and_planted):
    fair, planted = fair_and_planted
    assert [p.status for p in fair.probes + planted.probes] == ["ok", "ok"]
    # run_audit evaluated the config's gates
    assert [(g.name, g.passed) for g in fair.gates] == [(g["name"], True) for g in MODE_GATES]
    assert [(g.name, g.passed) for g in planted.gates] == [(g["name"], False) for g in MODE_GATES]
    for g in planted.gates:
        assert "(gender, k=20)" in g.message and g.selected == 2  # gender and age, k = K
    sig = planted.gates[2]
    assert sig.p_adjusted is not None and sig.p_adjusted < 0.05


def test_cli_gate_on_saved_real_audits(fair_and_planted, tmp_path, capsys):
    fair, planted = fair_and_planted
    gates = tmp_path / "gates.yaml"
    gates.write_text(yaml.safe_dump({"gates": MODE_GATES}))
    for res, code in ((fair, 0), (planted, 1)):
        out = tmp_path / res.name
        res.write_json(out)
        assert main(["gate", str(out / "results.json"), "--gates", str(gates)]) == code
        assert main(["gate", str(out)]) == code  # the audit's own gates
    capsys.readouterr()


def test_example_gates_on_real_audits(fair_and_planted):
    fair, planted = fair_and_planted
    specs = [s for s in load_gates(ROOT / "examples" / "gates.yaml")
             if s.probe.startswith("counterfactual")]
    assert all(g.passed for g in evaluate_gates(fair, specs))
    verdicts = {g.name: g.passed for g in evaluate_gates(planted, specs)}
    assert not verdicts["fairllm-snsr-jaccard"] and not verdicts["fairllm-snsr-rbo-significant"]
    assert verdicts["hallucination-per-value"]  # the synthetic titles all ground
    with pytest.raises(GateSpecError, match="probe 'leakage' did not run"):
        evaluate_gates(fair, load_gates(ROOT / "examples" / "gates.yaml"))


N_REPEATS = 40


def test_unbiased_recommender_passes_ci_and_significant_gates_95_percent():
    """An attribute-independent recommender, reseeded 40 times, passes >= 95% of the time.

    Seeds 0..39: ci 40/40, significant 39/40. Over 400 other seeds during development: ci mode
    (SNSR Jaccard <= 0.1) 400/400; significant mode (SNSR Jaccard <= 0.1) 389/400 = 97.3%
    (for SNSR RBO <= 0.05: 382/400 = 95.5%). The significant mode's false-alarm rate is the
    probe's permutation test at alpha = 0.05 with BH across the two attributes, i.e. about 5%
    by design: this test checks that it is not worse than nominal, with little room to spare.
    """
    from .gate_recommenders import unbiased_runs

    runs = unbiased_runs(N_REPEATS)
    rates = {}
    for spec in MODE_GATES[1:]:
        passed = [evaluate_gates(r, [spec])[0].passed for r in runs]
        rates[spec["mode"]] = sum(passed) / len(passed)
    assert min(rates.values()) >= 0.95, rates


def test_unnamed_config_gates_with_the_same_selection_get_distinct_names():
    specs = [gate(metric="hallucination", max=0.5), gate(metric="hallucination", max=0.2)]
    names = [g.name for g in evaluate_gates(cf_result(), specs)]
    assert names == ["counterfactual.hallucination", "counterfactual.hallucination#2"]


# -- versus: control -----------------------------------------------------------------------------
def cf_control_result():
    """A counterfactual run with a matched control: gender beyond it, age within it."""
    return audit_result([probe_result([
        metric("snsr_jaccard", 0.30, attribute="gender", k=20, ci=(0.20, 0.40), p=0.001,
               p_adj=0.002),
        metric("snsr_jaccard", 0.25, attribute="age", k=20, ci=(0.15, 0.35), p=0.001,
               p_adj=0.002),
        metric("snsr_jaccard", 0.24, attribute="colour (control)", k=20, ci=(0.14, 0.34),
               p=0.001, p_adj=0.001),
        metric("snsr_jaccard_vs_control", 0.06, attribute="gender", value="colour (control)",
               k=20, ci=(0.02, 0.10), p=0.004, p_adj=0.008),
        metric("snsr_jaccard_vs_control", 0.01, attribute="age", value="colour (control)",
               k=20, ci=(-0.04, 0.06), p=0.35, p_adj=0.35),
    ])])


def test_versus_control_judges_the_difference_record():
    res = cf_control_result()
    kw = {"metric": "snsr_jaccard", "versus": "control", "max": 0.0, "mode": "significant"}
    age = one(res, attribute="age", **kw)
    gender = one(res, attribute="gender", **kw)
    assert age.passed and age.metric == "snsr_jaccard_vs_control"
    assert age.observed == 0.01 and "snsr_jaccard_vs_control" in age.message
    assert not gender.passed and gender.observed == 0.06
    # the raw spread of age is significant: without versus the same gate fails
    assert not one(res, attribute="age", metric="snsr_jaccard", max=0.0,
                   mode="significant").passed
    assert gate_name(gate(attribute="age", **kw)) == "counterfactual.snsr_jaccard.vs_control.age"


def test_versus_control_without_a_control_is_a_spec_error():
    with pytest.raises(GateSpecError, match="versus control needs the probe run with a "
                                            "'control:' attribute"):
        one(cf_result(), metric="snsr_jaccard", versus="control", max=0.0)
    with pytest.raises(GateSpecError):
        parse_gates([{"probe": "counterfactual", "metric": "snsr_jaccard", "versus": "noise",
                      "max": 0.0}])


def test_a_bound_missed_by_rounding_only_passes():
    """A perfectly robust recommender's stability_rbo is 1 - 2e-16 (the rounding of the
    vectorised RBO sum) with a CI of that point; ``min: 1`` failed it in every validation run
    (issue 20). Within 1e-12 of the bound counts as on it; 1e-9 beyond still fails."""
    def rec(x):
        return audit_result([probe_result([metric("stability_rbo", x, probe="robustness",
                                                  attribute="perturbation", value="typo", k=10,
                                                  ci=(x, x))],
                                          id="robustness", probe="robustness")])

    for mode in ("ci", "point"):
        assert one(rec(1 - 2e-16), probe="robustness", metric="stability_rbo", min=1.0,
                   mode=mode).passed
        assert not one(rec(1 - 1e-9), probe="robustness", metric="stability_rbo", min=1.0,
                       mode=mode).passed
    assert one(rec(0.25 + 1e-13), probe="robustness", metric="stability_rbo", max=0.25,
               mode="ci").passed
