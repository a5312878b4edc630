"""fastdl.data.image_folder: faces from a folder of PNG/JPEG files (cached) or from a .npy array."""

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fastdl.data import image_folder
from fastdl.data.image_folder import load_face_array, load_image_folder

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(directory))
    return directory / image_folder.CACHE_SUBDIR


def _save(path, colour, size=(10, 10), mode="RGB", **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, **options)
    return path


def _noise_png(path, rng, size=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Four images of different sizes, formats and modes in nested folders, and files that are not images."""
    root = tmp_path / "faces"
    _save(root / "a.png", RED, (10, 10))
    _save(root / "Z.PNG", YELLOW, (6, 9), mode="RGBA")  # upper case sorts first
    _save(root / "sub" / "b.JPG", GREEN, (20, 12), quality=95)
    _save(root / "sub" / "deeper" / "c.jpeg", BLUE, (8, 16), quality=95)
    _save(root / "sub" / "gray.png", 128, (9, 9), mode="L")
    (root / "notes.txt").write_text("not an image")
    _save(root / "sub" / "anim.gif", RED)  # not a PNG or JPEG: ignored
    return root


def test_reads_every_png_and_jpeg_recursively_in_path_order(folder):
    images = load_image_folder(folder, size=8)
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.uint8
    # Z.PNG, a.png, sub/b.JPG, sub/deeper/c.jpeg, sub/gray.png
    for image, colour in zip(images, [YELLOW, RED, GREEN, BLUE, (128, 128, 128)]):
        np.testing.assert_allclose(image.reshape(-1, 3), np.broadcast_to(colour, (64, 3)), atol=3)


def test_centre_crop_of_a_wide_image(tmp_path):
    # 40 x 20: four 10-pixel stripes; the centre square is columns 10-29, green then blue.
    stripes = np.zeros((20, 40, 3), np.uint8)
    for i, colour in enumerate([RED, GREEN, BLUE, YELLOW]):
        stripes[:, 10 * i : 10 * (i + 1)] = colour
    Image.fromarray(stripes).save(tmp_path / "wide.png")
    exact = load_image_folder(tmp_path, size=20, cache=False)[0]  # the crop alone
    np.testing.assert_array_equal(exact, stripes[:, 10:30])
    shrunk = load_image_folder(tmp_path, size=10, cache=False)[0]
    np.testing.assert_allclose(shrunk[:, :3].reshape(-1, 3), np.broadcast_to(GREEN, (30, 3)), atol=2)
    np.testing.assert_allclose(shrunk[:, 7:].reshape(-1, 3), np.broadcast_to(BLUE, (30, 3)), atol=2)


def test_centre_crop_of_a_tall_image_and_enlarging(tmp_path):
    tall = np.zeros((9, 3, 3), np.uint8)
    tall[:3], tall[3:6], tall[6:] = RED, GREEN, BLUE  # the centre square is the green rows
    Image.fromarray(tall).save(tmp_path / "tall.png")
    np.testing.assert_array_equal(load_image_folder(tmp_path, size=4, cache=False)[0], np.full((4, 4, 3), GREEN))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    gradient = np.repeat((np.arange(32) * 2114).astype(np.uint16)[None, :], 32, axis=0)  # 0 .. 65534
    path = tmp_path / "deep" / "g.png"
    path.parent.mkdir()
    Image.fromarray(gradient).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I")  # "I;16" (older Pillow: "I")
    images = load_image_folder(path.parent, size=32)
    np.testing.assert_array_equal(images[0, 0, :, 0], np.rint(gradient[0] / 257).astype(np.uint8))
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


@pytest.mark.parametrize("pixels, expected", [
    (np.array([[0, 65535]], np.int32), [0, 255]),  # "I": 16-bit samples, as older Pillow reads 16-bit PNGs
    (np.array([[0.0, 0.5]], np.float32), [0, 128]),  # "F" in 0..1
    (np.array([[0.0, 200.0]], np.float32), [0, 200]),  # "F" in 0..255
])
def test_wide_modes_are_scaled_to_bytes(pixels, expected):
    rgb = np.asarray(image_folder._upright_rgb(Image.fromarray(pixels)))
    assert rgb.shape == (1, 2, 3) and rgb[0, :, 1].tolist() == expected


def test_exif_orientation_is_applied(tmp_path):
    # Stored with red on top; orientation 6 says "turn 90 degrees clockwise to view": red on the right.
    stored = np.zeros((16, 16, 3), np.uint8)
    stored[:8], stored[8:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "photos").mkdir()
    Image.fromarray(stored).save(tmp_path / "photos" / "phone.png", exif=exif)
    image = load_image_folder(tmp_path / "photos", size=16)[0]
    np.testing.assert_array_equal(image[:, 12], np.broadcast_to(RED, (16, 3)))
    np.testing.assert_array_equal(image[:, 3], np.broadcast_to(BLUE, (16, 3)))


def test_unreadable_images_are_skipped_with_a_warning(folder, rng):
    data = _noise_png(folder / "broken.png", rng).read_bytes()
    (folder / "broken.png").write_bytes(data[: len(data) // 2])  # truncated
    (folder / "sub" / "garbage.jpg").write_bytes(bytes(rng.integers(0, 256, 500, dtype=np.uint8)))
    with pytest.warns(UserWarning, match=r"skipped 2 of 7 images under .*: broken.png \(.*\), sub/garbage.jpg"):
        images = load_image_folder(folder, size=8)
    assert images.shape == (5, 8, 8, 3)
    # The cached result says the same.
    with pytest.warns(UserWarning, match=r"skipped 2 of 7 images"):
        np.testing.assert_array_equal(load_image_folder(folder, size=8), images)


def test_many_unreadable_images_are_counted_and_a_few_named(tmp_path):
    _save(tmp_path / "good.png", RED)
    for i in range(8):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match=r"skipped 8 of 9 images .*bad4.jpg .*, and 3 more$"):
        assert load_image_folder(tmp_path, size=4).shape == (1, 4, 4, 3)


def test_folder_without_readable_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no images under .*: looked for \.png, \.jpg, \.jpeg"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="no images under"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=r"none of the 1 images under .* could be read: bad.png"):
        load_image_folder(tmp_path)


def test_missing_path_and_file_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError, match="a.png"):
        load_image_folder(_save(tmp_path / "a.png", RED))


@pytest.mark.parametrize("size, error", [(3, ValueError), (0, ValueError), (8.0, TypeError), (True, TypeError),
                                         ("64", TypeError)])
def test_size_is_checked(folder, size, error):
    with pytest.raises(error, match="size"):
        load_image_folder(folder, size=size)
    with pytest.raises(error, match="size"):
        load_face_array(folder / "a.png", size=size)


def _forbid_reading(monkeypatch):
    def fail(*args):
        raise AssertionError("the images were read again instead of coming from the cache")

    monkeypatch.setattr(image_folder, "_read_images", fail)


def test_second_call_comes_from_the_cache(folder, cache_dir, monkeypatch):
    first = load_image_folder(folder, size=8)
    records, arrays = sorted(cache_dir.glob("*.json")), sorted(cache_dir.glob("*.npy"))
    assert len(records) == 1 and len(arrays) == 1
    record = json.loads(records[0].read_text())
    assert record["folder"] == str(folder.resolve()) and record["size"] == 8
    assert [row[0] for row in record["files"]] == ["Z.PNG", "a.png", "sub/b.JPG", "sub/deeper/c.jpeg", "sub/gray.png"]
    assert record["files"][1][1] == (folder / "a.png").stat().st_size
    _forbid_reading(monkeypatch)
    np.testing.assert_array_equal(load_image_folder(folder, size=8), first)
    np.testing.assert_array_equal(load_image_folder(str(folder / "sub" / ".."), size=8), first)  # the same folder


def test_any_change_reads_the_images_again(folder, cache_dir):
    load_image_folder(folder, size=8)
    _save(folder / "a.png", BLUE)  # the same size in bytes; a second later, as a coarse clock may show it
    stat = (folder / "a.png").stat()
    os.utime(folder / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    np.testing.assert_allclose(load_image_folder(folder, size=8)[1], np.full((8, 8, 3), BLUE), atol=0)
    _save(folder / "sub" / "new.png", GREEN)
    assert load_image_folder(folder, size=8).shape == (6, 8, 8, 3)
    (folder / "Z.PNG").unlink()
    assert load_image_folder(folder, size=8).shape == (5, 8, 8, 3)
    # Each re-read replaced the cached array instead of adding one.
    assert len(list(cache_dir.glob("*.npy"))) == 1 and len(list(cache_dir.glob("*.json"))) == 1
    assert not list(cache_dir.glob(".*.part"))


def test_each_size_has_its_own_cache_and_cache_false_writes_none(folder, cache_dir, monkeypatch):
    load_image_folder(folder, size=8, cache=False)
    assert not cache_dir.exists()
    small, large = load_image_folder(folder, size=4), load_image_folder(folder, size=6)
    assert small.shape[1:3] == (4, 4) and large.shape[1:3] == (6, 6)
    assert len(list(cache_dir.glob("*.json"))) == 2
    _forbid_reading(monkeypatch)
    assert load_image_folder(folder, size=6).shape[1:3] == (6, 6)


def test_a_damaged_cache_is_read_again(folder, cache_dir):
    first = load_image_folder(folder, size=8)
    next(cache_dir.glob("*.npy")).write_bytes(b"damaged")
    np.testing.assert_array_equal(load_image_folder(folder, size=8), first)
    next(cache_dir.glob("*.json")).write_text("{not json")
    np.testing.assert_array_equal(load_image_folder(folder, size=8), first)


def test_an_unwritable_cache_only_warns(folder, tmp_path, monkeypatch):
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "blocker"))
    with pytest.warns(UserWarning, match="could not cache the images"):
        assert load_image_folder(folder, size=8).shape == (5, 8, 8, 3)


# -- transparency, links ---------------------------------------------------------------------------

WHITE, HIDDEN = (255, 255, 255), (10, 20, 30)


def _png16(path, samples, colour_type, transparent=None):
    """A 16-bit PNG (Pillow writes none with colour or alpha): samples uint16 (h, w) or (h, w, channels)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = samples.shape[:2]
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    trns = chunk(b"tRNS", struct.pack(f">{len(transparent)}H", *transparent)) if transparent else b""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + trns + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _halves(left, right, dtype=np.uint8):
    """A 4 x 4 image: columns 0-1 one pixel value, columns 2-3 another."""
    pixels = np.empty((4, 4) + np.shape(left), dtype)
    pixels[:, :2], pixels[:, 2:] = left, right
    return pixels


def _palette_png(path):
    image = Image.frombytes("P", (4, 4), _halves(0, 1).tobytes())
    image.putpalette([*HIDDEN, *BLUE])
    image.save(path, transparency=0)


@pytest.mark.parametrize("write, opaque", [
    (lambda p: Image.fromarray(_halves((*HIDDEN, 0), (*GREEN, 255)), "RGBA").save(p), GREEN),
    (lambda p: Image.fromarray(_halves((30, 0), (100, 255)), "LA").save(p), (100, 100, 100)),
    (_palette_png, BLUE),  # "P" with a transparent palette entry
    (lambda p: Image.fromarray(_halves(7, 200)).save(p, transparency=7), (200, 200, 200)),
    (lambda p: Image.fromarray(_halves(HIDDEN, BLUE)).save(p, transparency=HIDDEN), BLUE),
    (lambda p: _png16(p, _halves(1234, 32896, np.uint16), 0, (1234,)), (128, 128, 128)),  # grey "I;16", tRNS
    (lambda p: _png16(p, _halves((1000, 2000, 3000, 0), (0, 65535, 0, 65535), np.uint16), 6), GREEN),
    (lambda p: _png16(p, _halves((9000, 0), (32896, 65535), np.uint16), 4), (128, 128, 128)),
    (lambda p: _png16(p, _halves((1000, 2000, 3000), (0, 0, 65535), np.uint16), 2, (1000, 2000, 3000)), BLUE),
], ids=["RGBA", "LA", "P", "L-transparency", "RGB-transparency", "16-bit-grey-transparency", "16-bit-RGBA",
        "16-bit-grey-alpha", "16-bit-RGB-transparency"])
def test_transparent_pixels_become_white(tmp_path, write, opaque):
    write(tmp_path / "face.png")
    image = load_image_folder(tmp_path, size=4, cache=False)[0]
    np.testing.assert_array_equal(image[:, :2], np.full((4, 2, 3), WHITE))  # not the colour stored under them
    np.testing.assert_array_equal(image[:, 2:], np.full((4, 2, 3), opaque))


def test_half_transparent_pixels_are_blended_with_white(tmp_path):
    pixels = _halves((*RED, 0), (*RED, 255))
    pixels[0, 2:] = (*HIDDEN, 0)  # two transparent areas, two hidden colours
    pixels[3] = (*RED, 128)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "face.png")
    image = load_image_folder(tmp_path, size=4, cache=False)[0]
    assert image[1, 0].tolist() == image[0, 3].tolist() == list(WHITE)
    assert image[1, 3].tolist() == list(RED)
    np.testing.assert_allclose(image[3], np.full((4, 3), (255, 127, 127)), atol=1)


