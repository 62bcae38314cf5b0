"""What counts as drift in the webhook configuration (`controller.gate.differences`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.dev.controller import webhook_configuration
from controller.gate import GateError, GateSettings, differences, load_expected


def expected() -> dict[str, Any]:
    obj = webhook_configuration(name="pc", url="https://127.0.0.1:9443/validate",
                                ca_bundle=b"ca", exempt_namespaces=["kube-system"])
    del obj["webhooks"][0]["clientConfig"]["caBundle"]
    return obj


def as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: defaults filled in, lists reordered, a caBundle set."""
    stored = copy.deepcopy(obj)
    hook = stored["webhooks"][0]
    hook["objectSelector"] = {}
    hook["clientConfig"]["caBundle"] = "Y2E="
    hook["rules"] = list(reversed([{"scope": "*", **r} for r in hook["rules"]]))
    return stored


def test_the_api_servers_defaults_and_ordering_are_not_drift() -> None:
    assert differences(expected(), as_stored(expected()), {}) == []


@pytest.mark.parametrize(("edit", "field"), [
    (lambda h: h.update(objectSelector={"matchLabels": {"a": "b"}}), "objectSelector"),
    (lambda h: h.update(failurePolicy="Ignore"), "failurePolicy"),
    (lambda h: h.update(timeoutSeconds=1), "timeoutSeconds"),
    (lambda h: h.update(matchPolicy="Exact"), "matchPolicy"),
    (lambda h: h.update(sideEffects="None"), "sideEffects"),
    (lambda h: h["rules"].pop(), "rules"),
    (lambda h: h["rules"][0].update(operations=["CREATE"]), "rules"),
    (lambda h: h["namespaceSelector"]["matchExpressions"][0].update(
        values=["kube-system", "team-a"]), "namespaceSelector"),
    (lambda h: h["clientConfig"].update(url="https://127.0.0.1:9/validate"), "clientConfig"),
    (lambda h: h.update(matchConditions=[{"name": "off", "expression": "false"}]),
     "matchConditions"),
])
def test_each_way_of_switching_the_gate_off_is_drift(edit: Any, field: str) -> None:
    stored = as_stored(expected())
    edit(stored["webhooks"][0])
    found = differences(expected(), stored, {})
    assert len(found) == 1 and f".{field}:" in found[0], found


def test_a_changed_ca_bundle_is_drift_against_the_pinned_one() -> None:
    stored = as_stored(expected())
    name = stored["webhooks"][0]["name"]
    assert differences(expected(), stored, {name: "Y2E="}) == []
    assert differences(expected(), stored, {name: "b3RoZXI="}) == [
        f"{name}.caBundle: expected <pinned>, found <changed>"]


def test_added_and_missing_webhooks_are_drift() -> None:
    stored = as_stored(expected())
    stored["webhooks"][0]["name"] = "renamed.provenance.dev"
    found = differences(expected(), stored, {})
    assert sorted(found) == ["pc.provenance.dev: missing",
                             "renamed.provenance.dev: not expected (added)"]


def test_the_expected_configuration_must_be_one() -> None:
    with pytest.raises(GateError):
        load_expected("kind: ConfigMap\n")
    with pytest.raises(GateError):
        _ = GateSettings(expected={"kind": "ValidatingWebhookConfiguration", "metadata": {},
                               "webhooks": [{}]}).name
