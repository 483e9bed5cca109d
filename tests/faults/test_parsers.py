"""Every parser of user text, fed random and mutated input: a result, or our own clear error.

Three parsers read what a user types: the position DSL (``prompt[-1]``), an experiment's
``config.json`` and the command line. Hypothesis feeds each random text, mutations of valid input
and valid input; the property is always "a correct result, or an error raised by trait_lab that
:func:`tests.faults.checks.is_our_error` accepts" (never a bare KeyError, UnicodeDecodeError,
RecursionError or traceback). Valid positions are also checked against plain Python slicing.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st

import trait_lab.cli as cli
import trait_lab.serve.cli as serve_cli
import trait_lab.vectors.evaluate as evaluate
from tests.faults.checks import clear_error, is_our_error
from trait_lab.core.experiments import ExperimentConfig, load_experiment_config
from trait_lab.core.paths import check_name
from trait_lab.extraction import pipeline
from trait_lab.prompts.position_syntax import FRAMES, parse_position_text
from trait_lab.prompts.positions import Position, resolve_batch

FAST = settings(
    deadline=None,
    max_examples=100,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def outcome(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``'s result, or ``None`` when it raised one of our errors (else re-raise)."""
    try:
        return call(*args)
    except Exception as exc:
        if not is_our_error(exc):
            raise AssertionError(f"not our error: {type(exc).__name__}: {exc}") from exc
        return None


# ---------------------------------------------------------------------- the position DSL

NUMBERS = st.one_of(st.none(), st.integers(-12, 12))


