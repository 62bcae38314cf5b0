"""The Dockerfile, checked without a Docker engine: parsed, linted, and traced end to end.

No engine runs here, so the checks a build would make implicitly are made explicitly: every
build argument reaches an OCI label and the runtime environment, the environment feeds
controller.version exactly, the user is numeric and non-root, and hack/image.sh passes every
argument the Dockerfile declares. The lint rules are the hadolint rules that matter here.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from controller import version

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"

BUILD_ARG_LABELS = {
    "VERSION": "org.opencontainers.image.version",
    "REVISION": "org.opencontainers.image.revision",
    "CREATED": "org.opencontainers.image.created",
    "SOURCE": "org.opencontainers.image.source",
    "BUILD_ID": "dev.provenance.build-id",
    "PIPELINE_URL": "dev.provenance.pipeline-url",
}
"""Each provenance build argument and the label it must fill."""
BUILD_ARG_ENV = {
    "VERSION": version.ENV_VERSION,
    "REVISION": version.ENV_COMMIT,
    "CREATED": version.ENV_BUILT_AT,
    "SOURCE": version.ENV_SOURCE,
    "BUILD_ID": version.ENV_BUILD_ID,
    "PIPELINE_URL": version.ENV_PIPELINE_URL,
}
"""Each provenance build argument and the variable controller.version reads it from."""


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions (continuations joined, comments dropped) and the stages they form."""
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a line continuation"
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append(ins)
    return instructions, stages


def pairs(args: str) -> dict[str, str]:
    """KEY=value pairs of a LABEL or ENV instruction, shell-unquoted."""
    out = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        assert sep, f"{token!r}: use the KEY=value form"
        out[key] = value
    return out


def substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: variables.get(m.group(1) or m.group(2), ""), value)


@pytest.fixture(scope="module")
def parsed() -> tuple[list[Instruction], list[Stage]]:
    return parse(DOCKERFILE.read_text())


def test_multi_stage_on_a_slim_python_base(
        parsed: tuple[list[Instruction], list[Stage]]) -> None:
    instructions, stages = parsed
    assert len(stages) >= 2
    assert stages[0].name == "build"
    global_args = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            key, _, default = ins.args.partition("=")
            global_args[key] = default
    for stage in stages:
        base = substitute(stage.base, global_args)
        # Pinned by digest, as the gate demands of every image (issue 13): never a bare tag.
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?@sha256:[0-9a-f]{64}", base), base
    runtime = stages[-1]
    copies = runtime.all("COPY")
    assert copies, "the runtime stage must copy the build"
    assert all("--from=build" in c.args for c in copies), (
        "the runtime stage takes only the build stage's output, never the source tree")
    assert not runtime.all("RUN"), "no compilers or package managers run in the runtime stage"


def test_runs_as_a_numeric_non_root_user(parsed: tuple[list[Instruction], list[Stage]]) -> None:
    runtime = parsed[1][-1]
    users = runtime.all("USER")
    assert users, "the runtime stage must set USER"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1].args)
    assert match, f"USER must be numeric (uid[:gid]) so runAsNonRoot can verify it: {users[-1]}"
    assert int(match.group(1)) != 0
    assert match.group(2) is None or int(match.group(2)) != 0
    entrypoint = runtime.all("ENTRYPOINT")[-1]
    assert users[-1].line < entrypoint.line
    # The chart's securityContext runs the same uid.
    helpers = (ROOT / "charts/provenance-controller/templates/_helpers.tpl").read_text()
    assert f"runAsUser: {match.group(1)}" in helpers


def test_every_build_arg_reaches_a_label_and_the_runtime_environment(
        parsed: tuple[list[Instruction], list[Stage]]) -> None:
    runtime = parsed[1][-1]
    declared = {i.args.partition("=")[0] for i in runtime.all("ARG")}
    assert declared == set(BUILD_ARG_LABELS), "runtime-stage ARGs and provenance args differ"
    labels: dict[str, str] = {}
    for ins in runtime.all("LABEL"):
        labels |= pairs(ins.args)
    env: dict[str, str] = {}
    for ins in runtime.all("ENV"):
        env |= pairs(ins.args)
    for arg, label in BUILD_ARG_LABELS.items():
        assert labels.get(label) == f"${{{arg}}}", f"label {label} must be filled from {arg}"
        assert env.get(BUILD_ARG_ENV[arg]) == f"${{{arg}}}", (
            f"{BUILD_ARG_ENV[arg]} must be filled from {arg}")
    assert set(BUILD_ARG_ENV.values()) == set(version.BUILD_ENV_VARS)


