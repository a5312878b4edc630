"""What the dataset loaders share: where files are looked for, SHA-256 checks, atomic writes.

A dataset ``name`` (e.g. "fashion-mnist") is looked for, in order, in the ``path`` argument,
$FASTDL_DATA, the download cache (``config.cache_dir()``), each also with a ``name/`` subfolder,
and then in the dataset's system-wide directories. Nothing here touches the network: downloads
are in ``_download``.
"""

import contextlib
import errno
import gzip
import hashlib
import json
import math
import os
import re
import shlex
import uuid
import zlib
from pathlib import Path

import numpy as np

from fastdl import config

CHUNK = 1 << 20
EXPLICIT = "path argument / --data-dir"  # the origin of an explicitly given directory
ENVIRONMENT = "$FASTDL_DATA"  # the origin of the directory the environment names
SYNTHETIC_KIND = "synthetic"  # the "kind" of the sidecar of every set fastdl generates
REPLACED_SUFFIX = ".replaced"  # what download renames a file it replaces to, beside it


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the places they are looked for (the message lists them)."""


def search_dirs(name, path=None, system_dirs=()):
    """The directories a dataset is looked for in, in order, as (Path, origin) pairs."""
    bases = []
    if path is not None:
        bases.append((Path(path).expanduser(), EXPLICIT))
    if config.data_dir() is not None:
        bases.append((Path(config.data_dir()).expanduser(), ENVIRONMENT))
    bases.append((config.cache_dir(), "download cache: $FASTDL_CACHE_DIR or ~/.cache/fastdl"))
    dirs = [(directory, origin) for base, origin in bases for directory in (base, base / name)]
    return dirs + [(Path(directory), "system-wide (Debian package)") for directory in system_dirs]


def describe_places(name, path=None, system_dirs=()):
    """:func:`search_dirs` as (place, note) strings, noting an unset $FASTDL_DATA."""
    places = [(str(directory), origin) for directory, origin in search_dirs(name, path,
                                                                             system_dirs)]
    if config.data_dir() is None:
        places.insert(2 if path is not None else 0, (ENVIRONMENT, "unset"))
    return places


def alternatives(file_name, gzip_content):
    """The names a file may have: also without .gz when the checksum is of the content."""
    if gzip_content and file_name.endswith(".gz"):
        return (file_name, file_name[:-3])
    return (file_name,)


def locate(name, files, path=None, system_dirs=(), gzip_content=False, hint=""):
    """Paths of ``files`` in the first directory of :func:`search_dirs` that holds them all.

    An explicit ``path`` (or $FASTDL_DATA) that holds none of the files lets the search go on
    (one directory may hold several datasets, each loader taking its own), but one that does not
    exist, or holds only some of the files, is an error: going on would load a copy from
    elsewhere without anyone noticing the typo or the missing file.

    Raises
    ------
    DatasetNotFoundError
        ``path`` or $FASTDL_DATA does not exist (checked when the search reaches it) or holds
        only some of the files (the message names them and the command that fetches the set
        to where this search finds it), or no directory holds every file (the message lists the
        places, the files and how to fetch them; ``hint`` adds another way).
    """
    found, incomplete = search(name, files, path, system_dirs, gzip_content)
    if found is not None:
        return found
    if incomplete is not None:
        directory, missing, origin = incomplete
        target = download_target(name, directory, system_dirs)
        raise DatasetNotFoundError(
            f"{directory}{where(origin)} holds only part of {name}: {', '.join(missing)}"
            + (" (or the same without .gz)" if gzip_content else "")
            + (" is" if len(missing) == 1 else " are")
            + " not found there. Add the missing file(s), or fetch the set with "
            + download_command(name, target)
            + ("" if target / name == directory else f" (into {target / name}, read from there then)")
            + (f", {hint}" if hint else "") + ".")
    names = ", ".join(files) + (" (or the same without .gz)" if gzip_content else "")
    places = "\n".join(f"  {place}  [{note}]" for place, note in
                       describe_places(name, path, system_dirs))
    raise DatasetNotFoundError(
        f"{name} not found: looked for {names} in\n{places}\n"
        f"Fetch it with `fastdl data download {name}` (into {config.cache_dir() / name})"
        + (f", {hint}" if hint else "") + ".")


def where(origin):
    """What a message says after a directory that holds part of a set: " ($FASTDL_DATA)" for the
    one the environment names (the user may have forgotten it), nothing for a given one."""
    return f" ({ENVIRONMENT})" if origin == ENVIRONMENT else ""


def search(name, files, path=None, system_dirs=(), gzip_content=False):
    """(paths of ``files`` in the first directory of :func:`search_dirs` holding them all, or
    None; (directory, missing files, origin) of a given directory holding only some, or None).

    The search stops at a directory the user gave (``path`` or $FASTDL_DATA, or its ``name``
    subfolder) holding only some of the files, once neither it nor its subfolder holds them
    all, so that the caller refuses it instead of reading a copy from elsewhere; ``path`` must
    exist (:func:`check_explicit_dir`), and so must $FASTDL_DATA's directory when the search
    reaches it: a typo there would otherwise load the cache's copy, or for the clocks render
    synthetic ones, without anyone noticing (the digits refuse it too).
    """
    if path is not None:
        check_explicit_dir(name, path)
    incomplete = None
    for directory, origin in search_dirs(name, path, system_dirs):
        if incomplete is not None and origin != incomplete[2]:
            break  # neither the given directory nor its subfolder is complete
        if origin == ENVIRONMENT and not directory.is_dir():
            check_explicit_dir(name, Path(config.data_dir()), ENVIRONMENT)
        found = [next((c for c in (directory / n for n in alternatives(file_name, gzip_content))
                       if c.is_file()), None) for file_name in files]
        if all(found):
            return found, None
        if origin in (EXPLICIT, ENVIRONMENT) and any(found) and incomplete is None:
            incomplete = (directory, [f for f, c in zip(files, found) if c is None], origin)
    return None, incomplete


def download_target(name, directory, system_dirs=()):
    """The directory `fastdl data download` must fetch ``name`` into (it writes ``DIR/name``) for
    the search that found (part of) the set in ``directory`` to read it: ``directory``'s parent
    when ``directory`` is the set's subfolder; else ``directory``, whose subfolder the search
    reads once ``directory`` does not hold every file; the cache for a system-wide directory,
    which is searched after the cache."""
    directory = Path(directory)
    if directory in {Path(system_dir) for system_dir in system_dirs}:
        return config.cache_dir()
    return directory.parent if directory.name == name else directory


def download_command(name, target):
    """`fastdl data download NAME`, with ``--data-dir target`` unless it is the cache, quoted."""
    option = "" if Path(target) == config.cache_dir() else f" --data-dir {shlex.quote(str(target))}"
    return f"`fastdl data download {name}{option}`"


def check_explicit_dir(name, path, origin=EXPLICIT):
    """Raise DatasetNotFoundError unless the directory given for ``name`` (by ``origin``) exists."""
    directory = Path(path).expanduser()
    if not directory.exists():
        raise DatasetNotFoundError(f"{name} not found: the data directory {directory} ({origin}) does not exist")
    if not directory.is_dir():
        raise DatasetNotFoundError(f"{name} not found: {directory} ({origin}) is a file, not a directory")


def _open(path, gunzip):
    """A binary stream of the file's content, decompressed when ``gunzip``."""
    return gzip.open(path, "rb") if gunzip else open(path, "rb")


