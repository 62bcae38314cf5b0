"""Signature configuration: validation, prefix matching on path boundaries, rule choice."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

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
