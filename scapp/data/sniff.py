"""What a file really is, from its first bytes: format, text encoding and column separator.

File names lie: an ``.h5ad`` renamed ``.csv`` to get past an upload filter, a CSV saved by Excel on Windows
(cp1252) or in a European locale (``;`` between columns, ``,`` as decimal mark), Excel's "Unicode text" (UTF-16,
tabs). Reading by extension alone turns these into a ``UnicodeDecodeError`` or a table of "0 columns"; looking at
the bytes lets the reader read what it can and name what it cannot, with the fix.
"""

from __future__ import annotations

import csv
import gzip
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TextFormat", "content_kind", "describe_kind", "separator_name", "sniff_text"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (HDF5_MAGIC, "hdf5"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PAR1", "parquet"),
    (b"%PDF", "pdf"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "xls"),
    (b"RDX2\n", "rdata"),
    (b"RDX3\n", "rdata"),
)
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
HEAD_BYTES = 1 << 20  # enough for ~20 lines of a 30,000-gene header

# What each kind is, in words, for messages.
_WORDS = {
    "hdf5": "an HDF5 file",
    "zip": "a zip archive",
    "xlsx": "an Excel workbook (.xlsx)",
    "xls": "an old Excel workbook (.xls)",
    "gzip": "gzip-compressed",
    "gzip-text": "gzip-compressed text",
    "bzip2": "bzip2-compressed",
    "xz": "xz-compressed",
    "7z": "a 7-Zip archive",
    "zstd": "zstd-compressed",
    "parquet": "a Parquet table",
    "pdf": "a PDF document",
    "rdata": "an R data file",
    "text": "a text file",
}


def describe_kind(kind: str) -> str:
    return _WORDS.get(kind, kind)


def _hdf5_at_userblock(head: bytes) -> bool:
    # HDF5 may start after a user block of 512, 1024, 2048, ... bytes.
    off = 512
    while off + 8 <= len(head):
        if head[off:off + 8] == HDF5_MAGIC:
            return True
        off *= 2
    return False


def _looks_like_text(b: bytes) -> bool:
    if not b:
        return False
    for bom, enc in _BOMS:
        if b.startswith(bom):
            return True
    if b"\x00" in b:
        return False
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start >= len(b) - 4:  # a character cut at the end of the sample
            s = b[: err.start].decode("utf-8")
        else:
            s = b.decode("cp1252", errors="replace")
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in s)
    return printable >= 0.95 * len(s)


def content_kind(path: str | Path) -> str | None:
    """``"hdf5"``, ``"zip"``, ``"xlsx"``, ``"gzip-text"``, ``"gzip"``, ``"text"``, another name from the magic
    bytes, or None when the first bytes say nothing (random or unknown binary)."""
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(4096)
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    if kind is None and len(head) >= 4096 and _hdf5_at_userblock(head):
        kind = "hdf5"
    if kind == "zip":
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
            if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
                return "xlsx"
        except Exception:  # noqa: BLE001, S110 (a damaged zip is still a zip; its reader says what is wrong)
            pass
        return "zip"
    if kind == "gzip":
        try:
            with gzip.open(p, "rb") as g:
                inner = g.read(4096)
        except Exception:  # noqa: BLE001 (damaged gzip data: still gzip; its reader says what is wrong)
            return "gzip"
        return "gzip-text" if _looks_like_text(inner) else "gzip"
    if kind is not None:
        return kind
    return "text" if _looks_like_text(head) else None


SEPARATORS = ("\t", ",", ";", "|")
_SEP_NAMES = {"\t": "tabs", ",": "commas", ";": "';'", "|": "'|'", r"\s+": "spaces"}


def separator_name(sep: str) -> str:
    return _SEP_NAMES.get(sep, repr(sep))


@dataclass
class TextFormat:
    """How to parse a text table: separator, decimal mark and the encoding to try first."""

    sep: str
    sep_reason: str
    decimal: str = "."
    encoding: str = "utf-8"


def _fields(line: str, sep: str) -> int:
    if sep == r"\s+":
        return len(line.split())
    return len(next(csv.reader([line], delimiter=sep)))


def _consistent(lines: list[str], sep: str) -> int:
    """Number of columns if every data line splits into the same number (>= 2) with ``sep``, else 0.

    The header may have one field fewer (R's write.table leaves the row-name column unnamed).
    """
    try:
        counts = [_fields(ln, sep) for ln in lines]
    except csv.Error:
        return 0
    data = counts[1:] or counts
    if len(set(data)) != 1 or data[0] < 2:
        return 0
    return data[0] if counts[0] in (data[0], data[0] - 1) else 0


_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")
_DECIMAL_POINT = re.compile(r"^-?\d*\.\d+(?:[eE][-+]?\d+)?$")


def sniff_text(head: bytes, default_sep: str) -> TextFormat:
    """Separator, decimal mark and encoding of a table from its first bytes (not the whole file).

    ``default_sep`` (from the extension) wins whenever it splits the lines consistently; otherwise the first of
    tab, comma, ';', '|' and runs of spaces that does.
    """
    encoding = "utf-8"
    for bom, enc in _BOMS:
        if head.startswith(bom):
            encoding = enc
            break
    text = head.decode(encoding, errors="replace")
    lines = text.splitlines()
    if len(head) >= HEAD_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line is cut by the sample
    lines = [ln for ln in lines if ln.strip() and not ln.startswith("#")][:20]
    if not lines:
        return TextFormat(default_sep, "no lines to look at", encoding=encoding)
    order = [default_sep] + [s for s in (*SEPARATORS, r"\s+") if s != default_sep]
    counts = {sep: _consistent(lines, sep) for sep in order}
    best = max(counts.values())
    if not best:
        return TextFormat(default_sep, "no separator splits the lines evenly", encoding=encoding)
    # The most columns wins ('c1;1,5;2' splits evenly at ',' too); ties go to the extension's separator.
    sep = next(s for s in order if counts[s] == best)
    reason = f"every line splits into {best} columns at {separator_name(sep)}"
    decimal = "."
    if sep == ";":
        vals = [v for ln in lines[1:] for v in next(csv.reader([ln], delimiter=";"))[1:]]
        if any(_DECIMAL_COMMA.match(v) for v in vals) and not any(_DECIMAL_POINT.match(v) for v in vals):
            decimal = ","
    return TextFormat(sep, reason, decimal=decimal, encoding=encoding)
