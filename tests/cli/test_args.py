"""``esg-leads --help`` tells a new user everything: every flag has help text, every
command an example (issue 20, part 5)."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.cli.main import build_parser
from esg_leads.cli.args import fraction, nonneg_int, port, positive_float, positive_int


def parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    found = [("esg-leads", parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"esg-leads {name}", p) for name, p in action.choices.items()]
    return found


@pytest.mark.parametrize(("name", "parser"), parsers(), ids=[n for n, _ in parsers()])
def test_every_argument_has_help_text(name: str, parser: argparse.ArgumentParser) -> None:
    missing = [action.option_strings or action.dest for action in parser._actions
               if not action.help or action.help == argparse.SUPPRESS]
    assert missing == [], f"{name}: no help text for {missing}"


@pytest.mark.parametrize(("name", "parser"), parsers(), ids=[n for n, _ in parsers()])
def test_every_command_shows_an_example(name: str, parser: argparse.ArgumentParser) -> None:
    help_text = parser.format_help()
    assert "example:" in help_text, name
    example = help_text.split("example:", 1)[1]
    assert f"{name} " in example or (name == "esg-leads" and "esg-leads " in example), example


def test_every_command_is_listed_with_a_summary() -> None:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(summaries) == set(sub.choices)
    assert all(summaries.values()), summaries


# ------------------------------------------------------------------- value types


@given(st.integers())
def test_integer_types_accept_exactly_their_range(value: int) -> None:
    for parse, low, high in ((positive_int, 1, None), (nonneg_int, 0, None), (port, 0, 65535)):
        inside = value >= low and (high is None or value <= high)
        if inside:
            assert parse(str(value)) == value
        else:
            with pytest.raises(argparse.ArgumentTypeError):
                parse(str(value))


@given(st.text(max_size=12))
def test_value_types_refuse_any_text_with_argument_type_error(text: str) -> None:
    """Whatever is typed, a type either returns a value or raises ArgumentTypeError (which
    argparse turns into one line): never another exception, which would be a traceback."""
    for parse in (positive_int, nonneg_int, port, positive_float, fraction):
        try:
            parse(text)
        except argparse.ArgumentTypeError:
            pass


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "-inf", "x", ""])
def test_positive_float_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)


@pytest.mark.parametrize(("text", "ok"), [("0", True), ("1", True), ("0.5", True),
                                          ("1.01", False), ("-0.1", False), ("nan", False)])
def test_fraction(text: str, ok: bool) -> None:
    if ok:
        assert fraction(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            fraction(text)


def test_flags_given_before_or_after_the_command_name_both_count() -> None:
    parser = build_parser()
    assert parser.parse_args(["--traceback", "schema"]).traceback is True
    assert parser.parse_args(["schema", "--traceback"]).traceback is True
    assert parser.parse_args(["schema"]).traceback is False
