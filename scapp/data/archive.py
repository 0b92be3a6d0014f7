"""Limits on what scapp inflates from a zip, tar.gz or gzip file, checked before the bytes are written.

A 2 MB zip can hold a ``matrix.mtx`` of 2 GiB of zeros (deflate reaches about 1,030:1 on repeated bytes), and the
app accepts uploads up to 1 GB: without limits one upload can fill the disk with extracted files, or the memory with
a decompressed stream. Real single-cell files are nowhere near that ratio. Measured on PBMC 4k (33,694 genes, 3.8%
non-zeros) and PBMC 3k: a 10x ``matrix.mtx`` deflates about 3.6:1, a dense count CSV 7:1 to 33:1, and even a dense
CSV with only 0.4% non-zeros about 150:1. So scapp refuses, before extracting or while streaming:

* a member (or gzip stream) inflating to more than :data:`MAX_RATIO` times its compressed size, once it is larger
  than :data:`RATIO_FLOOR` (tiny files of repeated text compress well and are harmless);
* a member larger than :data:`MAX_MEMBER_BYTES`, or archive members together larger than :data:`MAX_TOTAL_BYTES`
  (what extraction would write to the temporary folder). A Cell Ranger v3 ``filtered_feature_bc_matrix`` keeps its
  ``matrix.mtx.gz`` compressed inside a zip, about 5-8 GB for a million cells, so it fits; a zip of an
  uncompressed million-cell ``matrix.mtx`` (30-40 GB) does not;
* extraction needing more than the free space of the temporary folder (less a 1 GiB margin);
* a gzip stream inflating past :data:`MAX_GZIP_BYTES` (it is parsed in memory, not written).

Each refusal is an :class:`~scapp.errors.InputError` that names the file, the sizes and the way round it:
extract or decompress the file yourself and load the result (plain files and folders are not capped).
The caps are module constants so a test (or a lab with bigger files) can change them.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO

from scapp.errors import InputError

__all__ = [
    "MAX_GZIP_BYTES",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "RATIO_FLOOR",
    "check_free",
    "check_member",
    "check_members",
    "check_total",
    "copy_member",
    "fmt_bytes",
    "one_line",
    "open_gzip",
    "why",
]

MiB = 1 << 20
GiB = 1 << 30
MAX_RATIO = 200
RATIO_FLOOR = 32 * MiB
MAX_MEMBER_BYTES = 16 * GiB
MAX_TOTAL_BYTES = 16 * GiB
MAX_GZIP_BYTES = 64 * GiB
FREE_MARGIN = 1 * GiB
_CHUNK = 1 * MiB


def one_line(err: BaseException, limit: int = 300) -> str:
    """A library's error text on one line (messages are printed as one ``scapp: error:`` line), shortened."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def why(err: BaseException) -> str:
    """``"ErrorType: text"`` of a library error, for the parenthesis of a message."""
    return f"{type(err).__name__}: {one_line(err)}"


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (decimal units, as file managers show them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} TB"  # pragma: no cover


def _ratio_msg(what: str, where: str, packed: int, size: int, *, so_far: bool = False) -> str:
    ratio = size / max(packed, 1)
    how = (
        f"its first {fmt_bytes(packed)} already inflate to {fmt_bytes(size)}" if so_far
        else f"{fmt_bytes(packed)} would inflate to {fmt_bytes(size)}"
    )
    return (
        f"Refusing to {what} '{where}': {how}, a compression ratio of {ratio:,.0f}:1. Count files compress "
        f"about 4:1 (matrix.mtx) to 30:1 (dense CSV); above {MAX_RATIO}:1 this looks like a zip bomb, not data."
    )


_FIX = "If the archive is genuine, extract it yourself and load the folder."


def check_member(archive: str, name: str, size: int, packed: int | None) -> None:
    """Refuse one member by its declared ``size`` (and compressed size ``packed``, where the format gives it)."""
    if size > MAX_MEMBER_BYTES:
        raise InputError(
            f"Refusing to extract '{name}' from '{archive}': it would be {fmt_bytes(size)}, more than scapp "
            f"extracts from an archive ({fmt_bytes(MAX_MEMBER_BYTES)} a file). {_FIX}"
        )
    if packed is not None and size > RATIO_FLOOR and size > MAX_RATIO * packed:
        raise InputError(_ratio_msg("extract", f"{name}' from '{archive}", packed, size) + f" {_FIX}")