@contextlib.contextmanager
def _gzip_errors(path):
    """Re-raise a damaged gzip stream as a ValueError naming the file."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: damaged or truncated gzip file ({error})") from error


def file_sha256(path, gunzip=False):
    """Hex SHA-256 of a file, or of its decompressed content when ``gunzip``."""
    digest = hashlib.sha256()
    with _gzip_errors(path), _open(path, gunzip) as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_verified(path, expected, name, verify=True, system_dirs=()):
    """A file's content as a bytearray (decompressed if it ends in .gz), checked by SHA-256
    (``system_dirs``: the dataset's, for :func:`check_digest`'s advice).

    Raises
    ------
    ValueError
        The checksum differs (with ``verify``) or the gzip stream is damaged.
    """
    digest, content = hashlib.sha256(), bytearray()
    gunzip = str(path).endswith(".gz")
    with _gzip_errors(path), _open(path, gunzip) as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
            content += block
    if verify:
        check_digest(path, expected, digest.hexdigest(), name, gunzip, system_dirs)
    return content


def check_file(path, expected, name, gunzip=False, system_dirs=()):
    """Raise ValueError unless the SHA-256 of the file (its content if ``gunzip``) is expected."""
    check_digest(path, expected, file_sha256(path, gunzip), name, gunzip, system_dirs)


def check_digest(path, expected, actual, name, gunzip=False, system_dirs=()):
    """Raise a ValueError that says how to fix a checksum mismatch: the download command that
    puts the published file where the search that found ``path`` reads it (for a folder the
    user gave, that folder, not the cache, which the search would never reach)."""
    if actual == expected:
        return
    what = "decompressed content" if gunzip else "file"
    path = Path(path)
    target = download_target(name, path.parent, system_dirs)
    command = download_command(name, target)
    if target / name == path.parent:
        fix = (f"Fetch the published one with {command} (a file it replaces is kept beside it, "
               f"renamed *{REPLACED_SUFFIX})")
    elif target == path.parent:
        fix = (f"Move it out of {path.parent} and fetch the published set with {command} "
               f"(into {target / name}, read from there then)")
    else:  # a system-wide directory
        fix = f"Fetch the published set into the cache, which is searched first, with {command}"
    raise ValueError(
        f"{path} is not the published {name} file: SHA-256 of its {what} is {actual}, "
        f"expected {expected}. {fix}, or pass verify=False (--no-verify) to use custom files "
        f"of the same format.")


@contextlib.contextmanager
def npy_errors(path, problem="has a damaged or truncated .npy header"):
    """Re-raise any failure to read a .npy file but MemoryError as a ValueError naming the file.

    numpy parses the header with ast.literal_eval and, for the old format versions, retries
    through tokenize, so a damaged header fails with a ValueError, a SyntaxError, a
    tokenize.TokenError, a TypeError, an EOFError... (a few hundred bytes of text: every failure
    there means a damaged file).
    """
    try:
        yield
    except MemoryError:
        raise
    except Exception as error:
        raise ValueError(f"{path} {problem} ({type(error).__name__}: {error})") from error


def read_npy_header(path):
    """(shape, dtype) from a .npy file's header, after checking the file's size matches it.

    Raises
    ------
    ValueError
        Not a .npy file (empty, text, a .npz archive), a damaged header, a pickled/object
        array, or truncated (or with trailing bytes).
    """
    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    with open(path, "rb") as stream:
        magic = stream.read(len(fmt.MAGIC_PREFIX))
        if magic.startswith(b"PK\x03\x04"):
            raise ValueError(f"{path} is a .npz archive, not a .npy file")
        if magic != fmt.MAGIC_PREFIX:
            raise ValueError(f"{path} is not a .npy file (no NumPy magic string)")
        stream.seek(0)
        with npy_errors(path):
            version = fmt.read_magic(stream)
        if version not in readers:  # a sound file of a format fastdl does not read: not "damaged"
            raise ValueError(f"{path} is a .npy file of format version {'.'.join(map(str, version))}, which fastdl "
                             "does not read (1.0 and 2.0; numpy writes 3.0 only for structured arrays with "
                             "non-Latin-1 field names)")
        with npy_errors(path):
            shape, _, dtype = readers[version](stream)
        data_offset = stream.tell()
    if dtype.hasobject:
        raise ValueError(f"{path} holds an object array ({dtype}); pickled/object arrays are "
                         f"refused (they can run code when loaded)")
    # Python ints: numpy's int64 product wraps round for a damaged header's huge shape.
    expected = data_offset + math.prod(shape) * dtype.itemsize
    actual = os.path.getsize(path)
    if actual != expected:
        problem = "is truncated" if actual < expected else "has trailing bytes"
        raise ValueError(f"{path} {problem}: its header says {shape} {dtype} "
                         f"({expected - data_offset:,} bytes of data), it holds "
                         f"{actual - data_offset:,}")
    return tuple(shape), dtype


def load_npy(path):
    """A .npy file's array, after :func:`read_npy_header`'s checks; no pickles, no memory map.

    Raises
    ------
    ValueError
        Naming the file: any of read_npy_header's problems, or np.load failing.
    """
    read_npy_header(path)
    with npy_errors(path, "cannot be read as a .npy file"):  # (it may have changed meanwhile)
        return np.load(path, allow_pickle=False, mmap_mode=None)


@contextlib.contextmanager
def atomic_write(destination, mode="wb"):
    """Write ``destination`` through a temporary file beside it, renamed into place on success.

    Yields the open temporary file; when the block ends normally its content is flushed to disk
    and os.replace puts it in place, so readers see the old file or the whole new one, never a
    part. On an error the temporary file is removed and ``destination`` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(destination)
    try:
        with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as stream:
            yield stream
            _flush(stream)
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def refuse_to_overwrite(directory, files, sidecar_name, whose):
    """Raise ValueError unless writing ``files`` and ``sidecar_name`` into ``directory`` replaces
    nothing but a set fastdl wrote (``whose`` says what other files there are then).

    A set is fastdl's when its sidecar is one :func:`write_array_set` wrote: JSON with kind
    "synthetic" and the SHA-256 of each of ``files``, or one cut short that still holds that mark
    (:func:`damaged_sidecar`: the loaders say to re-generate it). A file merely named like the
    sidecar, valid JSON of another form included, is someone's own, as are data files beside no
    sidecar.
    """
    directory = Path(directory)
    sidecar = directory / sidecar_name
    present = [name for name in files if (directory / name).exists()]
    if sidecar.exists():
        if not _written_by_fastdl(sidecar, files) and not damaged_sidecar(sidecar):
            raise ValueError(f"{sidecar} is not a sidecar fastdl wrote (it needs kind 'synthetic' and the "
                             f"SHA-256 of {' and '.join(files)}), so {directory} holds someone's own files, "
                             f"which generate never overwrites. Move them or choose another directory")
    elif present:
        raise ValueError(f"{directory} holds {' and '.join(present)} without {sidecar_name}: {whose}, which "
                         f"generate never overwrites. Move them or choose another directory")


