"""controller.stamp.stamping: both annotation sites, idempotence, other kinds untouched."""

from __future__ import annotations

import difflib

import pytest

from controller.config import AnnotationConfig
from controller.stamp.manifests import Document, split_documents
from controller.stamp.stamping import image_slots, is_workload, stamp_document

SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
VALUES = {"git-sha": SHA, "branch": "main", "build-id": "412",
          "build-timestamp": "2026-11-25T12:00:00Z", "deployed-by": "alice"}
ANNOTATIONS = AnnotationConfig()

# What `kubectl create deployment --dry-run=client -o yaml` writes, plus a comment and a Service.
KUBECTL_STYLE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: web   # selected by the Service
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: web
    spec:
      initContainers:
      - image: busybox:1.36
        name: migrate
      containers:
      - image: nginx:1.25
        name: nginx
        resources: {}
status: {}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
"""


def stamped(text: str, values: dict[str, str] = VALUES, **kw: bool) -> tuple[str, list[bool]]:
    docs = split_documents(text, source="t.yaml")
    changes = []
    for doc in docs:
        doc.parse()
        changes.append(stamp_document(doc, values, annotations=ANNOTATIONS, **kw).changed)
    return "".join(d.render() for d in docs), changes


def test_only_annotation_lines_are_added_on_both_sites() -> None:
    out, changes = stamped(KUBECTL_STYLE)
    assert changes == [True, False]
    diff = [line for line in difflib.ndiff(KUBECTL_STYLE.splitlines(), out.splitlines())
            if line[:1] in "+-"]
    assert all(line.startswith("+ ") for line in diff), diff
    added = [line[2:] for line in diff]
    assert added == [
        "  annotations:",
        *[f'    provenance.dev/{k}: "{v}"' for k, v in VALUES.items()],
        "      annotations:",
        *[f'        provenance.dev/{k}: "{v}"' for k, v in VALUES.items()],
    ]
    # The Service, and every byte around the additions, is untouched.
    assert out.endswith(KUBECTL_STYLE.split("---\n")[1])


def test_stamping_twice_changes_nothing() -> None:
    once, _ = stamped(KUBECTL_STYLE)
    twice, changes = stamped(once)
    assert twice == once
    assert changes == [False, False]


def test_the_same_build_keeps_its_first_timestamp() -> None:
    once, _ = stamped(KUBECTL_STYLE)
    later = {**VALUES, "build-timestamp": "2026-11-25T12:09:00Z"}
    assert stamped(once, later)[0] == once
    # Unless the timestamp is given explicitly ...
    assert "12:09:00Z" in stamped(once, later, keep_timestamp=False)[0]
    # ... or it is another build.
    assert "12:09:00Z" in stamped(once, {**later, "build-id": "413"})[0]


def test_existing_annotations_are_kept_and_stale_values_replaced() -> None:
    text = KUBECTL_STYLE.replace(
        "  name: web\nspec:",
        "  name: web\n  annotations:\n    team: payments  # owner\n"
        f"    provenance.dev/git-sha: {'f' * 40}\nspec:", 1)
    out, _ = stamped(text)
    assert "    team: payments  # owner\n" in out
    assert f"provenance.dev/git-sha: {'f' * 40}" not in out
    assert out.count(f'provenance.dev/git-sha: "{SHA}"') == 2


def test_a_custom_prefix_is_used() -> None:
    doc = split_documents(KUBECTL_STYLE, source="t")[0]
    doc.parse()
    stamp_document(doc, VALUES, annotations=AnnotationConfig(prefix="ci.example.com/"))
    assert doc.render().count('ci.example.com/git-sha: "') == 2


def test_a_deployment_without_template_metadata_gets_one() -> None:
    text = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
            "spec:\n  template:\n    spec:\n      containers: []\n")
    out, changes = stamped(text)
    assert changes == [True]
    doc = split_documents(out, source="t")[0]
    data = doc.load_plain()
    assert data["metadata"]["annotations"] == data["spec"]["template"]["metadata"]["annotations"]
    assert data["metadata"]["annotations"]["provenance.dev/git-sha"] == SHA


@pytest.mark.parametrize("text", [
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    "apiVersion: example.com/v1\nkind: Deployment\nmetadata:\n  name: x\n",  # a CRD's kind
    "apiVersion: v1\nkind: PodTemplate\nmetadata:\n  name: x\n",
    "- a\n- b\n",
    "just a string\n",
    "# nothing\n",
])
def test_other_kinds_pass_through_unchanged(text: str) -> None:
    assert stamped(text) == (text, [False])


WORKLOADS = {
    "StatefulSet": "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: x\nspec:\n"
                   "  template:\n    spec:\n      containers:\n        - name: a\n"
                   "          image: nginx:1\n",
    "DaemonSet": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\n",
    "ReplicaSet": "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: x\n",
    "Job": "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: x\n",
    "CronJob": "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: x\nspec:\n"
               "  schedule: '* * * * *'\n",
    "ReplicationController": "apiVersion: v1\nkind: ReplicationController\nmetadata:\n"
                             "  name: x\n",
    "Pod": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n"
           "    - name: a\n      image: nginx:1\n",
}


@pytest.mark.parametrize("kind", WORKLOADS)
def test_every_workload_kind_is_stamped_on_the_object_and_its_pod_template(kind: str) -> None:
    out, changes = stamped(WORKLOADS[kind])
    assert changes == [True]
    data = split_documents(out, source="t")[0].load_plain()
    path = {"Pod": (), "CronJob": ("spec", "jobTemplate", "spec", "template")}.get(
        kind, ("spec", "template"))
    template = data
    for key in path:
        template = template[key]
    assert data["metadata"]["annotations"]["provenance.dev/git-sha"] == SHA
    assert template["metadata"]["annotations"]["provenance.dev/git-sha"] == SHA
    assert stamped(out) == (out, [False])  # idempotent


def test_values_that_look_like_numbers_stay_strings() -> None:
    out, _ = stamped(KUBECTL_STYLE, {**VALUES, "build-id": "0412", "branch": "yes"})
    data = split_documents(out, source="t")[0].load_plain()
    annotations = data["metadata"]["annotations"]
    assert (annotations["provenance.dev/build-id"], annotations["provenance.dev/branch"]) == (
        "0412", "yes")


def test_image_slots_cover_init_containers_and_keep_quoting() -> None:
    text = KUBECTL_STYLE.replace("image: nginx:1.25", 'image: "nginx:1.25"')
    doc: Document = split_documents(text, source="t")[0]
    doc.parse()
    assert is_workload(doc.data)
    slots = list(image_slots(doc))
    assert [(s.label, s.image) for s in slots] == [
        ("initContainer migrate", "busybox:1.36"), ("container nginx", "nginx:1.25")]
    slots[1].replace("docker.io/library/nginx@sha256:" + "a" * 64)
    assert f'image: "docker.io/library/nginx@sha256:{"a" * 64}"' in doc.render()


def test_the_deployments_of_a_kubectl_list_are_stamped() -> None:
    # What `kubectl get deploy,svc -o yaml` prints.
    deployment = KUBECTL_STYLE.split("---\n")[0]
    items = "".join("- " + "\n  ".join(doc.rstrip("\n").splitlines()) + "\n"
                    for doc in (deployment, KUBECTL_STYLE.split("---\n")[1]))
    text = f"apiVersion: v1\nkind: List\nitems:\n{items}metadata:\n  resourceVersion: \"\"\n"
    out, changes = stamped(text)
    assert changes == [True]
    data = split_documents(out, source="t")[0].load_plain()
    stamped_deployment, service = data["items"]
    assert stamped_deployment["metadata"]["annotations"]["provenance.dev/git-sha"] == SHA
    assert "annotations" not in service["metadata"]
    assert stamped(out) == (out, [False])


HELM_STYLE = """\
---
# Source: payments/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: release-payments
  labels:
    helm.sh/chart: payments-0.1.0
    app.kubernetes.io/name: payments
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: payments
  template:
    metadata:
      annotations:
        checksum/config: 01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b
      labels:
        app.kubernetes.io/name: payments
    spec:
      containers:
        - name: payments
          image: "registry.example.com/payments:1.2.3"
          imagePullPolicy: IfNotPresent
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
          env:
            - name: GREETING
              value: 'hello: "world"'