def test_caches_of_the_format_before_white_transparency_are_read_again(tmp_path, cache_dir):
    Image.fromarray(_halves((*HIDDEN, 0), (*GREEN, 255)), "RGBA").save(tmp_path / "face.png")
    load_image_folder(tmp_path, size=4)
    record_path = next(cache_dir.glob("*.json"))
    record = json.loads(record_path.read_text())
    record["format"] = 2  # what load_image_folder wrote when it kept the colours under transparent pixels
    record_path.write_text(json.dumps(record))
    np.save(cache_dir / record["array"], np.broadcast_to(np.array(HIDDEN, np.uint8), (1, 4, 4, 3)))
    np.testing.assert_array_equal(load_image_folder(tmp_path, size=4)[0, :, :2], np.full((4, 2, 3), WHITE))


def _link(target, link):
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError) as error:  # Windows without the right to make links
        pytest.skip(f"cannot make symbolic links here: {error}")


def test_linked_folders_are_followed_and_each_folder_read_once(tmp_path, cache_dir):
    root = tmp_path / "faces"
    _save(root / "a.png", RED)
    _save(root / "sub" / "b.png", BLUE)
    _save(tmp_path / "elsewhere" / "x.png", GREEN)
    _link(tmp_path / "elsewhere", root / "again")  # two links to one folder: read once, under "again"
    _link(tmp_path / "elsewhere", root / "part")
    _link(root, root / "loop")  # link loops: the root is not read again
    _link("..", root / "sub" / "up")
    images = load_image_folder(root, size=4)
    assert images.shape == (3, 4, 4, 3)
    for image, colour in zip(images, [RED, GREEN, BLUE]):
        np.testing.assert_array_equal(image, np.full((4, 4, 3), colour))
    record = json.loads(next(cache_dir.glob("*.json")).read_text())
    assert [row[0] for row in record["files"]] == ["a.png", "again/x.png", "sub/b.png"]


