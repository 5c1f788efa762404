"""The evidence bundle (recaudit/bundle.py) through ``recaudit bundle / verify / keygen``.

One real output directory (``save_result`` of the report fixtures' small result) is packed once
per module; each tampering test rewrites a copy of the archive and expects exit 1 naming what
changed. Sums are recomputed here with hashlib, signatures checked here with ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import recaudit
from recaudit.bundle import create_bundle
from recaudit.cli import main
from recaudit.report import save_result
from recaudit.results import SCHEMA_VERSION, AuditResult, Provenance

from .report.fixtures import make_minimal, make_small

BUNDLE_FILES = ["manifest.json", "manifest.sig", "signer.pub"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundle")


@pytest.fixture(scope="module")
def out_dir(work) -> Path:
    save_result(make_small(), work / "out")
    return work / "out"


@pytest.fixture(scope="module")
def keys(work) -> dict[str, Path]:
    for name in ("alice", "mallory"):
        assert main(["keygen", str(work / name)]) == 0
    return {"alice": work / "alice", "mallory": work / "mallory"}


@pytest.fixture(scope="module")
def unsigned(work, out_dir) -> Path:
    assert main(["bundle", str(out_dir), "--out", str(work / "unsigned.zip")]) == 0
    return work / "unsigned.zip"


@pytest.fixture(scope="module")
def signed(work, out_dir, keys) -> Path:
    assert main(["bundle", str(out_dir), "--out", str(work / "signed.zip"),
                 "--sign", str(keys["alice"])]) == 0
    return work / "signed.zip"


def rewrite(src: Path, dst: Path, replace: dict[str, bytes] | None = None,
            drop: tuple[str, ...] = (), add: dict[str, bytes] | None = None) -> Path:
    """Copy the zip ``src`` to ``dst`` with members replaced, dropped or added."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename not in drop:
                zout.writestr(info, replace.get(info.filename, zin.read(info)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def verify(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(["verify", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines()


def fingerprint_of(pub_path: Path) -> str:
    key = serialization.load_pem_public_key(pub_path.read_bytes())
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# -- packing ------------------------------------------------------------------------------------
def test_bundle_holds_results_reports_provenance_and_recorded_config(unsigned, out_dir):
    got = members(unsigned)
    assert list(got) == ["audit.yaml", "index.html", "junit.xml", "provenance.json",
                         "results.json", "summary.md", "manifest.json"]  # sorted, manifest last
    for name in ("results.json", "index.html", "junit.xml", "summary.md"):
        assert got[name] == (out_dir / name).read_bytes()
    results = json.loads((out_dir / "results.json").read_bytes())
    assert json.loads(got["provenance.json"]) == results["provenance"]
    assert got["audit.yaml"].decode() == results["provenance"]["config_text"]


def test_manifest_sums_sizes_versions_match_independent_hashes(unsigned, out_dir):
    got = members(unsigned)
    manifest = json.loads(got["manifest.json"])
    listed = {m["path"]: m for m in manifest["members"]}
    assert sorted(listed) == sorted(set(got) - {"manifest.json"})
    for name, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(got[name]).hexdigest()
        assert entry["size"] == len(got[name])
    on_disk = (out_dir / "results.json").read_bytes()
    assert manifest["results_sha256"] == hashlib.sha256(on_disk).hexdigest()
    assert manifest["results_schema_version"] == json.loads(on_disk)["schema_version"] == \
        SCHEMA_VERSION
    assert manifest["recaudit_version"] == recaudit.__version__
    assert manifest["config"] == {"recorded": "audit.yaml", "given": None,
                                  "given_matches_recorded": None}


def test_timestamp_is_utc_iso8601_and_now(work, out_dir):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    info = create_bundle(out_dir, work / "now.zip")
    after = datetime.now(timezone.utc)
    stamp = info.manifest["created_at"]
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-01T00:00:00Z")
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0) and before <= moment <= after
    dos = moment.replace(second=moment.second - moment.second % 2)  # zip: 2 s resolution
    with zipfile.ZipFile(work / "now.zip") as zf:  # member times are the manifest's
        assert {i.date_time for i in zf.infolist()} == {dos.timetuple()[:6]}


def test_same_inputs_same_time_same_bytes(work, out_dir, keys):
    when = datetime(2026, 3, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    a = create_bundle(out_dir, work / "a.zip", key=keys["alice"], now=when)
    create_bundle(out_dir, work / "b.zip", key=keys["alice"], now=when)
    assert a.manifest["created_at"] == "2026-03-01T10:30:05Z"  # converted to UTC
    assert (work / "a.zip").read_bytes() == (work / "b.zip").read_bytes()  # ed25519: no nonce
    assert list(members(work / "a.zip"))[-3:] == BUNDLE_FILES


def test_optional_reports_and_given_config(work, capsys):
    text = "name: tiny\nmodel: python:m:f\n"
    result = AuditResult(provenance=Provenance(
        tool_version="0.1.0", model_spec="python:m:f", config_text=text,
        config_sha256=hashlib.sha256(text.encode()).hexdigest()))
    out = work / "tiny"
    save_result(result, out, formats=("json", "md"))
    (out / "report.pdf").write_bytes(b"%PDF-1.7 not really")
    (out / "model_card.md").write_text("---\nlicense: mit\n---\n")
    (out / "scratch.txt").write_text("not a report")
    (work / "tiny.yaml").write_text(text)
    assert main(["bundle", str(out), "--out", str(work / "tiny.zip"),
                 "--config", str(work / "tiny.yaml")]) == 0
    assert capsys.readouterr().err == ""
    got = members(work / "tiny.zip")
    assert list(got) == ["audit.yaml", "config/tiny.yaml", "model_card.md", "provenance.json",
                         "report.pdf", "results.json", "summary.md",
                         "manifest.json"]  # no scratch.txt
    assert json.loads(got["manifest.json"])["config"] == {
        "recorded": "audit.yaml", "given": "config/tiny.yaml", "given_matches_recorded": True}
    (work / "other.yaml").write_text(text + "probes: []\n")
    assert main(["bundle", str(out), "--out", str(work / "other.zip"),
                 "--config", str(work / "other.yaml")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "is not the config results.json records" in err[0]
    config = json.loads(members(work / "other.zip")["manifest.json"])["config"]
    assert config["given_matches_recorded"] is False


def test_no_recorded_config_warns(work, capsys):
    save_result(make_minimal(), work / "bare", formats=("json",))
    assert main(["bundle", str(work / "bare"), "--out", str(work / "bare.zip")]) == 0
    assert "records no config text; pass --config" in capsys.readouterr().err
    assert list(members(work / "bare.zip")) == ["provenance.json", "results.json",
                                                "manifest.json"]


# -- verifying ----------------------------------------------------------------------------------
def test_unsigned_round_trip_verifies(unsigned, capsys):
    code, out = verify(capsys, str(unsigned))
    assert code == 0
    assert out[0] == "6 members match the manifest's sizes and sha256 sums"
    assert out[1].startswith("unsigned")
    assert out[-1].startswith(f"verified: {unsigned} (6 members, packed ")


def test_signed_verifies_under_the_right_key(signed, keys, capsys):
    fingerprint = fingerprint_of(keys["alice"].with_name("alice.pub"))
    code, out = verify(capsys, str(signed), "--key", str(keys["alice"]) + ".pub")
    assert code == 0 and f"signature valid (key fingerprint {fingerprint})" in out
    code, out = verify(capsys, str(signed))  # no --key: the enclosed key proves nothing
    assert code == 0
    assert (f"signed by the enclosed key (fingerprint {fingerprint}); pass --key to check the "
            "signer") in out
    got = members(signed)  # the signature checks out independently of recaudit
    public = serialization.load_pem_public_key(got["signer.pub"])
    public.verify(base64.b64decode(got["manifest.sig"]), got["manifest.json"])


def test_raw_base64_public_key_accepted(signed, keys, work, capsys):
    public = serialization.load_pem_public_key(keys["alice"].with_name("alice.pub").read_bytes())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    (work / "alice.b64").write_bytes(base64.b64encode(raw) + b"\n")
    assert verify(capsys, str(signed), "--key", str(work / "alice.b64"))[0] == 0


def test_tampered_member_fails_naming_it(unsigned, tmp_path, capsys):
    bad = rewrite(unsigned, tmp_path / "t.zip",
                  replace={"summary.md": members(unsigned)["summary.md"] + b"\nall clear\n"})
    code, out = verify(capsys, str(bad))
    assert code == 1
    assert len(out) == 2 and out[0].startswith("changed: summary.md (")
    assert out[1] == f"verification failed: 1 problem in {bad}"


def test_missing_member_fails(signed, keys, tmp_path, capsys):
    bad = rewrite(signed, tmp_path / "m.zip", drop=("junit.xml",))
    code, out = verify(capsys, str(bad), "--key", str(keys["alice"]) + ".pub")
    assert code == 1 and out[0] == "missing: junit.xml (listed in the manifest)"


def test_extra_member_fails(signed, tmp_path, capsys):
    bad = rewrite(signed, tmp_path / "x.zip", add={"waiver.txt": b"approved"})
    code, out = verify(capsys, str(bad))
    assert code == 1
    assert out[0] == "unlisted: waiver.txt (in the bundle, not in the manifest)"


def test_edited_manifest_fails(signed, unsigned, keys, tmp_path, capsys):
    manifest = members(signed)["manifest.json"]
    later = manifest.replace(b'"created_at": "', b'"created_at": "1')  # an edited date
    bad = rewrite(signed, tmp_path / "e.zip", replace={"manifest.json": later})
    for key in ([], ["--key", str(keys["alice"]) + ".pub"]):
        code, out = verify(capsys, str(bad), *key)
        assert code == 1 and out[0].startswith("bad signature: manifest.json does not verify")
    # unsigned: an entry edited to another sum shows as a changed member
    data = json.loads(members(unsigned)["manifest.json"])
    data["members"][1]["sha256"] = "0" * 64
    bad = rewrite(unsigned, tmp_path / "u.zip",
                  replace={"manifest.json": json.dumps(data).encode()})
    code, out = verify(capsys, str(bad))
    assert code == 1 and out[0].startswith(f"changed: {data['members'][1]['path']} (")


def test_wrong_key_fails(signed, keys, capsys):
    mallory = fingerprint_of(keys["mallory"].with_name("mallory.pub"))
    alice = fingerprint_of(keys["alice"].with_name("alice.pub"))
    code, out = verify(capsys, str(signed), "--key", str(keys["mallory"]) + ".pub")
    assert code == 1
    assert out[0] == (f"bad signature: manifest.json does not verify under --key (fingerprint "
                      f"{mallory}): the bundle was signed by another key, {alice}")


def test_resigned_by_another_key_passes_only_without_key(work, out_dir, keys, tmp_path,
                                                         capsys):
    forged_dir = tmp_path / "forged"
    shutil.copytree(out_dir, forged_dir)
    (forged_dir / "summary.md").write_text("# all gates passed\n")
    forged = create_bundle(forged_dir, tmp_path / "forged.zip", key=keys["mallory"]).path
    code, out = verify(capsys, str(forged))
    assert code == 0 and "pass --key to check the signer" in out[1]
    assert verify(capsys, str(forged), "--key", str(keys["alice"]) + ".pub")[0] == 1


def test_replaced_signer_key_or_unsigned_with_key_fails(signed, unsigned, keys, tmp_path,
                                                        capsys):
    swapped = rewrite(signed, tmp_path / "s.zip", replace={
        "signer.pub": keys["mallory"].with_name("mallory.pub").read_bytes()})
    code, out = verify(capsys, str(swapped), "--key", str(keys["alice"]) + ".pub")
    assert code == 1 and out[-2].startswith("signer.pub: replaced")
    code, out = verify(capsys, str(unsigned), "--key", str(keys["alice"]) + ".pub")
    assert code == 1
    assert out[0] == "unsigned: the bundle has no signature, but --key was given"


def test_keygen_writes_private_0600_and_refuses_overwrite(keys, capsys):
    assert stat.S_IMODE(keys["alice"].stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in keys["alice"].read_bytes()  # PKCS8
    assert main(["keygen", str(keys["alice"])]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


# -- bad input: one line, exit 2 ----------------------------------------------------------------
def one_line_error(capsys, argv: list[str], expected: str) -> str:
    """Run ``argv``; check exit 2 and one ``recaudit: error:`` line holding ``expected``."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("recaudit: error: "), captured.err
    assert expected in lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


def test_bundle_bad_inputs(work, out_dir, unsigned, capsys):
    z = str(work / "bad.zip")
    one_line_error(capsys, ["bundle", str(work / "nowhere"), "--out", z],
                   "output directory not found")
    (work / "empty").mkdir(exist_ok=True)
    one_line_error(capsys, ["bundle", str(work / "empty"), "--out", z], "no results.json")
    one_line_error(capsys, ["bundle", str(out_dir), "--out", str(unsigned)],
                   "exists; pass --force")
    one_line_error(capsys, ["bundle", str(out_dir), "--out", str(work / "b.tar.gz")],
                   "name it *.zip")
    one_line_error(capsys, ["bundle", str(out_dir), "--out", z, "--config", "nope.yaml"],
                   "config file not found")
    text_key = work / "text.pem"
    text_key.write_text("not a key\n")
    one_line_error(capsys, ["bundle", str(out_dir), "--out", z, "--sign", str(text_key)],
                   "not an ed25519 private key")
    ec_key = work / "ec.pem"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    one_line_error(capsys, ["bundle", str(out_dir), "--out", z, "--sign", str(ec_key)],
                   "not an ed25519 private key")
    assert not (work / "bad.zip").exists()
    edited = work / "edited"
    shutil.copytree(out_dir, edited)
    path = edited / "results.json"
    path.write_text(path.read_text().replace('"name": "', '"name": "x', 1))
    one_line_error(capsys, ["bundle", str(edited), "--out", z], "modified after it was written")
    assert main(["bundle", str(out_dir), "--out", str(unsigned), "--force"]) == 0


def test_verify_bad_inputs(work, signed, keys, capsys):
    line = one_line_error(capsys, ["verify", str(work / "none.zip")], "bundle not found")
    assert "none.zip" in line  # the line names the file it refused
    (work / "plain.zip").write_text("hello")
    one_line_error(capsys, ["verify", str(work / "plain.zip")], "not a zip archive")
    with zipfile.ZipFile(work / "nomanifest.zip", "w") as zf:
        zf.writestr("results.json", "{}")
    one_line_error(capsys, ["verify", str(work / "nomanifest.zip")], "no manifest.json")
    rewrite(work / "nomanifest.zip", work / "junk.zip", add={"manifest.json": b"[1, 2"})
    one_line_error(capsys, ["verify", str(work / "junk.zip")], "manifest.json is not JSON")
    one_line_error(capsys, ["verify", str(signed), "--key", str(keys["alice"])],
                   "--key takes the public key")
