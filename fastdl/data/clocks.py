"""The clock images of assignment 5 ("tell the time"): the course's files, else synthetic ones.

The course's data is two NumPy files: ``images.npy``, uint8 of shape (18000, 150, 150)
(grayscale), and ``labels.npy``, integers of shape (18000, 2) holding [hour 0-11, minute 0-59].
They cannot be downloaded here, so when no directory holds them :func:`load_clocks` renders a
synthetic set (``fastdl.data.clock_render``) into the cache once and reads it from there after.

A synthetic set is written by :func:`generate_clocks` with a sidecar ``clocks.json`` recording
the renderer, seed, count and each file's SHA-256; a directory with the two files and no sidecar,
or a ``clocks.json`` fastdl did not write (no kind "synthetic"), holds the course's data.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np

from fastdl import config
from fastdl._validation import check_int
from fastdl.data import _files

NAME = "clocks"
IMAGES = "images.npy"
LABELS = "labels.npy"
FILES = (IMAGES, LABELS)
SIDECAR = "clocks.json"
SYNTHETIC_KIND = _files.SYNTHETIC_KIND
# What load_clocks renders when the course's files are absent: the course's count and size.
SYNTHETIC_N = 18000
SYNTHETIC_SEED = 0
# The write-up describes its set as pictures of a clock, each "taken from a different angle and
# rotation": the stand-in is one clock, in 18,000 poses, scenes and times, turned at most 30
# degrees either way (turned by any angle, the course's networks stay at chance on 14,400
# clocks: they learn them by heart instead).
SYNTHETIC_FACES = "one"
SYNTHETIC_MAX_TURN = 30.0
IMAGE_SIZE = 150
# load_clocks' stand-in, as `fastdl data generate clocks` writes it without options
DEFAULT_SET = {"n": SYNTHETIC_N, "seed": SYNTHETIC_SEED, "max_turn": SYNTHETIC_MAX_TURN, "faces": SYNTHETIC_FACES}
SETTINGS = ("faces", "max_turn", "size")  # generate_clocks' settings, recorded in clocks.json
N_HOURS = 12
N_MINUTES = 60


def load_clocks(path=None, verify=True, with_source=False):
    """Load the clock images and their [hour, minute] labels (assignment 5).

    The course's ``images.npy`` and ``labels.npy`` are looked for in ``path``, $FASTDL_DATA and
    the cache ($FASTDL_CACHE_DIR, default ~/.cache/fastdl), each also with a ``clocks/``
    subfolder. When none holds them, 18,000 synthetic clocks (seed 0: :func:`generate_clocks`'
    defaults, one clock in 18,000 poses, scenes and times as the course's photographs, turned at
    most 30 degrees) are rendered into ``<cache>/clocks`` on first use (which is said on stderr)
    and read from there afterwards. A set there that an older fastdl rendered with seed 0 and
    the default count is rendered again, with the settings its ``clocks.json`` records.

    Parameters
    ----------
    path : str or Path, optional
        Directory holding ``images.npy`` and ``labels.npy`` (or a ``clocks/`` subfolder with
        them); looked at first.
    verify : bool, default True
        Check a synthetic set's files against the SHA-256 recorded in its ``clocks.json`` when
        it was generated. The course's files have no published checksum: they (and synthetic
        files too, whatever ``verify`` says) are only checked for shape, dtype and label range.
        A ``clocks.json`` that fastdl did not write (not JSON with kind "synthetic") beside
        them is ignored, with a warning.
    with_source : bool, default False
        Also return a one-line description of the data, for reports.

    Returns
    -------
    images : ndarray of shape (n_samples, 150, 150), uint8
        Grayscale clock faces (another square size if the files hold one).
    labels : ndarray of shape (n_samples, 2), int64
        [hour 0-11, minute 0-59] of each image.
    source : str
        Only with ``with_source``: e.g. "course clocks from /data (18,000 images, 150x150)" or
        "synthetic clocks (fastdl 0.1.0 clock renderer v2, seed 0, one clock, turned at most 30
        degrees, 18,000 images, 150x150) from ~/.cache/fastdl/clocks".

    Raises
    ------
    DatasetNotFoundError
        ``path`` or $FASTDL_DATA (when the search reaches it) does not exist, or holds one of
        the two files but not the other (rather than render synthetic clocks in place of the
        data it was meant to name).
    ValueError
        A file is not a valid ``.npy`` file of the expected shape, dtype and range (pickled
        or object arrays are refused), a synthetic file differs from its recorded SHA-256, or
        the ``clocks.json`` fastdl wrote is damaged. Nothing is rendered or written then.
    OSError
        The synthetic set had to be rendered and the cache cannot be written.

    Warns
    -----
    UserWarning
        A ``clocks.json`` fastdl did not write is ignored.
    """
    directory = find(path)
    if directory is None:
        directory = default_directory()
        print(f"fastdl: rendering {SYNTHETIC_N:,} synthetic clocks into {directory} (first use: "
              f"the course's {IMAGES} and {LABELS} were not found; see `fastdl data list`)",
              file=sys.stderr, flush=True)
        generate_clocks(SYNTHETIC_N, SYNTHETIC_SEED, directory)
    elif (outdated := _outdated_sidecar(directory)) is not None:
        _render_again(directory, outdated)
    images_path, labels_path = directory / IMAGES, directory / LABELS
    sidecar = _fastdl_sidecar(directory)
    n_samples = check_headers(images_path, labels_path)
    if sidecar is not None and verify:
        for file_name in FILES:
            _check_recorded_digest(directory, file_name, sidecar)
    images = _files.load_npy(images_path)
    labels = _files.load_npy(labels_path)
    check_label_range(labels, labels_path)
    images = np.ascontiguousarray(images)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if not with_source:
        return images, labels
    height, width = images.shape[1:]
    where = directory.resolve()  # a relative --data-dir, traceable from the outputs
    count = f"{n_samples:,} image{'' if n_samples == 1 else 's'}"
    if sidecar is None:
        source = f"course clocks from {where} ({count}, {height}x{width})"
    else:
        what = _describe_clocks(sidecar.get("faces", "varied"), sidecar.get("max_turn", 180.0))
        source = (f"synthetic clocks ({sidecar['renderer']}, seed {sidecar['seed']}, "
                  f"{what}, {count}, {height}x{width}) from {where}"
                  + ("" if verify else ", not checked against its checksums (verify=False, --no-verify)"))
    return images, labels, source


def generate_clocks(n=SYNTHETIC_N, seed=SYNTHETIC_SEED, directory=None, size=IMAGE_SIZE,
                    max_turn=SYNTHETIC_MAX_TURN, faces=SYNTHETIC_FACES):
    """Render synthetic clocks and write them as ``images.npy``, ``labels.npy``, ``clocks.json``.

    Each file is written to a hidden temporary file beside its target, flushed to disk and then
    renamed over it, so an interrupted run (an error, Ctrl-C, a full disk) leaves no temporary
    files and never a set that passes for complete: ``clocks.json`` is put in place first, so
    old or missing image files beside a new sidecar fail its checksum check instead of being
    taken for the course's data.

    Parameters
    ----------
    n : int, default 18000
        Number of images (the course's count).
    seed : int, default 0
        Seed of the renderer; image k depends only on (seed, k).
    directory : str or Path, optional
        Where to write; default ``<cache>/clocks`` ($FASTDL_CACHE_DIR or ~/.cache/fastdl),
        where :func:`load_clocks` looks.
    size : int, default 150
        Height and width of the images.
    max_turn : float in [0, 180], default 30
        Largest turn of the whole clock in degrees, either way (180: any angle; see
        :func:`fastdl.data.render_clocks`).
    faces : {"one", "varied"}, default "one"
        "one": every image shows the seed's one clock, as the course's photographs show one;
        "varied": every image a clock of its own design (see :func:`fastdl.data.render_clocks`).

    Returns
    -------
    Path
        The directory written.

    Raises
    ------
    ValueError
        ``n``, ``seed``, ``size``, ``max_turn`` or ``faces`` is invalid, or ``directory`` holds
        clock files without a ``clocks.json`` (the course's data, which is never overwritten),
        or a ``clocks.json`` that fastdl did not write (someone's own file, never overwritten).
    """
    from fastdl.data import clock_render  # the renderer's kernels load only when rendering

    n, seed, size = (check_int(n, "n", 1), check_int(seed, "seed", 0),
                     check_int(size, "size", clock_render.MIN_SIZE))

    max_turn = clock_render.check_max_turn(max_turn)
    faces = clock_render.check_faces(faces)
    directory = Path(directory).expanduser() if directory is not None else default_directory()
    _files.refuse_to_overwrite(directory, FILES, SIDECAR, "the course's data")
    _files.check_writable(directory)  # said before rendering, not after

    images, labels = clock_render.render_clocks(n, seed=seed, size=size, max_turn=max_turn,
                                               faces=faces)
    images, labels = _check_rendered(images, labels, n, size)
    # The sidecar goes in place first: see the docstring.
    _files.write_array_set(directory, {IMAGES: images, LABELS: labels}, SIDECAR,
                           lambda digests: _sidecar(n, seed, size, digests, max_turn, faces))
    return directory


def default_directory():
    """Where the synthetic set is rendered: ``<cache>/clocks``."""
    return config.cache_dir() / NAME


def find(path=None):
    """The first directory of the search order holding both files, or None.

    Raises
    ------
    DatasetNotFoundError
        ``path`` does not exist, or neither it nor its ``clocks/`` subfolder holds both files
        while one holds one of them (going on would read other clocks without a word); or
        $FASTDL_DATA, when the search reaches it, names no directory.
    """
    found, incomplete = _files.search(NAME, FILES, path)
    if found is not None:
        return found[0].parent
    if incomplete is not None:
        directory, (lacking,), origin = incomplete
        held = IMAGES if lacking == LABELS else LABELS
        raise _files.DatasetNotFoundError(f"{directory}{_files.where(origin)} holds the clocks' {held} but "
                                          f"not their {lacking}: the clocks need both")
    return None


def _fastdl_sidecar(directory):
    """The checked ``clocks.json`` of the synthetic set in ``directory``; None where there is
    none, or where it is not fastdl's (the course's files may come with a file of that name:
    it is ignored with a warning, never taken for a damaged set of fastdl's). One that holds
    fastdl's mark but does not parse is fastdl's, damaged: read_sidecar says so."""
    path = Path(directory) / SIDECAR
    if not path.is_file():
        return None
    if _files.marked_by_fastdl(path) is None and not _files.names_fastdls_mark(path):
        warnings.warn(f"ignoring {path}: not a clocks.json fastdl wrote (JSON with kind "
                      f"'{SYNTHETIC_KIND}'), so {IMAGES} and {LABELS} there are read as the "
                      f"course's clocks", stacklevel=3)
        return None
    return read_sidecar(directory)


def _outdated_sidecar(directory):
    """The sidecar of the cache's own synthetic set when another renderer version made it, or
    made it before its clocks were one clock (fastdl's default set then had varied clocks and its
    clocks.json no "faces"); else None. A set generated elsewhere is the user's data and is kept
    as it is."""
    if Path(directory) != default_directory() or _files.marked_by_fastdl(Path(directory) / SIDECAR) is None:
        return None
    from fastdl.data import clock_render

    try:
        sidecar = read_sidecar(directory)
    except ValueError:
        return None  # reported when the set is read
    old = (sidecar.get("renderer_version") != clock_render.RENDERER_VERSION
           or "faces" not in sidecar)
    if old and sidecar.get("seed") == SYNTHETIC_SEED and sidecar.get("n") == SYNTHETIC_N:
        return sidecar
    return None


def _render_again(directory, sidecar):
    """Render the cache's outdated set again with the settings its sidecar records (a sidecar
    from before they were all recorded: the defaults), saying so on stderr."""
    if all(key in sidecar for key in SETTINGS):
        settings, which = {key: sidecar[key] for key in SETTINGS}, "their recorded settings"
    else:
        settings = {"faces": SYNTHETIC_FACES, "max_turn": SYNTHETIC_MAX_TURN, "size": IMAGE_SIZE}
        which = "the new default settings"
    print(f"fastdl: re-rendering the synthetic clocks in {directory} with {which} "
          f"({_describe_clocks(settings['faces'], settings['max_turn'])}, "
          f"{settings['size']}x{settings['size']}): they were made by an older version of fastdl",
          file=sys.stderr, flush=True)
    generate_clocks(SYNTHETIC_N, SYNTHETIC_SEED, directory, **settings)


def _describe_clocks(faces, max_turn):
    """E.g. "one clock, turned at most 30 degrees" or "varied clocks"."""
    turned = f", turned at most {max_turn:g} degrees" if max_turn != 180.0 else ""
    return {"one": "one clock", "varied": "varied clocks"}[faces] + turned


def locations(data_dir=None):
    """Where the clocks are looked for, in order, as (place, note) strings (`fastdl data list`)."""
    places = _files.describe_places(NAME, data_dir)
    places.append((str(default_directory()), "else: synthetic clocks, rendered there on first use "
                   "(`fastdl data generate clocks`)"))
    return places


def read_sidecar(directory):
    """The parsed ``clocks.json`` of a synthetic set; ValueError names it when malformed (with
    the hint to delete and re-generate the set: callers check it is fastdl's first)."""
    path = Path(directory) / SIDECAR
    try:
        with open(path, encoding="utf-8") as stream:
            sidecar = json.load(stream)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); {_regenerate_hint(directory)}") \
            from error
    digests = sidecar.get("sha256") if isinstance(sidecar, dict) else None
    if (sidecar is None or not isinstance(digests, dict) or sidecar.get("kind") != SYNTHETIC_KIND
            or any(not isinstance(digests.get(name), str) for name in FILES)
            or "renderer" not in sidecar or "seed" not in sidecar):
        raise ValueError(f"{path} does not describe a synthetic clock set (it needs kind "
                         f"'synthetic', renderer, seed and the SHA-256 of {IMAGES} and "
                         f"{LABELS}); {_regenerate_hint(directory)}")
    _check_recorded_settings(sidecar, path, directory)
    return sidecar


def _check_recorded_settings(sidecar, path, directory):
    """Raise ValueError unless the seed and settings a sidecar records (older ones lack some)
    are what generate_clocks accepts: a hand-edited value would crash or mislead later."""
    from fastdl.data import clock_render

    checks = {"seed": lambda value: check_int(value, "seed", 0),
              "size": lambda value: check_int(value, "size", clock_render.MIN_SIZE, clock_render.MAX_SIZE),
              "max_turn": clock_render.check_max_turn, "faces": clock_render.check_faces}
    for key, check in checks.items():
        if key in sidecar:
            try:
                check(sidecar[key])
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path} records an invalid {key} ({error}); "
                                 f"{_regenerate_hint(directory)}") from None