def test_changes_inside_a_linked_folder_read_the_images_again(tmp_path):
    root = tmp_path / "faces"
    _save(root / "a.png", RED)
    target = _save(tmp_path / "elsewhere" / "x.png", GREEN)
    _link(tmp_path / "elsewhere", root / "linked")
    load_image_folder(root, size=4)
    _save(target, BLUE)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a coarse clock may not show the change
    np.testing.assert_array_equal(load_image_folder(root, size=4)[1], np.full((4, 4, 3), BLUE))
    _save(tmp_path / "elsewhere" / "y.png", YELLOW)
    assert load_image_folder(root, size=4).shape == (3, 4, 4, 3)


def test_broken_links_are_counted_as_skipped(tmp_path):
    root = tmp_path / "faces"
    _save(root / "good.png", RED)
    _link(tmp_path / "nowhere.png", root / "dead.png")
    for _ in range(2):  # the second call from the cache
        with pytest.warns(UserWarning, match=r"skipped 1 of 2 images under .*: dead.png \(broken link\)$"):
            assert load_image_folder(root, size=4).shape == (1, 4, 4, 3)
    _save(tmp_path / "nowhere.png", BLUE)  # the link now leads to an image: read again
    np.testing.assert_array_equal(load_image_folder(root, size=4)[0], np.full((4, 4, 3), BLUE))
    (root / "good.png").unlink()
    (tmp_path / "nowhere.png").unlink()
    with pytest.raises(ValueError, match=r"none of the 1 images under .* could be read: dead.png \(broken link\)"):
        load_image_folder(root, size=4)

