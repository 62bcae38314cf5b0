"""Manifest streams in and out: files, directories and stdin, multi-document YAML, byte-stable.

A stream is split into documents at the `---` markers first, as text, so that every document
keeps its own original bytes. A document that nothing changes is written back exactly as it was
read. A changed document is written by ruamel.yaml's round-trip dumper (comments, key order and
quoting survive) with the indentation that reproduces the original document exactly; so the only
differences in the output are the edits themselves.

`check` reads the same documents with PyYAML's safe loader instead: YAML 1.1, as kubectl reads
them (`yes` is a boolean there), so the offline verdict sees what the API server would see.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from controller.stamp.errors import ManifestError

STDIN = "-"
"""The path that means standard input."""
MAX_STREAM_BYTES = 64 * 1024 * 1024
"""Larger inputs are refused: a rendered chart is a few megabytes at most."""
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
"""What a directory contributes, as `kubectl apply -f DIR` does."""

def add_manifest_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs `stamp` and `check` share, as kubectl spells them: paths (positional, or
    `-f/--filename`, repeatable; as `read_manifests` takes them) and `-R`. Call
    `manifest_paths(args)` for the paths given either way."""
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="files or directories of manifests; - or nothing for stdin")
    parser.add_argument("-f", "--filename", dest="filenames", action="append", default=[],
                        metavar="PATH", help="a file or directory of manifests, or - for "
                        "stdin, as kubectl takes it (repeatable; adds to the PATHs)")
    parser.add_argument("-R", "--recursive", action="store_true",
                        help="descend into directories")


def manifest_paths(args: argparse.Namespace) -> list[str]:
    """Every path given by `add_manifest_arguments`' options, `-f` ones first."""
    return [*args.filenames, *args.paths]


_MARKER = re.compile(r"---(?=[ \t]|$)")
_BARE_MARKER = re.compile(r"---[ \t]*(?:#.*)?")
_INDENT_CANDIDATES = ((2, 2, 0), (2, 4, 2), (4, 4, 2), (4, 4, 0), (2, 3, 1), (3, 3, 0),
                      (4, 6, 2), (4, 2, 0))