@st.composite
def valid_positions(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A position string built from its fields (with random spacing), and those fields."""
    frame = draw(st.sampled_from(FRAMES))
    turn = None if frame == "system" else draw(st.one_of(st.none(), st.integers(-3, 3)))
    space = draw(st.sampled_from(["", " ", "  "]))
    fields: dict[str, Any] = {"frame": frame, "turn": turn}
    if draw(st.booleans()):
        fields["index"] = draw(st.integers(-12, 12))
        inner = str(fields["index"])
    else:
        start, stop = draw(NUMBERS), draw(NUMBERS)
        step = draw(st.one_of(st.none(), st.integers(-3, 3).filter(bool)))
        fields.update(start=start, stop=stop, step=None if step == 1 else step)
        inner = f"{'' if start is None else start}{space}:{space}{'' if stop is None else stop}"
        if step is not None or draw(st.booleans()):
            inner += f":{'' if step is None else step}"
    head = f"turn{space}[{space}{turn}{space}]{space}:" if turn is not None else ""
    return f"{space}{head}{frame}{space}[{space}{inner}{space}]{space}", fields


@st.composite
def mutated_positions(draw: st.DrawFn) -> str:
    """A valid position with one edit: a character inserted, deleted, replaced or doubled."""
    text, _ = draw(valid_positions())
    i = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from(list("[]:-+ 0139aptx_\t\n٣é\x00")) | st.characters())
    kind = draw(st.sampled_from(["insert", "delete", "replace", "double"]))
    if kind == "insert":
        return text[:i] + char + text[i:]
    if kind == "delete":
        return text[:i] + text[i + 1 :]
    if kind == "replace":
        return text[:i] + char + text[i + 1 :]
    return text[:i] + text[i:] + text[i:]


def _check_position(text: str) -> None:
    """Parsing gives our error, or a Position whose canonical form parses back to itself."""
    parsed = outcome(parse_position_text, text)
    pos = outcome(Position.parse, text)
    if pos is not None:
        assert parsed is not None
        again = Position.parse(str(pos))
        assert again == pos and str(again) == str(pos)
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    outcome(resolve_batch, text, mask, [3, 4])


@FAST
@given(st.text(max_size=40))
def test_random_text_parses_or_is_refused_clearly(text: str) -> None:
    _check_position(text)


@FAST
@given(mutated_positions())
def test_mutated_positions_parse_or_are_refused_clearly(text: str) -> None:
    _check_position(text)


@FAST
@given(valid_positions())
def test_valid_positions_round_trip(case: tuple[str, dict[str, Any]]) -> None:
    text, fields = case
    pos = Position.parse(text)
    expected = {"index": None, "start": None, "stop": None, "step": None, **fields}
    assert {k: getattr(pos, k) for k in expected} == expected
    assert Position.parse(str(pos)) == pos
    assert str(Position.parse(str(pos))) == str(pos)


@FAST
@given(
    valid_positions().filter(lambda c: c[1]["frame"] != "system" and c[1]["turn"] in (None, 0, -1)),
    st.integers(0, 3),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_resolve_matches_python_slicing(
    case: tuple[str, dict[str, Any]], pad: int, prompt: int, response: int
) -> None:
    """Ground truth: the frame's absolute indices as a list, indexed or sliced by Python."""
    text, f = case
    frame = {
        "prompt": list(range(pad, pad + prompt)),
        "response": list(range(pad + prompt, pad + prompt + response)),
        "all": list(range(pad, pad + prompt + response)),
    }[f["frame"]]
    if "index" in f:
        want = [frame[f["index"]]] if -len(frame) <= f["index"] < len(frame) else []
    else:
        want = frame[slice(f["start"], f["stop"], f["step"])]
    pos = Position.parse(text)
    if want:
        assert pos.resolve(pad, prompt, response).tolist() == want
    else:
        clear_error(ValueError, pos.resolve, pad, prompt, response, mentions=["selects no token"])


def test_overlong_number_is_refused_by_the_parser() -> None:
    text = "prompt[" + "9" * 5000 + "]"
    clear_error(ValueError, Position.parse, text, mentions=["at most 18 digits", "prompt[999"])
    clear_error(ValueError, Position.parse, "turn[" + "1" * 19 + "]:prompt[-1]", mentions=["18"])
    assert Position.parse("prompt[" + "9" * 18 + "]").index == 10**18 - 1


def test_non_ascii_digits_are_not_read_as_numbers() -> None:
    clear_error(ValueError, Position.parse, "prompt[٣]", mentions=["'٣'", "grammar"])


# ---------------------------------------------------------------------- experiment configs

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
GOOD = {"model_variants": {"instruct": {"model": None}}, "default_variant": "instruct"}


def _write(root: Path, data: bytes) -> Path:
    path = root / "exp" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _check_config(root: Path, data: bytes) -> None:
    """Loading gives our error naming the file, or a config whose every name is folder-safe."""
    _write(root, data)
    try:
        config = load_experiment_config("exp", root)
    except Exception as exc:
        assert is_our_error(exc), f"not our error: {type(exc).__name__}: {exc}"
        assert "config.json" in str(exc), f"the file is not named: {exc}"
        return
    assert isinstance(config, ExperimentConfig)
    assert config.default_variant in config.variants and isinstance(config.description, str)
    for name, variant in config.variants.items():
        assert check_name("test", "variant", name) == name == variant.name


@FAST
@given(value=JSON)
def test_random_json_configs(tmp_path: Path, value: Any) -> None:
    _check_config(tmp_path, json.dumps(value).encode())


@FAST
@given(data=st.binary(max_size=64) | st.builds(str.encode, st.text(max_size=32)))
def test_random_bytes_configs(tmp_path: Path, data: bytes) -> None:
    _check_config(tmp_path, data)


@FAST
@given(key=st.sampled_from([*GOOD, "use_chat_template", "description"]), value=JSON)
def test_every_key_with_any_value(tmp_path: Path, key: str, value: Any) -> None:
    _check_config(tmp_path, json.dumps({**GOOD, key: value}).encode())


@FAST
@given(name=st.text("ab./\\ \t_-é", max_size=6) | st.text(max_size=10), spec=st.just({}) | JSON)
@example(name=".a", spec={})
@example(name="a..b", spec={"model": "m"})
def test_any_variant_name_and_spec(tmp_path: Path, name: str, spec: Any) -> None:
    _check_config(tmp_path, json.dumps({"model_variants": {name: spec}}).encode())


def test_non_utf8_config_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, b'{"model_variants": {"\xff": {}}}')
    clear_error(ValueError, load_experiment_config, "exp", tmp_path, mentions=[str(path), "UTF-8"])


