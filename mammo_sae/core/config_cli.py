"""Command lines generated from frozen config dataclasses: every knob has one name, default and help.

A command's config is a frozen dataclass whose fields are :func:`knob` s (the help text, and a parser for
non-scalar types); a :func:`nested` field flattens another config's knobs into the same command line.
:class:`Command` turns that dataclass into the whole command line:

- one ``--field-name`` flag per knob (booleans ``--flag/--no-flag``); its help is the knob's text and
  its default;
- ``--config FILE.toml``: the keys are the field names (``-`` or ``_``); defaults < file < flags; a key in
  the file satisfies a required flag; an unknown key is refused with the valid ones;
- :meth:`Command.main`: exit 0 and the JSON summary on stdout, or exit 2 and one line
  ``PROG: error: ...`` for a bad flag, a :class:`MammoSaeError` or an ``OSError``, never a traceback;
- :meth:`Command.argv` and :meth:`Command.command_line`: the command line that rebuilds a config
  (``command.parse(command.argv(config)) == config``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import os
import shlex
import sys
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mammo_sae.core.errors import MammoSaeError, os_error_message

T = TypeVar("T")
REQUIRED = dataclasses.MISSING  # knob(REQUIRED, ...): a field without default, a required flag
CONFIG_FLAG = "--config"
CONFIG_HELP = (
    "TOML file whose keys are this command's flags without '--' (e.g. batch_size = 4096, "
    'frame_size = "640x384"); flags given on the command line override it'
)
RESUME_HELP = (
    "continue the run in --out from its checkpoint when there is one, so rerunning a command carries on "
    "where it stopped (a checkpoint of other settings is refused); --no-resume starts from scratch and "
    "replaces the run in --out"
)
_SCALARS: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str}


class ConfigError(MammoSaeError):
    """A --config file or a config value cannot be used (unknown key, wrong type, inexpressible value)."""


# --- declaring knobs ------------------------------------------------------------------------------------


def knob(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    choices: Iterable[Any] | None = None,
    repeat: bool = False,
    positional: bool = False,
) -> Any:
    """A dataclass field that carries its command-line help (and parser, for non-scalar types).

    ``repeat=True`` makes a flag that may be given several times (``--classifier A --classifier B``); the
    field is then a tuple of the parsed values. ``positional=True`` makes a positional argument (``ROOT``).
    A ``parse`` function may carry a ``format_value`` attribute that writes a value back as text.
    """
    meta = {
        "help": help,
        "parse": parse,
        "metavar": metavar,
        "choices": tuple(choices) if choices else None,
        "repeat": repeat,
        "positional": positional,
    }
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def nested(cls: type) -> Any:
    """A field holding another config dataclass whose knobs join this command line (and TOML) unprefixed."""
    return dataclasses.field(default_factory=cls, metadata={"nested": cls})


def resume_knob() -> Any:
    """The ``--resume/--no-resume`` knob: the same meaning (and default: on) in every command that has it."""
    return knob(True, RESUME_HELP)


def flag_name(field_name: str) -> str:
    """``batch_size`` -> ``--batch-size``: the one mapping from a config field to its flag."""
    return "--" + field_name.replace("_", "-")


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

    parse.format_value = lambda values: ",".join(repr(float(v)) for v in values)  # type: ignore[attr-defined]
    return parse


def hw_size(text: str) -> tuple[int, int]:
    """A parser for ``HxW`` sizes such as ``1520x912`` (height first, as numpy shapes)."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"expected a size HxW such as 1520x912, got {text!r}")
    return int(parts[0]), int(parts[1])


hw_size.format_value = lambda size: f"{size[0]}x{size[1]}"  # type: ignore[attr-defined]


# --- the knobs of a config class ------------------------------------------------------------------------


@dataclass(frozen=True)
class Knob:
    """One command-line knob: a field of a config class (or of a config nested in it)."""

    name: str  # field name = flag without '--' (hyphens for underscores) = TOML key
    path: tuple[str, ...]  # attribute path from the outer config, e.g. ("generator", "studies")
    default: Any  # REQUIRED when the field has none
    kind: Any  # the field's type without None (the element type for repeat knobs)
    optional: bool  # the type admits None
    help: str
    parse: Callable[[str], Any] | None  # None for booleans
    custom: bool  # parse given by knob(parse=...) rather than the scalar type
    metavar: str | None
    choices: tuple[Any, ...] | None
    repeat: bool
    positional: bool

    @property
    def flag(self) -> str:
        return flag_name(self.name)

    @property
    def has_default(self) -> bool:
        return self.default is not REQUIRED

    def format(self, value: Any) -> str:
        """One value as the command line takes it (the inverse of ``parse``)."""
        writer = getattr(self.parse, "format_value", None)
        if writer is not None:
            return str(writer(value))
        return repr(value) if isinstance(value, float) else str(value)


