"""controller.images: the distribution reference grammar, normalisation and pinning."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import ImageReferenceError
from controller.images import (
    MAX_NAME_LENGTH,
    MAX_REFERENCE_LENGTH,
    ImageReference,
    parse_reference,
)

D = "sha256:" + "b5b1e7f55d49730ba3119608964ba401309f389835dac7ab40657beafbb5ad07"


@pytest.mark.parametrize(("text", "expected"), [
    ("nginx", ImageReference("docker.io", "library/nginx")),
    ("nginx:1.25", ImageReference("docker.io", "library/nginx", "1.25")),
    ("docker.io/nginx", ImageReference("docker.io", "library/nginx")),
    ("docker.io/library/nginx", ImageReference("docker.io", "library/nginx")),
    ("index.docker.io/library/nginx", ImageReference("docker.io", "library/nginx")),
    ("bitnami/redis:7", ImageReference("docker.io", "bitnami/redis", "7")),
    ("localhost/app", ImageReference("localhost", "app")),
    ("localhost:5000/team/app:v1", ImageReference("localhost:5000", "team/app", "v1")),
    ("ghcr.io/org/app@" + D, ImageReference("ghcr.io", "org/app", None, D)),
    ("ghcr.io/org/app:v1@" + D, ImageReference("ghcr.io", "org/app", "v1", D)),
    ("[::1]:5000/app", ImageReference("[::1]:5000", "app")),
    ("Registry.Example.com/a/b-c_d.e", ImageReference("registry.example.com", "a/b-c_d.e")),
    ("registry.example.com:443/a/b", ImageReference("registry.example.com", "a/b")),
    ("registry-1.docker.io/bitnami/redis", ImageReference("docker.io", "bitnami/redis")),
    ("localhost:5000/x", ImageReference("localhost:5000", "x")),
    ("Myhost/app", ImageReference("Myhost", "app")),  # lower-cased it would mean docker.io
    # A host with a port, or named localhost, is a host whatever its case.
    ("Registry:5000/app", ImageReference("registry:5000", "app")),
    ("LOCALHOST/app", ImageReference("localhost", "app")),
    ("LOCALHOST:5000/app", ImageReference("localhost:5000", "app")),
])
def test_parses_and_normalises(text: str, expected: ImageReference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", [
    "", " nginx", "nginx ", "nginx@", "nginx:", "Nginx", "org/App", "nginx@sha256:",
    "nginx@sha256:abc", "nginx@:" + "a" * 64, "nginx:-bad", "a//b", "/nginx", "nginx/",
    "nginx:" + "t" * 129, "x" * 600, "nginx@@" + D, "ghcr.io/org/app@" + D + "@" + D,
])
def test_rejects_malformed(text: str) -> None:
    with pytest.raises(ImageReferenceError):
        parse_reference(text)


@pytest.mark.parametrize(("text", "reason"), [
    ("nginx@", "has an empty digest"),
    ("nginx@@", "has an empty digest"),
    ("nginx@@" + D, "is not a valid image reference"),
    ("org/App", "has upper-case letters in the repository name"),
    ("org/App:v1", "is not a valid image reference"),  # the case may be the tag's fault
    ("org/App@abc", "is not a valid image reference"),
    ("a//b", "is not a valid image reference"),
])
def test_a_rejection_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_reference(text)
    assert str(caught.value) == f"{text!r} {reason}"


def test_the_length_limit_is_inclusive() -> None:
    # 512 characters: the longest name and a long tag, pinned by a sha512 digest.
    text = "a" * MAX_NAME_LENGTH + ":" + "t" * 120 + "@sha512:" + "b" * 128
    assert len(text) == MAX_REFERENCE_LENGTH
    assert parse_reference(text).repository == "library/" + "a" * MAX_NAME_LENGTH
    with pytest.raises(ImageReferenceError, match="longer than 512"):
        parse_reference(text + "b")


@pytest.mark.parametrize(("text", "pinned"), [
    ("nginx@" + D, D),
    ("nginx:1.25@" + D, D),  # judged by its digest
    ("nginx:1.25", None),
    ("nginx@" + D.upper().replace("SHA256", "sha256"), None),  # upper-case hex is not a pin
    ("nginx@sha512:" + "a" * 128, None),  # only sha256 is accepted
    ("nginx@sha256:" + "a" * 63 + "A", None),
    ("nginx@" + D + "0", None),  # 64 hex and more: a match must be whole, not a prefix
    ("nginx@" + D + D[7:], None),
    ("nginx@sha256:" + "a" * 63, None),
    ("nginx@sha256x:" + "a" * 64, None),
    ("nginx@xsha256:" + "a" * 64, None),
])
def test_pinned_digest(text: str, pinned: str | None) -> None:
    assert parse_reference(text).pinned_digest == pinned


def test_with_digest_drops_the_tag() -> None:
    ref = parse_reference("ghcr.io/org/app:v1").with_digest(D)
    assert str(ref) == f"ghcr.io/org/app@{D}"


_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_component = st.builds(lambda a, sep, b: a + sep + b if sep else a,
                       _alnum, st.sampled_from(["", ".", "_", "__", "-", "--"]), _alnum)
_host = st.builds(lambda labels, port: ".".join(labels) + (f":{port}" if port else ""),
                  st.lists(_alnum, min_size=2, max_size=4),
                  st.none() | st.integers(min_value=1, max_value=65535))
_tag = st.builds(lambda first, rest: first + rest,
                 st.sampled_from("abcXYZ019_"), st.text("abcXYZ019_.-", max_size=20))
_hex = st.text("0123456789abcdef", min_size=64, max_size=64)
_settings = settings(max_examples=150, deadline=None)


@_settings
@given(host=_host, path=st.lists(_component, min_size=1, max_size=4),
       tag=st.none() | _tag, digest=st.none() | _hex)
def test_roundtrip_of_generated_references(
    host: str, path: list[str], tag: str | None, digest: str | None,
) -> None:
    text = host + "/" + "/".join(path)
    if tag is not None:
        text += ":" + tag
    if digest is not None:
        text += "@sha256:" + digest
    ref = parse_reference(text)
    assert ref.registry == host.removesuffix(":443")  # the HTTPS default port is dropped
    assert ref.repository == "/".join(path)
    assert ref.tag == tag
    assert ref.pinned_digest == (None if digest is None else "sha256:" + digest)
    assert parse_reference(str(ref)) == ref


@_settings
@given(st.text(max_size=300) | st.builds(
    lambda a, b: a + b, st.sampled_from(["nginx", "ghcr.io/a/b", "localhost:5000/x"]),
    st.text(":@/._-aA0sha256", max_size=80)))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ImageReferenceError:
        return
    # Whatever parses must print back to something that parses to the same reference.
    assert parse_reference(str(ref)) == ref