# -- load_face_array -----------------------------------------------------------------------------

def _npy(tmp_path, array, name="faces.npy"):
    np.save(tmp_path / name, array, allow_pickle=True)
    return tmp_path / name


def test_face_array_uint8_and_integers_pass_through(tmp_path, rng):
    faces = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    out = load_face_array(_npy(tmp_path, faces), size=8)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, faces)
    np.testing.assert_array_equal(load_face_array(_npy(tmp_path, faces.astype(np.int64)), size=8), faces)


def test_face_array_floats_in_either_range(tmp_path, rng):
    faces = rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    np.testing.assert_array_equal(load_face_array(_npy(tmp_path, faces / 255.0), size=8), faces)
    np.testing.assert_array_equal(load_face_array(_npy(tmp_path, (faces / 255.0).astype(np.float32)), size=8),
                                  faces)
    np.testing.assert_array_equal(load_face_array(_npy(tmp_path, faces.astype(np.float64)), size=8), faces)


def test_face_array_grayscale_is_repeated(tmp_path, rng):
    gray = rng.integers(0, 256, (2, 8, 8), dtype=np.uint8)
    expected = np.repeat(gray[..., None], 3, axis=3)
    np.testing.assert_array_equal(load_face_array(_npy(tmp_path, gray), size=8), expected)
    np.testing.assert_array_equal(load_face_array(_npy(tmp_path, gray[..., None]), size=8), expected)