def _without_none(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        assert len(rest) == 1, f"a knob's type must be X or X | None, got {hint}"
        return rest[0], True
    return hint, False


@functools.cache
def knobs(cls: type) -> tuple[Knob, ...]:
    """Every knob of config class ``cls`` in declaration order, nested configs flattened in place."""
    hints = typing.get_type_hints(cls)
    found: list[Knob] = []
    for field in dataclasses.fields(cls):
        if "nested" in field.metadata:
            found += [
                dataclasses.replace(k, path=(field.name, *k.path)) for k in knobs(field.metadata["nested"])
            ]
            continue
        meta = field.metadata
        if "help" not in meta:
            continue
        kind, optional = _without_none(hints[field.name])
        if meta["repeat"]:
            kind = typing.get_args(kind)[0]
        parse = meta["parse"] or (None if kind is bool else _SCALARS.get(kind))
        assert kind is bool or parse is not None, (
            f"{cls.__name__}.{field.name}: give knob(parse=...) for {kind}"
        )
        assert not (kind is bool and field.default is REQUIRED), (
            f"{cls.__name__}.{field.name}: a bool needs a default"
        )
        found.append(
            Knob(
                name=field.name,
                path=(field.name,),
                default=field.default,
                kind=kind,
                optional=optional,
                help=meta["help"],
                parse=parse,
                custom=meta["parse"] is not None,
                metavar=meta["metavar"],
                choices=meta["choices"],
                repeat=meta["repeat"],
                positional=meta["positional"],
            )
        )
    names = [k.name for k in found]
    assert len(set(names)) == len(names), f"{cls.__name__}: a knob name is used twice ({names})"
    return tuple(found)


def config_values(config: Any) -> dict[str, Any]:
    """``{knob name: value}`` of a config object (nested configs flattened)."""
    values = {}
    for k in knobs(type(config)):
        value = config
        for part in k.path:
            value = getattr(value, part)
        values[k.name] = value
    return values


def build_config(cls: type[T], values: Mapping[str, Any]) -> T:
    """``cls`` from ``{knob name: value}`` (missing knobs keep their defaults; nested configs built too)."""
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "nested" in field.metadata:
            inner = field.metadata["nested"]
            kwargs[field.name] = build_config(
                inner, {k.name: values[k.name] for k in knobs(inner) if k.name in values}
            )
        elif "help" in field.metadata and field.name in values:
            kwargs[field.name] = values[field.name]
    return cls(**kwargs)


# --- TOML files -----------------------------------------------------------------------------------------


def read_config_file(path: str | os.PathLike[str], cls: type) -> dict[str, Any]:
    """The knob values of a flat TOML file (keys as field names, ``-`` or ``_``), checked against ``cls``."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    by_name = {k.name: k for k in knobs(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"config file {path}: unknown key {key!r}{hint}; the keys are the command-line flags without "
                f"'--': {', '.join(sorted(by_name))}"
            )
        if name in values:
            raise ConfigError(f"config file {path}: {key!r} is given twice (as - and _ spellings)")
        values[name] = _from_toml(by_name[name], value, f"config file {path}: {key!r}")
    return values


def _from_toml(k: Knob, value: Any, where: str) -> Any:
    if k.repeat:
        items = value if isinstance(value, list) else [value]
        return tuple(_one_from_toml(k, item, where) for item in items)
    return _one_from_toml(k, value, where)


def _one_from_toml(k: Knob, value: Any, where: str) -> Any:
    if k.custom and isinstance(value, str):
        assert k.parse is not None
        try:
            parsed = k.parse(value)
        except (argparse.ArgumentTypeError, ValueError, MammoSaeError) as error:
            raise ConfigError(f"{where}: {error}") from None
    elif k.custom and isinstance(value, list) and typing.get_origin(k.kind) is tuple:
        parsed = _tuple_from_list(k, value, where)
    elif k.custom:
        example = f" such as {k.format(k.default)!r}" if k.has_default and k.default is not None else ""
        raise ConfigError(f"{where} must be a string{example}, got {type(value).__name__} {value!r}")
    else:
        parsed = _scalar(k.kind, value, where)
    if k.choices and parsed not in k.choices:
        raise ConfigError(f"{where} must be one of {list(k.choices)}, got {value!r}")
    return parsed


def _scalar(kind: Any, value: Any, where: str) -> Any:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"{where} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if kind is float else value


def _tuple_from_list(k: Knob, value: list[Any], where: str) -> tuple[Any, ...]:
    kinds = typing.get_args(k.kind)
    if len(kinds) == 2 and kinds[1] is Ellipsis:
        kinds = (kinds[0],) * len(value)
    if len(kinds) != len(value):
        raise ConfigError(f"{where} must hold {len(kinds)} values, got {value!r}")
    return tuple(_scalar(kind, item, where) for kind, item in zip(kinds, value, strict=True))


def config_toml(config: Any) -> str:
    """The config as a flat TOML file that ``--config`` reads back (unset optional knobs are comments)."""
    lines = [f"# {type(config).__name__} written by mammo-sae; usable as --config FILE"]
    by_name = {k.name: k for k in knobs(type(config))}
    for name, value in config_values(config).items():
        k = by_name[name]
        if value is None and not _expresses_none(k):
            lines.append(f"# {name} = (not set)")
        elif k.repeat:
            lines.append(f"{name} = [{', '.join(_toml_value(k, item) for item in value)}]")
        else:
            lines.append(f"{name} = {_toml_value(k, value)}")
    return "\n".join(lines) + "\n"


def _expresses_none(k: Knob) -> bool:
    """Whether the knob's text form can say "unset" (e.g. 'none'): only knobs with their own formatter."""
    return hasattr(k.parse, "format_value")


def _toml_value(k: Knob, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and not k.custom:
        return repr(value)
    return json.dumps(k.format(value))


# --- parsers --------------------------------------------------------------------------------------------


def _help_text(k: Knob, value: Any) -> str:
    """The knob's help with its default appended, unless the help already speaks of it or it is unset."""
    text = k.help
    shown = None
    if value is not REQUIRED and value is not None and "default" not in k.help.lower():
        if isinstance(value, bool):
            shown = "on" if value else "off"
        elif k.repeat:
            shown = ", ".join(k.format(item) for item in value) or None
        else:
            shown = k.format(value)
    if k.choices and k.metavar:  # argparse lists choices only in place of a metavar
        text += f" (one of: {', '.join(k.format(choice) for choice in k.choices)})"
    if shown is not None:
        text += f" (default: {shown})"
    return text.replace("%", "%%")  # argparse %-formats help strings


def add_knob_arguments(
    parser: argparse.ArgumentParser, cls: type, values: Mapping[str, Any] | None = None
) -> None:
    """One argument per knob of ``cls``; ``values`` (from a config file) replace defaults and satisfy
    required knobs. Nothing lands in the namespace unless given on the command line."""
    given = values or {}
    for k in knobs(cls):
        has_value = k.name in given or k.has_default
        options: dict[str, Any] = {
            "help": _help_text(k, given.get(k.name, k.default)),
            "default": argparse.SUPPRESS,
        }
        if k.parse is not None:
            options["type"] = k.parse
        if k.positional:
            options["metavar"] = k.metavar or k.name.upper()
            options["nargs"] = ("*" if has_value else "+") if k.repeat else ("?" if has_value else None)
            parser.add_argument(k.name, **options)
            continue
        options["dest"] = k.name
        if k.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            if k.repeat:
                options["action"] = "append"
            if k.metavar:
                options["metavar"] = k.metavar
            if k.choices:
                options["choices"] = k.choices
            options["required"] = not has_value
        parser.add_argument(k.flag, **options)


# --- commands -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command generated from its config class: parser, ``--config``, runner and command-line writer.

    ``job(config)`` (or ``job(config, context)`` when ``distributed``: run on every torchrun rank) returns
    the JSON-ready summary to print, or an int exit code when it printed its own output. A command with
    ``config=None`` is a group that only dispatches to its ``subcommands``; a command with both runs
    itself unless the first argument names a subcommand.
    """

    prog: str
    config: type | None
    job: Callable[..., Any] | None
    description: str
    about: str = ""  # one line, for the list of a group's commands
    epilog: str = ""
    distributed: bool = False
    json_indent: int = 1
    subcommands: Mapping[str, Command] = dataclasses.field(default_factory=dict)

    def parser(self, values: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
        """The argument parser; ``values`` (a config file's) become its defaults."""
        assert self.config is not None, f"{self.prog} is a group of commands"
        parser = argparse.ArgumentParser(
            prog=self.prog, description=self.description, epilog=self._epilog(), allow_abbrev=False
        )
        parser.add_argument(CONFIG_FLAG, metavar="FILE.toml", help=CONFIG_HELP)
        add_knob_arguments(parser, self.config, values)
        return parser

    def parse(self, argv: Sequence[str]) -> Any:
        """The checked config: defaults < ``--config`` file < flags. Raises SystemExit for a bad flag or
        --help (argparse explained it), ConfigError for a bad file, and the config's own validate() errors."""
        assert self.config is not None, f"{self.prog} is a group of commands"
        argv = list(argv)
        early = argparse.ArgumentParser(prog=self.prog, add_help=False, allow_abbrev=False)
        early.add_argument(CONFIG_FLAG)
        known, _ = early.parse_known_args(argv)
        values = read_config_file(known.config, self.config) if known.config is not None else {}
        given = vars(self.parser(values).parse_args(argv))
        given.pop("config", None)
        for k in knobs(self.config):
            if k.repeat and k.name in given:
                given[k.name] = tuple(given[k.name])
        config = build_config(self.config, {**values, **given})
        validate = getattr(config, "validate", None)
        return validate() if callable(validate) else config

    def argv(self, config: Any) -> list[str]:
        """The arguments that give back ``config`` (knobs at their default are left out)."""
        assert type(config) is self.config, f"{self.prog} takes a {self.config}, not a {type(config)}"
        return config_argv(config)

    def command_line(self, config: Any) -> str:
        """The shell command that rebuilds ``config``, e.g. ``python -m mammo_sae.train --store S ...``."""
        return command_line(self.prog, config)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run the command; returns the exit code (0 done or --help, 2 bad flags, config or input)."""
        args = list(sys.argv[1:] if argv is None else argv)
        if args and args[0] in self.subcommands:
            return self.subcommands[args[0]].main(args[1:])
        if self.config is None:
            return self._dispatch_error(args)
        try:
            config = self.parse(args)
        except SystemExit as stop:  # --help (0) or a bad flag (2, already explained by argparse)
            return _exit_code(stop)
        except (MammoSaeError, OSError) as error:
            return self._fail(error)
        assert self.job is not None
        if self.distributed:
            from mammo_sae.core.distributed import run_command  # torch: only once a job really runs

            job = self.job
            return run_command(self.prog, config.device, lambda context: job(config, context))
        try:
            result = self.job(config)
        except (MammoSaeError, OSError) as error:
            return self._fail(error)
        if isinstance(result, int):
            return result
        print(json.dumps(result, indent=self.json_indent))
        return 0

    def usage(self) -> str:
        """The help of a group of commands."""
        width = max((len(name) for name in self.subcommands), default=0)
        lines = [f"usage: {self.prog} COMMAND [options]", "", self.description, "", "commands:"]
        lines += [f"  {name:<{width}}  {sub.about}" for name, sub in self.subcommands.items()]
        lines += ["", f"`{self.prog} COMMAND --help` explains each command."]
        return "\n".join(lines)

    def _epilog(self) -> str:
        others = [f"{sub.prog}: {sub.about}" for sub in self.subcommands.values()]
        return " ".join([self.epilog, *(f"Other command: {line}." for line in others)]).strip()

    def _dispatch_error(self, args: list[str]) -> int:
        if args and args[0] in ("-h", "--help"):
            print(self.usage())
            return 0
        names = ", ".join(self.subcommands)
        if not args:
            print(f"{self.usage()}\n\n{self.prog}: error: give one of the commands {names}", file=sys.stderr)
        else:
            print(
                f"{self.prog}: error: unknown command {args[0]!r}; the commands are {names}", file=sys.stderr
            )
        return 2

    def _fail(self, error: BaseException) -> int:
        message = os_error_message(error) if isinstance(error, OSError) else str(error)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        return 2


def config_argv(config: Any) -> list[str]:
    """The command-line arguments that give back ``config`` (knobs at their default are left out)."""
    flags: list[str] = []
    positionals: list[str] = []
    by_name = {k.name: k for k in knobs(type(config))}
    for name, value in config_values(config).items():
        k = by_name[name]
        if k.positional:
            positionals += [k.format(v) for v in value] if k.repeat else [k.format(value)]
        elif k.has_default and value == k.default:
            continue
        elif (value is None and not _expresses_none(k)) or (k.repeat and not value):
            raise ConfigError(f"{k.flag} cannot be given as unset on a command line; leave it out")
        elif k.kind is bool:
            flags.append(k.flag if value else f"--no-{k.flag[2:]}")
        else:
            for item in value if k.repeat else (value,):
                text = k.format(item)
                flags += [f"{k.flag}={text}"] if text.startswith("-") else [k.flag, text]
    return flags + (["--", *positionals] if positionals else [])


def command_line(prog: str, config: Any) -> str:
    """The shell command ``prog`` + the arguments that rebuild ``config`` (quoted for a POSIX shell)."""
    return shlex.join([*prog.split(), *config_argv(config)])


def _exit_code(stop: SystemExit) -> int:
    if stop.code is None or isinstance(stop.code, int):
        return int(stop.code or 0)
    print(stop.code, file=sys.stderr)
    return 2


def module_prog(command: str) -> str:
    """``train`` -> ``python -m mammo_sae.train``: the prog of a command at the package root."""
    return f"python -m mammo_sae.{command}"
