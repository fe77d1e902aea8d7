"""Namespace-agnostic helpers for WordprocessingML (transitional and Strict Open XML).

Both flavours use the same element names in different namespaces, so everything here matches
on local names ("p", "tbl", "t") and ignores the namespace.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

Element = etree._Element

# Elements whose content is not document text: properties, deleted or moved-away runs, field
# codes (their result is in ordinary runs), symbols from symbol fonts.
SKIPPED = frozenset(
    [
        "pPr",
        "rPr",
        "tblPr",
        "trPr",
        "tcPr",
        "sectPr",
        "sdtPr",
        "sdtEndPr",
        "del",
        "moveFrom",
        "delText",
        "instrText",
        "delInstrText",
        "fldData",
        "sym",
    ]
)
# Containers whose children are blocks (paragraphs, tables) in reading order.
BLOCK_CONTAINERS = frozenset({"sdt", "sdtContent", "customXml", "ins", "moveTo", "smartTag"})

_LOCAL_NAMES: dict[str, str] = {}


def local_name(element: Element) -> str:
    """The tag without its namespace ("{…/main}p" -> "p"), cached: tags repeat a lot."""
    tag = element.tag
    if not isinstance(tag, str):  # comments, processing instructions
        return ""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = _LOCAL_NAMES.setdefault(tag, tag.rsplit("}", 1)[-1])
    return name


def attribute(element: Element, name: str) -> str | None:
    for key, value in element.attrib.items():
        if key == name or key.endswith("}" + name):
            return value
    return None


def first_child(element: Element, name: str) -> Element | None:
    for child in element:
        if local_name(child) == name:
            return child
    return None


def collect_runs(element: Element, parts: list[str], boxes: list[Element]) -> None:
    """Append the visible text under ``element`` to ``parts``, in order; text boxes to ``boxes``."""
    for child in element:
        name = local_name(child)
        if not name or name in SKIPPED:
            continue
        if name == "t":
            parts.append(child.text or "")
        elif name in ("tab", "ptab"):
            parts.append("\t")
        elif name in ("br", "cr"):
            parts.append("\n")
        elif name == "noBreakHyphen":
            parts.append("-")
        elif name == "txbxContent":
            boxes.append(child)
        elif name == "AlternateContent":
            branch = first_branch(child)
            if branch is not None:
                collect_runs(branch, parts, boxes)
        else:
            collect_runs(child, parts, boxes)


def first_branch(alternate: Element) -> Element | None:
    """One branch of mc:AlternateContent: Choice and Fallback hold the same text twice."""
    for child in alternate:
        if local_name(child) in ("Choice", "Fallback"):
            return child
    return None


def table_rows(table: Element) -> Iterator[Element]:
    for child in table:
        name = local_name(child)
        if name == "tr":
            properties = first_child(child, "trPr")
            if properties is None or first_child(properties, "del") is None:  # deleted row
                yield child
        elif name in BLOCK_CONTAINERS:
            yield from table_rows(child)


def table_cells(row: Element) -> Iterator[Element]:
    for child in row:
        name = local_name(child)
        if name == "tc":
            if not continues_merge(child):
                yield child
        elif name in BLOCK_CONTAINERS:
            yield from table_cells(child)


def continues_merge(cell: Element) -> bool:
    """A cell covered by the merged cell above (vMerge) or to the left (legacy hMerge)."""
    properties = first_child(cell, "tcPr")
    if properties is None:
        return False
    for name in ("vMerge", "hMerge"):
        merge = first_child(properties, name)
        if merge is not None and attribute(merge, "val") != "restart":
            return True
    return False


def child_value(element: Element, name: str) -> str | None:
    child = first_child(element, name)
    return None if child is None else attribute(child, "val")


def outline_level(properties: Element | None) -> int | None:
    """Word's outline level 0-8 means heading 1-9; 9 is body text."""
    value = None if properties is None else child_value(properties, "outlineLvl")
    if value is None or not value.isdigit() or int(value) > 8:
        return None
    return int(value) + 1
