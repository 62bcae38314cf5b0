"""`check` and the webhook agree on every case of the shared table (tests/cases/agreement.yaml).

The webhook side is the real controller process behind the real kube-apiserver
(`kubectl apply --dry-run=server`, impersonating the case's user and groups); the offline side is
`kubectl-provenance check` with the controller's own configuration file. Both must give the same
verdict and the same reason codes, in the same order, and both must give the table's expectation.

The last test is the issue's "done when": a pipeline run as a new user (GitHub Actions variables,
an image tag in a real registry) stamps, pins, checks and applies, and the first apply passes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.config import load_config
from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from controller.workloads import KINDS
from tests.cases import CONFIG, Case, load_cases
from tests.fixtures.cluster import kubectl
from tests.fixtures.controller import AUDIT_NAMESPACE
from tests.fixtures.registry import COSIGN_DATA, RegistryServer
from tests.stamp.gitrepo import make_repo

pytestmark = pytest.mark.e2e

CASES = load_cases()
TESTERS = "agreement-testers"
"""A group bound to a role that may apply every gated kind: impersonated users need RBAC to reach
admission at all, and the group is passed to `check` as well so both sides see the same groups."""
_REASON = re.compile(r"\[([A-Za-z]+)\]")
KUBECTL_PROVENANCE = Path(sys.executable).parent / "kubectl-provenance"


@pytest.fixture(scope="module")
def cluster(control_plane: LocalControlPlane,
            enforcing_controller: DevController) -> Iterator[LocalControlPlane]:
    """The session's API server with the enforcing controller, the case namespaces and RBAC."""
    for namespace in sorted({c.namespace for c in CASES} - {"default"}):
        kubectl(control_plane, "create", "namespace", namespace)  # AlreadyExists is fine
    kubectl(control_plane, "create", "clusterrole", "agreement-deployer",
            "--verb=get,list,create,update,patch,delete",
            *[f"--resource={k.plural}.{k.group}" if k.group else f"--resource={k.plural}"
              for k in KINDS])
    kubectl(control_plane, "create", "clusterrolebinding", "agreement-deployer",
            "--clusterrole=agreement-deployer", f"--group={TESTERS}")
    yield control_plane
    kubectl(control_plane, "delete", "clusterrolebinding,clusterrole", "agreement-deployer",
            "--ignore-not-found")


