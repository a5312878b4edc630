"""Synthetic cartoon faces written to disk (assignment 6's data without the course's).

:func:`generate_faces` renders faces with :func:`fastdl.data.render_faces` and writes
``images.npy`` (uint8, (n, size, size, 3) RGB), ``factors.npy`` (float64, (n, n_factors): the
generative factors, columns named by ``FACTOR_NAMES``) and a sidecar ``faces.json`` recording
the renderer, seed, count, factor names and each file's SHA-256, into ``<cache>/faces`` by
default ($FASTDL_CACHE_DIR or ~/.cache/fastdl), as the clocks' generator does.
"""

from pathlib import Path

from fastdl import config
from fastdl._validation import check_int
from fastdl.data import _files

NAME = "faces"
IMAGES = "images.npy"
FACTORS = "factors.npy"
FILES = (IMAGES, FACTORS)
SIDECAR = "faces.json"
SYNTHETIC_KIND = _files.SYNTHETIC_KIND
SYNTHETIC_N = 10000     # about the size of Kaggle's Simpsons faces (9,877)
SYNTHETIC_SEED = 0
IMAGE_SIZE = 64


def default_directory():
    """Where the synthetic faces are written by default: ``<cache>/faces``."""
    return config.cache_dir() / NAME


def generate_faces(n=SYNTHETIC_N, seed=SYNTHETIC_SEED, directory=None, size=IMAGE_SIZE):
    """Render synthetic faces and write them as ``images.npy``, ``factors.npy``, ``faces.json``.

    Each file is written to a hidden temporary file beside its target, flushed to disk and then
    renamed over it, so an interrupted run (an error, Ctrl-C, a full disk) leaves no temporary
    files; ``faces.json`` is put in place first, so old or missing data files beside a new
    sidecar fail its checksums instead of passing for a complete set.

    Parameters
    ----------
    n : int >= 1, default 10000
        Number of faces.
    seed : int >= 0, default 0
        Seed of the renderer; face k depends only on (seed, k).
    directory : str or Path, optional
        Where to write; default ``<cache>/faces`` ($FASTDL_CACHE_DIR or ~/.cache/fastdl).
    size : int, default 64
        Height and width of the images (16 to 2048).

    Returns
    -------
    Path
        The directory written.

    Raises
    ------
    TypeError, ValueError
        ``n``, ``seed`` or ``size`` is invalid (nothing is rendered or written then), or
        ``directory`` holds face files without a ``faces.json``, or a ``faces.json`` fastdl did
        not write (someone's own data, which is never overwritten).
    """
    from fastdl.data import face_render  # the renderer's kernels load only when rendering

    n = check_int(n, "n", 1)
    seed = check_int(seed, "seed", 0, 2 ** 64 - 1)
    size = check_int(size, "size", face_render.MIN_SIZE, face_render.MAX_SIZE)
    directory = Path(directory).expanduser() if directory is not None else default_directory()
    _files.refuse_to_overwrite(directory, FILES, SIDECAR, "not a synthetic set")
    _files.check_writable(directory)  # said before rendering, not after

    images, factors = face_render.render_faces(n, seed=seed, size=size)
    return _files.write_array_set(directory, {IMAGES: images, FACTORS: factors}, SIDECAR,
                                  lambda digests: _sidecar(n, seed, size, digests))


def _sidecar(n, seed, size, digests):
    """The content of ``faces.json``."""
    import fastdl
    from fastdl.data import face_render

    version = getattr(fastdl, "__version__", "unknown")
    return {"kind": SYNTHETIC_KIND,
            "renderer": f"fastdl {version} face renderer v{face_render.RENDERER_VERSION}",
            "fastdl_version": version, "renderer_version": face_render.RENDERER_VERSION,
            "seed": seed, "n": n, "size": size,
            "factor_names": list(face_render.FACTOR_NAMES),
            "hair_styles": list(face_render.HAIR_STYLES),
            "files": list(FILES), "sha256": digests}


def check_generated(path, verify=True):
    """With ``verify``, raise ValueError where ``path`` is a file of a set generate_faces wrote (a
    ``faces.json`` of fastdl's beside it records the file's SHA-256) and its bytes no longer have
    that SHA-256, or where that ``faces.json`` is cut short (it holds fastdl's mark but is no
    JSON). Other files (the course's faces, a user's own array beside a sidecar of their own or
    none) are not checked."""
    path = Path(path)
    sidecar_path = path.parent / SIDECAR
    if not verify or not sidecar_path.is_file():
        return
    if _files.damaged_sidecar(sidecar_path):
        raise ValueError(f"{sidecar_path} is damaged (not the JSON generate_faces writes); "
                         f"{_regenerate_hint(path.parent)}, or pass verify=False (--no-verify) to read "
                         f"{path.name} unchecked")
    sidecar = _files.marked_by_fastdl(sidecar_path)
    digests = sidecar.get("sha256") if sidecar is not None else None
    expected = digests.get(path.name) if isinstance(digests, dict) else None
    if not isinstance(expected, str):
        return  # someone else's file of that name, or one that does not name this file
    actual = _files.file_sha256(path)
    if actual != expected:
        raise ValueError(f"{path} does not match the SHA-256 recorded in {SIDECAR} when it was generated "
                         f"({actual}, expected {expected}): the synthetic set is damaged or was changed. "
                         f"{_regenerate_hint(path.parent, sidecar)}, or pass verify=False (--no-verify) to read it as it "
                         "is")


def _regenerate_hint(directory, sidecar=None):
    """How to replace a broken synthetic set in ``directory`` (the same set, where its sidecar
    says how it was made)."""
    recorded = {} if sidecar is None else {key: sidecar[key] for key in ("n", "seed", "size") if key in sidecar}
    return _files.regenerate_hint(directory, NAME, default_directory(), IMAGE_SIZE, settings=recorded)