def test_the_runtime_environment_feeds_version_exactly(
        parsed: tuple[list[Instruction], list[Stage]]) -> None:
    """Substitute build args as `docker build` would, then read /version's data from that."""
    runtime = parsed[1][-1]
    args = {
        "VERSION": "1.4.0", "REVISION": "ab" * 20, "CREATED": "2026-11-26T00:00:00Z",
        "SOURCE": "https://git.example.com/pc", "BUILD_ID": "build-881",
        "PIPELINE_URL": "https://ci.example.com/runs/881",
    }
    env: dict[str, str] = {}
    for ins in runtime.all("ENV"):
        env |= {k: substitute(v, args) for k, v in pairs(ins.args).items()}
    env[version.ENV_ENVIRONMENT] = "production"  # the chart sets it per install
    assert version.build_info(env).as_dict() == {
        "version": "1.4.0", "commit": "ab" * 20, "build": "build-881",
        "built_at": "2026-11-26T00:00:00Z", "environment": "production",
        "pipeline_url": "https://ci.example.com/runs/881", "source": "https://git.example.com/pc",
    }


def test_lint(parsed: tuple[list[Instruction], list[Stage]]) -> None:
    instructions, stages = parsed
    problems = []
    for ins in instructions:
        if ins.keyword == "ADD":
            problems.append(f"line {ins.line}: use COPY, not ADD (DL3020)")
        if ins.keyword in ("ENTRYPOINT", "CMD"):
            try:
                assert isinstance(json.loads(ins.args), list)
            except (ValueError, AssertionError):
                problems.append(f"line {ins.line}: {ins.keyword} in exec (JSON) form (DL3025)")
        if ins.keyword == "WORKDIR" and not ins.args.startswith("/"):
            problems.append(f"line {ins.line}: WORKDIR must be absolute (DL3000)")
        if ins.keyword == "RUN":
            if re.search(r"\bsudo\b", ins.args):
                problems.append(f"line {ins.line}: no sudo (DL3004)")
            if "apt-get install" in ins.args and "--no-install-recommends" not in ins.args:
                problems.append(f"line {ins.line}: apt-get install --no-install-recommends")
            if re.search(r"\bcd\s", ins.args):
                problems.append(f"line {ins.line}: use WORKDIR, not cd (DL3003)")
            if "curl" in ins.args and "| sh" in ins.args:
                problems.append(f"line {ins.line}: no curl | sh")
        if ins.keyword == "ARG" and re.search(r"TOKEN|PASSWORD|SECRET|KEY\b", ins.args):
            problems.append(f"line {ins.line}: secrets must not be build args (they persist)")
        if ins.keyword == "FROM" and (":latest" in ins.args or
                                      ("$" not in ins.args.split()[0] and
                                       ":" not in ins.args.split()[0])):
            problems.append(f"line {ins.line}: pin the base image (DL3006/DL3007)")
    pip_env = " ".join(i.args for i in stages[0].all("ENV"))
    if "PIP_NO_CACHE_DIR=1" not in pip_env:
        problems.append("pip must not keep its cache in a layer (DL3042)")
    assert not problems, "\n".join(problems)


def test_exposed_ports_match_the_chart(parsed: tuple[list[Instruction], list[Stage]]) -> None:
    exposed = {int(p) for i in parsed[1][-1].all("EXPOSE") for p in i.args.split()}
    values = yaml.safe_load((ROOT / "charts/provenance-controller/values.yaml").read_text())
    assert exposed == {values["ports"]["webhook"], values["ports"]["health"]}


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: the last matching pattern wins; `!` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat + "/*") or (
                "**" in pat and fnmatch.fnmatch(path, pat.replace("**/", "*"))):
            result = not negate
    return result


