"""The public API type-checks as users see it: pyright infers ``group.parallel`` element-wise.

The snippets in ``typing_cases/case_*.py`` use the API exactly as a user would and mark
each ``reveal_type(...)`` with the type it must show::

    reveal_type(a)  # expect: int

(``# expect-mypy: ...`` overrides the expectation for mypy where it spells a type
differently; mypy's module prefixes such as ``mainspring.sdk.event.`` are dropped before
comparing.) The snippets must type-check cleanly under pyright strict and ``mypy --strict``.

The negative snippets below are written to a temporary folder, so that the repository's
own mypy run never sees code that is meant to fail. Each line that must be rejected ends
with ``# E: <pyright rule> <mypy error code>``; both checkers must report an error on
exactly those lines and on no other.

basedpyright and mypy each run once, side by side, over every snippet.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

# Spawns two type checkers (a few seconds in all).
pytestmark = pytest.mark.slow

CASES_DIR = Path(__file__).parent / "typing_cases"
POSITIVE_CASES = sorted(CASES_DIR.glob("case_*.py"))

NEGATIVE_CASES: Mapping[str, str] = {
    "neg_parallel_async.py": '''
        """Misuses of the async API that a type checker must reject."""

        from __future__ import annotations

        import mainspring

        client = mainspring.Client(app_id="typing-negative")
        trigger = mainspring.TriggerEvent(event="typing/negative")


        async def get_int() -> int:
            return 1


        async def get_str() -> str:
            return "one"


        async def get_user(user_id: int) -> dict[str, str]:
            return {"id": str(user_id)}


        @client.create_function(fn_id="group", trigger=trigger)
        async def group(ctx: mainspring.Context) -> None:
            parallel = ctx.group.parallel
            one = lambda: ctx.step.run("one", get_int)
            two = lambda: ctx.step.run("two", get_str)
            # A coroutine instead of a callable would start the step outside the group.
            await parallel((ctx.step.run("a", get_int),))  # E: reportArgumentType arg-type
            await parallel((ctx.step.run("a", get_int), two))  # E: reportArgumentType arg-type
            # Each callable must return an awaitable (a step) in an async function.
            await parallel((lambda: 1, one))  # E: reportArgumentType arg-type
            # A tuple, not a list; a ParallelMode, not its string.
            await parallel([one, two])  # E: reportArgumentType call-overload
            await parallel((one, two), "race")  # E: reportArgumentType call-overload
            # The element types are real: the length and each element are checked.
            _a, _b, _c = await parallel((one, two))  # E: reportAssignmentType misc
            x, y = await parallel((one, two))
            _x: str = x  # E: reportAssignmentType assignment
            _y: int = y  # E: reportAssignmentType assignment
            # Forgetting to await the group.
            parallel((one,)).count  # E: reportAttributeAccessIssue attr-defined


        @client.create_function(fn_id="steps", trigger=trigger)
        async def steps(ctx: mainspring.Context) -> None:
            await ctx.step.run("a", get_user, "seven")  # E: reportArgumentType arg-type
            await ctx.step.run("b", get_user)  # E: reportArgumentType call-arg
            await ctx.step.run("c", get_user, 1, 2)  # E: reportArgumentType call-arg
            await ctx.step.run("d", get_int, 1)  # E: reportArgumentType arg-type
            await ctx.step.run(1, get_int)  # E: reportArgumentType call-overload
            await ctx.step.sleep("e", "soon")  # E: reportArgumentType arg-type


        @client.create_function(fn_id="x", trigger=trigger)  # E: reportArgumentType arg-type
        def sync_with_context(ctx: mainspring.Context) -> int:
            return 1
    ''',
    "neg_parallel_sync.py": '''
        """Misuses of the sync API that a type checker must reject."""

        from __future__ import annotations

        import mainspring

        client = mainspring.Client(app_id="typing-negative-sync")
        trigger = mainspring.TriggerEvent(event="typing/negative")


        def get_int() -> int:
            return 1


        def get_user(user_id: int) -> dict[str, str]:
            return {"id": str(user_id)}


        @client.create_function(fn_id="group", trigger=trigger)
        def group(ctx: mainspring.ContextSync) -> None:
            parallel = ctx.group.parallel
            one = lambda: ctx.step.run("one", get_int)
            two = lambda: ctx.step.run("two", lambda: "s")
            # A step's result instead of a callable: the step already ran, alone.
            parallel((ctx.step.run("a", get_int),))  # E: reportArgumentType arg-type
            parallel((one, two), "wait")  # E: reportArgumentType call-overload
            n, s = parallel((one, two))
            _n: str = n  # E: reportAssignmentType assignment
            _s: int = s  # E: reportAssignmentType assignment


        @client.create_function(fn_id="steps", trigger=trigger)
        def steps(ctx: mainspring.ContextSync) -> None:
            ctx.step.run("a", get_user, "seven")  # E: reportArgumentType arg-type
            ctx.step.run("b", get_user)  # E: reportArgumentType arg-type
    ''',
    "neg_serializers.py": '''
        """Misuses of output_type, serializers and model data that a type checker must reject."""

        from __future__ import annotations

        import pydantic

        import mainspring


        class User(pydantic.BaseModel):
            id: int


        client = mainspring.Client(app_id="typing-negative-serializers")
        define = client.create_function
        on = mainspring.TriggerEvent(event="typing/negative")


        async def get_str() -> str:
            return "one"


        async def get_user() -> User:
            return User(id=1)


        def get_str_sync() -> str:
            return "one"


        # The handler's return must fit the function's output_type.
        @define(fn_id="a", trigger=on, output_type=User)  # E: reportArgumentType arg-type
        async def returns_str(ctx: mainspring.Context) -> str:
            return "one"


        @define(fn_id="b", trigger=on, output_type=list[User])  # E: reportArgumentType arg-type
        def returns_one_user(ctx: mainspring.ContextSync) -> User:
            return User(id=1)


        @define(fn_id="c", trigger=on)
        async def child(ctx: mainspring.Context) -> User:
            return User(id=1)


        @define(fn_id="steps", trigger=on)
        async def steps(ctx: mainspring.Context) -> None:
            run = ctx.step.run
            # A str handler with output_type=User: mypy refuses the call; pyright infers
            # ``str | User``, which is refused where a User is expected.
            _u: User = await run("a", get_str, output_type=User)  # E: reportAssignmentType arg-type
            # output_type is a type, not its name.
            await run("b", get_user, output_type="User")  # E: reportArgumentType call-overload
            # The invoked function returns a User: another output_type contradicts it.
            invoke = ctx.step.invoke
            await invoke("c", function=child, output_type=str)  # E: reportArgumentType misc
            # A step started outside its group is no callable, output_type or not.
            step = run("d", get_user, output_type=User)
            await ctx.group.parallel((step,))  # E: reportArgumentType arg-type


        @define(fn_id="steps-sync", trigger=on)
        def steps_sync(ctx: mainspring.ContextSync) -> None:
            run = ctx.step.run
            _u: User = run("a", get_str_sync, output_type=User)  # E: reportAssignmentType arg-type
            ctx.group.parallel((run("b", get_str_sync),))  # E: reportArgumentType arg-type


        mainspring.Client(app_id="x", serializer=object())  # E: reportArgumentType arg-type
        mainspring.Event(name="x", data=3)  # E: reportArgumentType arg-type
    ''',
}

PYRIGHT_CONFIG = {"typeCheckingMode": "strict", "pythonVersion": "3.11"}
MYPY_CONFIG = """\
[mypy]
strict = True
python_version = 3.11
warn_unreachable = True
"""

_EXPECT = re.compile(r"#\s*expect:\s*(?P<type>[^#]+?)\s*(?:#|$)")
_EXPECT_MYPY = re.compile(r"#\s*expect-mypy:\s*(?P<type>[^#]+?)\s*(?:#|$)")
_REJECT = re.compile(r"#\s*E:\s*(?P<pyright>\w+)\s+(?P<mypy>[\w-]+)\s*$")
_REVEAL_CALL = re.compile(r"^\s*reveal_type\(")
_PYRIGHT_REVEALED = re.compile(r'^Type of ".*" is "(?P<type>.*)"$', re.DOTALL)
_MYPY_REVEALED = re.compile(r'^Revealed type is "(?P<type>.*)"$', re.DOTALL)
_MODULE_PREFIX = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])")


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnostic:
    path: Path
    line: int  # 1-based
    severity: str  # "error", "warning", "information" or "note"
    rule: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class CheckerRun:
    name: str
    diagnostics: tuple[Diagnostic, ...]

    def in_file(self, path: Path) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.path == path.resolve()]


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    pyright: CheckerRun
    mypy: CheckerRun
    negative_cases: Mapping[str, Path]


def _parse_pyright(stdout: str, stderr: str) -> CheckerRun:
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        pytest.fail(f"basedpyright gave no JSON report:\n{stdout}\n{stderr}")
    diagnostics = tuple(
        Diagnostic(
            path=Path(item["file"]).resolve(),
            line=item["range"]["start"]["line"] + 1,
            severity=item["severity"],
            rule=item.get("rule", ""),
            message=item["message"],
        )
        for item in report["generalDiagnostics"]
    )
    return CheckerRun(f"basedpyright {report['version']}", diagnostics)


def _parse_mypy(stdout: str, stderr: str, returncode: int) -> CheckerRun:
    if returncode not in (0, 1) or stderr.strip():
        pytest.fail(f"mypy crashed (exit {returncode}):\n{stdout}\n{stderr}")
    diagnostics: list[Diagnostic] = []
    for raw in stdout.splitlines():
        if not raw.strip():
            continue
        item = json.loads(raw)
        diagnostics.append(
            Diagnostic(
                path=Path(item["file"]).resolve(),
                line=item["line"],
                severity=item["severity"],
                rule=item["code"] or "",
                message=item["message"],
            )
        )
    return CheckerRun("mypy", tuple(diagnostics))


def _write_if_changed(path: Path, text: str) -> Path:
    # Unchanged files keep their mtime, so mypy's cache stays valid; a changed one is
    # replaced whole, so a run side by side never reads half a snippet.
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    return path.resolve()


@pytest.fixture(scope="module")
def checked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Checked:
    """Run basedpyright and mypy once each, concurrently, over every snippet."""
    # A folder kept across runs (pytest's cache) lets mypy reuse its cache of mainspring and
    # pydantic, most of its time. The negative snippets live there too and keep their paths:
    # mypy reports a cached module's errors under the path it had when it was cached.
    cache: pytest.Cache | None = getattr(request.config, "cache", None)
    work = cache.mkdir("mainspring-typing") if cache else tmp_path_factory.mktemp("typing")
    negative_cases: dict[str, Path] = {}
    for name, source in NEGATIVE_CASES.items():
        negative_cases[name] = _write_if_changed(work / name, textwrap.dedent(source).lstrip())
    files = [str(p) for p in POSITIVE_CASES] + [str(p) for p in negative_cases.values()]

    pyright_config = _write_if_changed(work / "pyrightconfig.json", json.dumps(PYRIGHT_CONFIG))
    mypy_config = _write_if_changed(work / "mypy.ini", MYPY_CONFIG)

    pyright = subprocess.Popen(
        [
            *(sys.executable, "-m", "basedpyright", "--outputjson"),
            *("--project", str(pyright_config), "--pythonpath", sys.executable),
            *files,
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    mypy = subprocess.Popen(
        [
            *(sys.executable, "-m", "mypy", "--config-file", str(mypy_config)),
            *("--cache-dir", str(work / ".mypy_cache"), "--python-executable", sys.executable),
            *("--output", "json", "--show-absolute-path"),
            *files,
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pyright_out, pyright_err = pyright.communicate(timeout=300)
        mypy_out, mypy_err = mypy.communicate(timeout=300)
    finally:
        for process in (pyright, mypy):
            if process.poll() is None:
                process.kill()
                process.wait()
    return Checked(
        pyright=_parse_pyright(pyright_out, pyright_err),
        mypy=_parse_mypy(mypy_out, mypy_err, mypy.returncode),
        negative_cases=negative_cases,
    )


# -- reading the expectations --------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    yield from enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)


def _expected_reveals(path: Path, *, mypy: bool) -> dict[int, str]:
    expected: dict[int, str] = {}
    for number, line in _lines(path):
        match = _EXPECT.search(line)
        if mypy and (override := _EXPECT_MYPY.search(line)):
            match = override
        if match:
            expected[number] = match["type"]
    return expected


def _expected_rejections(path: Path) -> dict[int, tuple[str, str]]:
    return {
        number: (match["pyright"], match["mypy"])
        for number, line in _lines(path)
        if (match := _REJECT.search(line))
    }


def _revealed(diagnostics: Sequence[Diagnostic], pattern: re.Pattern[str]) -> dict[int, str]:
    revealed: dict[int, str] = {}
    for diagnostic in diagnostics:
        if diagnostic.severity in ("information", "note") and (
            match := pattern.match(diagnostic.message)
        ):
            assert diagnostic.line not in revealed, f"two reveals on line {diagnostic.line}"
            revealed[diagnostic.line] = match["type"]
    return revealed


def _errors(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity in ("error", "warning")]


def _describe(diagnostics: Sequence[Diagnostic]) -> str:
    return "\n".join(
        f"  {d.path.name}:{d.line}: {d.severity} [{d.rule}] {d.message}" for d in diagnostics
    )


def _rules_by_line(diagnostics: Sequence[Diagnostic]) -> dict[int, set[str]]:
    rules: dict[int, set[str]] = {}
    for diagnostic in _errors(diagnostics):
        rules.setdefault(diagnostic.line, set()).add(diagnostic.rule)
    return rules


# -- the snippets themselves ---------------------------------------------------------------


def test_cases_are_present_and_every_reveal_is_marked() -> None:
    names = {path.name for path in POSITIVE_CASES}
    assert {
        "case_parallel_async.py",
        "case_parallel_sync.py",
        "case_parallel_dynamic.py",
        "case_inngest_alias.py",
        "case_serializers.py",
    } <= names
    for path in POSITIVE_CASES:
        expected = _expected_reveals(path, mypy=False)
        calls = {number for number, line in _lines(path) if _REVEAL_CALL.match(line)}
        assert calls, f"{path.name} reveals nothing"
        assert calls == set(expected), f"{path.name}: reveal_type lines without '# expect:'"
    for name, source in NEGATIVE_CASES.items():
        assert any(_REJECT.search(line) for line in source.splitlines()), name


# -- pyright -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", POSITIVE_CASES, ids=lambda p: p.stem)
def test_pyright_infers_each_element(checked: Checked, case: Path) -> None:
    diagnostics = checked.pyright.in_file(case)
    assert _revealed(diagnostics, _PYRIGHT_REVEALED) == _expected_reveals(case, mypy=False), (
        checked.pyright.name
    )


@pytest.mark.parametrize("case", POSITIVE_CASES, ids=lambda p: p.stem)
def test_pyright_strict_accepts_positive_case(checked: Checked, case: Path) -> None:
    errors = _errors(checked.pyright.in_file(case))
    assert not errors, f"{checked.pyright.name}:\n{_describe(errors)}"


@pytest.mark.parametrize("name", sorted(NEGATIVE_CASES))
def test_pyright_rejects_negative_case(checked: Checked, name: str) -> None:
    path = checked.negative_cases[name]
    expected = {line: rules[0] for line, rules in _expected_rejections(path).items()}
    reported = _rules_by_line(checked.pyright.in_file(path))
    detail = f"{checked.pyright.name}:\n{_describe(_errors(checked.pyright.in_file(path)))}"
    assert set(reported) == set(expected), detail
    for line, rule in expected.items():
        assert rule in reported[line], f"line {line}: expected {rule}\n{detail}"


# -- mypy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", POSITIVE_CASES, ids=lambda p: p.stem)
def test_mypy_strict_accepts_positive_case(checked: Checked, case: Path) -> None:
    errors = _errors(checked.mypy.in_file(case))
    assert not errors, f"mypy --strict:\n{_describe(errors)}"


@pytest.mark.parametrize("case", POSITIVE_CASES, ids=lambda p: p.stem)
def test_mypy_reveals_the_same_types(checked: Checked, case: Path) -> None:
    revealed = {
        line: _MODULE_PREFIX.sub("", shown)
        for line, shown in _revealed(checked.mypy.in_file(case), _MYPY_REVEALED).items()
    }
    assert revealed == _expected_reveals(case, mypy=True)


@pytest.mark.parametrize("name", sorted(NEGATIVE_CASES))
def test_mypy_rejects_negative_case(checked: Checked, name: str) -> None:
    path = checked.negative_cases[name]
    expected = {line: rules[1] for line, rules in _expected_rejections(path).items()}
    reported = _rules_by_line(checked.mypy.in_file(path))
    detail = f"mypy --strict:\n{_describe(_errors(checked.mypy.in_file(path)))}"
    assert set(reported) == set(expected), detail
    for line, code in expected.items():
        assert code in reported[line], f"line {line}: expected [{code}]\n{detail}"
