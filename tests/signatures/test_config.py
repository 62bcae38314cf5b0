"""Signature configuration: validation, prefix matching on path boundaries, rule choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from controller.signatures.certificate import CertificateIdentity
from controller.signatures.config import ImageRule, SignatureConfig
from tests.signatures.helpers import OTHER_PEM, TRUSTED_PEM

KEYS = [{"name": "release", "pem": TRUSTED_PEM}, {"name": "other", "pem": OTHER_PEM}]


@pytest.mark.parametrize(("prefix", "name", "matches"), [
    ("registry.example.com/team/", "registry.example.com/team/app", True),
    ("registry.example.com/team/", "registry.example.com/team/sub/app", True),
    ("registry.example.com/team/", "registry.example.com/teamx/app", False),
    ("registry.example.com/team", "registry.example.com/teamx/app", False),
    ("registry.example.com/team", "registry.example.com/team", True),
    ("registry.example.com", "registry.example.com/any/app", True),
    ("registry.example.com", "registry.example.com.evil.io/app", False),
    ("registry.example.com:5000/a/", "registry.example.com/a/b", False),
    ("Registry.Example.com/Team/", "registry.example.com/team/app", True),
    ("*", "docker.io/library/nginx", True),
])
def test_prefix_matches_on_path_boundaries(prefix: str, name: str, matches: bool) -> None:
    assert ImageRule(prefix=prefix).matches_name(name) is matches


@pytest.mark.parametrize("prefix", ["", "team*", "https://registry.example.com/", "a b/"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValidationError):
        ImageRule(prefix=prefix)


def config(**data: Any) -> SignatureConfig:
    return SignatureConfig.model_validate({"enabled": True, "keys": KEYS, **data})


def test_longest_applicable_prefix_wins_and_filters_apply() -> None:
    cfg = config(rules=[
        {"prefix": "reg.io/", "require": "signature"},
        {"prefix": "reg.io/pay/", "require": "attestation", "environments": ["production"]},
        {"prefix": "reg.io/pay/tools/", "require": "none", "namespaces": ["ci"]},
    ])
    rule = cfg.rule_for("reg.io/pay/api", namespace="prod", environment="production")
    assert rule.require == "attestation"
    assert cfg.rule_for("reg.io/pay/api", namespace="dev", environment="dev").require == (
        "signature")
    assert cfg.rule_for("reg.io/pay/tools/x", namespace="ci", environment=None).require == "none"
    assert cfg.rule_for("reg.io/pay/tools/x", namespace="prod",
                        environment="production").require == "attestation"
    fallback = cfg.rule_for("other.io/x", namespace="prod", environment=None)
    assert fallback.prefix == "*" and fallback.require == "signature"


@pytest.mark.parametrize(("data", "message"), [
    ({"rules": [{"prefix": "a.io/", "keys": ["nope"]}]}, "unknown keys"),
    ({"rules": [{"prefix": "a.io/", "keys": ["release"], "threshold": 2}]}, "threshold"),
    ({"keys": [KEYS[0], KEYS[0]]}, "unique"),
    ({"keys": []}, "no trusted key"),
    ({"keys": [{"name": "x"}]}, "exactly one"),
    ({"keys": [{"name": "x", "pem": TRUSTED_PEM, "path": "/k"}]}, "exactly one"),
    ({"surprise": True}, "Extra inputs"),
    ({"on_registry_error": "maybe"}, "on_registry_error"),
    ({"registry": {"insecure_registries": ["http://x"]}}, "registry host"),
])
def test_invalid_configurations(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**data)


def test_disabled_by_default_and_frozen() -> None:
    cfg = SignatureConfig()
    assert cfg.enabled is False
    assert cfg.on_registry_error == "deny"
    with pytest.raises(ValidationError):
        cfg.enabled = True  # type: ignore[misc]
    assert config().load_keys()[0].name == "release"


GHA = {"name": "gha", "issuer": "https://token.actions.githubusercontent.com",
       "subject": "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"}


def test_rules_name_keys_and_keyless_signers_in_one_namespace() -> None:
    config = SignatureConfig.model_validate({
        "enabled": True, "keys": KEYS[:1], "keyless": {"signers": [GHA]},
        "rules": [{"prefix": "registry.example.com/", "signers": ["release", "gha"],
                   "threshold": 2}]})
    assert config.rules[0].named_signers == ("release", "gha")
    assert config.signer_names() == {"release", "gha"}
    assert config.rules[0].check_certificate_commit and config.rules[0].check_certificate_ref
    # Keyless signers alone are enough to turn verification on.
    assert SignatureConfig.model_validate({"enabled": True, "keyless": {"signers": [GHA]}})


@pytest.mark.parametrize(("data", "message"), [
    ({"keyless": {"signers": [{**GHA, "subject": None,
                               "subject_regex": "https://github.com/org/.*"}]}},
     "must be anchored"),
    ({"keyless": {"signers": [{**GHA, "subject": None,
                               "subject_regex": "^https://github.com/org/.*"}]}},
     "must be anchored"),
    ({"keys": KEYS[:1], "keyless": {"signers": [{**GHA, "name": "release"}]}},
     "names used by a key and a keyless signer: release"),
    ({"keyless": {"signers": [GHA]}, "rules": [{"prefix": "r.io/", "signers": ["nobody"]}]},
     "unknown signers ['nobody']"),
    ({"keyless": {"signers": [GHA]}, "rules": [{"prefix": "r.io/", "signers": ["gha"],
                                                "threshold": 2}]},
     "threshold 2 exceeds its 1 signers"),
    ({"keyless": {"signers": [{**GHA, "trust_root": "github"}]}}, "unknown trust root"),
])
def test_invalid_keyless_configurations(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SignatureConfig.model_validate({"enabled": True, **data})


@pytest.mark.parametrize("heading", ["Worked example: a GitHub Actions keyless release",
                                     "Worked example: GitHub artifact attestations"])
def test_the_readme_keyless_examples_load(heading: str) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index(heading):]
    block = section[section.index("```yaml\n") + 8:]
    data = yaml.safe_load(block[:block.index("```")])
    config = SignatureConfig.model_validate(data["signatures"])
    (signer,) = config.keyless.signers
    assert signer.issuer == "https://token.actions.githubusercontent.com"
    policy = signer.policy()
    identity = CertificateIdentity(
        subjects=("https://github.com/ORG/REPO/.github/workflows/release.yml@refs/heads/main",),
        issuer=signer.issuer, source_repository="https://github.com/ORG/REPO",
        source_repository_legacy=None, source_ref="refs/heads/main", source_digest=None,
        build_config_uri=None, build_config_digest=None, trigger="push",
        runner_environment="github-hosted")
    assert policy.mismatches(identity) == ()


@pytest.mark.parametrize(("rules", "name", "chosen"), [
    # Longest prefix wins whatever the order; on a tie, the first listed.
    (["reg.io/pay/", "reg.io/"], "reg.io/pay/api", "reg.io/pay/"),
    (["reg.io/", "reg.io/pay/"], "reg.io/pay/api", "reg.io/pay/"),
    (["reg.io/pay", "reg.io/pay/"], "reg.io/pay/api", "reg.io/pay"),
    (["reg.io/pay/", "reg.io/pay"], "reg.io/pay/api", "reg.io/pay/"),
    # `*` is the least specific rule, below any prefix, however short.
    (["*", "r/"], "r/app", "r/"),
    (["r/", "*"], "r/app", "r/"),
    (["*"], "reg.io/app", "*"),
])
def test_rule_specificity(rules: list[str], name: str, chosen: str) -> None:
    cfg = config(rules=[{"prefix": p, "require": "signature", "threshold": i + 1}
                        for i, p in enumerate(rules)])
    rule = cfg.rule_for(name, namespace="default", environment=None)
    assert rule.threshold == rules.index(chosen) + 1
