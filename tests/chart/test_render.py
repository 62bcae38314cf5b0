"""The chart, rendered by the real helm: lint, every scenario, the schema, the static manifests.

Needs the helm binary (`make tools`), not a cluster; marked e2e so `make unit` stays binary-free.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from controller.config import Config, parse_config
from controller.gate import differences, load_expected
from controller.ledger.config import LedgerConfig
from controller.signatures.config import SignatureConfig
from controller.tls import issue
from controller.workloads import KINDS, webhook_rules
from tests.chart.helm import (
    CHART,
    CI_VALUES,
    RELEASE_NAMESPACE,
    ROOT,
    SCENARIOS,
    find,
    helm,
    objects,
    scenario_id,
    template,
)

FULLNAME = "pc-provenance-controller"


def values_of(scenario: Path | None) -> dict[str, Any]:
    """The effective values: defaults overlaid with the scenario (a deep merge, as helm does)."""
    base: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for key, value in b.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(
                out.get(key), dict) else value
        return out

    return merge(base, yaml.safe_load(scenario.read_text())) if scenario else base


@pytest.fixture(scope="module", params=SCENARIOS, ids=scenario_id)
def rendered(request: pytest.FixtureRequest, helm_home: Path
             ) -> tuple[Path | None, list[dict[str, Any]]]:
    scenario: Path | None = request.param
    return scenario, objects(template(scenario, "--skip-tests", home=helm_home))


# --- lint --------------------------------------------------------------------------------------

def test_ci_scenarios_cover_the_issue() -> None:
    assert {p.stem for p in CI_VALUES} == {
        "cert-manager-values", "self-managed-tls-values", "audit-mode-values",
        "custom-annotation-prefix-values"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_helm_lint_strict(scenario: Path | None, helm_home: Path) -> None:
    args = ["lint", "--strict", str(CHART)]
    if scenario is not None:
        args += ["-f", str(scenario)]
    result = helm(*args, home=helm_home)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(("setting", "complaint"), [
    ("typo=1", "additional properties 'typo' not allowed"),
    ("config.annotations.prefx=x/", "additional properties 'prefx' not allowed"),
    ("config.mode=block", "/config/mode"),
    ("webhook.failurePolicy=Sometimes", "/webhook/failurePolicy"),
    ("webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"),
    ("webhook.exemptNamespaces[0]=Not_A_Name", "/webhook/exemptNamespaces/0"),
    ("replicaCount=0", "/replicaCount"),
    ("tls.mode=openssl", "/tls/mode"),
    ("image.digest=sha256:short", "/image/digest"),
    ("config.ledger.segment_max_bytes=10", "/config/ledger/segment_max_bytes"),
    ("config.signatures.registry.insecure=true", "additional properties 'insecure' not allowed"),
    ("config.environments.Prod.users[0]=a", "additional properties 'Prod' not allowed"),
])
def test_schema_rejects_bad_values(setting: str, complaint: str, helm_home: Path) -> None:
    result = helm("lint", str(CHART), "--set", setting, home=helm_home, check=False)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


def _walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


# Values passed to Kubernetes verbatim (their schema is Kubernetes'), and string maps.
PASSTHROUGH = {"/properties/affinity", "/properties/tolerations/items",
               "/properties/networkPolicy/properties/webhookFrom/items",
               "/properties/networkPolicy/properties/metricsFrom/items"}


def test_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = []
    for path, node in _walk(schema, ""):
        if node.get("type") != "object" and "properties" not in node:
            continue
        closed = node.get("additionalProperties") is False
        string_map = node.get("additionalProperties") == {"type": "string"} and (
            "properties" not in node)
        if not (closed or string_map or path in PASSTHROUGH):
            open_objects.append(path)
    assert not open_objects, f"objects accepting unknown keys: {open_objects}"


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z_][\w.-]*:", line) and "#" not in line:
            previous = lines[i - 1].strip() if i else ""
            if not previous.startswith("#"):
                missing.append(f"{i + 1}: {line.strip()}")
    assert not missing, "keys without a comment:\n" + "\n".join(missing)


# --- generated files ---------------------------------------------------------------------------

def test_manifests_and_schema_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "hack/render-manifests.sh"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=180)
    assert (tmp_path / "values.schema.json").read_text() == (
        CHART / "values.schema.json").read_text(), "values.schema.json is stale: make manifests"
    assert (tmp_path / "provenance-controller.yaml").read_text() == (
        ROOT / "manifests/provenance-controller.yaml").read_text(), (
        "manifests/ is stale: make manifests")


def test_static_manifests_are_the_default_install_with_its_namespace() -> None:
    docs = objects((ROOT / "manifests/provenance-controller.yaml").read_text())
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": RELEASE_NAMESPACE,
        "labels": {"app.kubernetes.io/part-of": "provenance-controller"}}}
    kinds = sorted(d["kind"] for d in docs)
    assert "Pod" not in kinds, "the helm test hook leaked into the static install"
    assert kinds.count("ValidatingWebhookConfiguration") == 1
    assert find(docs, "Deployment")["spec"]["replicas"] == 2


# --- every scenario ----------------------------------------------------------------------------

def test_names_fit_and_objects_are_labelled(
        rendered: tuple[Path | None, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == "pc", doc["metadata"]["name"]
        if doc["kind"] not in ("Namespace", "ValidatingWebhookConfiguration", "ClusterRole",
                               "ClusterRoleBinding"):
            assert doc["metadata"].get("namespace"), f"{doc['kind']} without a namespace"


def test_webhook_configuration(rendered: tuple[Path | None, list[dict[str, Any]]]) -> None:
    scenario, docs = rendered
    values = values_of(scenario)
    vwc = find(docs, "ValidatingWebhookConfiguration")
    assert vwc["apiVersion"] == "admissionregistration.k8s.io/v1"
    [hook] = vwc["webhooks"]
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["failurePolicy"] == values["webhook"]["failurePolicy"]
    assert hook["timeoutSeconds"] == values["webhook"]["timeoutSeconds"]
    assert hook["admissionReviewVersions"] == ["v1"]
    # The chart's own list, equal to the one the code derives from the kinds table.
    assert hook["rules"] == webhook_rules()
    assert hook["clientConfig"] == {"service": {
        "name": FULLNAME, "namespace": RELEASE_NAMESPACE, "path": "/validate",
        "port": values["service"]["port"]}}
    # Only the immutable name label; nothing a namespace owner could set.
    assert "objectSelector" not in hook
    exempt = {"kube-system", RELEASE_NAMESPACE, *values["webhook"]["exemptNamespaces"]}
    assert hook["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": sorted(exempt)}]}
    if values["tls"]["mode"] == "cert-manager":
        assert vwc["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": f"{RELEASE_NAMESPACE}/{FULLNAME}"}
    else:
        assert "annotations" not in vwc["metadata"]
    assert "caBundle" not in hook["clientConfig"], "the caBundle is never rendered"
    # The gate guard compares the live object with the very webhooks the chart installs.
    guard = values["webhook"]["guard"]
    expected = find(docs, "ConfigMap", f"{FULLNAME}-gate")
    parsed = load_expected(expected["data"]["expected.yaml"])
    assert parsed["metadata"] == {"name": FULLNAME}
    assert parsed["webhooks"] == vwc["webhooks"]
    assert differences(parsed, vwc, {}) == []
    args = find(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--gate-expected=/etc/provenance-gate/expected.yaml" in args
    assert ("--gate-restore" if guard["restore"] else "--no-gate-restore") in args


def test_configuration_is_valid_for_the_controller(
        rendered: tuple[Path | None, list[dict[str, Any]]]) -> None:
    scenario, docs = rendered
    values = values_of(scenario)
    text = find(docs, "ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"]
    data = yaml.safe_load(text)
    # `signatures:` and `ledger:` are validated by their own models until Config carries them.
    sections: dict[str, Any] = {}
    for name in ("signatures", "ledger"):
        if name not in Config.model_fields:
            sections[name] = data.pop(name)
    config = parse_config(yaml.safe_dump(data), source="rendered ConfigMap")
    signatures = (SignatureConfig.model_validate(sections["signatures"])
                  if "signatures" in sections else getattr(config, "signatures"))  # noqa: B009
    ledger = (LedgerConfig.model_validate(sections["ledger"], strict=False)
              if "ledger" in sections else getattr(config, "ledger"))  # noqa: B009
    assert isinstance(signatures, SignatureConfig)
    assert isinstance(ledger, LedgerConfig)
    assert config.mode == values["config"]["mode"]
    assert config.annotations.prefix == values["config"]["annotations"]["prefix"]
    vwc = find(docs, "ValidatingWebhookConfiguration")
    exempt = vwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert list(config.exempt_namespaces) == exempt, "controller and webhook disagree on exemptions"
    assert ledger.checkpoint_key_namespace == RELEASE_NAMESPACE
    assert signatures.enabled == bool(values["config"]["signatures"].get("enabled"))


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = find(docs, "Deployment")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return dict(container)


def test_deployment_is_hardened_and_probed(
        rendered: tuple[Path | None, list[dict[str, Any]]]) -> None:
    scenario, docs = rendered
    values = values_of(scenario)
    deployment = find(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == values["replicaCount"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    spread = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname",
                                                   "topology.kubernetes.io/zone"}
    assert all(c["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
               for c in spread)
    container = _container(docs)
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert "checksum/config" in spec["template"]["metadata"]["annotations"]
    args = container["args"]
    assert "--config=/etc/provenance-controller/config.yaml" in args
    assert "--tls-cert=/tls/tls.crt" in args and "--tls-key=/tls/tls.key" in args
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    if values["tls"]["mode"] == "self-managed":
        assert "--tls-self-managed" in args
        assert f"--tls-secret={FULLNAME}-tls" in args
        assert f"--webhook-config={FULLNAME}" in args
        assert f"--service={FULLNAME}" in args
        assert f"--namespace={RELEASE_NAMESPACE}" in args
        assert volumes["tls"]["emptyDir"]["medium"] == "Memory"
        assert not mounts["tls"].get("readOnly")
    else:
        assert "--tls-self-managed" not in args
        assert volumes["tls"]["secret"]["secretName"] == f"{FULLNAME}-tls"
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    if values["podDisruptionBudget"]["enabled"]:
        [pdb] = pdbs
        assert pdb["spec"]["minAvailable"] == values["podDisruptionBudget"]["minAvailable"]
        assert pdb["spec"]["selector"] == spec["selector"]
    else:
        assert not pdbs


def _rules(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return list(find(docs, kind, name)["rules"])


def test_rbac_is_least_privilege(rendered: tuple[Path | None, list[dict[str, Any]]]) -> None:
    scenario, docs = rendered
    values = values_of(scenario)
    for doc in docs:
        for rule in doc.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"wildcard in {doc['metadata']['name']}"
            if "secrets" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "update"}, "secrets: never list or create"
            assert "delete" not in rule["verbs"]
    cluster = _rules(docs, "ClusterRole", FULLNAME)
    # list and watch on every gated kind, for the reconciler; derived from the kinds table.
    groups: dict[str, list[str]] = {}
    for kind in KINDS:
        groups.setdefault(kind.group, []).append(kind.plural)
    expected: list[dict[str, Any]] = [
        {"apiGroups": [group], "resources": sorted(plurals), "verbs": ["get", "list", "watch"]}
        for group, plurals in groups.items()]
    cluster = [{**rule, "resources": sorted(rule["resources"])} for rule in cluster]
    guard = values["webhook"]["guard"]
    self_managed = values["tls"]["mode"] == "self-managed"
    verbs = (["get"] if self_managed or guard["enabled"] else []) + (
        ["patch"] if self_managed else []) + (
        ["update"] if guard["enabled"] and guard["restore"] else [])
    if verbs:
        expected.append({"apiGroups": ["admissionregistration.k8s.io"],
                         "resources": ["validatingwebhookconfigurations"],
                         "resourceNames": [FULLNAME], "verbs": verbs})
    if guard["enabled"] and guard["restore"]:
        # Kubernetes cannot limit create by name.
        expected.append({"apiGroups": ["admissionregistration.k8s.io"],
                         "resources": ["validatingwebhookconfigurations"],
                         "verbs": ["create"]})
    signatures = values["config"]["signatures"]
    if signatures.get("enabled") and signatures.get("registry", {}).get(
            "use_image_pull_secrets", True):
        expected.append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    assert cluster == expected
    ledger_ns = values["config"]["ledger"]["namespace"]
    ledger_role = find(docs, "Role", f"{FULLNAME}-ledger")
    assert ledger_role["metadata"]["namespace"] == ledger_ns
    assert ledger_role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"],
         "verbs": ["get", "list", "watch", "create", "update", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "update"]}]
    key_role = find(docs, "Role", f"{FULLNAME}-checkpoint-key")
    signed_heads = f"{ledger_ns}.{values['config']['ledger'].get('chain', 'audit')}.head"
    assert key_role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"],
         "resourceNames": [values["config"]["ledger"]["checkpoint_key_secret"]],
         "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [signed_heads],
         "verbs": ["get", "patch"]}]
    heads = find(docs, "ConfigMap", signed_heads)
    assert heads["metadata"]["namespace"] == key_role["metadata"]["namespace"]
    assert heads["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "data" not in heads
    pull = signatures.get("registry", {}).get("pull_secret")
    pull_roles = [d for d in docs if d["kind"] == "Role" and
                  d["metadata"]["name"] == f"{FULLNAME}-pull-secret"]
    if signatures.get("enabled") and pull:
        [role] = pull_roles
        assert role["metadata"]["namespace"] == pull["namespace"]
        assert role["rules"][0]["resourceNames"] == [pull["name"]]
    else:
        assert not pull_roles
    if guard["enabled"]:
        events = find(docs, "Role", f"{FULLNAME}-events")
        assert events["metadata"]["namespace"] == "default"
        assert events["rules"] == [{"apiGroups": [""], "resources": ["events"],
                                    "verbs": ["create"]}]
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                        "namespace": RELEASE_NAMESPACE}]


def test_tls_objects(rendered: tuple[Path | None, list[dict[str, Any]]]) -> None:
    scenario, docs = rendered
    values = values_of(scenario)
    hosts = [FULLNAME, f"{FULLNAME}.{RELEASE_NAMESPACE}", f"{FULLNAME}.{RELEASE_NAMESPACE}.svc",
             f"{FULLNAME}.{RELEASE_NAMESPACE}.svc.cluster.local"]
    if values["tls"]["mode"] == "cert-manager":
        serving = find(docs, "Certificate", FULLNAME)
        assert serving["spec"]["dnsNames"] == hosts
        assert serving["spec"]["secretName"] == f"{FULLNAME}-tls"
        assert serving["spec"]["issuerRef"]["name"] == f"{FULLNAME}-ca"
        assert find(docs, "Certificate", f"{FULLNAME}-ca")["spec"]["isCA"] is True
        assert not [d for d in docs if d["kind"] == "Secret"]
    else:
        secret = find(docs, "Secret", f"{FULLNAME}-tls")
        assert "data" not in secret, "the chart must never own the certificate material"
        assert not [d for d in docs if d["kind"] in ("Certificate", "Issuer")]


def test_optional_extras(rendered: tuple[Path | None, list[dict[str, Any]]]) -> None:
    scenario, docs = rendered
    values = values_of(scenario)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert bool(policies) == values["networkPolicy"]["enabled"]
    assert bool(monitors) == values["serviceMonitor"]["enabled"]
    if monitors:
        endpoint = monitors[0]["spec"]["endpoints"][0]
        assert (endpoint["port"], endpoint["path"]) == ("http-metrics", "/metrics")
    if policies:
        ports = [r["ports"][0]["port"] for r in policies[0]["spec"]["ingress"]]
        assert ports == ["webhook", "http-metrics"]


# --- the helm test hook ------------------------------------------------------------------------

def _test_pod(helm_home: Path, *extra: str) -> dict[str, Any]:
    docs = objects(template(None, *extra, "--show-only",
                            "templates/tests/webhook-answers.yaml", home=helm_home))
    [pod] = docs
    return pod


def test_the_test_hook_is_a_hardened_helm_test_pod(helm_home: Path) -> None:
    pod = _test_pod(helm_home)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    selector = find(objects(template(None, home=helm_home)), "Deployment")["spec"]["selector"]
    labels = pod["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in selector["matchLabels"].items()), (
        "the Service would route webhook calls to the test pod")
    assert pod["spec"]["automountServiceAccountToken"] is False
    [container] = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["volumes"][0]["secret"] == {
        "secretName": f"{FULLNAME}-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    script = container["args"][0]
    assert f"https://{FULLNAME}.{RELEASE_NAMESPACE}.svc:443/validate" in script


async def _run_hook_script(script: str, tmp_path: Path, answer: Any) -> int:
    """Run the hook's Python against a local TLS server that answers like the webhook."""
    material = issue(hosts=["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(material.cert_pem)
    (tmp_path / "tls.key").write_bytes(material.key_pem)
    (tmp_path / "ca.crt").write_bytes(material.ca_bundle_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")

    async def validate(request: web.Request) -> web.Response:
        review = await request.json()
        return web.json_response(answer(review))

    app = web.Application()
    app.router.add_post("/validate", validate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    local = re.sub(r'url = "https://[^"]+"', f'url = "https://127.0.0.1:{port}/validate"', script)
    local = local.replace("/ca/ca.crt", str(tmp_path / "ca.crt"))
    try:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", local)
        return await proc.wait()
    finally:
        await runner.cleanup()


def _deny(review: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": False}}


async def test_the_test_hook_passes_on_a_denial_and_fails_otherwise(
        helm_home: Path, tmp_path: Path) -> None:
    script = _test_pod(helm_home)["spec"]["containers"][0]["args"][0]
    assert await _run_hook_script(script, tmp_path, _deny) == 0

    def wrong_uid(review: dict[str, Any]) -> dict[str, Any]:
        answer = _deny(review)
        answer["response"]["uid"] = str(uuid.uuid4())
        return answer

    assert await _run_hook_script(script, tmp_path, wrong_uid) != 0

    def allows(review: dict[str, Any]) -> dict[str, Any]:
        answer = _deny(review)
        answer["response"]["allowed"] = True
        return answer

    assert await _run_hook_script(script, tmp_path, allows) != 0, (
        "enforce mode must deny a Deployment without provenance")
    audit = _test_pod(helm_home, "--set", "config.mode=audit")["spec"]["containers"][0]["args"][0]
    assert await _run_hook_script(audit, tmp_path, allows) == 0


def test_client_ca_makes_the_controller_require_the_api_servers_certificate(
        helm_home: Path) -> None:
    with_ca = objects(template(None, "--set", "webhook.clientCAConfigMap=apiserver-webhook-ca",
                               home=helm_home))
    [deploy] = [d for d in with_ca if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "--client-ca=/etc/provenance-client-ca/ca.crt" in container["args"]
    assert {"name": "client-ca", "mountPath": "/etc/provenance-client-ca",
            "readOnly": True} in container["volumeMounts"]
    assert {"name": "client-ca", "configMap": {"name": "apiserver-webhook-ca"}} in pod["volumes"]
    default = next(d for d in objects(template(None, home=helm_home))
                   if d["kind"] == "Deployment")
    assert not any(a.startswith("--client-ca") for a in
                   default["spec"]["template"]["spec"]["containers"][0]["args"])
