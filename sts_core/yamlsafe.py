"""Refusing hostile YAML before the data is built: alias-expansion bombs ("billion laughs") and
integers too long for Python to read.

PyYAML's safe loader builds each anchored node once and shares it wherever an alias points
to it, so loading a bomb is cheap; the cost comes later, from whatever walks the data as a
tree: a repr in an error message, a JSON dump, a deep copy. A 430-byte task file whose aliases
nest nine levels deep walks as 9**9 strings. ``check_document`` counts the nodes the document
has once every alias is expanded (linear in the composed document: each node's count is
computed once) and refuses a document whose aliases add more than ``MAX_ALIAS_EXPANSION``
nodes, or that contains itself. A document without aliases is never refused. It also refuses an
integer of more than ``MAX_INT_DIGITS`` digits, which PyYAML would fail to build with a bare
``ValueError`` (Python's limit on converting text to int).
"""

from __future__ import annotations

from typing import Any

import yaml

#: The longest integer a document may hold: Python refuses to read longer ones from text.
MAX_INT_DIGITS = 4300
_INT_TAG = "tag:yaml.org,2002:int"
TOO_MANY_DIGITS = f"a number of more than {MAX_INT_DIGITS:,} digits, which cannot be read"
#: How many nodes aliases may add to a document once expanded: far more than sharing a block
#: of defaults between thousands of tasks needs, far less than it takes to exhaust memory.
MAX_ALIAS_EXPANSION = 100_000


class UnsafeYamlError(ValueError):
    """A YAML document whose aliases expand past ``MAX_ALIAS_EXPANSION`` nodes, or refer to themselves,
    or that holds an integer too long to read; ``line`` (1-based) is where, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def check_document(root: yaml.Node | None, limit: int = MAX_ALIAS_EXPANSION) -> None:
    """Raise ``UnsafeYamlError`` when the aliases in ``root`` expand to more than ``limit`` extra
    nodes, or an integer in it is too long to read."""
    if root is None:
        return
    expanded: dict[int, int] = {}  # node id -> nodes in its subtree with aliases expanded
    on_path: set[int] = set()
    composed = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            if expanded[key] - composed > limit:
                raise UnsafeYamlError(_too_large(limit))
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise UnsafeYamlError("an alias refers to the node that contains it (a recursive structure); "
                                      "expected plain data")
        composed += 1
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT_TAG and len(node.value) > MAX_INT_DIGITS:
            raise UnsafeYamlError(TOO_MANY_DIGITS, node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in expanded)
    if expanded[id(root)] - composed > limit:
        raise UnsafeYamlError(_too_large(limit))


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses alias-expansion bombs (``UnsafeYamlError``)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        check_document(node)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _too_large(limit: int) -> str:
    return (f"its YAML aliases (*name) expand to more than {limit:,} extra values, as in an "
            "alias-expansion (\"billion laughs\") attack; write the data out, or share less of it")
