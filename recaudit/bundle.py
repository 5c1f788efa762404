"""The evidence bundle: an audit's outputs, a sha256 manifest and an optional ed25519 signature.

``recaudit bundle OUT_DIR --out BUNDLE.zip`` packs, from an audit's output directory:

* ``results.json`` (required; refused when it does not load, e.g. edited after it was written),
* the reports present (``index.html``, ``junit.xml``, ``summary.md`` and any of
  :data:`EXTRA_REPORTS`: ``report.pdf``, ``model_card.md``),
* ``provenance.json``: the ``provenance`` object of results.json, as the file has it,
* the config: ``audit.yaml``, the YAML text the audit ran (results.json records it in
  ``provenance.config_text``; it records no config path), and with ``--config PATH`` that file
  as ``config/<name>`` (the manifest says whether its sha256 equals ``provenance.config_sha256``),
* ``manifest.json``: every member's path, size and sha256, the UTC time of packing
  (ISO 8601, ``Z``), the recaudit version, the results' schema version and the sha256 of
  results.json,
* with ``--sign KEY``: ``manifest.sig`` (base64 ed25519 signature of the exact bytes of
  manifest.json; RFC 8032) and ``signer.pub`` (the public key, PEM SubjectPublicKeyInfo).

The archive is a **zip**: it opens with the tools every desktop OS ships, which the reviewers
of compliance evidence use, and a member can be read (and hashed) without extracting anything.
Members are written in a fixed order (listed members sorted by path, then manifest.json,
manifest.sig, signer.pub), each with the manifest's time (to the even second below: zip
times have a 2-second resolution), mode 0644 and the same
compression, so the same inputs packed at the same time give the same bytes.

``recaudit verify BUNDLE [--key PUBKEY]`` recomputes every sum and checks the signature:
:func:`verify_bundle`. The sums of an unsigned bundle show damage, not authorship: anyone can
recompute them after an edit. A signature under the enclosed ``signer.pub`` only shows that
whoever made the bundle held *some* key; only ``--key`` (a public key obtained some other way)
says who signed. recaudit cannot know whether that key belongs to the responsible person.

Exit codes of ``verify``: 0 verified, 1 verification failed (:data:`VERIFY_FAILED`: a changed,
missing or unlisted member, an edited manifest, a bad signature or wrong key), 2 bad input (not
a zip, unreadable, no manifest).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from . import __version__
from .errors import EXIT_OK, ConfigError, DataError, OutputError

__all__ = ["create_bundle", "verify_bundle", "generate_key", "BundleInfo", "Verification",
           "MANIFEST", "SIGNATURE", "SIGNER_KEY", "VERIFY_FAILED", "key_fingerprint"]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNER_KEY = "signer.pub"
RESULTS = "results.json"
PROVENANCE = "provenance.json"
RECORDED_CONFIG = "audit.yaml"
FORMAT = "recaudit-evidence-bundle"
FORMAT_VERSION = 1
#: exit code of a verification that failed (a change, a missing or unlisted member, a bad key)
VERIFY_FAILED = 1
#: reports besides those ``recaudit.report`` writes by default, packed when present
EXTRA_REPORTS = ("report.pdf", "model_card.md")
#: largest manifest / signature / key read from a bundle or a key file (they are small)
MAX_SMALL_FILE = 16 * 2**20
_CHUNK = 2**20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shown(name: str) -> str:
    """Return a member name to print: as is when printable, else ``ascii()`` of it."""
    return name if name.isprintable() else ascii(name)


def _utc_stamp(now: datetime | None) -> str:
    """``now`` (default: the current time) in UTC as ISO 8601 with ``Z``, to the second."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- keys ---------------------------------------------------------------------------------------
