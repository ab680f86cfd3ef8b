"""YAML config files read with bounds: ``safe_load`` alone lets a few hundred bytes of aliases expand
into gigabytes (a "billion laughs"), and silently keeps the last of two equal keys.

Here a file larger than :data:`MAX_BYTES`, with more than :data:`MAX_ALIASES` aliases or whose aliases
would expand to more than :data:`MAX_NODES` nodes, or with a key given twice, is refused with one line
naming the file and line. The expansion is counted on the composed node graph (each node once, with
memoised subtree sizes), so an alias bomb is refused in milliseconds, before anything is built.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .errors import RevtuneError

MAX_BYTES = 1 << 20
MAX_ALIASES = 100
MAX_NODES = 100_000


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases while composing and refuses duplicate mapping keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _Refused(f"more than {MAX_ALIASES} YAML aliases", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise _Refused("a mapping key must be a plain value", key_node.start_mark) from None
            if key in seen:
                raise _Refused(f"key '{key}' appears twice (first on line {seen[key] + 1})",
                               key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


class _Refused(Exception):
    def __init__(self, message: str, mark):
        super().__init__(message)
        self.message, self.mark = message, mark


def _expanded_size(root) -> int:
    """Nodes the document holds once every alias is expanded (each distinct node measured once)."""
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) \
            else list(node.value)
        if children_done:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
            if sizes[id(node)] > MAX_NODES:
                raise _Refused(f"the YAML expands to more than {MAX_NODES:,} values (alias bomb?)",
                               node.start_mark)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def load_yaml_file(path: str | Path):
    """The document of a YAML file, or one :class:`RevtuneError` naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise RevtuneError("config file not found", path=path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise RevtuneError(f"config file is {size:,} bytes; the limit is {MAX_BYTES:,}", path=path)
    try:
        text = path.read_bytes()[:MAX_BYTES + 1].decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RevtuneError(f"not UTF-8 text (byte {e.start})", path=path) from None
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters already here
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Refused as e:
        raise RevtuneError(e.message, path=path, line=e.mark.line + 1 if e.mark else None) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise RevtuneError(f"invalid YAML: {getattr(e, 'problem', None) or e}", path=path,
                           line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise RevtuneError("YAML nested too deeply to read", path=path) from None
    finally:
        if loader is not None:
            loader.dispose()