"""(mapping, sequence, offset) settings tried, in order, until one reproduces the document."""
_FAST_SAFE_LOADER = getattr(pyyaml, "CSafeLoader", pyyaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it: the same schema, many times faster."""
_WIDTH = 1 << 16
"""Never fold long lines: folding would change bytes nobody asked to change."""


_NULL_STYLES = ("", "null", "~")
"""How a null is written: ruamel forgets it, so the style that reproduces the document is kept
(`creationTimestamp: null` is what kubectl and kustomize write)."""

_Style = tuple[tuple[int, int, int], str]


def _round_trip_yaml(style: _Style = ((2, 2, 0), "")) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = _WIDTH
    (mapping, sequence, offset), null = style
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    if null:
        y.representer.add_representer(
            type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", null))
    return y


def _dump(y: YAML, data: Any) -> str:
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


@dataclass
class Document:
    """One YAML document of a stream, with where it came from."""

    source: str
    """The file it was read from, or `<stdin>`."""
    index: int
    """1-based position in its file, counting only documents with content (0 for a piece that
    holds only comments or nothing)."""
    line: int
    """1-based line of the file where the document's content starts."""
    header: str
    """The `---` marker line (and anything else before the content) kept verbatim."""
    body: str
    """The document's own text."""
    data: Any = None
    """The round-trip parse of `body` (ruamel types), after `parse()`; None when empty."""
    changed: bool = False
    """Set by whoever edits `data`; an unchanged document is written back byte for byte."""
    _style: _Style | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        """The document exactly as read."""
        return self.header + self.body

    def error(self, message: str, *, line: int | None = None) -> ManifestError:
        """A `ManifestError` naming this file and document."""
        return ManifestError(self.source, message, document=self.index,
                             line=line if line is not None else self.line)

    def parse(self) -> Any:
        """Parse for editing (ruamel round trip); raise `ManifestError` on invalid YAML."""
        if not self.body.strip():
            return None
        y = _round_trip_yaml()
        try:
            # Comments keep their raw line breaks; LF everywhere makes CRLF files round-trip.
            self.data = y.load(self._lf_body)
        except YAMLError as exc:
            raise self._yaml_error(exc) from exc
        return self.data

    def load_plain(self) -> Any:
        """Parse as kubectl does (YAML 1.1, safe): plain dicts, lists and scalars."""
        if not self.body.strip():
            return None
        try:
            return _plain(pyyaml.load(self.body, Loader=_FAST_SAFE_LOADER))  # noqa: S506
        except pyyaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = self.line + mark.line if mark is not None else self.line
            problem = getattr(exc, "problem", None) or str(exc)
            raise self.error(f"invalid YAML: {problem}", line=line) from exc

    def render(self) -> str:
        """The document's text: as read when unchanged, re-dumped when changed."""
        if not self.changed or self.data is None:
            return self.text
        if self.body.lstrip().startswith(("{", "[")):
            # A JSON manifest stays JSON: YAML flow style would not parse as JSON, and kubectl
            # reads a file that starts with `{` as JSON.
            dumped = json.dumps(self.data, indent=2, ensure_ascii=False) + "\n"
        else:
            dumped = _dump(_round_trip_yaml(self._stable_style()), self.data)
        if not self.body.endswith("\n"):
            dumped = dumped.rstrip("\n")
        if "\r\n" in self.body:
            # The parser reads CRLF as LF; a Windows checkout keeps its line endings.
            dumped = dumped.replace("\n", "\r\n")
        return self.header + dumped

    def before_edit(self) -> None:
        """Call before the first change to `data`: settles the output style on the original."""
        if self._style is None and self.data is not None:
            self._style = self._find_style(self.data)

    def _stable_style(self) -> _Style:
        if self._style is None:
            # Edited without `before_edit`: re-parse the original so the edits do not count.
            self._style = self._find_style(_round_trip_yaml().load(self._lf_body))
        return self._style

    def _find_style(self, original: Any) -> _Style:
        # The first style under which the unedited data dumps to the very same bytes is the
        # document's own. The likely ones are tried first: one dump is the usual cost.
        lf = self._lf_body
        nulls = sorted(_NULL_STYLES, key=lambda n: not re.search(
            rf":[ \t]+{re.escape(n)}[ \t]*(?:#.*)?$" if n else r":[ \t]*$", lf, re.M))
        candidates = [(i, n) for n in nulls for i in _INDENT_CANDIDATES]
        for candidate in candidates:
            if _dump(_round_trip_yaml(candidate), original) == lf:
                return candidate
        return candidates[0]

    @property
    def _lf_body(self) -> str:
        return self.body.replace("\r\n", "\n")

    def _yaml_error(self, exc: YAMLError) -> ManifestError:
        line = self.line
        if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
            line = self.line + exc.problem_mark.line
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return self.error(f"invalid YAML: {problem}", line=line)


def _plain(value: Any) -> Any:
    """JSON-shaped data: what kubectl sends after converting YAML to JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _has_content(lines: Sequence[str]) -> bool:
    return any(ln.strip() and not ln.lstrip().startswith("#") for ln in lines)


def split_documents(text: str, *, source: str) -> list[Document]:
    """Split a YAML stream at its `---` markers, keeping every byte in exactly one document.

    Documents are numbered from 1 counting only those with content, so that "document 2" is
    the second thing kubectl would apply; comment-only pieces are kept (and written back) too.
    """
    lines = text.splitlines(keepends=True)
    chunks: list[tuple[int, list[str]]] = [(1, [])]
    for number, line in enumerate(lines, start=1):
        start, current = chunks[-1]
        if _MARKER.match(line.rstrip("\r\n")) and _has_content(current) and not all(
                ln.startswith("%") for ln in current if ln.strip()
                and not ln.lstrip().startswith("#")):
            # Directives (`%YAML 1.2`) belong to the document the marker opens: no split there.
            chunks.append((number, []))
        elif _MARKER.match(line.rstrip("\r\n")) and current and any(
                _MARKER.match(ln.rstrip("\r\n")) for ln in current):
            chunks.append((number, []))  # an empty document between two markers
        chunks[-1][1].append(line)
    documents: list[Document] = []
    count = 0
    for start, chunk in chunks:
        if not chunk:
            continue
        marker = next((i for i, ln in enumerate(chunk) if _MARKER.match(ln.rstrip("\r\n"))),
                      None)
        if marker is not None and _BARE_MARKER.fullmatch(chunk[marker].rstrip("\r\n")):
            header, body_lines, first = chunk[:marker + 1], chunk[marker + 1:], start + marker + 1
        else:
            # No marker, or content on the marker line itself (`--- {a: 1}`): all of it is body.
            header, body_lines, first = [], chunk, start
        if _has_content(body_lines):
            count += 1
        documents.append(Document(source=source, index=count if _has_content(body_lines) else 0,
                                  line=first, header="".join(header), body="".join(body_lines)))
    return documents


def read_text(path: str) -> str:
    """The text of one file, or of stdin for `-`; raise `ManifestError` naming it."""
    name = "<stdin>" if path == STDIN else path
    try:
        if path == STDIN:
            data = sys.stdin.buffer.read(MAX_STREAM_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_STREAM_BYTES + 1)
    except OSError as exc:
        raise ManifestError(name, f"cannot read: {exc.strerror}") from exc
    if len(data) > MAX_STREAM_BYTES:
        raise ManifestError(name, f"larger than {MAX_STREAM_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, f"not UTF-8 text (byte {exc.start})") from exc


def expand_paths(paths: Sequence[str], *, recursive: bool = False) -> list[str]:
    """Files named directly, and the manifest files of directories, in a stable order."""
    out: list[str] = []
    for path in paths or [STDIN]:
        if path == STDIN:
            out.append(path)
            continue
        p = Path(path)
        if p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            files = sorted(f for f in found if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
            if not files:
                raise ManifestError(path, "the directory holds no .yaml, .yml or .json file")
            out.extend(str(f) for f in files)
        elif p.exists():
            out.append(path)
        else:
            raise ManifestError(path, "no such file or directory")
    return out


@dataclass
class Manifest:
    """One input (a file or stdin) and its documents."""

    path: str
    """As given; `-` for stdin."""
    documents: list[Document]

    @property
    def name(self) -> str:
        """How messages name it."""
        return "<stdin>" if self.path == STDIN else self.path

    @property
    def changed(self) -> bool:
        """Whether any document was edited."""
        return any(d.changed for d in self.documents)

    def render(self) -> str:
        """The whole stream: unchanged documents byte for byte, edited ones re-dumped."""
        return "".join(d.render() for d in self.documents)


def read_manifests(paths: Sequence[str], *, recursive: bool = False) -> list[Manifest]:
    """Every input, split into documents (not yet parsed)."""
    manifests = []
    for path in expand_paths(paths, recursive=recursive):
        name = "<stdin>" if path == STDIN else path
        manifests.append(Manifest(path, split_documents(read_text(path), source=name)))
    return manifests


def iter_documents(manifests: Iterable[Manifest]) -> Iterator[Document]:
    """Every document of every manifest, in order."""
    for manifest in manifests:
        yield from manifest.documents


def join_streams(texts: Sequence[str]) -> str:
    """Several streams as one: a `---` goes between two files so their documents stay apart."""
    out = ""
    for text in texts:
        if out and text:
            if not out.endswith("\n"):
                out += "\n"
            if not re.match(r"---(?:[ \t]|\r?\n|$)", text):
                out += "---\n"
        out += text
    return out


def write_in_place(path: str, text: str) -> None:
    """Replace `path` atomically (a reader never sees half a file), keeping its mode."""
    target = Path(path)
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