def test_deep_nesting_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, b"[" * 50_000 + b"]" * 50_000)
    mentions = [str(path), "nested too deeply"]
    clear_error(ValueError, load_experiment_config, "exp", tmp_path, mentions=mentions)
    deep = b'{"model_variants": {"a": {}}, "description": ' + b"[" * 300 + b"]" * 300 + b"}"
    path = _write(tmp_path, deep)
    mentions = [str(path), "description must be a string, got [[[", "...; write it in quotes"]
    clear_error(ValueError, load_experiment_config, "exp", tmp_path, mentions=mentions)


def test_overlong_integer_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, b'{"model_variants": {"a": {"model": 1' + b"0" * 5000 + b"}}}")
    clear_error(
        ValueError, load_experiment_config, "exp", tmp_path, mentions=[str(path), "not valid"]
    )


@pytest.mark.parametrize("name", ["a..b", ".hidden", "a/b", "..", " ", "tab\there"])
def test_variant_names_must_be_folder_names(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, json.dumps({"model_variants": {name: {}}}).encode())
    clear_error(ValueError, load_experiment_config, "exp", tmp_path, mentions=[str(path), "rename"])


@pytest.mark.parametrize(
    ("config", "mentions"),
    [
        ({**GOOD, "default_variant": ["instruct"]}, ["default_variant ['instruct']", "one of"]),
        ({**GOOD, "default_variant": {}}, ["default_variant {}", "one of"]),
        ({**GOOD, "description": 5}, ["description must be a string, got 5", "quotes"]),
        ({"model_variants": {"a": {"name": "b"}}}, ["model_variants.a", "remove 'name'"]),
        ({"model_variants": ["a"]}, ["got ['a']", '{"instruct": {"model": null}}']),
        ({"model_variants": {"a": 3}}, ["model_variants.a", "got 3"]),
        ({"model_variants": {"a": {"model": 3}}}, ["model=3", "non-empty string"]),
    ],
)
def test_wrong_types_name_the_key(tmp_path: Path, config: Any, mentions: list[str]) -> None:
    path = _write(tmp_path, json.dumps(config).encode())
    clear_error(
        ValueError, load_experiment_config, "exp", tmp_path, mentions=[str(path), *mentions]
    )


def test_repeated_keys_are_refused(tmp_path: Path) -> None:
    text = '{"model_variants": {"a": {}, "a": {"model": "m"}}}'
    path = _write(tmp_path, text.encode())
    clear_error(ValueError, load_experiment_config, "exp", tmp_path, mentions=[str(path), "['a']"])


# ---------------------------------------------------------------------- the command line


class Reached(BaseException):
    """Raised by the fakes of the heavy functions: validation let these arguments through."""


Options = dict[str, argparse.Action]


