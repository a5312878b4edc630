"""Faces for assignment 6 from a folder of images (Kaggle's Simpsons faces) or the course's .npy array.

:func:`load_image_folder` reads every PNG and JPEG under a folder (following links to folders) with
Pillow, lays transparent pixels on white, centre-crops each to a square, resizes it and keeps the
result as one .npy in the cache ($FASTDL_CACHE_DIR, default ~/.cache/fastdl, subfolder
``image-folders``), beside a JSON record of the files it came from: their relative paths, sizes in
bytes and modification times (null for a link to nothing). A later call whose folder still holds
exactly those files reads the .npy; any change reads the images again. The caches of all folders
together stay within CACHE_MAX_BYTES: each write removes the least recently used others beyond it.
:func:`load_face_array` brings a .npy of faces to the same uint8 (n, size, size, 3) form.
"""

import contextlib
import hashlib
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from fastdl import config
from fastdl._validation import check_int
from fastdl.data import _files

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_SIZE = 4
CACHE_SUBDIR = "image-folders"
RECORD_FORMAT = 3  # bump when the images a folder gives change (crop, filter), to re-read every cache
NAMES_SHOWN = 5  # unreadable files named in the warning
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")  # Pillow modes with an alpha channel
BACKGROUND = (255, 255, 255, 255)  # opaque white, under transparent pixels
# The folders' caches together (records and arrays): past this, a write removes the least recently
# used others (a record's modification time is its last use: a read touches it).
CACHE_MAX_BYTES = 4 << 30
ORPHAN_AGE_S = 24 * 3600  # an array no record names (a write stopped before its record) goes after this
# The names _write_cache gives arrays (_cache_paths' stem, then random hex): only these are orphans.
_ARRAY_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}-[0-9a-f]{16}-[0-9]+px-[0-9a-f]{8}\.npy")


def load_image_folder(path, size=64, cache=True):
    """Every PNG and JPEG under a folder, as square RGB images of one size.

    Parameters
    ----------
    path : str or Path
        A folder; its images are found recursively (.png, .jpg, .jpeg in any case) and ordered
        by their path relative to it. Other files are ignored. Links to folders are followed; a
        folder reached twice (through two links, or a link loop) is read once, under the path
        walked first (subfolders in sorted order, depth first).
    size : int, default 64
        Side of the square output images, >= 4.
    cache : bool, default True
        Keep the result in the cache and reuse it while the folder's images are unchanged (the
        same relative paths, sizes in bytes and modification times; through a link, those of the
        file it points to). The caches of all folders and sizes together are kept within
        CACHE_MAX_BYTES (4 GiB), the least recently used removed first.

    Returns
    -------
    ndarray of shape (n_images, size, size, 3), uint8
        Each image turned upright as its EXIF orientation says, converted to RGB (16-bit and
        float pixels scaled to 0..255), its centre square cropped (the shorter side's length)
        and resized (Lanczos when shrinking, bicubic when enlarging). Transparent pixels (an
        alpha channel, or a PNG's transparent colour) become white, and half-transparent ones
        are blended with white, so the transparent background of a cut-out face is one defined
        colour; Keras' load_img keeps the colour stored under them, which can be anything.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    NotADirectoryError
        ``path`` is a file.
    ValueError
        ``size`` is below 4; the folder holds no PNG or JPEG, or none that can be read.
    TypeError
        ``size`` is not an integer (a bool or a float such as 64.0 included).

    Warns
    -----
    UserWarning
        Images that cannot be read (damaged, truncated, not really images, links to nothing) are
        skipped; the warning gives their count and the first few names with the reason (again on
        every call that uses them).
    """
    size = check_int(size, "size", MIN_SIZE)
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{str(root)!r} is a file, not a folder of images")
    root = root.resolve()
    files = _image_files(root)
    if not files:
        raise ValueError(f"no images under {root}: looked for {', '.join(IMAGE_SUFFIXES)} files (any case) "
                         "in it and its subfolders")
    listing = [[relative, stat.st_size, stat.st_mtime_ns] if stat else [relative, None, None]
               for relative, _, stat in files]
    record_path, array_stem = _cache_paths(root, size)
    if cache:
        cached = _read_cache(record_path, root, size, listing)
        if cached is not None:
            images, skipped = cached
            _warn_skipped(skipped, len(files), root)
            return images
    images, skipped = _read_images(files, size)
    if len(skipped) == len(files):
        raise ValueError(f"none of the {len(files)} images under {root} could be read: "
                         + _describe(skipped))
    _warn_skipped(skipped, len(files), root)
    if cache:
        _write_cache(record_path, array_stem, root, size, listing, images, skipped)
    return images


