"""Trust roots: the embedded production root, configured roots, and what is refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.errors import ConfigError
from controller.signatures.trust import (
    MAX_TRUST_ROOT_BYTES,
    PUBLIC_GOOD,
    TrustRootError,
    TrustRootSource,
    load_trust_roots,
    parse_trust_root,
    public_good,
)

CASES = Path(__file__).parent.parent / "data" / "sigstore-conformance" / "bundle-verify"
CUSTOM = CASES / "rekor2-happy-path" / "trusted_root.json"
EMBEDDED = (Path(__file__).parent.parent.parent / "controller" / "signatures" / "data"
            / "public-good.trusted_root.json")


def test_the_embedded_root_is_sigstores_production_root() -> None:
    root = public_good()
    assert root.name == PUBLIC_GOOD
    # The file as copied from the sigstore 4.5.1 wheel (see controller/signatures/data/README.md).
    assert root.fingerprint == hashlib.sha256(EMBEDDED.read_bytes()).hexdigest() == (
        "6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66")
    urls = {t.base_url for t in root.root._inner.tlogs}
    assert urls == {"https://rekor.sigstore.dev", "https://log2025-1.rekor.sigstore.dev"}
    assert len(root.root.get_fulcio_certs()) == 3
    assert len(root.root.get_timestamp_authorities()) == 1
    assert public_good() is root  # parsed once


def test_named_roots_from_a_file_and_inline() -> None:
    roots = load_trust_roots((
        TrustRootSource(name="github", path=str(CUSTOM)),
        TrustRootSource(name="inline", inline=CUSTOM.read_text()),
    ))
    assert sorted(roots) == ["github", "inline", "public-good"]
    assert roots["github"].fingerprint == roots["inline"].fingerprint
    assert roots.get_root("github").name == "github"
    assert roots["inline"].name == "inline"  # findings and denials name the root
    with pytest.raises(ConfigError, match="unknown trust root 'nope'"):
        roots.get_root("nope")


def test_a_name_defined_twice_or_the_reserved_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="defined twice"):
        load_trust_roots((TrustRootSource(name="a", path=str(CUSTOM)),
                          TrustRootSource(name="a", path=str(CUSTOM))))
    with pytest.raises(ValidationError, match="cannot be redefined"):
        TrustRootSource(name=PUBLIC_GOOD, path=str(CUSTOM))


def test_the_source_model_is_strict() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        TrustRootSource(name="a")
    with pytest.raises(ValidationError, match="exactly one"):
        TrustRootSource(name="a", path=str(CUSTOM), inline="{}")
    with pytest.raises(ValidationError):
        TrustRootSource.model_validate({"name": "a", "path": str(CUSTOM), "url": "x"})
    with pytest.raises(ValidationError):
        TrustRootSource.model_validate({"name": "a", "path": 5})


def test_a_root_that_is_not_one_is_a_config_error(tmp_path: Path) -> None:
    missing_start = CASES / "trust-root-tlog-missing-validity-start_fail" / "trusted_root.json"
    with pytest.raises(ConfigError, match=r"not a valid trusted_root\.json"):
        load_trust_roots((TrustRootSource(name="bad", path=str(missing_start)),))
    with pytest.raises(ConfigError, match="cannot read"):
        load_trust_roots((TrustRootSource(name="gone", path=str(tmp_path / "none.json")),))
    doc = json.loads(CUSTOM.read_text())
    doc["mediaType"] = "application/vnd.dev.sigstore.trustedroot+json;version=9"
    with pytest.raises(TrustRootError):
        parse_trust_root(json.dumps(doc), name="future")
    with pytest.raises(TrustRootError, match="larger than"):
        parse_trust_root(b" " * (MAX_TRUST_ROOT_BYTES + 1), name="huge")


def test_a_root_of_exactly_the_size_limit_is_read(tmp_path: Path) -> None:
    data = CUSTOM.read_bytes()
    padded = data + b" " * (MAX_TRUST_ROOT_BYTES - len(data))
    assert len(padded) == MAX_TRUST_ROOT_BYTES
    assert parse_trust_root(padded, name="edge").fingerprint == hashlib.sha256(padded).hexdigest()
    path = tmp_path / "edge.json"
    path.write_bytes(padded)
    root = TrustRootSource(name="edge", path=str(path)).load()
    assert root.fingerprint == hashlib.sha256(padded).hexdigest()


def test_a_root_file_is_read_no_further_than_one_byte_past_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_bytes(b" " * (2 * MAX_TRUST_ROOT_BYTES))
    with pytest.raises(ConfigError) as caught:
        TrustRootSource(name="huge", path=str(path)).load()
    # The reported size is what was read: the limit and one byte, not the whole file.
    assert str(caught.value) == (
        f"trust root huge: {MAX_TRUST_ROOT_BYTES + 1} bytes is larger than {MAX_TRUST_ROOT_BYTES}")


def test_a_root_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe" + CUSTOM.read_bytes())
    with pytest.raises(ConfigError, match=r"trust root binary: not a valid trusted_root\.json"):
        TrustRootSource(name="binary", path=str(path)).load()