def regenerate_hint(directory, name, default_directory, default_size, loader=None, settings=None):
    """How to replace a broken synthetic set of ``name`` ("clocks", "faces") in ``directory``;
    ``default_size``: the images' size `fastdl data generate` renders (it takes no other);
    ``loader``: the function that renders the set in ``default_directory`` again by itself;
    ``settings``: {option: value} the set was generated with, where its sidecar says (the
    command then makes the same set again; None: the defaults)."""
    directory = Path(directory)
    settings = settings or {}
    options = "".join(f" --{key.replace('_', '-')} {value}" for key, value in settings.items() if key != "size")
    by_command = settings.get("size") in (None, default_size)
    if directory == default_directory and by_command:
        how = f"`fastdl data generate {name}{options}`" + (
            f", or {loader}() renders it again" if loader and not settings else "")
    elif directory.name == name and by_command:
        how = f"`fastdl data generate {name}{options} --data-dir {directory.parent}`"
    else:
        arguments = "".join(f", {key}={value!r}" for key, value in settings.items())
        how = f"fastdl.data.generate_{name}(directory='{directory}'{arguments})"
    return f"Delete {directory} and re-generate it ({how})"


def check_writable(directory):
    """OSError now, naming $FASTDL_CACHE_DIR where ``directory`` is in the cache, unless a set can
    be written into ``directory``: it, or its nearest existing parent (created later, with the
    files), is a directory this process may write. Nothing is created (an interrupted render
    leaves no folder behind); a set about to be rendered is said to be unwritable at once, not
    after minutes of rendering (FASTDL_CACHE_DIR=/etc/passwd rendered 18,000 clocks first)."""
    directory = Path(directory)
    existing = next(place for place in (directory, *directory.parents) if place.exists())
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    cache = config.cache_dir()
    where = f" (under the cache {cache}: $FASTDL_CACHE_DIR, else ~/.cache/fastdl)" \
        if directory == cache or cache in directory.parents else ""
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"cannot write into {directory}{where}: {existing} is a file")
    raise PermissionError(errno.EACCES, f"cannot write into {directory}{where}: {existing} is not writable")


