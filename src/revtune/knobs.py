"""Dataclass fields that are also flags and YAML keys: declared once, with their help, choices and flag.

``knob(default, help, flag=, choices=)`` declares a field; :func:`add_flags` turns every field of a
dataclass into one argparse flag (help with default and choices), and :func:`coerce` checks a value read
from YAML or JSON against the field's type with a one-line error. Torch-free: every CLI call builds this.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import field

from .errors import RevtuneError, did_you_mean, shown


def knob(default=dataclasses.MISSING, help_text: str = "", *, flag: str | None = None,
         choices: tuple | None = None, cli: bool = True, expect: str | None = None):
    """A field with its help text; ``flag`` is its flat name (``lora_r`` for ``adapter.r``), ``choices``
    its valid values (checked by :func:`check_choices`), ``cli=False`` keeps it off the command line,
    ``expect`` what a value of the wrong type is told it should be (default: the type's name)."""
    metadata = {"help": help_text, "flag": flag, "choices": choices, "cli": cli, "expect": expect}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def flat_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or f.name


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True) and "help" in f.metadata]


def check_choices(obj) -> None:
    """Every field with ``choices`` holds one of them (None allowed for optional fields)."""
    for f in dataclasses.fields(obj):
        valid = f.metadata.get("choices")
        value = getattr(obj, f.name)
        if valid and value is not None and value not in valid:
            hint = did_you_mean(str(value), [str(v) for v in valid])
            raise RevtuneError(f"unknown {flat_name(f)} {value!r}: {hint}", field=flat_name(f))


def base_type(cls, f: dataclasses.Field):
    """(type, optional): ``int | None`` -> (int, True); ``list[float]`` -> (list[float], False)."""
    kind = typing.get_type_hints(cls)[f.name]
    args = typing.get_args(kind)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return kind, False


def coerce(cls, f: dataclasses.Field, value, source=None):
    """``value`` (from YAML, JSON or a flag) as the field's type; a one-line error naming the key. A bool
    is no number (YAML's ``max_steps: true`` is not 1), an int is a whole number (``3.0`` is 3), a float
    is finite."""
    kind, optional = base_type(cls, f)
    if value is None and optional:
        return None
    origin = typing.get_origin(kind) or kind
    try:
        if origin is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if origin in (int, float, str) and isinstance(value, bool):
            raise ValueError
        if origin is int:
            number = float(value) if isinstance(value, (str, float)) else value
            if not isinstance(number, (int, float)) or not math.isfinite(number) or number != int(number):
                raise ValueError
            return int(number)
        if origin is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if origin is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
        if origin is list:
            if isinstance(value, str):
                value = parse_list(value)
            if not isinstance(value, (list, tuple)):
                raise ValueError
            item = (typing.get_args(kind) or (str,))[0]
            if item is float and any(isinstance(v, bool) for v in value):
                raise ValueError
            return [item(v) for v in value]
        if origin is dict:
            if isinstance(value, str):
                value = parse_mapping(value)
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError, OverflowError, argparse.ArgumentTypeError):
        kinds = {int: "int (a whole number)", float: "float (a finite number)", str: "str (text)",
                 bool: "bool (true or false)", list: "list", dict: "dict (a mapping)"}
        expect = f.metadata.get("expect") or f"expected {kinds.get(origin, getattr(origin, '__name__', kind))}"
        raise RevtuneError(f"{expect}, got {shown(value)}", path=source, field=flat_name(f)) from None
    return value


def parse_mapping(text: str) -> dict:
    result = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value pairs, got '{part}'")
        result[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return result


def parse_list(text: str) -> list:
    return [t.strip() for t in text.split(",") if t.strip()]


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return "unset" if value is None else str(value)


def default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def flag_help(f: dataclasses.Field, extra: str = "") -> str:
    default = default_of(f)
    parts = [f"default: {_shown(default)}" if default is not dataclasses.MISSING else "required"]
    if f.metadata.get("choices"):
        parts.append("choices: " + ", ".join(map(str, f.metadata["choices"])))
    text = f"{f.metadata['help']}{extra} ({'; '.join(parts)})"
    return text.replace("%", "%%")


def add_flag(parser, cls, f: dataclasses.Field, *, extra_help: str = "", keep_default: bool = False) -> None:
    """One flag for ``f``. Defaults are suppressed unless ``keep_default``, so that a YAML value wins over an
    unset flag; required fields (no default) are required flags."""
    name = flat_name(f)
    kind, _ = base_type(cls, f)
    origin = typing.get_origin(kind) or kind
    default = default_of(f)
    kw = dict(dest=name, help=flag_help(f, extra_help))
    if default is dataclasses.MISSING:
        kw["required"] = True
    else:
        kw["default"] = default if keep_default else argparse.SUPPRESS
    flag = "--" + name.replace("_", "-")
    if origin is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        return
    converter = {list: lambda text: _as_argument(coerce, cls, f, text), dict: parse_mapping}.get(origin, origin)
    if origin not in (int, float, str, list, dict):
        converter = str
    parser.add_argument(flag, type=converter, metavar=name.upper(), **kw)


def _as_argument(convert, cls, f, text):
    """A list flag's value; one that does not convert is kept as given, to fail when the config is built
    (``coerce`` again, one line naming the field, exit 2) rather than as a traceback inside argparse."""
    try:
        return convert(cls, f, text)
    except RevtuneError:
        return text


def add_flags(parser, cls, skip: tuple[str, ...] = (), keep_defaults: bool = False) -> None:
    """A flag per command-line field of ``cls`` whose flat name is not in ``skip``."""
    for f in cli_fields(cls):
        if flat_name(f) not in skip:
            add_flag(parser, cls, f, keep_default=keep_defaults)


def from_namespace(cls, namespace: argparse.Namespace, **overrides):
    """An instance of ``cls`` from the flags :func:`add_flags` added (``keep_defaults=True``)."""
    values = {f.name: getattr(namespace, flat_name(f)) for f in cli_fields(cls) if hasattr(namespace, flat_name(f))}
    values.update(overrides)
    return cls(**values)