def check_headers(images_path, labels_path):
    """Check both files' .npy headers and sizes before reading them; return the image count."""
    image_shape, image_dtype = _files.read_npy_header(images_path)
    label_shape, label_dtype = _files.read_npy_header(labels_path)
    if image_dtype != np.uint8:
        raise ValueError(f"{images_path} holds {image_dtype} images; clock images must be uint8 "
                         f"(0-255 grayscale)")
    if len(image_shape) != 3 or image_shape[1] != image_shape[2]:
        raise ValueError(f"{images_path} holds an array of shape {image_shape}; clock images "
                         f"must be (n_samples, height, width) with height == width")
    if image_shape[0] == 0:
        raise ValueError(f"{images_path} holds no images")
    if image_shape[1] == 0:
        raise ValueError(f"{images_path} holds images of 0x0 pixels")
    if label_dtype.kind not in "iu":
        raise ValueError(f"{labels_path} holds {label_dtype} labels; they must be integers")
    if len(label_shape) != 2 or label_shape[1] != 2:
        raise ValueError(f"{labels_path} holds an array of shape {label_shape}; labels must be "
                         f"(n_samples, 2) = [hour, minute]")
    if label_shape[0] != image_shape[0]:
        raise ValueError(f"{labels_path} holds {label_shape[0]} labels but {images_path} holds "
                         f"{image_shape[0]} images")
    return image_shape[0]