def key_fingerprint(public_key: Any) -> str:
    """``sha256:<hex>`` of the key's 32 raw bytes (RFC 8032 encoding)."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + _sha256_hex(raw)


def _read_small(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        if path.stat().st_size > MAX_SMALL_FILE:
            raise ConfigError(f"{what} {path}: larger than {MAX_SMALL_FILE} bytes, not a key")
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot be read: {err.strerror or err}") from None


def load_private_key(path: str | Path) -> Any:
    """Read an unencrypted ed25519 private key (PEM, PKCS8); anything else is a ConfigError."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    p = Path(path)
    data = _read_small(p, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise ConfigError(f"signing key {p}: encrypted; recaudit reads unencrypted PEM "
                          "(PKCS8) keys, as 'recaudit keygen' writes them") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"signing key {p}: not an ed25519 private key (expected PEM, "
                          "PKCS8, as 'recaudit keygen' writes)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {p}: a {type(key).__name__.lstrip('_')}, not an "
                          "ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Any:
    """Read an ed25519 public key: PEM (SubjectPublicKeyInfo) or the 32 raw bytes in base64."""
    p = Path(path)
    data = _read_small(p, "public key")
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"public key {p}: a private key; --key takes the public key "
                          "(KEY.pub)")
    return _public_key_from_bytes(data, f"public key {p}", ConfigError)


def _public_key_from_bytes(data: bytes, where: str, error: type[Exception]) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(),
                                                                      validate=True))
    except (ValueError, UnsupportedAlgorithm, TypeError):
        raise error(f"{where}: not an ed25519 public key (PEM or 32 bytes in base64)") \
            from None
    if not isinstance(key, Ed25519PublicKey):
        raise error(f"{where}: a {type(key).__name__.lstrip('_')}, not an ed25519 public key")
    return key


def generate_key(path: str | Path, force: bool = False) -> tuple[Path, Path, str]:
    """Write a new ed25519 key: ``path`` (private, PEM PKCS8, mode 0600) and ``path.pub``.

    Returns both paths and the public key's fingerprint. An existing file is kept (OutputError,
    exit 2) unless ``force``.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for p in (private_path, public_path):
        if p.exists() and not force:
            raise OutputError(f"{p} exists; pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        if force:
            private_path.unlink(missing_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as err:
        raise OutputError(f"cannot write key {private_path}: {err.strerror or err}") from None
    return private_path, public_path, key_fingerprint(key.public_key())


# -- packing ------------------------------------------------------------------------------------
@dataclass
class BundleInfo:
    """What :func:`create_bundle` wrote."""

    path: Path
    manifest: dict[str, Any]
    fingerprint: str | None = None  # of the signing key; None: unsigned

    @property
    def members(self) -> list[str]:
        """Paths of the listed members, in the manifest's (sorted) order."""
        return [m["path"] for m in self.manifest["members"]]


def _report_names() -> list[str]:
    """File names of the reports to pack when present (what ``recaudit.report`` writes)."""
    from .report import DEFAULT_NAMES

    names = [n for key, n in DEFAULT_NAMES.items() if key != "json"]
    return names + [n for n in EXTRA_REPORTS if n not in names]