"""

FOUR_SPACES = """\
apiVersion: apps/v1
kind: Deployment
metadata:
    name: api
spec:
    template:
        metadata:
            labels:
                app: api
        spec:
            containers:
              - name: api
                image: api:1
"""


@pytest.mark.parametrize("text", [KUBECTL_STYLE, HELM_STYLE, FOUR_SPACES],
                         ids=["kubectl", "helm", "four-spaces"])
def test_in_every_common_style_only_lines_are_added(text: str) -> None:
    out, changes = stamped(text)
    assert changes[0] is True
    removed = [line for line in difflib.ndiff(text.splitlines(), out.splitlines())
               if line.startswith("- ")]
    assert removed == []
    data = split_documents(out, source="t")[-1 if text is HELM_STYLE else 0].load_plain()
    template = data["spec"]["template"]["metadata"]["annotations"]
    assert template["provenance.dev/git-sha"] == SHA
    if text is HELM_STYLE:
        assert template["checksum/config"].startswith("01ba47")  # kept beside ours


def test_flow_style_metadata_stays_valid() -> None:
    text = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, labels: {a: b}}\n"
            "spec: {template: {metadata: {labels: {a: b}}, spec: {containers: []}}}\n")
    out, _ = stamped(text)
    data = split_documents(out, source="t")[0].load_plain()
    assert data["metadata"]["annotations"]["provenance.dev/build-id"] == "412"
    assert data["spec"]["template"]["metadata"]["annotations"]["provenance.dev/build-id"] == "412"
    assert stamped(out) == (out, [False])