def test_face_array_is_cropped_and_resized(tmp_path):
    faces = np.zeros((2, 16, 32, 3), np.uint8)
    faces[0, :, 8:24] = GREEN  # the centre square of a wide image
    faces[1] = BLUE
    out = load_face_array(_npy(tmp_path, faces), size=8)
    assert out.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(out[0], np.full((8, 8, 3), GREEN))
    np.testing.assert_array_equal(out[1], np.full((8, 8, 3), BLUE))


@pytest.mark.parametrize("array, error, match", [
    (np.zeros((8, 8)), ValueError, r"shape \(n, height, width, 3\) or grayscale .*got shape \(8, 8\)"),
    (np.zeros((2, 8, 8, 4)), ValueError, r"got shape \(2, 8, 8, 4\)"),
    (np.zeros((1, 2, 8, 8, 3)), ValueError, r"got shape \(1, 2, 8, 8, 3\)"),
    (np.zeros((8, 8, 3)), ValueError, r"one RGB image .* \(8, 8, 3\)"),
    (np.zeros((0, 8, 8, 3)), ValueError, r"holds no images"),
    (np.full((1, 8, 8, 3), -0.5), ValueError, r"values in 0..1 or 0..255, got -0.5..-0.5"),
    (np.full((1, 8, 8, 3), 300.0), ValueError, r"got 300..300"),
    (np.full((1, 8, 8, 3), np.nan), ValueError, r"NaN or infinity"),
    (np.full((1, 8, 8, 3), "a"), ValueError, r"real numbers .* got dtype <U1"),
    (np.zeros((1, 8, 8, 3), complex), ValueError, r"got dtype complex128"),
    (np.zeros((1, 8, 8, 3), bool), ValueError, r"got dtype bool"),
    (np.array([{"a": 1}], dtype=object), ValueError, r"pickled/object arrays are refused"),
])
def test_face_array_bad_input(tmp_path, array, error, match):
    with pytest.raises(error, match=match):
        load_face_array(_npy(tmp_path, array), size=8)


def test_face_array_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_face_array(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="not a .npy"):
        load_face_array(_save(tmp_path / "face.png", RED))
    with pytest.raises(IsADirectoryError, match="load_image_folder"):
        load_face_array(tmp_path)
    np.savez(tmp_path / "faces.npz", faces=np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=".npz archive"):
        load_face_array(tmp_path / "faces.npz")


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("content, message", [
    (b"", "is not a .npy file"),  # an interrupted copy, `touch faces.npy`
    (b"\x93NUMPY\x01\x00", "damaged or truncated .npy header"),
    (_npy_bytes(np.zeros((2, 8, 8, 3), np.uint8))[:-10], "is truncated"),
])
def test_face_array_empty_or_truncated_file_is_named(tmp_path, content, message):
    path = tmp_path / "faces.npy"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_face_array(path, size=8)
    assert str(path) in str(info.value)