def load_face_array(path, size=64, verify=True):
    """A .npy of faces as uint8 RGB images of one size, as load_image_folder returns them.

    Parameters
    ----------
    path : str or Path
        A .npy file (no pickles) holding an array of shape (n, h, w, 3) (RGB), (n, h, w, 1) or
        (n, h, w) (grayscale, repeated to 3 channels): uint8, integers in 0..255, or floats in
        0..1 (scaled by 255; an array whose maximum is at most 1 is read this way) or 0..255.
    size : int, default 64
        Side of the square output images, >= 4; other sizes are centre-cropped and resized.
    verify : bool, default True
        For a set :func:`fastdl.data.generate_faces` wrote, check the file against the SHA-256
        its ``faces.json`` records.

    Returns
    -------
    ndarray of shape (n, size, size, 3), uint8

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (IsADirectoryError: it is a folder).
    ValueError
        Another shape (also (h, w, 3): one image, not a set), no images, NaN or infinity, values
        outside 0..255, a non-numeric array (strings, complex numbers, booleans), a file that is
        not a .npy (empty, truncated, a .npz archive), a pickled or object array; ``size`` below 4;
        a generated set's file that differs from its recorded SHA-256, or its damaged ``faces.json``.
    TypeError
        ``size`` not an integer.
    """
    size = check_int(size, "size", MIN_SIZE)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"face array {str(path)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder; load_image_folder reads folders of images")
    from fastdl.data import faces as generated  # (it imports nothing of this module's)

    generated.check_generated(path, verify)
    faces = _as_rgb_uint8(_files.load_npy(path), path)
    if faces.shape[1:3] != (size, size):
        from PIL import Image

        faces = np.stack([_square(Image.fromarray(face), size) for face in faces])
    return faces


def _image_files(root):
    """(relative posix path, Path, os.stat_result, None for a broken link) of every image under root, by path.

    Links to folders are followed; each folder, known by its (device, inode), is walked once, so
    two links to one folder or a link to a folder above it give its images once.
    """
    found, walked = [], set()
    for directory, subfolders, names in os.walk(root, followlinks=True):
        try:
            folder = os.stat(directory)
            identity = (folder.st_dev, folder.st_ino)
        except OSError:  # removed meanwhile
            identity = None
        if identity is None or identity in walked:
            subfolders.clear()
            continue
        walked.add(identity)
        subfolders.sort()
        for name in names:
            if name.lower().endswith(IMAGE_SUFFIXES):
                full = Path(directory) / name
                relative = full.relative_to(root).as_posix()
                try:
                    stat = full.stat()
                except OSError:  # a link to nothing is counted (and skipped); a file removed meanwhile is not
                    if full.is_symlink():
                        found.append((relative, full, None))
                    continue
                if full.is_file():
                    found.append((relative, full, stat))
    return sorted(found, key=lambda item: item[0])


def _read_images(files, size):
    """(images, skipped): the readable images as uint8 (n, size, size, 3), and [relative path, reason] of the rest."""
    from PIL import Image
    from tqdm import tqdm

    images = np.empty((len(files), size, size, 3), np.uint8)
    skipped, count = [], 0
    for relative, full, stat in tqdm(files, desc="reading images", unit="image", disable=not sys.stderr.isatty()):
        if stat is None:
            skipped.append([relative, "broken link"])
            continue
        try:
            with Image.open(full) as image:
                image.load()  # decodes now: a truncated file fails here, not later
                images[count] = _square(_upright_rgb(image), size)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
            skipped.append([relative, f"{type(error).__name__}: {error}"])
            continue
        count += 1
    return images[:count].copy() if count < len(files) else images, skipped


