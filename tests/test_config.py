"""controller.config: defaults, validation that names the bad field, loading from env or path."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import Config, load_config, parse_config
from controller.errors import ConfigError


def test_defaults_are_the_documented_ones() -> None:
    config = Config()
    assert config.mode == "enforce"
    assert config.annotations.prefix == "provenance.dev/"
    assert config.annotations.required == ("git-sha", "build-id", "deployed-by")
    assert config.actor.rule == "match-username"
    assert config.exempt_namespaces == ("kube-system",)


def test_full_file_parses() -> None:
    config = parse_config("""
mode: audit
annotations: {prefix: acme.io/, required: [git-sha, environment]}
actor: {rule: ci-allowlist, ci_accounts: ["system:serviceaccount:ci:deployer"]}
environments:
  production: {namespaces: [prod], users: [alice], groups: [sre]}
exempt_namespaces: [kube-system, monitoring]
""")
    assert config.annotations.key("git-sha") == "acme.io/git-sha"
    assert config.environment_for_namespace("prod") == "production"
    assert config.environment_for_namespace("dev") is None
    assert config.actor.ci_accounts == ("system:serviceaccount:ci:deployer",)


@pytest.mark.parametrize(("text", "field"), [
    ("mode: permissive", "mode"),
    ("annotations: {prefix: 'no-slash'}", "annotations.prefix"),
    ("annotations: {required: [git-sha, colour]}", "annotations.required.1"),
    ("actor: {rule: anyone}", "actor.rule"),
    ("typo_field: 1", "typo_field"),
    ("exempt_namespaces: [Kube_System]", "exempt_namespaces"),
    ("environments: {Production: {}}", "environments.Production"),
    ("annotations: {max_value_length: 1}", "annotations.max_value_length"),
])
def test_bad_config_names_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.yaml")
    assert field in str(info.value)
    assert "cfg.yaml" in str(info.value)


def test_not_yaml_or_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("mode: [unclosed")
    with pytest.raises(ConfigError, match="mapping"):
        parse_config("- a\n- b")


def test_load_from_env_then_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env.yaml"
    env_file.write_text("mode: audit\n")
    arg_file = tmp_path / "arg.yaml"
    arg_file.write_text("mode: enforce\n")
    monkeypatch.setenv("PROVENANCE_CONFIG", str(env_file))
    assert load_config().mode == "audit"
    assert load_config(arg_file).mode == "enforce"
    monkeypatch.delenv("PROVENANCE_CONFIG")
    assert load_config() == Config()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