def _zip_info(name: str, created_at: str) -> zipfile.ZipInfo:
    """Return a member header fixed by name and time alone (mode 0644, deflated, unix)."""
    stamp = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ")
    info = zipfile.ZipInfo(name, date_time=stamp.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    return info


def _add_file(zf: zipfile.ZipFile, name: str, source: Path, created_at: str) -> dict[str, Any]:
    """Stream ``source`` into the archive, hashing exactly the bytes written."""
    digest, size = hashlib.sha256(), 0
    big = source.stat().st_size >= 2**31
    with source.open("rb") as src, zf.open(_zip_info(name, created_at), "w",
                                           force_zip64=big) as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    return {"path": name, "size": size, "sha256": digest.hexdigest()}


def _add_bytes(zf: zipfile.ZipFile, name: str, data: bytes, created_at: str) -> dict[str, Any]:
    zf.writestr(_zip_info(name, created_at), data)
    return {"path": name, "size": len(data), "sha256": _sha256_hex(data)}


def create_bundle(out_dir: str | Path, bundle: str | Path, config: str | Path | None = None,
                  key: str | Path | None = None, force: bool = False,
                  now: datetime | None = None) -> BundleInfo:
    """Pack the audit output directory ``out_dir`` into the zip ``bundle`` (see the module doc).

    ``config``: a config file to add as ``config/<name>``; ``key``: an ed25519 private key to
    sign the manifest with; ``now``: the manifest's time (default: the current UTC time).
    Bad input (no directory, no or invalid results.json, a missing config, a key that is not an
    ed25519 private key, an existing ``bundle`` without ``force``) is a one-line error, exit 2.
    """
    from .results import AuditResult

    src = Path(out_dir)
    if not src.is_dir():
        raise DataError(f"output directory not found: {src}")
    results_path = src / RESULTS
    if not results_path.is_file():
        raise DataError(f"{src}: no {RESULTS} (not an audit output directory)")
    target = Path(bundle)
    if target.suffix.lower() != ".zip":
        raise ConfigError(f"--out {target}: the bundle is a zip archive; name it *.zip")
    if target.exists() and not force:
        raise OutputError(f"{target} exists; pass --force to replace it")
    if target.exists() and not target.is_file():
        raise OutputError(f"{target} exists and is not a file")
    config_path = Path(config) if config is not None else None
    if config_path is not None and not config_path.is_file():
        raise ConfigError(f"config file not found: {config_path}")
    signing_key = load_private_key(key) if key is not None else None

    AuditResult.load(results_path)  # refuses a results.json edited after it was written
    try:
        results_bytes = results_path.read_bytes()
    except OSError as err:
        raise DataError(f"{results_path}: cannot be read: {err.strerror or err}") from None
    data = json.loads(results_bytes)
    provenance = data.get("provenance") or {}
    config_text = provenance.get("config_text")
    created_at = _utc_stamp(now)

    # name -> bytes (made here) or Path (streamed from disk), packed in sorted order
    sources: dict[str, bytes | Path] = {RESULTS: results_bytes}
    sources[PROVENANCE] = (json.dumps(provenance, indent=1, ensure_ascii=False) + "\n"
                           ).encode("utf-8")
    for name in _report_names():
        if (src / name).is_file():
            sources[name] = src / name
    config_info: dict[str, Any] = {"recorded": None, "given": None, "given_matches_recorded": None}
    if config_text:
        sources[RECORDED_CONFIG] = config_text.encode("utf-8")
        config_info["recorded"] = RECORDED_CONFIG
    if config_path is not None:
        given = "config/" + config_path.name
        sources[given] = config_path
        config_info["given"] = given
        recorded_sha = provenance.get("config_sha256")
        if recorded_sha:
            config_info["given_matches_recorded"] = \
                _sha256_hex(_read_file(config_path)) == recorded_sha

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".recaudit-bundle-",
                                    suffix=".zip")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
            members = []
            for name in sorted(sources):
                body = sources[name]
                members.append(_add_file(zf, name, body, created_at) if isinstance(body, Path)
                               else _add_bytes(zf, name, body, created_at))
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "created_at": created_at,
                "recaudit_version": __version__,
                "results_schema_version": data.get("schema_version"),
                "results_sha256": _sha256_hex(results_bytes),
                "config": config_info, "members": members}
            manifest_bytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n"
                              ).encode("utf-8")
            _add_bytes(zf, MANIFEST, manifest_bytes, created_at)
            fingerprint = None
            if signing_key is not None:
                from cryptography.hazmat.primitives import serialization

                signature = signing_key.sign(manifest_bytes)
                _add_bytes(zf, SIGNATURE, base64.b64encode(signature) + b"\n", created_at)
                public = signing_key.public_key()
                _add_bytes(zf, SIGNER_KEY, public.public_bytes(
                    serialization.Encoding.PEM,
                    serialization.PublicFormat.SubjectPublicKeyInfo), created_at)
                fingerprint = key_fingerprint(public)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write bundle {target}: {err.strerror or err}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BundleInfo(target, manifest, fingerprint)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read: {err.strerror or err}") from None