def marked_by_fastdl(sidecar):
    """The parsed ``sidecar`` when it bears the mark of every sidecar fastdl writes, a JSON
    object with kind "synthetic", else None (a file merely named like it, e.g. beside the
    course's data, or one that cannot be read as JSON)."""
    try:
        with open(sidecar, encoding="utf-8") as stream:
            content = json.load(stream)
    except (OSError, ValueError):  # unreadable, a directory, not UTF-8, not JSON
        return None
    return content if isinstance(content, dict) and content.get("kind") == SYNTHETIC_KIND else None


def names_fastdls_mark(sidecar):
    """Whether the text of ``sidecar`` holds fastdl's mark (``"kind": "synthetic"``) though it may
    not parse: a damaged sidecar of fastdl's (cut short, edited), not someone else's file."""
    try:
        text = Path(sidecar).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(rf'"kind"\s*:\s*"{SYNTHETIC_KIND}"', text) is not None


def damaged_sidecar(sidecar):
    """Whether ``sidecar`` is one of fastdl's, damaged: it does not parse as JSON (cut short,
    edited) yet holds fastdl's mark. Valid JSON, whatever it says, is not damaged."""
    try:
        json.loads(Path(sidecar).read_text(encoding="utf-8"))
    except OSError:
        return False
    except ValueError:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        return names_fastdls_mark(sidecar)
    return False