def check_label_range(labels, path):
    """Raise ValueError unless every hour is 0-11 and every minute 0-59."""
    for column, what, limit in ((0, "hour", N_HOURS), (1, "minute", N_MINUTES)):
        values = labels[:, column]
        bad = np.flatnonzero((values < 0) | (values >= limit))
        if bad.size:
            raise ValueError(f"{path}: {what} {values[bad[0]]} in row {bad[0]} is outside "
                             f"0-{limit - 1} ({bad.size} such rows)")


def _check_recorded_digest(directory, file_name, sidecar):
    """Raise ValueError unless a synthetic file's SHA-256 is the one in its sidecar."""
    path = Path(directory) / file_name
    expected, actual = sidecar["sha256"][file_name], _files.file_sha256(path)
    if actual != expected:
        raise ValueError(f"{path} does not match the SHA-256 recorded in {SIDECAR} when it was "
                         f"generated ({actual}, expected {expected}): the synthetic set is "
                         f"damaged or was changed. {_regenerate_hint(directory, sidecar)}")


def _regenerate_hint(directory, sidecar=None):
    """How to replace a broken synthetic set in ``directory`` (the same set, where its checked
    sidecar says how it was made)."""
    recorded = {} if sidecar is None else {key: sidecar[key] for key in ("n", "seed", "max_turn", "faces", "size")
                                           if key in sidecar}
    return _files.regenerate_hint(directory, NAME, default_directory(), IMAGE_SIZE, "load_clocks", recorded)