# -- verifying ----------------------------------------------------------------------------------
@dataclass
class Verification:
    """The outcome of :func:`verify_bundle`: problems (each one line) and what was checked."""

    path: Path
    manifest: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # lines saying what held
    signature: str = "unsigned"  # unsigned | enclosed (valid under signer.pub) | valid | bad

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0 verified, 1 (:data:`VERIFY_FAILED`) otherwise."""
        return EXIT_OK if self.ok else VERIFY_FAILED

    def summary(self) -> str:
        """One line: verified (with what) or how many problems."""
        m = self.manifest
        if self.ok:
            said = {k: _shown(str(m.get(k))) for k in ("created_at", "recaudit_version",
                                                        "results_schema_version")}
            return (f"verified: {self.path} ({len(m.get('members', []))} members, packed "
                    f"{said['created_at']} by recaudit {said['recaudit_version']}, results "
                    f"schema {said['results_schema_version']})")
        n = len(self.problems)
        return f"verification failed: {n} problem{'s' if n != 1 else ''} in {self.path}"

    def lines(self) -> list[str]:
        """Return what ``recaudit verify`` prints: the problems (or what held), then the summary."""
        return (self.problems if self.problems else self.checked) + [self.summary()]


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[str, int]:
    """sha256 and size of a member's bytes, streamed (a zip bomb costs time, not memory)."""
    digest, size = hashlib.sha256(), 0
    with zf.open(info) as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _read_small_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_SMALL_FILE:
        raise DataError(f"{info.filename}: {info.file_size} bytes, too large for a "
                        "recaudit bundle's manifest, signature or key")
    with zf.open(info) as fh:
        return fh.read(MAX_SMALL_FILE + 1)[:MAX_SMALL_FILE]


