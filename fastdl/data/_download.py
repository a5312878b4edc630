"""Verified downloads: the only code in fastdl that touches the network (``fastdl data download``).

A file is fetched to a temporary name beside its destination, checked against its published
SHA-256, then renamed into place; a file already there that fails the check is kept under another
name, never deleted.
"""

import contextlib
import functools
import itertools
import os
import sys
from pathlib import Path

from fastdl import config
from fastdl._interrupts import sigint_deferred
from fastdl.data._files import (CHUNK, REPLACED_SUFFIX, _temporary, atomic_write, check_file,
                                file_sha256)

TIMEOUT_S = 60


class DownloadError(OSError):
    """The network failed during a download: no connection, a timeout, an HTTP error, a dropped
    or stalled transfer (the message names the URL)."""


def download(name, files, base_url, sha256, directory=None, gzip_content=False):
    """Fetch a dataset's files into ``directory/name`` (default: the cache), verified.

    Parameters
    ----------
    name : str
        Dataset name, also the subfolder the files go to.
    files : sequence of str
        File names, fetched from ``base_url + file name``.
    base_url : str
        URL prefix ending in "/" (tests use a file:// URL).
    sha256 : dict
        File name -> expected SHA-256 (of the decompressed content when ``gzip_content``).
    directory : str or Path, optional
        Parent directory; default ``config.cache_dir()``.
    gzip_content : bool, default False
        Checksums are of the .gz files' decompressed content.

    Returns
    -------
    dict
        Path -> "downloaded", "already present" (a valid file is not fetched again) or, where a
        file of that name failed the checksum, "downloaded; the file there before ... is now
        NAME.replaced": it may be someone's own data, or a damaged download, so it is renamed
        (to a free name beside it), never deleted, once the published file has arrived.

    Raises
    ------
    DownloadError
        The network failed (an OSError naming the URL); files fetched before it are kept.
    ValueError
        A download is not the published file; nothing was saved for it.
    OSError
        The directory cannot be written.
    """
    target = (Path(directory).expanduser() if directory is not None
              else config.cache_dir()) / name
    report = {}
    for file_name in files:
        path = target / file_name
        gunzip = gzip_content and file_name.endswith(".gz")
        if not path.is_file():
            fetch(base_url + file_name, path, sha256[file_name], gunzip)
            report[path] = "downloaded"
            continue
        try:
            check_file(path, sha256[file_name], name, gunzip)
        except ValueError:  # someone's own file, or a damaged download: kept either way
            aside = _replace_keeping(path, functools.partial(
                fetch, base_url + file_name, expected=sha256[file_name], gunzip=gunzip))
            report[path] = (f"downloaded; the file there before, not the published one, "
                            f"is now {aside.name}")
        else:
            report[path] = "already present"
    return report


def _replace_keeping(path, write):
    """Put a new file at ``path`` written by ``write(staged path)``, renaming the file there to
    a free name beside it first (``NAME.replaced``, else ``NAME.replaced.1``, ...); return that
    name. Should ``write`` fail, the old file stays where it was; Ctrl-C waits for both renames
    (between them, neither file would be at ``path``, and the new one would be deleted)."""
    staged = _temporary(path)
    try:
        write(staged)
        aside = path.with_name(path.name + REPLACED_SUFFIX)
        for number in itertools.count(1):
            if not os.path.lexists(aside):
                break
            aside = path.with_name(f"{path.name}{REPLACED_SUFFIX}.{number}")
        with sigint_deferred():
            os.rename(path, aside)
            os.replace(staged, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
    return aside


def fetch(url, destination, expected, gunzip=False):
    """Download ``url`` to a temporary file beside ``destination``, verify, then rename it
    (through :func:`atomic_write`).

    An interrupted or corrupt download never replaces ``destination``, and its temporary
    file is removed.

    Raises
    ------
    DownloadError
        The URL cannot be read, or the transfer stalls (``TIMEOUT_S``) or breaks off: an OSError
        naming the URL.
    OSError
        ``destination`` cannot be written.
    ValueError
        The download's SHA-256 (of its decompressed content if ``gunzip``) is not
        ``expected``.
    """
    # Imported here: urllib.request pulls in http, ssl and email, which loading never needs.
    import http.client
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    def failed(error):
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            reason = f"{str(reason) or 'timed out'} (no data for {TIMEOUT_S} s)"
        return DownloadError(f"could not download {url}: {reason}")

    def read_block(response):
        # Any error reading the body (a stall, a dropped connection, TLS) is the network's.
        try:
            return response.read(CHUNK)
        except OSError as error:
            raise failed(error) from error

    destination = Path(destination)
    with atomic_write(destination) as out:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                with tqdm(total=_content_length(response), unit="B", unit_scale=True,
                          desc=destination.name, disable=not sys.stderr.isatty()) as progress:
                    for block in iter(lambda: read_block(response), b""):
                        out.write(block)
                        progress.update(len(block))
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError,
                ConnectionError) as error:  # (not the disk's OSErrors, writing ``out``)
            raise failed(error) from error
        out.flush()  # the checksum reads the temporary file by name
        try:
            actual = file_sha256(out.name, gunzip)
        except ValueError as error:
            actual = f"unreadable ({error})"
        if actual != expected:
            raise ValueError(f"download of {url} is corrupt or not the published file: "
                             f"SHA-256 {actual}, expected {expected}; nothing was saved, "
                             f"try again")
    return destination


def _content_length(response):
    """The response's Content-Length as a positive int, or None (absent, or malformed as
    "12, 12": only the progress bar uses it)."""
    try:
        length = int(response.headers.get("Content-Length") or 0)
    except ValueError:
        return None
    return length if length > 0 else None
