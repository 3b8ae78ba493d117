"""Reading YAML and JSON documents with the line of every key path, so that a message about a
value can name its line (task files, config files).

YAML is read with ``SafeLoader`` after ``sts_core.yamlsafe`` refuses alias bombs and unreadable
integers; lines come from the composed tree. JSON lines come from a second, cheap pass over a
text already known to be valid. A key given twice in one mapping is recorded, not dropped.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any

import attrs
import yaml

from sts_core.yamlsafe import TOO_MANY_DIGITS, UnsafeYamlError, check_document

#: Lines are recorded this deep (a task file: top, tasks, entry, option, two levels inside an option).
MAX_LINE_DEPTH = 6

KeyPath = tuple[str | int, ...]


class DocumentError(ValueError):
    """The text is not a readable document: the message says why, ``line`` where (when known)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@attrs.define
class Document:
    """Parsed data with the line of every key path (1-based), and each key given twice in one
    mapping as ``(key path, key, first line, line)`` (the data keeps the last value)."""

    data: Any
    lines: dict[KeyPath, int]
    duplicate_keys: list[tuple[KeyPath, str, int, int]] = attrs.field(factory=list)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor with a known line."""
        for length in range(len(path), -1, -1):
            line = self.lines.get(path[:length])
            if line is not None:
                return line
        return None


def parse_yaml(text: str) -> Document:
    """The data of a YAML text with the line of every key path; raises ``DocumentError``."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # reads the whole text: refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return Document(None, {})
        check_document(node)
        # Lines come from the composed tree before construction, which rewrites merge keys.
        document = Document(None, {(): node.start_mark.line + 1})
        _record_yaml_lines(node, (), document, set())
        document.data = loader.construct_document(node)
        return document
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = ""
        if exc.context and exc.problem:
            context_line = f", line {exc.context_mark.line + 1}" if exc.context_mark else ""
            context = f" ({exc.context}{context_line})"
        label = "unsupported YAML" if isinstance(exc, yaml.constructor.ConstructorError) else "malformed YAML"
        raise DocumentError(f"{label}{where}: {exc.problem or exc.context}{context}",
                            mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"malformed YAML: {exc}") from None
    except UnsafeYamlError as exc:
        raise DocumentError(f"refused: {exc}", exc.line) from None
    finally:
        if loader is not None:
            loader.dispose()


def _record_yaml_lines(node: yaml.Node, path: KeyPath, document: Document, seen: set[int]) -> None:
    # Each node is walked once: aliases share nodes, and walking them again could repeat work
    # without bound.
    if id(node) in seen or len(path) >= MAX_LINE_DEPTH:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key_path = (*path, key_node.value)
            line = key_node.start_mark.line + 1
            if key_path in document.lines:
                document.duplicate_keys.append((key_path, key_node.value, document.lines[key_path], line))
                continue
            document.lines[key_path] = line
            _record_yaml_lines(value_node, key_path, document, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            document.lines[(*path, index)] = item.start_mark.line + 1
            _record_yaml_lines(item, (*path, index), document, seen)


def parse_json(text: str) -> Document:
    """The data of a JSON text with the line of every key path; raises ``DocumentError``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", exc.lineno) from None
    except ValueError:  # an integer of more than 4300 digits
        raise DocumentError(f"refused: {TOO_MANY_DIGITS}") from None
    document = Document(data, {})
    _JsonLines(text, document).value(0, ())
    return document


class _JsonLines:
    """Records the line of every key path of a JSON text already known to be valid."""

    _SPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, text: str, document: Document) -> None:
        self.text = text
        self.document = document
        self.decoder = json.JSONDecoder()
        self.newlines = [match.start() for match in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1

    def skip(self, offset: int) -> int:
        return self._SPACE.match(self.text, offset).end()  # type: ignore[union-attr]

    def value(self, offset: int, path: KeyPath) -> int:
        """Record lines for the value starting at ``offset``; return the offset after it."""
        offset = self.skip(offset)
        if not path:
            self.document.lines[()] = self.line(offset)
        opener = self.text[offset]
        if opener not in "[{" or len(path) >= MAX_LINE_DEPTH:
            return self.decoder.raw_decode(self.text, offset)[1]
        closer = "}" if opener == "{" else "]"
        offset = self.skip(offset + 1)
        index = 0
        while self.text[offset] != closer:
            if opener == "{":
                key, after_key = self.decoder.raw_decode(self.text, offset)
                child = (*path, key)
                offset = self.skip(self.skip(after_key) + 1)  # past the colon
                if child in self.document.lines:
                    self.document.duplicate_keys.append((child, key, self.document.lines[child], self.line(offset)))
                    offset = self.skip(self.decoder.raw_decode(self.text, offset)[1])
                    if self.text[offset] == ",":
                        offset = self.skip(offset + 1)
                    continue
                self.document.lines[child] = self.line(offset)
            else:
                child = (*path, index)
                self.document.lines[child] = self.line(self.skip(offset))
                index += 1
            offset = self.skip(self.value(offset, child))
            if self.text[offset] == ",":
                offset = self.skip(offset + 1)
        return offset + 1
