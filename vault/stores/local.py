"""The ``file://`` store: objects as files under a root folder (docs/format.md §7 Stores).

An object lives at ``<root>/<key>``. A write goes to a temp file in the same folder, is fsynced,
renamed over the final name and the folder is fsynced (vault.fsutil.atomic_write), so a reader or a
crash sees the old object or the new one, never a torn one. Temp files a crash leaves behind are
never listed. Files are created 0600 and folders 0700.

The store never follows a symlink out of its root: the resolved path of every object must lie under
the resolved root. The check runs before each access; someone who can race symlinks into the store
folder can already write the objects themselves, so the check is against mistakes and hostile
layouts at rest, not against a concurrent local attacker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from vault.errors import N_, NotFoundError, StoreError

from .base import MAX_KEY_LENGTH, TEMP_NAME, is_listable_name, validate_key, validate_prefix

FILE_MODE = 0o600
DIR_MODE = 0o700
_COPY_BUFFER = 1 << 20
_NOT_THERE = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
# Imports kept out of module level on purpose: deposit workers import this module, and `secrets`,
# `shutil` and vault.fsutil (which pull in hashlib and OpenSSL) would cost each one megabytes.
"""Errors meaning "no object under that key" (a file or folder is in the way, or nothing is)."""

FILE_URL_HINT = N_("use file:///absolute/path or a plain folder path")


def parse_file_url(url: str) -> Path:
    """The root folder a ``file:`` URL names; ``StoreError`` if it is not a local absolute path."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise StoreError(N_("a file store URL must be file:///absolute/path"), hint=FILE_URL_HINT)
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise StoreError(N_("a file store URL must be file:///absolute/path"), hint=FILE_URL_HINT)
    return Path(path)


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def _load_libc() -> ctypes.CDLL | None:
    # The symbols of the running process include libc's; ctypes.util.find_library would work too
    # but imports subprocess, shutil and tempfile into every worker.
    for name in (None, "libc.so.6"):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:  # pragma: no cover
            continue
        if hasattr(lib, "syncfs"):
            return lib
    return None  # pragma: no cover - non-glibc systems fall back to os.sync()


_LIBC = _load_libc()

_SYNC_FILE_RANGE_WRITE = 2
if _LIBC is not None and hasattr(_LIBC, "sync_file_range"):
    _LIBC.sync_file_range.argtypes = [
        ctypes.c_int,
        ctypes.c_longlong,
        ctypes.c_longlong,
        ctypes.c_uint,
    ]


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Ask the kernel to start writing these pages now, without waiting (Linux; else nothing).

    Spreads disk writes over the run instead of leaving them all to one final fsync or syncfs;
    it is a hint, never a durability guarantee.
    """
    if _LIBC is not None and hasattr(_LIBC, "sync_file_range"):
        _LIBC.sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def sync_filesystem(folder: Path) -> None:
    """Make every write on the file system of ``folder`` durable: one ``syncfs`` (Linux), which
    costs about what one fsync does, in place of an fsync per file (else ``os.sync()``)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _LIBC is not None and _LIBC.syncfs(fd) == 0:
            return
        os.sync()
    finally:
        os.close(fd)


