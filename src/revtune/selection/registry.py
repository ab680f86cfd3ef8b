"""Strategies by name: each registered name is an options dataclass that knows how to build its strategy.

A spec is ``name`` or ``name:ARG[:ARG...]`` (``fixed:0-3``, ``random:4``, ``lisa:2:20``): the arguments
fill the options' positional fields; flags, YAML keys and keyword arguments fill the same dataclass, which
validates itself, so a bad value is refused before any model loads. This module is a leaf: it imports
nothing that registers into it (the built-ins register from ``selection/options.py``, imported by the
package), and a strategy's code is imported only when it is built.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import ClassVar

from ..errors import RevtuneError, did_you_mean
from ..knobs import base_type, check_choices, cli_fields, coerce, flat_name

STRATEGIES: dict[str, type["StrategyOptions"]] = {}


@dataclass
class StrategyOptions:
    """Base of every strategy's options. Subclasses set ``name``, ``help`` (the one line ``--select``'s
    help shows), ``factory`` (``"module:function"`` taking the options, returning a ``Strategy``),
    ``positional`` (fields the spec's arguments fill, in order, labelled ``labels`` in messages) and
    ``whole`` (everything after the first colon is one argument: paths, layer lists)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    factory: ClassVar[str] = ""
    positional: ClassVar[tuple[str, ...]] = ()
    labels: ClassVar[tuple[str, ...]] = ()
    whole: ClassVar[bool] = False
    adapter: ClassVar[str | None] = None  # an adapter kind the strategy insists on (full: none)

    def __post_init__(self):
        check_choices(self)
        self.validate()

    def validate(self) -> None:
        """Refuse impossible values; subclasses add their own checks."""

    @classmethod
    def from_args(cls, args: list[str]) -> dict:
        """Spec arguments -> field values (strings converted by the field types)."""
        if len(args) > len(cls.positional):
            if not cls.positional:
                what = f"strategy '{cls.name}' takes no argument"
            elif len(cls.positional) == 1:
                what = f"{cls.name} takes one argument {cls.labels[0]}"
            else:
                what = f"{cls.name} takes {':'.join(cls.labels)}"
            raise RevtuneError(f"{what}, got '{':'.join(args)}'", field="select")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for name, label, text in zip(cls.positional, cls.labels, args):
            if base_type(cls, fields[name])[0] is int:
                values[name] = whole_number(cls.name, text, label)
            else:
                values[name] = coerce(cls, fields[name], text)
        return values

    def spec(self) -> str:
        """The canonical spec: the name and every positional value that is set (``random:4``)."""
        parts = [self.name]
        for name in self.positional:
            value = getattr(self, name)
            if isinstance(value, bool):
                if value:
                    parts.append(name.replace("_", "-"))
            elif value is not None:
                parts.append(str(value))
        return ":".join(parts)

    def build(self):
        module, _, function = self.factory.partition(":")
        return getattr(importlib.import_module(module), function)(self)


def whole_number(name: str, text, label: str, minimum: int = 1, field: str = "select") -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = minimum - 1
    if value < minimum:
        raise RevtuneError(f"{name}: {label} must be a whole number >= {minimum}, got '{text}'", field=field)
    return value


def register(cls: type[StrategyOptions]) -> type[StrategyOptions]:
    """Class decorator: ``cls.name`` becomes a strategy; registering a name twice is an error, so a typo in
    a new module cannot silently shadow an existing method."""
    if cls.name in STRATEGIES:
        raise ValueError(f"strategy '{cls.name}' registered twice")
    STRATEGIES[cls.name] = cls
    return cls


def split_spec(spec: str) -> tuple[str, list[str]]:
    name, _, rest = spec.strip().partition(":")
    cls = STRATEGIES.get(name)
    if cls is not None and cls.whole:
        return name, [rest] if rest else []
    return name, [a for a in rest.split(":") if a] if rest else []


def options_class(name: str) -> type[StrategyOptions]:
    if name not in STRATEGIES:
        raise RevtuneError(f"unknown selection strategy '{name}': {did_you_mean(name, STRATEGIES)}",
                           field="select")
    return STRATEGIES[name]


def option_flags() -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Flat option name (``split_num``) -> the (strategy, field) pairs it sets."""
    table: dict[str, list] = {}
    for name, cls in STRATEGIES.items():
        for f in cli_fields(cls):
            table.setdefault(flat_name(f), []).append((name, f))
    return table


def _field(cls, key: str):
    by_flag = next((f for f in cli_fields(cls) if flat_name(f) == key), None)
    return by_flag or next((f for f in dataclasses.fields(cls) if f.name == key), None)


def parse_spec(spec: str, values: dict | None = None, base: dict | None = None, source=None) -> StrategyOptions:
    """The options of ``spec``: ``base`` (field values, e.g. a run's saved options) < the spec's arguments <
    ``values`` (flags, YAML keys or keyword arguments, by flat or field name). A value for a field the
    strategy does not have, or a value that contradicts the spec, is an error."""
    name, args = split_spec(spec)
    cls = options_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    filled = {k: v for k, v in (base or {}).items() if k in known}
    from_spec = cls.from_args(args)
    filled.update(from_spec)
    for key, value in (values or {}).items():
        f = _field(cls, key)
        if f is None:
            users = [s for s, _ in option_flags().get(key, [])] or \
                [s for s, c in STRATEGIES.items() if any(g.name == key for g in dataclasses.fields(c))]
            where = f"it applies to {', '.join(users)}" if users else \
                f"{name} has {', '.join(flat_name(g) for g in cli_fields(cls)) or 'no options'}"
            raise RevtuneError(f"not an option of strategy '{name}' ({where})", path=source, field=key)
        value = coerce(cls, f, value, source)
        if f.name in from_spec and from_spec[f.name] != value:
            raise RevtuneError(f"'{spec}' already sets {f.name} to {from_spec[f.name]!r}, the option says "
                               f"{value!r}", path=source, field=key)
        filled[f.name] = value
    return cls(**filled)


def build_strategy(spec: "str | StrategyOptions", **values):
    """A ready :class:`~revtune.selection.base.Strategy` from a spec (plus option values) or options."""
    options = spec if isinstance(spec, StrategyOptions) else parse_spec(spec, values)
    return options.build()


def strategy_help() -> str:
    """One line per registered strategy, for ``--select``'s help."""
    return "; ".join(f"{cls.name}: {cls.help}" for cls in STRATEGIES.values())