def _parse_manifest(data: bytes) -> dict[str, Any]:
    """Parse the manifest; a DataError (with a reason) when it is not a recaudit one."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise DataError(f"{MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{MANIFEST} is not a recaudit bundle manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{MANIFEST}: format version {manifest.get('format_version')!r} is "
                        f"not supported (this recaudit reads {FORMAT_VERSION})")
    members = manifest.get("members")
    ok = isinstance(members, list) and all(
        isinstance(m, dict) and isinstance(m.get("path"), str) and m["path"]
        and isinstance(m.get("size"), int) and isinstance(m.get("sha256"), str)
        and _SHA256.fullmatch(m["sha256"]) for m in members)
    if not ok:
        raise DataError(f"{MANIFEST}: its members list is malformed")
    return manifest


def _check_signature(zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo],
                     manifest_bytes: bytes, key: Any | None, out: Verification) -> None:
    """Check manifest.sig against signer.pub and, when given, the key ``key``."""
    from cryptography.exceptions import InvalidSignature

    has_sig, has_pub = SIGNATURE in infos, SIGNER_KEY in infos
    if not has_sig and not has_pub:
        if key is not None:
            out.problems.append("unsigned: the bundle has no signature, but --key was given")
        else:
            out.checked.append("unsigned: the sums show damage, not who made the bundle "
                               "(recaudit bundle --sign KEY signs it)")
        return
    if has_sig != has_pub:
        present, absent = (SIGNATURE, SIGNER_KEY) if has_sig else (SIGNER_KEY, SIGNATURE)
        out.problems.append(f"{absent}: missing ({present} is there)")
        out.signature = "bad"
        return
    try:
        signature = base64.b64decode(_read_small_member(zf, infos[SIGNATURE]).strip(),
                                     validate=True)
        enclosed = _public_key_from_bytes(_read_small_member(zf, infos[SIGNER_KEY]),
                                          SIGNER_KEY, DataError)
    except ValueError:
        out.problems.append(f"{SIGNATURE}: not base64")
        out.signature = "bad"
        return
    except (DataError, zipfile.BadZipFile) as err:
        out.problems.append(str(err))
        out.signature = "bad"
        return

    def valid(public: Any) -> bool:
        try:
            public.verify(signature, manifest_bytes)
            return True
        except InvalidSignature:
            return False

    if key is None:
        if valid(enclosed):
            out.signature = "enclosed"
            out.checked.append(f"signed by the enclosed key (fingerprint "
                               f"{key_fingerprint(enclosed)}); pass --key to check the signer")
        else:
            out.signature = "bad"
            out.problems.append(f"bad signature: {MANIFEST} does not verify under the enclosed "
                                f"{SIGNER_KEY} (edited after signing?)")
        return
    wanted = key_fingerprint(key)
    if not valid(key):
        out.signature = "bad"
        why = ("the bundle was signed by another key, "
               f"{key_fingerprint(enclosed)}" if valid(enclosed)
               else f"{MANIFEST} was edited after signing, or signed by another key")
        out.problems.append(f"bad signature: {MANIFEST} does not verify under --key "
                            f"(fingerprint {wanted}): {why}")
        return
    out.signature = "valid"
    out.checked.append(f"signature valid (key fingerprint {wanted})")
    if key_fingerprint(enclosed) != wanted:
        out.problems.append(f"{SIGNER_KEY}: replaced (it holds {key_fingerprint(enclosed)}, "
                            "but the signature is by --key)")


def verify_bundle(bundle: str | Path, key: str | Path | None = None) -> Verification:
    """Check every member of ``bundle`` against its manifest, and the signature.

    Problems (exit 1): a member whose size or sha256 differs (or whose stored data is damaged),
    a listed member missing, a member the manifest does not list, a name twice, results.json
    not the one the manifest names, a bad signature, a signed bundle not signed by ``key`` (a
    public key file), an unsigned one when ``key`` is given. Bad input (exit 2, DataError /
    ConfigError): no such file, not a zip, no or no recaudit manifest, a ``key`` that is not an
    ed25519 public key.
    """
    path = Path(bundle)
    public = load_public_key(key) if key is not None else None
    if not path.is_file():
        raise DataError(f"bundle not found: {path}")
    try:
        fh: BinaryIO = path.open("rb")
    except OSError as err:
        raise DataError(f"{path}: cannot be read: {err.strerror or err}") from None
    with fh:
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError):
            raise DataError(f"{path}: not a recaudit bundle (not a zip archive)") from None
        with zf:
            return _verify_open(zf, path, public)


def _verify_open(zf: zipfile.ZipFile, path: Path, key: Any | None) -> Verification:
    infos: dict[str, zipfile.ZipInfo] = {}
    twice: list[str] = []
    for info in zf.infolist():
        if info.filename in infos and info.filename not in twice:
            twice.append(info.filename)
        infos[info.filename] = info
    if MANIFEST not in infos:
        raise DataError(f"{path}: not a recaudit bundle (no {MANIFEST})")
    try:
        manifest_bytes = _read_small_member(zf, infos[MANIFEST])
    except zipfile.BadZipFile as err:  # damaged stored data (CRC)
        raise DataError(f"{path}: {MANIFEST} cannot be read: {err}") from None
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    out = Verification(path, {})
    out.problems += [f"duplicate: {_shown(n)} (stored more than once)" for n in twice]
    _check_signature(zf, infos, manifest_bytes, key, out)
    try:
        out.manifest = _parse_manifest(manifest_bytes)
    except DataError as err:
        if out.signature == "bad":  # a signed manifest edited into garbage: a failed check
            out.problems.append(str(err))
            return out
        raise DataError(f"{path}: not a recaudit bundle ({err})") from None

    listed: dict[str, dict[str, Any]] = {}
    for m in out.manifest["members"]:
        if m["path"] in listed or m["path"] in (MANIFEST, SIGNATURE, SIGNER_KEY):
            out.problems.append(f"{MANIFEST}: lists {_shown(m['path'])} twice or as a "
                                "bundle file")
        listed[m["path"]] = m
    matched = 0
    for name, entry in listed.items():
        info = infos.get(name)
        if info is None:
            out.problems.append(f"missing: {_shown(name)} (listed in the manifest)")
            continue
        try:
            sha, size = _read_member(zf, info)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            out.problems.append(f"changed: {_shown(name)} (its stored data is damaged: {err})")
            continue
        if sha != entry["sha256"] or size != entry["size"]:
            out.problems.append(f"changed: {_shown(name)} ({size} bytes, sha256 {sha[:16]}...; "
                                f"the manifest says {entry['size']} bytes, sha256 "
                                f"{entry['sha256'][:16]}...)")
        else:
            matched += 1
    for name in infos:
        if name not in listed and name not in (MANIFEST, SIGNATURE, SIGNER_KEY):
            out.problems.append(f"unlisted: {_shown(name)} (in the bundle, not in the manifest)")
    results = listed.get(RESULTS)
    if results is None:
        out.problems.append(f"missing: {RESULTS} (the manifest does not list it)")
    elif results["sha256"] != out.manifest.get("results_sha256"):
        out.problems.append(f"{MANIFEST}: results_sha256 is not the sum it lists for {RESULTS}")
    stamp = out.manifest.get("created_at")
    if not isinstance(stamp, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp):
        out.problems.append(f"{MANIFEST}: created_at {stamp!r} is not an ISO 8601 UTC time")
    out.checked.insert(0, f"{matched} members match the manifest's sizes and sha256 sums")
    return out