def test_the_build_context_holds_only_what_the_build_copies(
        parsed: tuple[list[Instruction], list[Stage]]) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = []
    for ins in parsed[1][0].all("COPY"):
        copied.extend(ins.args.split()[:-1])
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not _ignored(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    for leak in (".git/config", ".venv/bin/python", "bin/kubectl", "tests/conftest.py",
                 ".dev/certs/tls.key", "controller/__pycache__/x.pyc"):
        assert _ignored(leak, patterns), f"{leak} would be sent to the build"


def _image_sh(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("BUILD_ID", "PIPELINE_URL", "GITHUB_RUN_ID", "CI_PIPELINE_ID",
                          "BUILD_NUMBER", "CI_PIPELINE_URL", "IMAGE_TAG", "SOURCE_URL",
                          "SOURCE_DATE_EPOCH")}
    out = subprocess.run(["bash", str(ROOT / "hack/image.sh")],
                         env={**clean, "DRY_RUN": "1", **env},
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return shlex.split(out)


def _build_args(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--build-arg")


def test_image_sh_passes_every_build_arg_from_git_and_the_environment(
        parsed: tuple[list[Instruction], list[Stage]]) -> None:
    argv = _image_sh(BUILD_ID="ci-77", PIPELINE_URL="https://ci.example.com/runs/77",
                     IMAGE_TAG="1.2.3", SOURCE_URL="https://user:s3cret@git.example.com/pc.git")
    args = _build_args(argv)
    declared = {i.args.partition("=")[0] for i in parsed[1][-1].all("ARG")}
    assert set(args) == declared
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout.strip()
    assert args["REVISION"] == head
    assert args["VERSION"] == "1.2.3"
    assert args["BUILD_ID"] == "ci-77"
    assert args["PIPELINE_URL"] == "https://ci.example.com/runs/77"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", args["CREATED"])
    assert args["SOURCE"] == "https://git.example.com/pc.git", "credentials leaked into a label"
    assert argv[argv.index("--tag") + 1].endswith(":1.2.3")


def test_image_sh_reads_github_actions_and_source_date_epoch() -> None:
    args = _build_args(_image_sh(GITHUB_RUN_ID="4242", GITHUB_REPOSITORY="org/pc",
                                 SOURCE_DATE_EPOCH="1700000000"))
    assert args["BUILD_ID"] == "4242"
    assert args["PIPELINE_URL"] == "https://github.com/org/pc/actions/runs/4242"
    assert args["CREATED"] == "2023-11-14T22:13:20Z"


def test_the_images_own_provenance_does_not_pose_as_a_pipelines(
        parsed: tuple[list[Instruction], list[Stage]]) -> None:
    # `kubectl-provenance stamp` reads PROVENANCE_<FIELD> as overrides; were the image's own
    # variables named alike, stamping inside this image would stamp the controller's build.
    from controller.stamp.ci import FIELDS, BuildInfo

    stamp_reads = set(BuildInfo(system="none", **{f: "x" for f in FIELDS}).env())
    runtime = parsed[1][-1]
    image_sets: set[str] = set()
    for ins in runtime.all("ENV"):
        image_sets |= set(pairs(ins.args))
    image_sets.add(version.ENV_ENVIRONMENT)  # set by the chart
    assert stamp_reads
    assert not image_sets & stamp_reads


def test_the_build_installs_only_hash_checked_wheels_from_the_lock(
        parsed: tuple[list[Instruction], list[Stage]]) -> None:
    build = parsed[1][0]
    runs = [i.args for i in build.all("RUN")]
    assert any(r.startswith("bash hack/install-locked.sh deps /opt/venv") for r in runs), runs
    assert any(r.startswith("bash hack/install-locked.sh project /opt/venv") for r in runs), runs
    # No pip install of its own in the Dockerfile: the one installer is hack/install-locked.sh,
    # the same that `make sbom` runs, so the SBOM describes the image.
    assert not any("pip install" in r for r in runs), runs
    copies = " ".join(i.args for i in build.all("COPY"))
    assert "requirements.lock" in copies and "requirements-build.lock" in copies
    script = (ROOT / "hack/install-locked.sh").read_text()
    locked = re.search(r"^locked=\((.*)\)$", script, re.M)
    assert locked, "install-locked.sh lost its pip flags"
    flags = locked.group(1).split()
    for flag in ("--require-hashes", "--only-binary", "--no-deps"):
        assert flag in flags, f"install-locked.sh must pass {flag}"
    installs = re.findall(r"pip install[^\n]*(?:\\\n[^\n]*)*", script)
    assert installs
    for install in installs:
        assert '"${locked[@]}"' in install or "--no-index" in install, (
            f"an install that is neither hash-checked nor offline: {install}")


def test_image_sh_refuses_an_unpinned_base() -> None:
    for base in ("python:3.12-slim-bookworm", "python:3.12-slim-bookworm@sha256:abc",
                 "python:latest", "python@sha512:" + "a" * 128):
        result = subprocess.run(["bash", str(ROOT / "hack/image.sh")],
                                env={**os.environ, "DRY_RUN": "1", "BASE_IMAGE": base},
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 1, (base, result.stdout)
        assert "not pinned by digest" in result.stderr
        assert not result.stdout, "nothing may be built from an unpinned base"


def test_image_sh_builds_from_a_pinned_base_or_when_told_otherwise() -> None:
    pinned = "python:3.12-slim-bookworm@sha256:" + "0" * 64
    assert _build_args(_image_sh(BASE_IMAGE=pinned))["BASE_IMAGE"] == pinned
    # The Dockerfile's own default passes without BASE_IMAGE (no build arg overrides it).
    assert "BASE_IMAGE" not in _build_args(_image_sh())
    unpinned = _build_args(_image_sh(BASE_IMAGE="python:3.12-slim", ALLOW_UNPINNED_BASE="1"))
    assert unpinned["BASE_IMAGE"] == "python:3.12-slim"


def test_image_sh_prints_the_same_build_args_for_the_release_builder() -> None:
    # The release workflow builds with docker/build-push-action from PRINT_BUILD_ARGS=1.
    env = {"BUILD_ID": "ci-9", "PIPELINE_URL": "https://ci.example.com/runs/9",
           "IMAGE_TAG": "2.0.0"}
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GITHUB_RUN_ID", "SOURCE_DATE_EPOCH")}
    printed = subprocess.run(["bash", str(ROOT / "hack/image.sh")],
                             env={**clean, "PRINT_BUILD_ARGS": "1", "ALLOW_DIRTY": "1", **env},
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
    lines = printed.splitlines()
    assert dict(line.split("=", 1) for line in lines) == _build_args(_image_sh(**env))
    refused = subprocess.run(["bash", str(ROOT / "hack/image.sh")],
                             env={**clean, "PRINT_BUILD_ARGS": "1", "ALLOW_DIRTY": "1",
                                  "BASE_IMAGE": "python:3.12-slim"},
                             capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 1 and not refused.stdout
