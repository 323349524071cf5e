"""The exchange account's folders (Maildir style): depot/tmp → depot/new in, retours/ out."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from balise.adapters.durable import fsync_dir
from balise.domain.codes import DepotCode
from balise.domain.errors import UnreadableFileError, ValidationError, os_error_words

FOLDERS = ("depot/tmp", "depot/new", "retours", "sauvegardes")
# Where a dropped file the box does not take is moved, whole and untouched, for the practice
# software to see (and remove); made by the appliance (tmpfiles), else by the box if it may.
ASIDE = "depot/ecartes"
# Where it may not (an older appliance, or a folder it may not move out of depot/new): renamed in
# place with this prefix, which intake never takes.
ASIDE_IN_PLACE = ".ecarte-"
# File names made from a dropped name stay far below NAME_MAX (255 bytes) with their suffixes.
NAME_BYTES = 200
READ_BLOCK = 1024 * 1024
# What the box publishes under retours/ is read by the exchange account's group (the folder's,
# through its set-group-ID bit), written by the box alone.
PUBLISHED_MODE = 0o640
# A read that fails with one of these is the file's fault (or its owner's), not the box's.
_UNREADABLE = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EIO,
        errno.ENXIO,
        errno.ENODEV,
        errno.EISDIR,
        errno.EINVAL,
        errno.ETXTBSY,
        errno.EOPNOTSUPP,
        errno.EAGAIN,
    }
)


def bounded_name(name: str, limit: int = NAME_BYTES) -> str:
    """``name`` cut to at most ``limit`` bytes on disk (a cut character stays a valid name)."""
    raw = os.fsencode(name)
    return name if len(raw) <= limit else os.fsdecode(raw[:limit])


def _unreadable(exc: OSError) -> UnreadableFileError | None:
    if exc.errno == errno.ELOOP:
        return UnreadableFileError(
            "lien symbolique : jamais suivi",
            "symbolic link: never followed",
            code=DepotCode.DEPOT_SYMLINK,
        )
    if exc.errno in _UNREADABLE:
        fr, en = os_error_words(exc)
        return UnreadableFileError(
            f"fichier illisible par la boîte ({fr}) : droits du fichier ?",
            f"file unreadable by the box ({en}): file permissions?",
            code=DepotCode.DEPOT_UNREADABLE,
        )
    return None


def _not_a_file(mode: int) -> UnreadableFileError:
    kind_fr, kind_en = "objet spécial", "special object"
    if stat.S_ISDIR(mode):
        kind_fr, kind_en = "dossier", "folder"
    elif stat.S_ISFIFO(mode):
        kind_fr, kind_en = "tube nommé", "named pipe"
    elif stat.S_ISSOCK(mode):
        kind_fr, kind_en = "socket", "socket"
    return UnreadableFileError(
        f"pas un fichier ordinaire ({kind_fr}) : jamais ouvert",
        f"not a regular file ({kind_en}): never opened",
        code=DepotCode.DEPOT_NOT_A_FILE,
    )


class ExchangeFolders:
    """Files the practice software drops, and what Balise publishes back, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in FOLDERS:
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.new = root / "depot" / "new"
        self.retours = root / "retours"
        self._made: set[Path] = {self.retours}

    def pending(self) -> list[str]:
        """Every entry in depot/new (files, but also links, folders, pipes: intake says what
        each is), oldest first; depot/tmp is never read (files being written)."""
        dated: list[tuple[int, str]] = []
        with os.scandir(self.new) as entries:
            for entry in entries:
                if entry.name.startswith(ASIDE_IN_PLACE):
                    continue
                try:
                    dated.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
                except FileNotFoundError:
                    continue  # taken meanwhile
        dated.sort()
        return [name for _, name in dated]

    def read(self, name: str, limit: int) -> tuple[bytes, int]:
        """At most ``limit`` bytes of the file, and its real size (never a whole huge file).

        Raises UnreadableFileError for what intake must set aside: a symbolic link (never
        followed), anything but a regular file (never read: a pipe would block), a file the box
        may not open or whose read fails. Other errors are the box's own and propagate."""
        path = self._inside(self.new, name)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                # A folder (or pipe) the box may not open is still no file: said as such,
                # whatever its mode (lstat needs no right on the entry itself).
                try:
                    mode = os.lstat(path).st_mode
                except OSError:
                    mode = stat.S_IFREG
                if not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
                    raise _not_a_file(mode) from exc
            refused = _unreadable(exc)
            if refused is None:
                raise
            raise refused from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _not_a_file(info.st_mode)
            blocks: list[bytes] = []
            remaining = limit
            while remaining > 0:
                block = os.read(fd, min(remaining, READ_BLOCK))
                if not block:
                    break
                blocks.append(block)
                remaining -= len(block)
            return b"".join(blocks), info.st_size
        except OSError as exc:
            refused = _unreadable(exc)
            if refused is None:
                raise
            raise refused from exc
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        self._inside(self.new, name).unlink(missing_ok=True)

    def set_aside(self, name: str) -> str:
        """Move the entry ``name`` out of depot/new, whole and as it is (a link stays a link,
        never followed), to depot/ecartes/; returns where it went, relative to the exchange
        root. Where the box may not move it there, it is renamed in depot/new with a prefix
        intake never takes. Never deletes anything."""
        source = self._inside(self.new, name)
        aside = self.root / ASIDE
        try:
            if not aside.is_dir():
                aside.mkdir()
                aside.chmod(0o2770)
            target = _free(aside, name)
            os.rename(source, target)
        except OSError as exc:
            # A folder moved to another parent needs write access to itself (its ".." entry);
            # an appliance without depot/ecartes does not let the box make it.
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EXDEV):
                raise
            target = _free(self.new, ASIDE_IN_PLACE + name)
            os.rename(source, target)
            fsync_dir(self.new)
            return f"depot/new/{target.name}"
        fsync_dir(aside)
        fsync_dir(self.new)
        return f"{ASIDE}/{target.name}"

    def publish(self, relpath: str, data: bytes, *, durable: bool = True) -> None:
        """Write under retours/ through a temporary name, then rename (never half a file).

        ``durable``: fsync the file and its folder now; callers publishing many files pass False
        and call :meth:`sync` once before they record the publication.
        """
        target = self._inside(self.retours, relpath)
        self._folder(target.parent)
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PUBLISHED_MODE)
        try:
            os.fchmod(fd, PUBLISHED_MODE)  # whatever the umask (the CLI runs with 077)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no half file behind
            raise
        if durable:
            fsync_dir(target.parent)

    def publish_batch(self, files: Sequence[tuple[str, bytes]]) -> int:
        """Publish ``files`` (path under retours/, bytes) together, each one whole or absent;
        returns how many were written. A file already there with the same bytes is new to
        nobody and is left alone (not even its date changes). The others are written under
        temporary names, made durable together (one :meth:`sync`), renamed into place, then each
        folder they are in is fsynced once: a crash leaves every file complete or absent, never
        a half or an empty one. On an error (a full disk), no temporary file stays behind."""
        # Paths as text from here on: a thousand returns make 1,500 files, and pathlib's objects
        # (made, hashed, split for each) cost more than the system calls on a journaled ext4.
        wanted: dict[str, bytes] = {}
        for relpath, data in files:  # every name checked before anything is written
            wanted[os.fspath(self._inside(self.retours, relpath))] = data
        written: list[tuple[str, str]] = []
        folders: set[str] = set()  # made (or seen) during this batch
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            for target, data in wanted.items():
                if _holds(target, data):
                    continue
                folder, name = os.path.split(target)
                if folder not in folders:
                    self._folder(Path(folder))
                    folders.add(folder)
                tmp = os.path.join(folder, f".{name}.tmp")
                fd = os.open(tmp, flags, PUBLISHED_MODE)
                written.append((tmp, target))
                try:
                    os.fchmod(fd, PUBLISHED_MODE)  # whatever the umask (the CLI runs with 077)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
            if not written:
                return 0
            self.sync()  # the bytes on disk before any name points at them
            for tmp, target in written:
                os.replace(tmp, target)
            for folder in sorted({os.path.dirname(target) for _, target in written}):
                fsync_dir(Path(folder))
        except BaseException:
            for tmp, _ in written:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise
        return len(written)

    def _folder(self, folder: Path) -> None:
        """Make ``folder`` (under retours/) and its missing parents readable by the exchange
        account's group whatever the process's umask (the CLI runs with 077): 0750, and the
        set-group-ID bit of retours/ kept, so that the files inside belong to that group."""
        if folder in self._made:
            return
        missing: list[Path] = []
        step = folder
        while step != self.retours and not step.is_dir():
            missing.append(step)
            step = step.parent
        for made in reversed(missing):
            try:
                made.mkdir()
            except FileExistsError:
                continue  # made meanwhile by another process, with these same modes
            made.chmod(0o750 | (made.parent.stat().st_mode & stat.S_ISGID))
        self._made.add(folder)

    def prune(self, folder: str, older_than: float, limit: int = 10_000) -> int:
        """Remove the regular files of ``retours/<folder>/`` last modified before ``older_than``
        (seconds since the epoch), at most ``limit`` per call; returns how many. Temporary files
        and anything but a regular file are left alone."""
        base = self._inside(self.retours, folder)
        removed = 0
        try:
            entries = os.scandir(base)
        except FileNotFoundError:
            return 0
        with entries:
            for entry in entries:
                if removed >= limit:
                    break
                if entry.name.startswith("."):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_mtime < older_than:
                    os.unlink(base / entry.name)
                    removed += 1
        if removed:
            fsync_dir(base)
        return removed

    def published(self, relpath: str, limit: int) -> bytes | None:
        """At most ``limit`` bytes of the file published at ``relpath`` under retours/, or None
        when there is none (a link or anything but a regular file counts as none)."""
        path = self._inside(self.retours, relpath)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            held = bytearray()
            while len(held) < limit:
                block = os.read(fd, limit - len(held))
                if not block:
                    break
                held += block
            return bytes(held)
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Make every file published so far durable: one syncfs of the exchange file system."""
        fd = os.open(self.retours, os.O_RDONLY)
        try:
            libc_name = ctypes.util.find_library("c")
            synced = False
            if libc_name is not None:
                synced = ctypes.CDLL(libc_name, use_errno=True).syncfs(fd) == 0
            if not synced:
                os.sync()
        finally:
            os.close(fd)

    @staticmethod
    def _inside(base: Path, relpath: str) -> Path:
        """``base/relpath`` for a plain relative name: no absolute path, no ".." part, no NUL
        (checked on the text, so no file system call per file)."""
        parts = PurePosixPath(relpath).parts
        if (
            not parts
            or relpath.startswith("/")
            or "\0" in relpath
            or any(part in ("..", ".") for part in parts)
        ):
            raise ValidationError(
                f"nom de fichier refusé : {relpath!r}",
                f"file name refused: {relpath!r}",
                code=DepotCode.EXCHANGE_PATH,
            )
        return base.joinpath(*parts)


def _holds(path: str | Path, data: bytes) -> bool:
    """Whether ``path`` is a regular file (never a link) holding exactly ``data``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(data):
            return False
        held = bytearray()
        while len(held) <= len(data):
            block = os.read(fd, len(data) + 1 - len(held))
            if not block:
                break
            held += block
        return held == data
    except OSError:
        return False
    finally:
        os.close(fd)


def _free(folder: Path, name: str) -> Path:
    """A name in ``folder`` that nothing uses yet, made from ``name`` (a rename never replaces)."""
    base = bounded_name(name)
    candidate = folder / base
    for number in range(2, 100):
        if not os.path.lexists(candidate):
            return candidate
        candidate = folder / f"{base}.{number}"
    return folder / f"{base}.{uuid.uuid4().hex}"