def _check_rendered(images, labels, n, size):
    """The renderer's output as C-contiguous uint8 / int64, checked against its contract."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.shape != (n, size, size):
        raise RuntimeError(f"render_clocks returned images {images.dtype} {images.shape}, "
                           f"expected uint8 {(n, size, size)}")
    if labels.dtype.kind not in "iu" or labels.shape != (n, 2):
        raise RuntimeError(f"render_clocks returned labels {labels.dtype} {labels.shape}, "
                           f"expected integers {(n, 2)}")
    check_label_range(labels, "render_clocks labels")
    return np.ascontiguousarray(images), np.ascontiguousarray(labels, dtype=np.int64)


def _sidecar(n, seed, size, digests, max_turn, faces):
    """The content of ``clocks.json``."""
    import fastdl
    from fastdl.data import clock_render

    version = getattr(fastdl, "__version__", "unknown")
    renderer_version = getattr(clock_render, "RENDERER_VERSION", None)
    renderer = f"fastdl {version} clock renderer" + (f" v{renderer_version}"
                                                     if renderer_version is not None else "")
    return {"kind": SYNTHETIC_KIND, "renderer": renderer, "fastdl_version": version,
            "renderer_version": renderer_version, "seed": seed, "n": n, "size": size,
            "max_turn": float(max_turn), "faces": faces,
            "files": list(FILES), "sha256": digests}
