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
_ENV_REF = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


@dataclass
class YamlDocument:
    """Parsed YAML plus where each key and item was written."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

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
            if err["type"] not in {"missing", "extra_forbidden"} and "input" in err:
                shown = repr(err["input"])
                if len(shown) < 80 and not isinstance(err["input"], dict | list):
                    message = f"{message}, got: {shown}"
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
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise ConfigError.single(file, f"YAML syntax error: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError.single(file, f"YAML error: {exc}") from None
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
            return environ[name]
        if default is not None:
            return default
        problems.append(Problem(doc.file, doc.line_of(loc), format_loc(loc),
                                f"environment variable {name} is not set "
                                f"(set it, or write ${{{name}:-default}})"))
        return ""

    return _ENV_REF.sub(substitute, value)