def _upright_rgb(image):
    """The PIL image turned as its EXIF orientation says (phone photos), as 8-bit RGB on white.

    Pillow's convert("RGB") clips wide pixel values to 255 instead of scaling them, so 16-bit
    images ("I;16*"; "I" is what older Pillow versions give for 16-bit PNGs) are scaled from
    0..65535, and float images ("F") from 0..1 (when their maximum is at most 1) or 0..255,
    as load_face_array reads floats. convert("RGB") also drops alpha, showing whatever colour
    is stored under transparent pixels, so images with alpha (Pillow reads 16-bit RGBA and
    grey+alpha PNGs as 8-bit "RGBA") or a transparent colour (info["transparency"]) are
    composited onto opaque white first.
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    transparency = image.info.get("transparency")
    if image.mode.startswith("I") or image.mode == "F":
        samples = np.asarray(image)
        pixels = np.nan_to_num(samples.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if image.mode == "F":
            scale = 255.0 if pixels.max(initial=0.0) <= 1.0 else 1.0
        else:
            scale = 255.0 / 65535.0
        image = Image.fromarray(np.rint(np.clip(pixels * scale, 0, 255)).astype(np.uint8))
        if isinstance(transparency, int):  # a 16-bit grey PNG's transparent level, compared before scaling
            alpha = np.where(samples == transparency, 0, 255).astype(np.uint8)
            image = Image.merge("LA", [image, Image.fromarray(alpha)])
    elif image.mode == "RGB" and isinstance(transparency, tuple) and max(transparency) > 255:
        # A 16-bit RGB PNG's transparent colour: Pillow keeps the high byte of each sample, so does this.
        image.info["transparency"] = tuple(value >> 8 for value in transparency)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, BACKGROUND), image.convert("RGBA"))
    return image.convert("RGB")


def _square(image, size):
    """The RGB PIL image's centre square (side: its shorter side), resized to size x size, as uint8 (size, size, 3)."""
    from PIL import Image

    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Cropped first: resize(box=...) would let the filter read pixels outside the square.
    square = image.crop((left, top, left + side, top + side))
    if side != size:
        # Lanczos averages over every source pixel when shrinking (no aliasing); bicubic when enlarging.
        resample = Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC
        square = square.resize((size, size), resample)
    return np.asarray(square, dtype=np.uint8)


def check_face_array_form(shape, dtype, path):
    """ValueError naming path unless a face array of this shape and dtype (a .npy's header gives
    both: checked before anything is read) can be faces: real numbers, (n, height, width, 3) or
    grayscale (n, height, width[, 1]), at least one image. Every fault of the contents is a
    ValueError (the CLI says it in one line)."""
    if dtype == object or dtype == np.bool_ or not np.issubdtype(dtype, np.number) \
            or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{path} must hold real numbers (uint8, or floats in 0..1 or 0..255), got dtype {dtype}")
    shape = tuple(shape)
    if len(shape) == 3 and shape[2] == 3:  # grayscale images 3 pixels wide are not faces
        raise ValueError(f"{path} holds one RGB image of shape {shape}, not a set of faces: "
                         "save an array of shape (n, height, width, 3)")
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3))):
        raise ValueError(f"{path} must hold faces of shape (n, height, width, 3) or grayscale (n, height, width), "
                         f"got shape {shape}")
    if math.prod(shape) == 0:
        raise ValueError(f"{path} holds no images: shape {shape}")


def _as_rgb_uint8(array, path):
    """A face array as uint8 (n, h, w, 3), after checking its shape, type and range."""
    check_face_array_form(array.shape, array.dtype, path)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        if not np.isfinite(array).all():
            raise ValueError(f"{path} contains NaN or infinity")
        low, high = array.min(), array.max()
        if low < 0 or high > 255:
            raise ValueError(f"{path} must hold values in 0..1 or 0..255, got {low:g}..{high:g}")
        scale = 255.0 if np.issubdtype(array.dtype, np.floating) and high <= 1 else 1.0
        converted = np.empty(array.shape, np.uint8)
        for start in range(0, len(array), 1024):  # in chunks: a float64 copy of all faces can be gigabytes
            converted[start : start + 1024] = np.rint(array[start : start + 1024].astype(np.float64) * scale)
        array = converted
    if array.ndim == 3:
        array = np.repeat(array[..., None], 3, axis=3)
    return np.ascontiguousarray(array)


def _describe(skipped):
    names = ", ".join(f"{relative} ({reason})" for relative, reason in skipped[:NAMES_SHOWN])
    return names + (f", and {len(skipped) - NAMES_SHOWN} more" if len(skipped) > NAMES_SHOWN else "")


