"""Command lines generated from frozen config dataclasses: every knob has one name, default and help.

Declare a field with :func:`knob` (its help text, and a parser for non-scalar types); then
:func:`add_config_arguments` adds ``--field-name`` flags for it and :func:`config_from_args` builds the
dataclass from the parsed flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mammo_sae.core.errors import os_error_message

T = TypeVar("T")
_SCALARS: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str}
REQUIRED = dataclasses.MISSING  # knob(REQUIRED, ...): a field without default, a required flag


def _scalar_parser(kind: Any) -> Callable[[str], Any] | None:
    """The parser of ``int``/``float``/``str`` and of their ``X | None`` forms."""
    if kind in _SCALARS:
        return _SCALARS[kind]
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return _SCALARS.get(args[0]) if len(args) == 1 else None


def knob(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    choices: Iterable[Any] | None = None,
    repeat: bool = False,
) -> Any:
    """A dataclass field that carries its command-line help (and parser, for non-scalar types).

    ``repeat=True`` makes a flag that may be given several times (``--classifier A --classifier B``); the
    field is then a tuple of the parsed values.
    """
    meta = {
        "help": help,
        "parse": parse,
        "metavar": metavar,
        "choices": tuple(choices) if choices else None,
        "repeat": repeat,
    }
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *, exclude: Iterable[str] = ()) -> None:
    """Add one ``--flag`` per :func:`knob` field of ``cls`` (booleans become ``--flag/--no-flag``)."""
    hints = typing.get_type_hints(cls)
    skipped = set(exclude)
    for field in dataclasses.fields(cls):
        if field.name in skipped or "help" not in field.metadata:
            continue
        meta, kind = field.metadata, hints[field.name]
        options: dict[str, Any] = {"help": meta["help"], "dest": field.name}
        if field.default is REQUIRED:
            options["required"] = True
        else:
            options["default"] = field.default
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            if meta.get("repeat"):
                options["action"] = "append"
                options.pop("default", None)
                kind = typing.get_args(kind)[0]
            parse = meta["parse"] or _scalar_parser(kind)
            assert parse is not None, f"{cls.__name__}.{field.name}: give knob(parse=...) for type {kind}"
            options["type"] = parse
            if meta["metavar"]:
                options["metavar"] = meta["metavar"]
            if meta["choices"]:
                options["choices"] = meta["choices"]
        parser.add_argument(flag_name(field.name), **options)


def config_from_args(cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """Build ``cls`` from parsed flags (fields absent from ``args`` keep their defaults) plus ``extra``."""
    names = {field.name for field in dataclasses.fields(cls)}
    values = {name: value for name, value in vars(args).items() if name in names}
    for field in dataclasses.fields(cls):
        if field.metadata.get("repeat") and field.name in values:
            given = values[field.name]
            values[field.name] = field.default if given is None else tuple(given)
    return cls(**(values | extra))


def comma_floats(count: int) -> Callable[[str], tuple[float, ...]]:
    """A parser for ``count`` comma-separated numbers, e.g. density weights ``0.15,0.35,0.35,0.15``."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(part) for part in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
        return values

    return parse


def hw_size(text: str) -> tuple[int, int]:
    """A parser for ``HxW`` sizes such as ``1520x912`` (height first, as numpy shapes)."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"expected a size HxW such as 1520x912, got {text!r}")
    return int(parts[0]), int(parts[1])


def run_config_command(
    parser: argparse.ArgumentParser, argv: list[str] | None, cls: type[T], job: Callable[[T], dict[str, Any]]
) -> int:
    """The body of a single-process command: parse ``argv`` into ``cls``, run ``job``, print its JSON summary.

    Exit codes: 0 done (or --help), 2 a bad flag (argparse explains) or a MammoSaeError (its message)."""
    import json
    import sys

    from mammo_sae.core.errors import MammoSaeError

    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, already explained by argparse)
        return int(exc.code or 0)
    try:
        summary = job(config_from_args(cls, args))
    except MammoSaeError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a path that is a file, a full disk, a read-only folder
        print(f"{parser.prog}: error: {os_error_message(error)}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0