def _commands(parser: argparse.ArgumentParser) -> Iterator[tuple[list[str], Options]]:
    """``(command words, {option string: action})`` of every leaf subcommand of the parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield [], {s: a for a in parser._actions for s in a.option_strings if s not in HELP}
    for action in subs:
        for word, sub in action.choices.items():
            for words, options in _commands(sub):
                yield [word, *words], options


HELP = ("-h", "--help")
COMMANDS = list(_commands(cli._parser()))
SAMPLES = "-1 0 1 2 99 abc 2.5 nan inf 1e30 ../x exp optimism neutral --help"
POSITIONS = ["prompt[-1]", "response[:5]", "prompt[-1", "turn[1]:all[::2]"]
_SAMPLED = st.sampled_from([*SAMPLES.split(), *POSITIONS, "", " "])
VALUES = st.one_of(_SAMPLED, _SAMPLED, _SAMPLED, st.text(max_size=6))
_INTS = st.sampled_from(["-1", "0", "1", "2.5", "abc"]) | st.integers(-3, 120).map(str)
_FLOATS = st.floats().map(repr) | st.sampled_from(["0.5", "70", "1e30", "nan", "-inf", "2.5"])
_NAMES = st.sampled_from(["exp", "r1", "../x", ".h", "a/b", ""]) | st.text("ab./ ", max_size=4)
#: values each option is likely to get wrong, one list per occurrence of the option
POOLS: dict[str, st.SearchStrategy[list[str]]] = {
    "--layers": st.lists(_INTS, min_size=1, max_size=3),
    "--position": st.one_of(valid_positions().map(lambda c: c[0]), mutated_positions()).map(
        lambda text: [text]
    ),
    "--fractions": st.lists(_FLOATS, min_size=1, max_size=2),
    **{o: _FLOATS.map(lambda v: [v]) for o in ("--threshold", "--start")},
    **{o: _INTS.map(lambda v: [v]) for o in ("--candidates", "--max-rounds", "--questions")},
    **{o: _INTS.map(lambda v: [v]) for o in ("--max-new-tokens", "--port")},
    **{o: _NAMES.map(lambda v: [v]) for o in ("--experiment", "--variant", "--run")},
}


@st.composite
def argvs(draw: st.DrawFn, words: list[str], options: Options) -> list[str]:
    """The subcommand ``words``, then its real options (and stray ones) with random values.

    Values are mostly what the option could take (one of its choices; none for a flag), so that
    many command lines get past argparse with one bad value, and sometimes anything.
    """
    argv = list(words)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*options, "--seed", "--top-k"]))
        action = options.get(name)
        argv.append(name)
        if draw(st.integers(0, 4)) == 0:  # anything at all
            argv += draw(st.lists(VALUES, max_size=2))
        elif action is not None and action.nargs == 0:
            continue
        elif name in POOLS:
            argv += draw(POOLS[name])
        elif action is not None and action.choices:
            argv += draw(st.lists(st.sampled_from(list(action.choices)), min_size=1, max_size=2))
        else:
            argv.append(draw(VALUES))
    if words[0] in ("extract", "evaluate") and draw(st.integers(0, 4)):
        argv += ["--trait", draw(VALUES)]
    return argv


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Every function that would load a model, fetch, compute or serve raises :class:`Reached`."""
    seen: dict[str, Any] = {}

    def fake(name: str) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            seen[name] = (args, kwargs)
            raise Reached(name)

        return record

    for name in ("run_extraction", "run_evaluation", "load_model", "fetch_default_model"):
        monkeypatch.setattr(cli, name, fake(name))
    for name in ("ensure_calibration", "research_calibration", "cache_entries"):
        monkeypatch.setattr(cli, name, fake(name))
    monkeypatch.setattr(cli, "OpenAIJudge", lambda *a, **k: object())
    monkeypatch.setattr(serve_cli, "run_serve", fake("run_serve"))
    root = tmp_path / "experiments"
    _write(root, json.dumps(GOOD).encode())
    monkeypatch.setenv("TRAIT_LAB_EXPERIMENTS", str(root))
    monkeypatch.setenv("TRAIT_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    seen["root"] = root
    return seen


def run_cli(argv: list[str]) -> int | str:
    """The exit code of ``main(argv)``; ``'reached'`` when it got to a heavy function."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Reached:
        return "reached"


@pytest.mark.parametrize(("words", "options"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_random_command_lines(fakes: dict[str, Any], words: list[str], options: Options) -> None:
    """Usage error, our error (exit 2), help, or heavy work reached with checked arguments."""

    @settings(FAST, max_examples=50)
    @given(argv=argvs(words, options))
    @example(argv=["extract", "--layers", "-1", "--trait", "t"])
    @example(argv=["evaluate", "--run", "../x", "--trait", "t"])
    def check(argv: list[str]) -> None:
        _check_command_line(fakes, argv)

    check()


def _check_command_line(fakes: dict[str, Any], argv: list[str]) -> None:
    """One command line: an allowed exit, checked values passed on, nothing written."""
    fakes.pop("run_extraction", None)
    fakes.pop("run_evaluation", None)
    code = run_cli(argv)
    assert code in (0, 1, 2, "reached"), (argv, code)
    if "run_extraction" in fakes:
        kw = fakes["run_extraction"][1]
        assert all(layer >= 0 for layer in kw["layers"] or [])
        if kw["position"] is not None:
            Position.parse(kw["position"])
    if "run_evaluation" in fakes:
        kw = fakes["run_evaluation"][1]
        assert kw["candidates"] >= 1 and math.isfinite(kw["threshold"])
        assert check_name("test", "run", kw["run"]) == kw["run"]
        assert all(layer >= 0 for layer in kw["layers"] or [])
    written = sorted(p.relative_to(fakes["root"]) for p in fakes["root"].rglob("*"))
    assert written == [Path("exp"), Path("exp/config.json")], written


EXTRACT = ["extract", "--experiment", "exp", "--trait", "optimism"]
EVALUATE = ["evaluate", "--experiment", "exp", "--trait", "optimism"]


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        ([*EXTRACT, "--layers", "-1"], ["argument --layers", "'-1'", ">= 0"]),
        ([*EXTRACT, "--layers", "abc"], ["argument --layers", "'abc'"]),
        ([*EXTRACT, "--layers", "2.5"], ["argument --layers", "'2.5'"]),
        ([*EXTRACT, "--position", "prompt[-1"], ["argument --position", "'prompt[-1'", "grammar"]),
        ([*EXTRACT, "--components", "resid"], ["argument --components", "'resid'", "residual"]),
        ([*EXTRACT, "--seed", "abc"], ["unrecognized arguments: --seed abc"]),
        (["extract", "--experiment", "exp"], ["required: --trait"]),
        ([*EVALUATE, "--candidates", "0"], ["argument --candidates", "'0'", ">= 1"]),
        ([*EVALUATE, "--threshold", "nan"], ["argument --threshold", "'nan'", "[0, 100]"]),
        ([*EVALUATE, "--threshold", "101"], ["argument --threshold", "'101'"]),
        ([*EVALUATE, "--max-rounds", "2.5"], ["argument --max-rounds", "'2.5'"]),
        ([*EVALUATE, "--max-new-tokens", "0"], ["argument --max-new-tokens", "'0'"]),
        ([*EVALUATE, "--questions", "1"], ["argument --questions", "'1'", ">= 2"]),
        ([*EVALUATE, "--run", "../r"], ["argument --run", "'../r'", "rename"]),
        ([*EVALUATE, "--layers", "-1"], ["argument --layers", "'-1'"]),
        ([*EVALUATE, "--precision", "fp16"], ["argument --precision", "'fp16'", "'bf16'"]),
        ([*EVALUATE, "--coefficient", "1e30"], ["unrecognized arguments: --coefficient"]),
        ([*EVALUATE, "--top-k", "2.5"], ["unrecognized arguments: --top-k 2.5"]),
        (["serve", "--port", "abc"], ["argument --port", "'abc'"]),
        (["extract", "--experiment", "../x", "--trait", "t"], ["--experiment", "'../x'", "rename"]),
        (["calibrate", "--experiment", ""], ["--experiment", "''", "rename"]),
    ],
)
def test_bad_values_are_usage_errors(
    fakes: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], mentions: list[str]
) -> None:
    assert run_cli(argv) == 2
    out = capsys.readouterr()
    error = [line for line in out.err.splitlines() if "error:" in line]
    assert len(error) == 1 and "Traceback" not in out.err, out.err
    assert all(m.lower() in out.err.lower() for m in mentions), out.err
    assert not {"run_extraction", "run_evaluation", "load_model"} & set(fakes)


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["evaluate", "--experiment", "nope", "--trait", "t"], ["no experiment config", "nope"]),
        (["calibrate", "--experiment", "nope"], ["no experiment config", "nope"]),
        (["calibrate", "--experiment", "exp", "--variant", "chat"], ["'chat'", "instruct"]),
        ([*EXTRACT, "--variant", "../v"], ["'../v'", "instruct"]),
        (["evaluate", "--experiment", "exp", "--trait", "no_such"], ["'no_such'", "optimism"]),
        ([*EVALUATE, "--start", "1e30"], ["start=1e+30", "e.g. 0.02"]),
        ([*EVALUATE, "--start", "nan"], ["start=nan", "e.g. 0.02"]),
        ([*EVALUATE, "--fractions", "inf"], ["fractions=(inf,)", "e.g."]),
        ([*EVALUATE, "--judge-url", "http://x"], ["needs both --judge-url and --judge-model"]),
        (
            ["calibrate", "--experiment", "exp", "--prompt-set", "nope"],
            ["no prompt set 'nope'", "neutral"],
        ),
        (
            ["calibrate", "--experiment", "exp", "--per-token"],
            ["needs a prompt set", "--prompt-set"],
        ),
    ],
)
def test_library_errors_are_one_line(
    fakes: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    mentions: list[str],
) -> None:
    """Our errors from the library print ``error: <message>`` (no traceback) and exit 2."""
    monkeypatch.setattr(cli, "run_extraction", pipeline.run_extraction)
    monkeypatch.setattr(cli, "run_evaluation", evaluate.run_evaluation)
    for module in (pipeline, evaluate):
        monkeypatch.setattr(module, "load_model", cli.load_model)  # the fake: raises Reached
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert all(m.lower() in err.lower() for m in mentions), err
    assert "load_model" not in fakes


def test_missing_trait_is_one_line(
    fakes: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trait that does not exist is reported by the library, through the one-line policy."""
    monkeypatch.setattr(cli, "run_extraction", pipeline.run_extraction)
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: (None, None))
    assert cli.main(["extract", "--experiment", "exp", "--trait", "no_such_trait"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no built-in trait 'no_such_trait'") and "Traceback" not in err


def test_valid_arguments_reach_the_library(fakes: dict[str, Any]) -> None:
    """The checks pass good values through unchanged (the position as written)."""
    argv = [*EXTRACT, "--layers", "0", "7", "--position", " prompt[ -1 ]"]
    assert run_cli(argv) == "reached"
    kwargs = fakes["run_extraction"][1]
    assert kwargs["layers"] == [0, 7] and kwargs["position"] == " prompt[ -1 ]"
    argv = [*EVALUATE, "--run", "r1", "--threshold", "0", "--questions", "2", "--candidates", "1"]
    assert run_cli(argv) == "reached"
    kwargs = fakes["run_evaluation"][1]
    assert (kwargs["run"], kwargs["threshold"], kwargs["max_questions"]) == ("r1", 0.0, 2)
    assert kwargs["precision"] == "fp32"  # exact unless asked
    assert run_cli([*EVALUATE, "--precision", "bf16"]) == "reached"
    assert fakes["run_evaluation"][1]["precision"] == "bf16"


def test_unexpected_exceptions_are_not_hidden(fakes: dict[str, Any]) -> None:
    """A bug (not one of our error types) still shows its traceback."""

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("bug")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "run_extraction", bug)
        with pytest.raises(KeyError, match="bug"):
            cli.main(EXTRACT)
