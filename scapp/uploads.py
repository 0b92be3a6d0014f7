"""Files uploaded through the app: stored by content, held by browser sessions, swept when no longer needed.

Why by content: a corrected file uploaded again under the same name (and, by chance, the same size) must be read
afresh, never confused with the first one. Each upload is stored once under the first 16 hex digits of its SHA-256,
keeping its own name (the readers go by the extension)::

    uploads/<sha256[:16]>/<name>                the bytes, read-only
    uploads/<sha256[:16]>/.scapp-upload.json    name, sha256, size, when, and whether the user chose to keep it
    uploads/.sessions/<session id>.json         which uploads a browser session holds, and when it was last seen

Why sweep: the app holds a lab's unpublished data, so an upload should not outlive its use. Streamlit has no
reliable "session ended" hook, so :func:`sweep` runs when the app starts and every few minutes after, and removes an
upload once all of these hold: no live session holds it (a session is live while the server says so, or was seen
within ``grace_s``, which lets a reload or an app restart pick its files up again), the user did not ask to keep it,
and no run refers to it (a run's training data must stay readable for Explore; deleting the run releases it).

Files put in the uploads folder by hand or by an earlier scapp (not in a ``<sha256[:16]>`` folder) are never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from scapp.errors import ScappError

META = ".scapp-upload.json"
SESSIONS = ".sessions"
GRACE_S = 3600.0
"""How long after a session was last seen its uploads are kept (a reload, a closed laptop lid, an app restart)."""
SWEEP_EVERY_S = 300.0
_DIGEST = re.compile(r"[0-9a-f]{16}")


def uploads_root(runs_root: Path) -> Path:
    """The uploads folder: beside the runs folder (``$SCAPP_RUNS_DIR/../uploads``)."""
    return Path(runs_root).parent / "uploads"


def _safe_name(name: str) -> str:
    """The file name alone (no folders), never empty, never hidden (a leading dot is how the store marks its own
    files)."""
    base = Path(str(name).replace("\\", "/")).name.strip().lstrip(".")
    return base or "upload"


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def store_upload(data: bytes | memoryview, name: str, *, root: Path, session: str | None = None) -> Path:
    """Write uploaded bytes into the store (once per content) and return the file's path.

    The same bytes give the same path; different bytes a different path, whatever the name and size. The file is
    written to a temporary name and renamed, so a half-written file is never read; it is made read-only.
    ``session``: the browser session that uploaded it (it then holds the file, see :func:`sweep`).
    """
    data = memoryview(data)
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(root) / digest[:16]
    dest = folder / _safe_name(name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (dest.is_file() and dest.stat().st_size == data.nbytes):
            tmp = folder / f".{dest.name}.{secrets.token_hex(4)}.part"
            with open(tmp, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        meta = _read_json(folder / META) or {}
        _write_json(folder / META, {"name": dest.name, "sha256": digest, "size": data.nbytes,
                                    "uploaded": meta.get("uploaded", time.time()), "keep": bool(meta.get("keep"))})
    except OSError as e:
        msg = f"Could not store the upload {dest.name} in {folder}: {e.strerror or e}. Free some disk space or " \
              "give the file's path instead."
        raise ScappError(msg) from e
    if session:
        hold(root, session, [dest])
    return dest


def upload_of(path: str | os.PathLike, root: Path) -> Path | None:
    """The store folder of ``path`` when it is an upload in ``root``, else None."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    if len(rel.parts) != 2 or not _DIGEST.fullmatch(rel.parts[0]):
        return None
    return Path(root) / rel.parts[0]


def is_kept(path: str | os.PathLike, root: Path) -> bool:
    """Whether the user chose to keep this upload beyond its session."""
    folder = upload_of(path, root)
    return bool(folder and (_read_json(folder / META) or {}).get("keep"))


def set_keep(path: str | os.PathLike, root: Path, keep: bool) -> None:
    """Keep an upload beyond its session (or let it go with the session again)."""
    folder = upload_of(path, root)
    if folder is None or not folder.is_dir():
        return
    meta = _read_json(folder / META) or {"name": Path(path).name}
    _write_json(folder / META, {**meta, "keep": bool(keep)})


def _session_file(root: Path, session: str) -> Path:
    """A session's record; named by a digest of its id (any id, never a path)."""
    return Path(root) / SESSIONS / f"{hashlib.sha256(session.encode()).hexdigest()[:32]}.json"


def hold(root: Path, session: str, paths: Iterable[str | os.PathLike] = (), *, now: float | None = None) -> None:
    """Note that ``session`` is alive now and holds ``paths`` (uploads; other paths are ignored)."""
    f = _session_file(root, session)
    rec = _read_json(f) or {}
    held = set(rec.get("uploads") or [])
    held |= {folder.name for p in paths if (folder := upload_of(p, root)) is not None}
    f.parent.mkdir(parents=True, exist_ok=True)
    _write_json(f, {"id": session, "seen": time.time() if now is None else now, "uploads": sorted(held)})


def stored_uploads(root: Path) -> list[Path]:
    """Every file in the store (not files placed in the uploads folder by other means), by name."""
    out = []
    if Path(root).is_dir():
        for folder in Path(root).iterdir():
            if folder.is_dir() and _DIGEST.fullmatch(folder.name):
                out += [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(out, key=lambda p: (p.name, str(p)))


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def run_inputs(runs_root: Path) -> set[Path]:
    """Every path a run in ``runs_root`` names in its request, config or data record (training data, pretraining
    files, the files genes were taken from), ensemble members included."""
    from scapp import runs

    out: set[Path] = set()
    root = Path(runs_root)
    if not root.is_dir():
        return out
    for p in root.iterdir():
        if not p.is_dir():
            continue
        store = runs.RunStore(p)
        for s in (store, *store.members()):
            for read in (s.request, s.config, s.data_info):
                try:
                    rec = read()
                except (ScappError, OSError, ValueError):
                    continue
                out |= {Path(v) for v in _strings(rec) if os.sep in v}
    return out


def sweep(root: Path, runs_root: Path, *, is_alive: Callable[[str], bool] = lambda _: False,
          now: float | None = None, grace_s: float = GRACE_S) -> list[Path]:
    """Remove the uploads nobody needs any more (see the module text); returns the folders removed.

    ``is_alive(session_id)``: whether the server still has that session (a browser tab open on the app).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    live: set[str] = set()
    held: set[str] = set()
    sessions = root / SESSIONS
    for f in sorted(sessions.glob("*.json")) if sessions.is_dir() else []:
        rec = _read_json(f) or {}
        sid = str(rec.get("id") or "")
        seen = float(rec.get("seen") or f.stat().st_mtime)
        if is_alive(sid) or now - seen < grace_s:
            live.add(sid)
            held |= set(rec.get("uploads") or [])
        else:
            f.unlink(missing_ok=True)
    used = {str(p.resolve()) for p in run_inputs(runs_root)}
    removed = []
    for folder in root.iterdir():
        if not (folder.is_dir() and _DIGEST.fullmatch(folder.name)) or folder.name in held:
            continue
        meta = _read_json(folder / META) or {}
        if meta.get("keep") or now - float(meta.get("uploaded") or folder.stat().st_mtime) < grace_s:
            continue
        prefix = str(folder.resolve()) + os.sep
        if any(u.startswith(prefix) for u in used):
            continue
        shutil.rmtree(folder, ignore_errors=True)  # the files are read-only, their folder is not: rmtree works
        removed.append(folder)
    return removed