def check_total(archive: str, total: int, archive_bytes: int, biggest: str) -> None:
    """Refuse members that together are too large, or inflate too far from the archive's own size."""
    if total > MAX_TOTAL_BYTES:
        raise InputError(
            f"Refusing to extract '{archive}': its files would take {fmt_bytes(total)}, more than scapp extracts "
            f"from an archive ({fmt_bytes(MAX_TOTAL_BYTES)}). {_FIX}"
        )
    if total > RATIO_FLOOR and total > MAX_RATIO * max(archive_bytes, 1):
        raise InputError(_ratio_msg("extract", f"{biggest}' from '{archive}", archive_bytes, total) + f" {_FIX}")


def check_free(archive: str, total: int, tmp_dir: str | os.PathLike | None = None) -> None:
    """Refuse an extraction the temporary folder has no room for (keeping a margin for everything else)."""
    where = Path(tmp_dir or tempfile.gettempdir())
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return
    if total > free - FREE_MARGIN:
        raise InputError(
            f"Not enough disk space to extract '{archive}': its files take {fmt_bytes(total)} but the temporary "
            f"folder {where} has {fmt_bytes(max(free, 0))} free. Free some space or set TMPDIR to a larger disk, "
            "or extract it yourself and load the folder."
        )


def check_members(archive: str, members: list[tuple[str, int, int | None]], *, archive_bytes: int,
                  tmp_dir: str | os.PathLike | None = None) -> None:
    """Refuse to extract ``members`` ``[(name, declared size, compressed size or None)]`` of ``archive``.

    Sizes are the ones the archive declares (read from its directory: nothing is inflated). Members without
    their own compressed size (tar) are judged by the archive's ratio as a whole. ``tmp_dir`` (default: the
    temporary folder) must have room for all of them.
    """
    total = 0
    for name, size, packed in members:
        check_member(archive, name, size, packed)
        total += size
    if members:
        check_total(archive, total, archive_bytes, max(members, key=lambda m: m[1])[0])
    check_free(archive, total, tmp_dir)


def copy_member(src: BinaryIO, dst: BinaryIO, *, declared: int, name: str, archive: str) -> int:
    """Copy one archive member, refusing to write more than it declared (a forged directory entry)."""
    written = 0
    while chunk := src.read(_CHUNK):
        written += len(chunk)
        if written > declared:
            raise InputError(
                f"Refusing to extract '{name}' from '{archive}': it holds more than the {fmt_bytes(declared)} its "
                "directory declares, so the archive is corrupt or crafted. Create the archive again."
            )
        dst.write(chunk)
    return written


class _GuardedGzip(io.RawIOBase):
    """A gzip stream that stops with an InputError when it inflates too far, or is truncated or corrupt."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._raw = open(path, "rb")  # noqa: SIM115 (closed in close())
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="rb")
        self._out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            n = self._gz.readinto(b)
        except EOFError as err:
            raise InputError(
                f"Could not read '{self._path.name}': the gzip data ends early, so the file is truncated "
                f"({one_line(err)}). Copy or download it again."
            ) from err
        except (gzip.BadGzipFile, zlib.error, OSError) as err:
            raise InputError(
                f"Could not read '{self._path.name}': it is not valid gzip data, or it is corrupt "
                f"({why(err)}). Compress it again, or load the uncompressed file."
            ) from err
        self._out += n
        if self._out > RATIO_FLOOR:
            packed = max(self._raw.tell(), 1)
            if self._out > MAX_RATIO * packed:
                raise InputError(
                    _ratio_msg("decompress", self._path.name, packed, self._out, so_far=True)
                    + " If the file is genuine, decompress it yourself (gunzip) and load the result."
                )
            if self._out > MAX_GZIP_BYTES:
                raise InputError(
                    f"Refusing to decompress '{self._path.name}': it inflates past {fmt_bytes(MAX_GZIP_BYTES)}, "
                    "more than scapp reads from one gzip file. Decompress it yourself and load the result."
                )
        return n

    def close(self) -> None:
        if not self.closed:
            self._gz.close()
            self._raw.close()
        super().close()


def open_gzip(path: str | os.PathLike, mode: str = "rb", *, encoding: str = "utf-8", errors: str = "strict"):
    """Open a gzip file for reading through the ratio and size limits (binary ``"rb"`` or text ``"rt"``)."""
    raw = io.BufferedReader(_GuardedGzip(Path(path)), buffer_size=_CHUNK)
    if mode == "rb":
        return raw
    if mode == "rt":
        return io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline=None)
    raise ValueError(f"mode must be 'rb' or 'rt', not {mode!r}")
