"""controller.stamp.manifests: splitting, exact round trips, errors naming file and document."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.stamp.errors import ManifestError
from controller.stamp.manifests import (
    expand_paths,
    join_streams,
    read_manifests,
    split_documents,
    write_in_place,
)

HELM_OUTPUT = """---
# Source: payments/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: payments
spec:
  ports:
    - port: 80
---
# Source: payments/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments
spec:
  template:
    spec:
      containers:
        - name: app
          image: "registry.example.com/payments:1.2.3"
"""


@pytest.mark.parametrize("text", [
    "", "a: 1\n", "a: 1", "a: 1\n---\nb: 2\n", HELM_OUTPUT, "# only a comment\n",
    "%YAML 1.2\n---\na: 1\n...\n---\nb: 2\n", "--- {a: 1}\n--- \nb: 2\n", "---\n---\na: 1\n",
    "a: 1\r\n---\r\nb: 2\r\n",
])
def test_splitting_keeps_every_byte(text: str) -> None:
    docs = split_documents(text, source="x.yaml")
    assert "".join(d.text for d in docs) == text
    assert "".join(d.render() for d in docs) == text


def test_documents_are_numbered_by_content_with_their_first_line() -> None:
    docs = [d for d in split_documents(HELM_OUTPUT, source="x") if d.index]
    assert [(d.index, d.line) for d in docs] == [(1, 2), (2, 11)]


def test_indented_sequences_and_comments_survive_an_edit_exactly() -> None:
    doc = split_documents(HELM_OUTPUT, source="x")[1]
    data = doc.parse()
    data["metadata"]["labels"] = {"tier": "web"}
    doc.changed = True
    expected = HELM_OUTPUT.split("---\n", 2)[2].replace(
        "  name: payments\nspec:", "  name: payments\n  labels:\n    tier: web\nspec:")
    assert doc.render() == "---\n" + expected


@pytest.mark.parametrize("body", [
    # kubectl's style: sequences flush with their key.
    "a:\n  b:\n  - c: 1\n    d: [x, 'y', \"z\"]  # keep\n",
    # four-space mappings with indented sequences.
    "a:\n    b:\n      - c: 1\n",
    # flow style, quoting and a folded scalar kept as written.
    "a: {b: 1, c: 'two'}\nlong: >-\n  folded\n  text\nn: ~\n",
    # kubectl create --dry-run -o yaml writes nulls out.
    "metadata:\n  creationTimestamp: null\n  name: web\nstatus: {}\n",
])
def test_an_unedited_round_trip_is_exact_under_the_detected_indentation(body: str) -> None:
    doc = split_documents(body, source="x")[0]
    doc.parse()
    doc.changed = True  # force the re-dump path
    assert doc.render() == body


def test_invalid_yaml_names_file_document_and_line() -> None:
    text = "a: 1\n---\nkind: Deployment\nmetadata:\n  name: [unclosed\n"
    doc = split_documents(text, source="deploy.yaml")[1]
    with pytest.raises(ManifestError) as err:
        doc.parse()
    assert str(err.value).startswith("deploy.yaml: document 2 (line ")
    assert "invalid YAML" in str(err.value)
    with pytest.raises(ManifestError, match=r"deploy.yaml: document 2 \(line \d+\): invalid YAML"):
        doc.load_plain()


def test_duplicate_keys_are_invalid() -> None:
    doc = split_documents("a: 1\na: 2\n", source="d.yaml")[0]
    with pytest.raises(ManifestError, match=r"d.yaml: document 1"):
        doc.parse()


def test_load_plain_reads_yaml_1_1_like_kubectl() -> None:
    doc = split_documents("a: yes\nb: 2026-01-01T00:00:00Z\nc: '1'\n", source="x")[0]
    assert doc.load_plain() == {"a": True, "b": "2026-01-01T00:00:00Z", "c": "1"}


def test_directories_give_their_manifest_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("b: 1\n")
    (tmp_path / "a.yml").write_text("a: 1\n")
    (tmp_path / "notes.txt").write_text("no\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.json").write_text('{"c": 1}\n')
    assert expand_paths([str(tmp_path)]) == [str(tmp_path / "a.yml"), str(tmp_path / "b.yaml")]
    assert expand_paths([str(tmp_path)], recursive=True)[-1] == str(tmp_path / "sub" / "c.json")
    with pytest.raises(ManifestError, match=r"missing.yaml: no such file"):
        expand_paths([str(tmp_path / "missing.yaml")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"empty: the directory holds no .yaml"):
        expand_paths([str(tmp_path / "empty")])


def test_non_utf8_input_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(ManifestError, match=r"latin1.yaml: not UTF-8"):
        read_manifests([str(path)])


def test_files_joined_on_stdout_stay_separate_documents() -> None:
    assert join_streams(["a: 1", "b: 2\n", "---\nc: 3\n"]) == "a: 1\n---\nb: 2\n---\nc: 3\n"


def test_write_in_place_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\n")
    path.chmod(0o640)
    write_in_place(str(path), "a: 2\n")
    assert path.read_text() == "a: 2\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["m.yaml"]


def test_a_windows_checkout_keeps_crlf_line_endings() -> None:
    text = "a:\r\n  b: 1   # note\r\nc:\r\n  - x\r\n"
    doc = split_documents(text, source="x")[0]
    doc.parse()
    doc.changed = True
    assert doc.render() == text
    doc.data["d"] = 2
    assert doc.render() == text + "d: 2\r\n"


_LINES = st.sampled_from([
    "---", "--- ", "--- # c", "--- {a: 1}", "...", "# comment", "", "a: 1", "  b: [x, y]",
    "- item", "%YAML 1.2", "----", "key: ---", "  ---", "k: |", "  text ---",
])


@given(st.lists(_LINES, max_size=30), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_any_stream_splits_and_renders_back_byte_for_byte(
        lines: list[str], newline: str, final_newline: bool) -> None:
    text = newline.join(lines) + (newline if final_newline and lines else "")
    docs = split_documents(text, source="x")
    assert "".join(d.text for d in docs) == text
    assert "".join(d.render() for d in docs) == text
    numbered = [d.index for d in docs if d.index]
    assert numbered == list(range(1, len(numbered) + 1))