class FileStore:
    """Objects as files under ``root`` (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        # abspath, not resolve: keep the folder the user named; symlinks are checked per access.
        self.root = Path(os.path.abspath(root))
        self.url = self.root.as_uri()
        self._real_root: str | None = None
        self._real_dirs: dict[str, str] = {}

    check_by_listing = False
    """A deposit asks ``has`` per chunk: a local stat costs less than reading every folder."""

    def __repr__(self) -> str:
        return f"FileStore({self.url!r})"

    # -- paths ---------------------------------------------------------------------------------

    def _inside(self, path: Path, what: str) -> Path:
        # realpath costs a system call per component; a deposit asks for ~1000 objects per GiB
        # in ~256 folders, so the resolved root and folders are remembered (the check guards
        # against layouts at rest, see the module docstring) and only the last component is
        # looked at each time.
        real_root = self._real_root or os.path.realpath(self.root)
        if self._real_root is None and os.path.isdir(real_root):
            self._real_root = real_root
        folder = str(path.parent)
        real_folder = self._real_dirs.get(folder)
        if real_folder is None:
            real_folder = os.path.realpath(folder)
            if os.path.isdir(real_folder) and len(self._real_dirs) < 4096:
                self._real_dirs[folder] = real_folder
        real = os.path.join(real_folder, path.name)
        try:
            if stat.S_ISLNK(os.lstat(real).st_mode):
                real = os.path.realpath(real)
        except OSError:
            pass  # nothing there (yet): the folder check is what matters
        if os.path.commonpath([real_root, real]) != real_root:
            raise StoreError(
                N_("refusing to follow a symlink out of store %(url)s: %(what)s"),
                hint=N_("remove the symlink from the store folder"),
                url=self.url,
                what=what,
            )
        return path

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self._inside(self.root.joinpath(*key.split("/")), key)

    def _make_dirs(self, folder: Path, durable: bool = True) -> None:
        missing: list[Path] = []
        while not folder.is_dir():
            missing.append(folder)
            if folder.parent == folder:
                break
            folder = folder.parent
        for d in reversed(missing):
            try:
                os.mkdir(d, DIR_MODE)  # one level at a time: mkdir -p would ignore the mode
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            if durable:
                _fsync_dir(d.parent)  # the new folder's entry must be durable before objects in it

    def _write_error(self, key: str, exc: OSError) -> StoreError:
        return StoreError(
            N_("cannot write object %(key)s to store %(url)s: %(reason)s"),
            hint=N_("check that the store folder exists or can be created, and is writable by you"),
            key=key,
            url=self.url,
            reason=_reason(exc),
        )

    def _not_found(self, key: str) -> NotFoundError:
        return NotFoundError(N_("store %(url)s has no object %(key)s"), url=self.url, key=key)

    # -- Store ---------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        path = self._path(key)
        try:
            self._make_dirs(path.parent, durable)
            # durable=False still fsyncs the file before the rename (a visible object is never
            # torn); only the folder entries wait for sync(), one syncfs for a whole batch.
            from vault.fsutil import atomic_write

            atomic_write(path, data, mode=FILE_MODE, durable=True, sync_dir=durable)
        except OSError as exc:
            raise self._write_error(key, exc) from exc

    def sync(self) -> None:
        """Make every earlier put durable, whichever process made it (syncfs on the store)."""
        if not self.root.is_dir():
            return
        sync_filesystem(self.root)

    def stage(self, key: str, data: bytes) -> str:
        """Write ``data`` beside the object under a temp name, with no fsync; return that name.

        Writeback is started at once (``sync_file_range``), so that the ``syncfs`` of ``commit``
        finds little left to write. New folders are made durable by that ``syncfs`` too.
        """
        out = self.open_stage(key)
        try:
            out.write(data)
        except BaseException:
            out.abort()
            raise
        return out.finish()

    def open_stage(self, key: str) -> StagedFile:
        """Like ``stage``, written piece by piece: a deposit worker streams an object out of the
        encryptor, so it never holds the whole ciphertext (memory, and one copy fewer)."""
        path = self._path(key)
        try:
            self._make_dirs(path.parent, durable=False)
            tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except OSError as exc:
            raise self._write_error(key, exc) from exc
        return StagedFile(self, key, tmp, fd)

    def commit(self, staged: list[tuple[str, str]]) -> None:
        if not staged:
            return
        # 1. the staged bytes (and any new folder) durable; 2. the names; 3. the names durable.
        # A crash before 2 leaves temp files, which are never listed; after 2, only whole objects.
        self.sync()
        for key, name in staged:
            final = self._path(key)
            if not TEMP_NAME.fullmatch(name) or not name.startswith(f".{final.name}."):
                raise ValueError(f"not a staged name for {key}: {name!r}")
            tmp = final.with_name(name)
            try:
                if os.path.lexists(final):
                    os.unlink(tmp)  # immutable: the object already there stays
                else:
                    os.rename(tmp, final)
            except OSError as exc:
                raise self._write_error(key, exc) from exc
        self.sync()

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        # The source is a local file our own code made: an OSError opening it is not the store's.
        with open(path, "rb") as src:
            try:
                self._make_dirs(dest.parent)
                _atomic_copy(src, dest, durable=True)
            except OSError as exc:
                raise self._write_error(key, exc) from exc

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                if max_bytes is not None and os.fstat(fh.fileno()).st_size > max_bytes:
                    raise StoreError(
                        N_("object %(key)s in store %(url)s is larger than %(max_bytes)s bytes"),
                        key=key,
                        url=self.url,
                        max_bytes=max_bytes,
                    )
                return fh.read()
        except _NOT_THERE:
            raise self._not_found(key) from None
        except OSError as exc:
            raise StoreError(
                N_("cannot read object %(key)s from store %(url)s: %(reason)s"),
                key=key,
                url=self.url,
                reason=_reason(exc),
            ) from exc

    def get_to_file(self, key: str, path: Path) -> None:
        src_path = self._path(key)
        try:
            src = open(src_path, "rb")  # noqa: SIM115 - closed below; errors mapped separately
        except _NOT_THERE:
            raise self._not_found(key) from None
        except OSError as exc:
            raise StoreError(
                N_("cannot read object %(key)s from store %(url)s: %(reason)s"),
                key=key,
                url=self.url,
                reason=_reason(exc),
            ) from exc
        with src:
            try:
                # A download is a working copy: atomic, but the caller decides about fsync.
                _atomic_copy(src, Path(path), durable=False)
            except OSError as exc:
                raise StoreError(
                    N_("cannot write %(path)s while fetching %(key)s from %(url)s: %(reason)s"),
                    path=path,
                    key=key,
                    url=self.url,
                    reason=_reason(exc),
                ) from exc

    def has(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        path = self._path(key)
        try:
            st = path.stat()
        except _NOT_THERE:
            return None
        except OSError as exc:
            raise StoreError(
                N_("cannot stat object %(key)s in store %(url)s: %(reason)s"),
                key=key,
                url=self.url,
                reason=_reason(exc),
            ) from exc
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def list(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        start = self._inside(self.root / prefix, prefix) if prefix else self.root
        return self._walk(str(start), prefix)

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``list`` with each object's size (a key removed meanwhile is left out)."""
        for key in self.list(prefix):
            size = self.size(key)
            if size is not None:
                yield key, size

    def _walk(self, folder: str, key_prefix: str) -> Iterator[str]:
        try:
            with os.scandir(folder) as it:  # read fully, so no fd outlives an abandoned iterator
                entries = list(it)
        except _NOT_THERE:
            return
        except OSError as exc:
            raise StoreError(
                N_("cannot list store %(url)s: %(reason)s"), url=self.url, reason=_reason(exc)
            ) from exc
        # Sort as full keys sort: a folder 'a' holds keys 'a/...', which sort after 'a.b' and 'a-b'.
        # Symlinks are not followed and temp files, hidden junk or odd names are not keys.
        items: list[tuple[str, bool]] = []
        for entry in entries:
            if not is_listable_name(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                items.append((entry.name + "/", True))
            elif entry.is_file(follow_symlinks=False):
                items.append((entry.name, False))
        for name, is_dir in sorted(items):
            key = key_prefix + name
            if is_dir:
                yield from self._walk(os.path.join(folder, name[:-1]), key)
            elif len(key) <= MAX_KEY_LENGTH:
                yield key

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
            _fsync_dir(path.parent)
        except _NOT_THERE:
            return
        except OSError as exc:
            raise StoreError(
                N_("cannot delete object %(key)s from store %(url)s: %(reason)s"),
                key=key,
                url=self.url,
                reason=_reason(exc),
            ) from exc


class StagedFile:
    """An object being staged in a ``FileStore`` (``open_stage``): ``write`` pieces, then
    ``finish`` (the token for ``commit``) or ``abort`` (the temp file is removed)."""

    def __init__(self, store: FileStore, key: str, tmp: Path, fd: int) -> None:
        self._store, self._key, self._tmp, self._fd = store, key, tmp, fd
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        n = len(view)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.abort()
            raise self._store._write_error(self._key, exc) from exc
        self.size += n
        return n

    def finish(self) -> str:
        try:
            start_writeback(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
        return self._tmp.name

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


def _fsync_dir(path: Path) -> None:
    from vault.fsutil import fsync_dir

    fsync_dir(path)


def _atomic_copy(src: BinaryIO, dest: Path, *, durable: bool) -> None:
    """Stream ``src`` into ``dest`` as vault.fsutil.atomic_write writes bytes (same temp name)."""
    import shutil

    tmp = dest.with_name(f".{dest.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, _COPY_BUFFER)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(dest.parent)