def _record_of(cache_dir, size):
    (record,) = [path for path in cache_dir.glob("*.json") if json.loads(path.read_text())["size"] == size]
    return record


def _cache_bytes(cache_dir):
    return sum(path.stat().st_size for path in cache_dir.iterdir())


def test_caches_beyond_the_limit_go_least_recently_used_first(folder, cache_dir, monkeypatch):
    """A read counts as a use; the cache just written stays, even alone beyond the limit."""
    load_image_folder(folder, size=6)
    load_image_folder(folder, size=5)
    now = os.path.getmtime(_record_of(cache_dir, 6))
    os.utime(_record_of(cache_dir, 6), (now - 100, now - 100))
    os.utime(_record_of(cache_dir, 5), (now - 50, now - 50))
    monkeypatch.setattr(image_folder, "CACHE_MAX_BYTES", _cache_bytes(cache_dir))
    load_image_folder(folder, size=6)  # from the cache: now the most recently used
    load_image_folder(folder, size=4)  # beyond the limit: 5 px, the least recently used, goes
    assert sorted(json.loads(path.read_text())["size"] for path in cache_dir.glob("*.json")) == [4, 6]
    assert len(list(cache_dir.glob("*.npy"))) == 2 and _cache_bytes(cache_dir) <= image_folder.CACHE_MAX_BYTES
    monkeypatch.setattr(image_folder, "CACHE_MAX_BYTES", 1)
    load_image_folder(folder, size=7)
    assert [json.loads(path.read_text())["size"] for path in cache_dir.glob("*.json")] == [7]
    _forbid_reading(monkeypatch)
    assert load_image_folder(folder, size=7).shape == (5, 7, 7, 3)


def test_arrays_no_record_names_go_once_a_day_old(folder, cache_dir):
    """A write stopped before its record leaves an array: removed by a later write once it is a day
    old (a younger one may be another process's write in progress). A user's .npy, another
    fastdl version's record (another format) and its array, and other files stay."""
    cache_dir.mkdir(parents=True)
    old = cache_dir / "gone-0123456789abcdef-8px-0123abcd.npy"
    young = cache_dir / "writing-0123456789abcdef-8px-4567ef01.npy"
    users = cache_dir / "my_embeddings.npy"
    other_format = cache_dir / "older-fedcba9876543210-8px-89abcdef.npy"
    foreign = cache_dir / "notes.txt"
    (cache_dir / "older-fedcba9876543210-8px.json").write_text(json.dumps({"format": 1, "array": other_format.name}))
    for path in (old, young, users, other_format, foreign):
        path.write_bytes(b"x")
    day_ago = os.path.getmtime(old) - image_folder.ORPHAN_AGE_S - 60
    for path in (old, users, other_format, foreign):
        os.utime(path, (day_ago, day_ago))
    load_image_folder(folder, size=8)
    assert not old.exists()
    assert all(path.exists() for path in (young, users, other_format, foreign))


def test_two_writers_pruning_at_once_stay_within_the_limit(folder, cache_dir, monkeypatch):
    """An entry another process removed between this one's listing and its removal counts as
    removed: the prune stops at the limit instead of going on to the more recent caches."""
    for size in (4, 5, 6, 7):
        load_image_folder(folder, size=size)
    records = {json.loads(path.read_text())["size"]: path for path in cache_dir.glob("*.json")}
    arrays = {size: cache_dir / json.loads(path.read_text())["array"] for size, path in records.items()}
    for age, size in enumerate((7, 6, 5, 4)):  # 4 the least recently used
        os.utime(records[size], (1e9 - age, 1e9 - age))
    monkeypatch.setattr(image_folder, "CACHE_MAX_BYTES", _cache_bytes(cache_dir) - 1)  # 4 alone must go

    def listed_then_the_other_process_prunes(entries):
        records[4].unlink()
        arrays[4].unlink()
        return sorted(entries)

    monkeypatch.setattr(image_folder, "sorted", listed_then_the_other_process_prunes, raising=False)
    image_folder._prune_cache(cache_dir, keep=records[7])
    assert sorted(json.loads(path.read_text())["size"] for path in cache_dir.glob("*.json")) == [5, 6, 7]
    assert all(arrays[size].exists() for size in (5, 6, 7))