def _warn_skipped(skipped, n_files, root):
    if skipped:
        warnings.warn(f"skipped {len(skipped)} of {n_files} images under {root} that could not be read: "
                      + _describe(skipped), stacklevel=3)


def _cache_paths(root, size):
    """(record path, array file name stem) of a folder's cache at this size."""
    key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    # The folder's name, for people looking in the cache; the hash of its whole path tells folders apart.
    name = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in root.name)[:40] or "root"
    stem = f"{name}-{key}-{size}px"
    return config.cache_dir() / CACHE_SUBDIR / f"{stem}.json", stem


def _read_cache(record_path, root, size, listing):
    """(images, skipped) from the cache when its record matches the folder's files now, else None."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if (record.get("format") != RECORD_FORMAT or record.get("folder") != str(root) or record.get("size") != size
                or record.get("files") != listing):
            return None
        images = _files.load_npy(record_path.parent / record["array"])  # any damage: a ValueError
        if images.dtype != np.uint8 or images.shape != (record["n_images"], size, size, 3):
            return None
        with contextlib.suppress(OSError):
            os.utime(record_path)  # its last use, for _prune_cache
        return images, record["skipped"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, damaged or foreign: read again
        return None


def _write_cache(record_path, array_stem, root, size, listing, images, skipped):
    """Save images under a new name, then the record naming them, then remove the array it replaced.

    The record is written last and names its own array, so a run stopped half-way leaves either
    the old record with its old array or the new pair, never a record with the wrong images. A
    cache that cannot be written only costs a warning.
    """
    directory = record_path.parent
    array_name = f"{array_stem}-{os.urandom(4).hex()}.npy"
    previous = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        previous = json.loads(record_path.read_text(encoding="utf-8")).get("array")
    try:
        with _files.atomic_write(directory / array_name) as stream:
            np.save(stream, images, allow_pickle=False)
        record = dict(format=RECORD_FORMAT, folder=str(root), size=size, array=array_name,
                      n_images=int(images.shape[0]), files=listing, skipped=skipped)
        with _files.atomic_write(record_path, "w") as stream:
            json.dump(record, stream)
            stream.write("\n")
    except OSError as error:
        with contextlib.suppress(OSError):
            (directory / array_name).unlink()
        warnings.warn(f"could not cache the images of {root} in {directory}: {error}", stacklevel=3)
        return
    # Only a plain file name of this folder's own arrays, whatever a damaged record says.
    if isinstance(previous, str) and previous.startswith(array_stem) and Path(previous).name == previous:
        with contextlib.suppress(OSError):
            (directory / previous).unlink()
    _prune_cache(directory, keep=record_path)


def _prune_cache(directory, keep):
    """Remove other folders' caches (record, then its array), least recently used first, while all
    of them take more than CACHE_MAX_BYTES, and arrays named as _write_cache names them that no
    record names and are older than ORPHAN_AGE_S (younger ones may be another process's write in
    progress). Records of another format (another fastdl version sharing the cache) are neither
    counted nor removed, nor their arrays; other files are left alone; nothing here raises."""
    entries, named = [], set()
    total = 0
    for record_path in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            record = json.loads(record_path.read_text(encoding="utf-8"))
            array = record.get("array")
            if not (isinstance(array, str) and Path(array).name == array):
                continue
            named.add(array)
            if record.get("format") != RECORD_FORMAT:
                continue
            used = record_path.stat().st_mtime_ns
            size = record_path.stat().st_size + (directory / array).stat().st_size
            total += size
            entries.append((used, record_path, array, size))
    for used, record_path, array, size in sorted(entries):
        if total <= CACHE_MAX_BYTES:
            break
        if record_path == keep:
            continue
        with contextlib.suppress(OSError):
            # Read or rewritten since the listing (another process): in use, kept.
            if record_path.stat().st_mtime_ns == used:
                record_path.unlink()  # first: a record never names a missing array
                (directory / array).unlink(missing_ok=True)
        if not record_path.exists():  # gone, by this process or another: no longer counted
            total -= size
    now = time.time()
    for array_path in directory.glob("*.npy"):
        with contextlib.suppress(OSError):
            if (array_path.name not in named and _ARRAY_NAME.fullmatch(array_path.name)
                    and now - array_path.stat().st_mtime > ORPHAN_AGE_S):
                array_path.unlink()
