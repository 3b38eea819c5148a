"""Read user-written YAML and keep the line of every key, so errors can name it.

Also performs ``${ENV}`` / ``${ENV:-default}`` interpolation on string values;
``$${`` writes a literal ``${``. Environment access is injected (``environ``)
so nothing but the configuration layer reads ``os.environ``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.errors import ConfigError, Problem

Loc = tuple[str | int, ...]
# How many nodes aliases may add beyond ten times what is written: anchors for
# shared defaults stay far below; an alias bomb is far above.
MAX_ALIAS_GROWTH = 10_000
MAX_DEPTH = 100  # mappings and lists within each other; real files need fewer than ten
_ENV_REF = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
# The password of a URL's user information (scheme://user:password@host).
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*):[^/@\s]+@")


@dataclass
class YamlDocument:
    """Parsed YAML plus where each key and item was written."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    # Values taken from the environment, by where they were written: ${ENV} is where
    # secrets live, so an error message shows the variable's name, never its value.
    from_environment: dict[Loc, dict[str, str]] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest known prefix of ``loc`` (pydantic locations may carry
        extra elements such as union tags, which are skipped)."""
        best: int | None = self.lines.get(())
        path: Loc = ()
        for part in loc:
            candidate = (*path, part)
            if candidate in self.lines:
                path = candidate
                best = self.lines[candidate]
        return best

    def problems_from(self, exc: ValidationError, prefix: Loc = ()) -> list[Problem]:
        problems = []
        for err in exc.errors():
            loc = (*prefix, *err["loc"])
            dotted = format_loc(loc)
            message = err["msg"].removeprefix("Value error, ")
            hidden = self.from_environment.get(loc, {})
            if err["type"] not in {"missing", "extra_forbidden"} and "input" in err and not hidden:
                shown = repr(err["input"])
                if len(shown) < 80 and not isinstance(err["input"], dict | list):
                    message = f"{message}, got: {shown}"
            for name, value in hidden.items():
                if value:
                    message = message.replace(value, f"${{{name}}}")
            message = _URL_PASSWORD.sub(r"\1:***@", message)
            problems.append(Problem(self.file, self.line_of(loc), dotted, message))
        return problems


def format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml_file(path: Path, environ: Mapping[str, str] | None = None) -> YamlDocument:
    """Parse ``path``; raise ConfigError naming the line on a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(str(path), "file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError.single(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError.single(str(path), f"cannot read: {exc.strerror}") from None
    return load_yaml_text(text, str(path), environ)


def load_yaml_text(text: str, file: str, environ: Mapping[str, str] | None = None) -> YamlDocument:
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters already here
    except yaml.YAMLError as exc:
        raise ConfigError.single(file, f"YAML error: {exc}") from None
    try:
        _check_depth(text, file)
        node = loader.get_single_node()
        if node is not None:
            _check_size(node, file)  # before constructing: an alias bomb or a cycle never expands
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise ConfigError.single(file, f"YAML syntax error: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError.single(file, f"YAML error: {exc}") from None
    except RecursionError:
        raise ConfigError.single(file, "YAML error: nested too deeply") from None
    except (ValueError, OverflowError) as exc:
        # PyYAML's constructors let these through: a date the calendar lacks
        # (2025-02-30), an integer over Python's 4300-digit conversion limit.
        raise ConfigError.single(file, f"YAML error: a value cannot be read: {exc}") from None
    finally:
        loader.dispose()
    doc = YamlDocument(file, data)
    if node is not None:
        _record_lines(node, (), doc.lines)
    if environ is not None:
        problems: list[Problem] = []
        doc.data = _interpolate(doc.data, (), environ, doc, problems)
        if problems:
            raise ConfigError(problems)
    return doc


def _check_depth(text: str, file: str) -> None:
    """PyYAML composes nodes recursively: a few kilobytes of ``[[[[…`` reach Python's
    recursion limit, slowly. Its event parser is iterative, so measure depth with it first."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError.single(file, f"YAML error: nested more than {MAX_DEPTH} levels deep",
                                         line=event.start_mark.line + 1 if event.start_mark else None)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_size(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases make it recursive, or expand it far beyond what
    was written (the "billion laughs"): every walk over the data (lines, ${ENV},
    validation) would follow each alias again. Linear in the written nodes."""
    expanded: dict[int, int] = {}  # id(node) -> nodes below it once aliases are followed
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative: a deep document must not hit the recursion limit here
        node, children_done = stack.pop()
        if id(node) in expanded:
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
            list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if children_done:
            on_path.discard(id(node))
            expanded[id(node)] = 1 + sum(expanded[id(child)] for child in children)
            continue
        if id(node) in on_path:
            raise ConfigError.single(file, "YAML error: an alias refers to a node that contains it",
                                     line=node.start_mark.line + 1)
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in expanded)
    written = len(expanded)
    if expanded[id(root)] > 10 * written + MAX_ALIAS_GROWTH:
        raise ConfigError.single(file, f"YAML error: aliases expand {written} nodes to {expanded[id(root)]}; "
                                 "write the document out instead")


def _record_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            _record_lines(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), lines)


def _interpolate(value: Any, loc: Loc, environ: Mapping[str, str], doc: YamlDocument,
                 problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, str(k)), environ, doc, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), environ, doc, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        escaped, name, default = match.group(1), match.group(2), match.group(3)
        if escaped:
            return match.group(0)[1:]
        if name in environ:
            doc.from_environment.setdefault(loc, {})[name] = environ[name]
            return environ[name]
        if default is not None:
            return default
        problems.append(Problem(doc.file, doc.line_of(loc), format_loc(loc),
                                f"environment variable {name} is not set "
                                f"(set it, or write ${{{name}:-default}})"))
        return ""

    return _ENV_REF.sub(substitute, value)