def check_cli(case_file: Path, config: Path, user: str, groups: list[str],
              *extra: str) -> subprocess.CompletedProcess[str]:
    """The real console script, as a pipeline runs it."""
    argv = [str(KUBECTL_PROVENANCE), "check", "--config", str(config), "--as", user,
            *[a for g in groups for a in ("--as-group", g)], *extra, str(case_file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_the_table_is_written_for_the_controllers_policy(
        enforcing_controller: DevController) -> None:
    assert enforcing_controller.config_file is not None
    assert load_config(enforcing_controller.config_file) == load_config(CONFIG)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_and_the_webhook_agree(case: Case, cluster: LocalControlPlane,
                                     enforcing_controller: DevController,
                                     tmp_path: Path) -> None:
    groups = [*case.groups, TESTERS]
    # 1. The webhook, through the API server.
    applied = kubectl(cluster, "apply", "--dry-run=server", "-f", "-", "--as", case.user,
                      *[a for g in groups for a in ("--as-group", g)], stdin=case.text)
    webhook_allowed = applied.returncode == 0
    if webhook_allowed:
        webhook_reasons: list[str] = []
        assert "created (server dry run)" in applied.stdout, applied.stdout + applied.stderr
    else:
        # Denied by our webhook, not by RBAC or API validation.
        assert "denied the request" in applied.stderr, applied.stderr
        denial = applied.stderr.split("denied the request:", 1)[1]
        webhook_reasons = _REASON.findall(denial)
    # 2. check, offline, with the controller's own configuration file.
    path = tmp_path / f"{case.name}.yaml"
    path.write_text(case.text)
    assert enforcing_controller.config_file is not None
    offline = check_cli(path, enforcing_controller.config_file, case.user, groups)
    check_allowed = offline.returncode == 0
    check_reasons = _REASON.findall(offline.stdout)
    assert offline.returncode in (0, 1), offline.stderr

    assert (check_allowed, check_reasons) == (webhook_allowed, webhook_reasons)
    assert (webhook_allowed, webhook_reasons) == (case.allowed, list(case.reasons))


AUDITED = [c for c in CASES if c.namespace == "default"]
"""The cases that can move to the audit namespace (the others are about their namespace)."""


@pytest.mark.parametrize("case", AUDITED, ids=[c.name for c in AUDITED])
def test_check_and_the_webhook_agree_in_audit_mode(
        case: Case, cluster: LocalControlPlane, auditing_controller: DevController,
        tmp_path: Path) -> None:
    # The same Deployment in the namespace the auditing controller judges: admitted, with one
    # warning per violation, and check (with that controller's file) says the same and exits 0.
    kubectl(cluster, "create", "namespace", AUDIT_NAMESPACE)
    text = case.text.replace("namespace: default", f"namespace: {AUDIT_NAMESPACE}")
    groups = [*case.groups, TESTERS]
    applied = kubectl(cluster, "apply", "--dry-run=server", "-f", "-", "--as", case.user,
                      *[a for g in groups for a in ("--as-group", g)], stdin=text)
    assert applied.returncode == 0, applied.stderr
    warnings = [line for line in applied.stderr.splitlines() if line.startswith("Warning:")]
    webhook_reasons = [r for line in warnings for r in _REASON.findall(line)]
    path = tmp_path / f"{case.name}.yaml"
    path.write_text(text)
    assert auditing_controller.config_file is not None
    offline = check_cli(path, auditing_controller.config_file, case.user, groups)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert _REASON.findall(offline.stdout) == webhook_reasons
    # Nothing but the environment rules differ from the enforcing policy here.
    assert webhook_reasons == [r for r in case.reasons if r != "ActorNotAuthorised"]


@pytest.fixture
def registry_host(registry: RegistryServer) -> str:
    """The session's shared registry."""
    return registry.host


def test_a_new_pipeline_passes_the_gate_on_its_first_apply(
        cluster: LocalControlPlane, enforcing_controller: DevController, registry_host: str,
        tmp_path: Path) -> None:
    # A fresh repository with the app's manifest, as a team would have it.
    repo = tmp_path / "payments"
    sha = make_repo(repo)
    crane = Path(__file__).resolve().parents[2] / "bin" / "crane"
    layer = tmp_path / "layer.tar"
    (tmp_path / "app.txt").write_text("payments build\n")
    with tarfile.open(layer, "w") as tar:
        tar.add(tmp_path / "app.txt", arcname="app.txt")
    # build + push: the pipeline's image, by tag.
    subprocess.run([str(crane), "append", "--insecure", "-f", str(layer), "-t",
                    f"{registry_host}/agreement/payments-api:{sha[:12]}"], check=True,
                   capture_output=True, timeout=120)
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(f"""\
# The payments API. Stamped by CI; do not edit the annotations by hand.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments-api
  namespace: default
  labels:
    app: payments-api
spec:
  replicas: 1
  selector:
    matchLabels:
      app: payments-api
  template:
    metadata:
      labels:
        app: payments-api
    spec:
      containers:
        - name: api
          image: {registry_host}/agreement/payments-api:{sha[:12]}
""")
    # The variables GitHub Actions sets; the Kubernetes user is the actor (a new user, "erin").
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GITHUB_ACTIONS": "true",
           "GITHUB_SHA": sha, "GITHUB_REF_NAME": "main", "GITHUB_RUN_ID": "23456789012",
           "GITHUB_RUN_ATTEMPT": "1", "GITHUB_SERVER_URL": "https://github.com",
           "GITHUB_REPOSITORY": "example-org/payments", "GITHUB_ACTOR": "erin"}
    stamp = subprocess.run(
        [str(KUBECTL_PROVENANCE), "stamp", "--pin-digests", "--insecure-registry",
         registry_host, "-i", str(manifest)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert stamp.returncode == 0, stamp.stderr
    text = manifest.read_text()
    assert text.startswith("# The payments API.")
    assert f"image: {registry_host}/agreement/payments-api@sha256:" in text
    assert enforcing_controller.config_file is not None
    checked = check_cli(manifest, enforcing_controller.config_file, "erin", [TESTERS])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    applied = kubectl(cluster, "apply", "-f", str(manifest), "--as", "erin",
                      "--as-group", TESTERS)
    assert applied.returncode == 0, applied.stderr
    assert "deployment.apps/payments-api created" in applied.stdout
    stored = kubectl(cluster, "get", "deploy", "payments-api", "-o",
                     "jsonpath={.spec.template.metadata.annotations.provenance\\.dev/git-sha}")
    assert stored.stdout == sha
    kubectl(cluster, "delete", "deploy", "payments-api", "--wait=false")


SIGNED_NAMESPACE = "signed-zone"
"""Judged by a third controller with signature verification on (and by the enforcing one)."""


@pytest.fixture(scope="module")
def verifying_controller(cluster: LocalControlPlane, registry: RegistryServer,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevController]:
    """The real controller with signatures on: images under `<registry>/signed/` need a
    signature and a SLSA attestation whose commit, build id and run URL match the annotations."""
    workdir = tmp_path_factory.mktemp("controller-signed")
    config = workdir / "config.yaml"
    config.write_text(f"""\
mode: enforce
signatures:
  enabled: true
  default_require: none
  keys:
    - name: release
      path: {COSIGN_DATA / "cosign.pub"}
  rules:
    - prefix: {registry.host}/signed/
      require: attestation
      check_build_id: true
      check_pipeline_url: true
  registry:
    insecure_registries: ["{registry.host}"]
""")
    kubectl(cluster, "create", "namespace", SIGNED_NAMESPACE)
    ctl = DevController(cluster, workdir, config_file=config, name="provenance-signed",
                        exempt_namespaces=["kube-system"], only_namespaces=[SIGNED_NAMESPACE])
    ctl.start()
    yield ctl
    ctl.stop()


def _pipeline(repo: Path, registry_host: str, image: str, env: dict[str, str]) -> Path:
    """The recipe's provenance steps, as docs/ci-recipes.md has them, for one image tag."""
    from tests.stamp.test_recipes import shared_file

    (repo / "ci").mkdir(exist_ok=True)
    (repo / "ci" / "slsa-predicate.sh").write_text(shared_file("ci/slsa-predicate.sh"))
    manifest = repo.parent / f"{repo.name}.yaml"
    manifest.write_text(f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {repo.name}
  namespace: {SIGNED_NAMESPACE}
spec:
  selector:
    matchLabels: {{app: {repo.name}}}
  template:
    metadata:
      labels: {{app: {repo.name}}}
    spec:
      containers:
        - name: api
          image: {image}
""")
    script = (f'set -eu\neval "$(kubectl-provenance stamp --print-env)"\n'
              f"sh ci/slsa-predicate.sh > {repo.parent}/{repo.name}.predicate.json\n"
              f"kubectl-provenance stamp --pin-digests --insecure-registry {registry_host} "
              f"-i {manifest}\n")
    done = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return manifest


def test_a_signed_and_attested_pipeline_passes_and_check_agrees_on_what_fails(
        cluster: LocalControlPlane, enforcing_controller: DevController,
        verifying_controller: DevController, registry: RegistryServer,
        tmp_path: Path) -> None:
    from tests.signatures.helpers import BUNDLE_FLAGS, cosign, push_random_image

    assert verifying_controller.config_file is not None
    results: dict[str, tuple[int, list[str], int, list[str]]] = {}
    for name in ("signed", "unsigned", "wrong-commit"):
        repo = tmp_path / name
        sha = make_repo(repo)
        digest = push_random_image(registry, "signed/api")
        image = f"{registry.host}/signed/api@{digest}"
        env = {"PATH": f"{KUBECTL_PROVENANCE.parent}:/usr/bin:/bin", "HOME": str(tmp_path),
               "GITHUB_ACTIONS": "true", "GITHUB_SHA": sha, "GITHUB_REF_NAME": "main",
               "GITHUB_RUN_ID": "34567890123", "GITHUB_RUN_ATTEMPT": "1",
               "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "example-org/api",
               "GITHUB_ACTOR": "erin", "REPO_URL": "https://github.com/example-org/api"}
        manifest = _pipeline(repo, registry.host, image, env)
        predicate = tmp_path / f"{name}.predicate.json"
        if name != "unsigned":
            if name == "wrong-commit":  # the image was built from another commit
                predicate.write_text(predicate.read_text().replace(sha, "b" * 40))
            cosign("sign", *BUNDLE_FLAGS, image)
            cosign("attest", *BUNDLE_FLAGS, "--type", "slsaprovenance1",
                   "--predicate", str(predicate), image)
        checked = check_cli(manifest, verifying_controller.config_file, "erin", [TESTERS],
                            "--signatures")
        applied = kubectl(cluster, "apply", "-f", str(manifest), "--as", "erin",
                          "--as-group", TESTERS)
        denial = applied.stderr.split("denied the request:", 1)[-1]
        results[name] = (checked.returncode, _REASON.findall(checked.stdout),
                         applied.returncode, _REASON.findall(denial) if applied.returncode
                         else [])
        if applied.returncode == 0:
            kubectl(cluster, "delete", "deploy", name, "-n", SIGNED_NAMESPACE, "--wait=false")
    assert results == {
        "signed": (0, [], 0, []),
        "unsigned": (1, ["SignatureMissing", "AttestationMissing"],
                     1, ["SignatureMissing", "AttestationMissing"]),
        "wrong-commit": (1, ["AttestationCommitMismatch"], 1, ["AttestationCommitMismatch"]),
    }
