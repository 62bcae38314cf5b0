"""mutmut's command line, with its operators kept off what is wording rather than behaviour.

mutmut rewrites every plain string literal three ways ("XX…XX", lower and upper case) and
replaces or drops each call argument. On a message such as
`ImageReferenceError("the image reference is empty")` that yields mutants only a test asserting
the whole sentence could kill, and the sentence is not a security rule: the denial's reason code,
the check that raises and the fields it names are, and those are still mutated. So this leaves
alone:

- prose string literals (two words or more separated by a space), alone or as an f-string's
  text: a literal that is one token (`"sha256:"`, `"https"`, `"ci-allowlist"`, `"Basic "`) is
  still mutated, because code compares against it;
- call arguments that are such prose;
- the arguments of logging calls (`log.…`, `logger.…`), which never change a verdict.

It also empties the project's memo caches (`functools.cache`/`lru_cache`, such as
`controller.images.parse_reference`) before every test, in the stats run and in each mutant's
run. mutmut forks each mutant's run from a process that has already run the suite: without
this a mutant of `_parse_reference` is never called for a reference the parent parsed, so it
survives, and the stats run, which fills the cache as it goes, credits only the first test that
parses a given reference with covering the parser.

And it runs each mutant's covering tests in two steps: first those in the mutated module's own
test module (tests mirror the package: `controller/policy/checks.py` → `tests/policy/
test_checks.py`), then, only if they all passed, the rest. pytest collects every module named
on its command line before it runs a test, and a function such as `_parse_reference` is covered
by some 450 tests in 25 modules: most mutants fail in their own module's tests, and then the
collection of the other 24 is saved. A mutant that survives both steps ran every covering test,
as before.

Run as `python hack/mutmut_run.py run …`, exactly like `mutmut run …`; `… report MIN SECONDS`
prints what hack/mutation.sh ends with.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import libcst as cst
from mutmut.mutation import mutators

_PROSE = re.compile(r"[A-Za-z]\w*[,.:;()]* +[(\[{'\"]*[A-Za-z]")
_WORDS = re.compile(r"[A-Za-z]{2,} | [A-Za-z]{2,}")
_LOGGERS = frozenset({"log", "logger", "logging"})


def is_prose(node: cst.BaseExpression) -> bool:
    """A literal whose text reads as words for a person, not a token code compares against."""
    if isinstance(node, cst.SimpleString):
        return bool(_PROSE.search(node.value))
    if isinstance(node, cst.FormattedString):
        # Words between the fields: f"{subject} is not RFC 3339: {value!r}".
        return any(_WORDS.search(p.value) for p in node.parts
                   if isinstance(p, cst.FormattedStringText))
    if isinstance(node, cst.ConcatenatedString):
        return is_prose(node.left) or is_prose(node.right)
    return False


def _is_logging(node: cst.Call) -> bool:
    func = node.func
    return (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)
            and func.value.value in _LOGGERS)


def _strings(node: cst.BaseString) -> Iterable[cst.BaseString]:
    if is_prose(node):
        return ()
    return mutators.operator_string(node)


def _only_code_arguments(
    operator: Callable[[cst.Call], Iterable[cst.Call]],
) -> Callable[[cst.Call], Iterable[cst.Call]]:
    def filtered(node: cst.Call) -> Iterable[cst.Call]:
        if _is_logging(node):
            return
        for mutant in operator(node):
            kept = [id(a) for a in mutant.args]
            changed = [a for a in node.args if id(a) not in kept]
            if changed and all(is_prose(a.value) for a in changed):
                continue
            yield mutant

    return filtered


def own_test_module(mutant_name: str) -> str:
    """`controller.policy.checks.xǁ…` → `tests/policy/test_checks.py`."""
    module = mutant_name.split(".x", 1)[0].split(".")
    return "/".join(["tests", *module[1:-1], f"test_{module[-1]}.py"])


def clear_memo_caches() -> None:
    """Empty every memo cache at module level in the loaded `controller` modules."""
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "controller" or name.startswith("controller.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, functools._lru_cache_wrapper):
                value.cache_clear()


class _FreshCaches:
    """A pytest plugin: each test starts with the memo caches empty (see the docstring)."""

    @staticmethod
    def pytest_runtest_setup() -> None:
        clear_memo_caches()


def install() -> None:
    """Swap the filtered operators into mutmut's table (shared by reference with its users),
    and give every pytest run mutmut starts the `_FreshCaches` plugin."""
    from mutmut.runners.harness import PytestRunner

    execute = PytestRunner.execute_pytest

    def execute_pytest(self: PytestRunner, params: list[str], **kwargs: Any) -> int:
        kwargs["plugins"] = [*kwargs.get("plugins", ()), _FreshCaches()]
        return execute(self, params, **kwargs)

    PytestRunner.execute_pytest = execute_pytest  # type: ignore[method-assign]

    run_tests = PytestRunner.run_tests

    def run_in_two_steps(self: PytestRunner, *, mutant_name: str | None,
                         tests: Iterable[str]) -> int:
        tests = list(tests)
        own = own_test_module(mutant_name) if mutant_name else None
        first = [t for t in tests if own is not None and t.split("::", 1)[0] == own]
        rest = [t for t in tests if t not in first]
        if first and rest:
            exit_code = run_tests(self, mutant_name=mutant_name, tests=first)
            if exit_code not in (0, 5):  # 5: none collected, which decides nothing
                return exit_code
            return run_tests(self, mutant_name=mutant_name, tests=rest)
        return run_tests(self, mutant_name=mutant_name, tests=tests)

    PytestRunner.run_tests = run_in_two_steps  # type: ignore[method-assign]
    # A list at run time, typed as a Sequence.
    table = cast("list[Any]", mutators.mutation_operators)
    for index, (node_type, operator) in enumerate(table):
        if operator is mutators.operator_string:
            table[index] = (node_type, _strings)
        elif operator in (mutators.operator_arg_removal, mutators.operator_dict_arguments):
            table[index] = (node_type, _only_code_arguments(operator))


NOTES = "docs/mutation-notes.txt"
"""What is known of the survivors: `<mutant name or glob>  <kind>: <why>`, one a line."""


def read_notes(path: Path) -> list[tuple[str, str, str]]:
    """(glob, kind, why) for every note line; `#` starts a comment line."""
    if not path.exists():
        return []
    notes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        glob, _, rest = line.strip().partition(" ")
        kind, _, why = rest.strip().partition(":")
        notes.append((glob, kind.strip(), why.strip()))
    return notes


def note_for(name: str, notes: list[tuple[str, str, str]]) -> tuple[str, str]:
    """The first note whose glob matches `name`, else (open, not argued yet)."""
    for glob, kind, why in notes:
        if fnmatch.fnmatchcase(name, glob):
            return kind, why
    return "open", "not killed and not argued yet"


def report(minimum: float, seconds: int) -> int:
    """Every mutant not killed, with its change, then the score line; 1 below `minimum`.

    In this process, with the same operators: mutant names are numbered by what the operators
    yield, so a diff made with mutmut's unfiltered table would show the wrong change.
    """
    from mutmut.configuration import config  # noqa: F401  (loads [tool.mutmut] from cwd)
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    notes = read_notes(Path(NOTES))
    argued: dict[str, int] = {}
    counts: dict[str, int] = {}
    total = 0
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            counts[status] = counts.get(status, 0) + 1
            total += 1
            if status in ("killed", "timeout", "not checked"):
                continue  # a run cut short leaves "not checked": counted below, not listed
            print(f"{status}: {name}")
            diff = get_diff_for_mutant(name, path=path)
            for line in diff.splitlines():
                if line[:1] in "+-" and not line.startswith(("+++", "---")):
                    print(f"    {line.strip()[:150]}")
            kind, why = note_for(name, notes)
            argued[kind] = argued.get(kind, 0) + 1
            print(f"    = {kind}: {why}")
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    score = 100.0 * killed / total if total else 0.0
    others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())
                       if s not in ("killed", "timeout"))
    checked = total - counts.get("not checked", 0)
    if checked != total:
        print(f"of the {checked} checked: {100.0 * killed / max(checked, 1):.1f}% killed")
    if argued:
        print("not killed, by what " + NOTES + " says of them: "
              + ", ".join(f"{n} {k}" for k, n in sorted(argued.items())))
    print(f"{total - killed} not killed ({others or 'none'}); wall time of the run: {seconds} s")
    print(f"mutation score: {score:.1f}% ({killed} of {total} killed)")
    return 0 if score >= minimum and total else 1


if __name__ == "__main__":
    install()
    if sys.argv[1:2] == ["report"]:
        sys.exit(report(float(sys.argv[2]), int(sys.argv[3])))
    from mutmut.__main__ import cli

    sys.argv[0] = "mutmut"
    sys.exit(cli())