def _written_by_fastdl(sidecar, files):
    """Whether ``sidecar`` is JSON as write_array_set writes it for ``files``."""
    content = marked_by_fastdl(sidecar)
    digests = content.get("sha256") if content is not None else None
    return isinstance(digests, dict) and all(isinstance(digests.get(name), str) for name in files)


def write_array_set(directory, arrays, sidecar_name, sidecar):
    """Write .npy arrays and the JSON sidecar describing them into ``directory``, all or nothing.

    Every file goes to a hidden temporary beside its target first, flushed to disk; then the
    sidecar and the arrays are renamed into place (the sidecar first: array files older than it,
    or missing, fail the checksums it records). On any error no temporary is left behind.

    Parameters
    ----------
    directory : Path
    arrays : dict
        ``{file name: ndarray}``, saved with ``np.save`` (no pickles).
    sidecar_name : str
    sidecar : callable
        ``sidecar({file name: SHA-256 of the written array file}) -> dict``, written as JSON.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    temporaries = {}
    try:
        for file_name, array in arrays.items():
            temporaries[file_name] = _temporary(directory / file_name)
            with open(temporaries[file_name], "wb") as out:
                np.save(out, np.ascontiguousarray(array), allow_pickle=False)
                _flush(out)
        digests = {file_name: file_sha256(path) for file_name, path in temporaries.items()}
        temporaries[sidecar_name] = _temporary(directory / sidecar_name)
        with open(temporaries[sidecar_name], "w", encoding="utf-8") as out:
            json.dump(sidecar(digests), out, indent=2)
            out.write("\n")
            _flush(out)
        for file_name in (sidecar_name, *arrays):
            os.replace(temporaries[file_name], directory / file_name)
        _fsync_directory(directory)
    except BaseException:
        for temporary in temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        raise
    return directory


def _temporary(destination):
    """A hidden name beside ``destination``, so os.replace is atomic (unique per call)."""
    return destination.with_name(f".{destination.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")


def _flush(stream):
    """Push a file's content to disk before it is renamed into place."""
    stream.flush()
    os.fsync(stream.fileno())


def _fsync_directory(directory):
    """Make the renames durable where the platform allows opening a directory."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
