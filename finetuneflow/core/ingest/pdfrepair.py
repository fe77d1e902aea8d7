"""A last-resort repair for PDFs whose cross-reference table or startxref is broken.

pypdf gives up on some of these ("startxref not found", "Could not read Null object") although
every object is intact. Appending a freshly computed xref section and trailer, as an
incremental update would, lets it read them. Works for classic (uncompressed xref) files.
"""

from __future__ import annotations

import re

# "12 0 obj" at the start of an object; the look-behind avoids matching inside a number.
_OBJECT_HEADER = re.compile(rb"(?<![0-9])(\d{1,10})[ \t\r\n]+(\d{1,5})[ \t\r\n]+obj\b")
_ROOT = re.compile(rb"/Root\s+(\d+)\s+(\d+)\s+R")
_INFO = re.compile(rb"/Info\s+\d+\s+\d+\s+R")
_ENCRYPT = re.compile(rb"/Encrypt\s+\d+\s+\d+\s+R")
_FILE_ID = re.compile(rb"/ID\s*\[[^\]]*\]")
_CATALOG = re.compile(rb"/Type\s*/Catalog\b")
_MAX_OBJECTS = 1_000_000


def rebuild_xref(data: bytes) -> bytes | None:
    """``data`` with a new xref section appended, or None when no catalog can be found."""
    offsets = _object_offsets(data)
    if not offsets or max(offsets) >= _MAX_OBJECTS:
        return None
    root = _root_reference(data, offsets)
    if root is None:
        return None
    size = max(offsets) + 1
    body = data if data.endswith(b"\n") else data + b"\n"
    rows = [b"0000000000 65535 f\r\n"]
    for number in range(1, size):
        if number in offsets:
            offset, generation = offsets[number]
            rows.append(b"%010d %05d n\r\n" % (offset, generation))
        else:
            rows.append(b"0000000000 65535 f\r\n")
    trailer_keys = b" ".join([b"/Size %d" % size, root, *_copied_trailer_keys(data)])
    return (
        body
        + b"xref\n0 %d\n" % size
        + b"".join(rows)
        + b"trailer\n<< "
        + trailer_keys
        + b" >>\n"
        + b"startxref\n%d\n%%%%EOF\n" % len(body)
    )


def _object_offsets(data: bytes) -> dict[int, tuple[int, int]]:
    """Object number -> (offset, generation); a later definition replaces an earlier one."""
    return {
        int(match.group(1)): (match.start(), int(match.group(2)))
        for match in _OBJECT_HEADER.finditer(data)
    }


def _root_reference(data: bytes, offsets: dict[int, tuple[int, int]]) -> bytes | None:
    roots = _ROOT.findall(data)
    if roots:
        number, generation = roots[-1]
        return b"/Root %s %s R" % (number, generation)
    catalog = _CATALOG.search(data)
    if catalog is None:
        return None
    # The catalog is the object whose header comes last before the /Catalog key.
    owner = max(
        (item for item in offsets.items() if item[1][0] < catalog.start()),
        key=lambda item: item[1][0],
        default=None,
    )
    if owner is None:
        return None
    number, (_, generation) = owner
    return b"/Root %d %d R" % (number, generation)


def _copied_trailer_keys(data: bytes) -> list[bytes]:
    """/Info, /Encrypt and /ID from the old trailers: without them an encrypted file is lost."""
    keys = []
    for pattern in (_INFO, _ENCRYPT, _FILE_ID):
        found = pattern.findall(data)
        if found:
            keys.append(found[-1])
    return keys
