"""The synthetic cartoon-face renderer: backends against the numpy reference bit for bit,
determinism per (seed, index), factors that match the pixels, bad input, and the CLI."""

import json

import numpy as np
import pytest

import fastdl
from conftest import skip_unless_available
from fastdl.cli import main
from fastdl.data import FACE_FACTOR_NAMES, face_design, generate_faces, render_faces
from fastdl.data.face_render import FACTOR_RANGES, HAIR_STYLES
from fastdl.kernels.npy import face_layout as L

COMPILED = ["numba", "cython"]


@pytest.fixture(params=COMPILED)
def compiled(request):
    skip_unless_available(request.param)
    return request.param


def _render_params(params, size, backend, n_threads=1):
    """Render given parameter rows with one backend's kernel."""
    params = params.copy()
    face_design.pixel_boxes(params, size)
    out = np.empty((len(params), size, size, 3), dtype=np.uint8)
    fastdl.backend.kernels("faces", backend)[0].render_faces(params, out, n_threads)
    return out


def test_shapes_dtypes_and_empty():
    images, factors = render_faces(6, size=32)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert factors.shape == (6, len(FACE_FACTOR_NAMES)) and factors.dtype == np.float64
    assert images.reshape(6, -1).std(axis=1).min() > 10     # a face, not a flat frame
    images, factors = render_faces(0, size=20)
    assert images.shape == (0, 20, 20, 3) and factors.shape == (0, len(FACE_FACTOR_NAMES))


@pytest.mark.parametrize("size", [64, 41])
def test_compiled_backends_match_the_numpy_reference_bit_for_bit(compiled, size):
    reference, factors = render_faces(12, seed=3, size=size, backend="numpy")
    images, same_factors = render_faces(12, seed=3, size=size, backend=compiled)
    np.testing.assert_array_equal(factors, same_factors)
    np.testing.assert_array_equal(images, reference)


def test_every_feature_is_drawn_alike_by_all_backends(compiled):
    """Faces picked to show every option (each hair style, big eyes, lids, open mouths, teeth,
    blush, glasses, moustaches, fringes), rendered by the kernels straight from their rows."""
    factors, params = face_design.draw_parameters(11, 0, 400)
    column = {name: factors[:, j] for j, name in enumerate(FACE_FACTOR_NAMES)}
    wanted = [column["hair_style"] == k for k in range(len(HAIR_STYLES))]
    wanted += [column[name] > 0 for name in ("big_eyes", "teeth", "blush", "glasses", "mustache",
                                             "mouth_open")]
    wanted += [column["eye_open"] < 1, params[:, L.FRINGE] > 0, column["is_yellow_skin"] > 0]
    rows = sorted({int(np.flatnonzero(mask)[0]) for mask in wanted})
    reference = _render_params(params[rows], 48, "numpy")
    np.testing.assert_array_equal(_render_params(params[rows], 48, compiled, n_threads=2), reference)


@pytest.mark.parametrize("size", [48, 300])
def test_feature_boxes_hold_every_pixel_a_feature_touches(compiled, size):
    """Drawing every feature on the whole image instead of its box changes no pixel."""
    _, params = face_design.draw_parameters(9, 0, 60)
    whole = params.copy()
    face_design.pixel_boxes(whole, size)
    for feature in range(L.N_FEATURES):
        box = slice(L.PIXEL_BOX + 4 * feature, L.PIXEL_BOX + 4 * feature + 4)
        present = whole[:, box.start + 1] > whole[:, box.start]
        whole[present, box] = [0, size, 0, size]
    out = np.empty((len(params), size, size, 3), dtype=np.uint8)
    fastdl.backend.kernels("faces", compiled)[0].render_faces(whole, out, 2)
    np.testing.assert_array_equal(out, _render_params(params, size, compiled, n_threads=2))


def test_images_do_not_depend_on_threads_batch_or_backend(compiled):
    fastdl.set_num_threads(1)
    one, factors_one = render_faces(16, seed=5, size=32, backend=compiled)
    fastdl.set_num_threads(2)
    two, factors_two = render_faces(16, seed=5, size=32, backend=compiled)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(factors_one, factors_two)
    # Face i depends on (seed, i) only: a prefix, or a piece rendered from `first`, is the same.
    prefix, prefix_factors = render_faces(5, seed=5, size=32, backend=compiled)
    np.testing.assert_array_equal(prefix, one[:5])
    np.testing.assert_array_equal(prefix_factors, factors_one[:5])
    piece, piece_factors = render_faces(6, seed=5, size=32, backend=compiled, first=10)
    np.testing.assert_array_equal(piece, one[10:])
    np.testing.assert_array_equal(piece_factors, factors_one[10:])
    other, _ = render_faces(16, seed=6, size=32, backend=compiled)
    assert (other != one).mean() > 0.5


def test_factors_lie_in_their_ranges_and_vary():
    factors, _ = face_design.draw_parameters(0, 0, 2000)
    assert tuple(FACTOR_RANGES) == FACE_FACTOR_NAMES
    for j, name in enumerate(FACE_FACTOR_NAMES):
        low, high = FACTOR_RANGES[name]
        assert low <= factors[:, j].min() and factors[:, j].max() <= high, name
        assert factors[:, j].std() > 0, name
    column = {name: factors[:, j] for j, name in enumerate(FACE_FACTOR_NAMES)}
    assert 0.2 < column["is_yellow_skin"].mean() < 0.4
    assert set(np.unique(column["hair_style"])) == set(range(len(HAIR_STYLES)))
    for flag in ("big_eyes", "teeth", "glasses", "mustache", "is_yellow_skin"):
        assert set(np.unique(column[flag])) == {0.0, 1.0}, flag
    assert (column["mouth_curve"] > 0.05).mean() > 0.2 and (column["mouth_curve"] < -0.05).mean() > 0.2
    # Yellow faces among the first 200 of the default seed, and big eyes mostly among them.
    first = render_faces(200, size=16)[1]
    assert first[:, FACE_FACTOR_NAMES.index("is_yellow_skin")].sum() > 30


def _face_to_pixel(factor, u, v, size):
    roll = np.radians(factor["roll"])
    x = factor["center_x"] + factor["scale"] * (u * np.cos(roll) - v * np.sin(roll))
    y = factor["center_y"] + factor["scale"] * (u * np.sin(roll) + v * np.cos(roll))
    return int(x * size), int(y * size)


def test_cheeks_show_the_skin_factor():
    """On both cheeks (clear of eyes, nose, mouth, ears and hair), the pixel is the skin colour,
    shaded at most SHADE darker."""
    size = 96
    images, factors = render_faces(40, seed=2, size=size, backend="numpy")
    checked = 0
    for image, row in zip(images, factors):
        factor = dict(zip(FACE_FACTOR_NAMES, row))
        if factor["blush"] > 0:
            continue
        skin = np.array([factor["skin_r"], factor["skin_g"], factor["skin_b"]])
        for side in (-1.0, 1.0):
            x, y = _face_to_pixel(factor, side * 0.6 * factor["face_width"], 0.35, size)
            pixel = image[y, x] / 255.0
            assert np.all(pixel <= skin + 0.01) and np.all(pixel >= 0.75 * skin - 0.01), (factor, pixel)
        checked += 1
    assert checked > 20


def test_the_background_gradient_stays_within_the_colour_range():
    """The background runs from BG - BG_GRAD / 2 at the top to BG + BG_GRAD / 2 at the bottom:
    never past 0 or 1, where the drawing would clip it flat (7% of backgrounds did)."""
    factors, params = face_design.draw_parameters(0, 0, 100_000)
    background, gradient = params[:, L.BG:L.BG + 3], params[:, L.BG_GRAD:L.BG_GRAD + 3]
    for end in (background - gradient / 2, background + gradient / 2):
        assert end.min() >= 0 and end.max() <= 1
    steepest = np.abs(factors[:, FACE_FACTOR_NAMES.index("background_gradient")]).argmax()
    assert np.abs(gradient[steepest]).min() > 0  # every colour still has its gradient


def test_cython_layout_matches_face_layout():
    skip_unless_available("cython")
    from fastdl.kernels.cy import faces

    for name, value in faces.layout().items():
        assert getattr(L, name) == value, name
    assert len(faces.layout()) == len([k for k in vars(L) if k.isupper()])


@pytest.mark.parametrize("kwargs, error", [
    ({"n": -1}, ValueError), ({"n": 2.5}, TypeError), ({"n": True}, TypeError),
    ({"n": 2, "seed": -1}, ValueError), ({"n": 2, "seed": 2 ** 64}, ValueError),
    ({"n": 2, "seed": "0"}, TypeError), ({"n": 2, "size": 8}, ValueError),
    ({"n": 2, "size": 4096}, ValueError), ({"n": 2, "size": 64.0}, TypeError),
    ({"n": 2, "first": -3}, ValueError), ({"n": 2, "backend": "gpu"}, ValueError),
])
def test_bad_arguments_raise_before_rendering(kwargs, error):
    with pytest.raises(error):
        render_faces(**kwargs)


def test_cli_generate_writes_images_factors_and_sidecar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["data", "generate", "faces", "--n", "5", "--seed", "3",
                 "--data-dir", str(tmp_path / "d")]) == 0
    directory = tmp_path / "d" / "faces"
    assert f"wrote 5 synthetic faces (seed 3) to {directory}" in capsys.readouterr().out
    images = np.load(directory / "images.npy")
    factors = np.load(directory / "factors.npy")
    sidecar = json.loads((directory / "faces.json").read_text())
    expected_images, expected_factors = render_faces(5, seed=3)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(factors, expected_factors)
    assert sidecar["seed"] == 3 and sidecar["n"] == 5 and sidecar["size"] == 64
    assert sidecar["factor_names"] == list(FACE_FACTOR_NAMES) and set(sidecar["sha256"]) == {
        "images.npy", "factors.npy"}
    assert {p.name for p in directory.iterdir()} == {"factors.npy", "faces.json", "images.npy"}
    assert not (tmp_path / "cache").exists()
    # Into the cache by default; clock-only options are refused.
    assert generate_faces(2) == tmp_path / "cache" / "faces"
    assert main(["data", "generate", "faces", "--n", "2", "--max-turn", "10"]) == 2
    assert "--max-turn only applies to clocks" in capsys.readouterr().err
    assert main(["data", "generate", "faces", "--n", "2", "--max-turn", "10", "--faces", "one"]) == 2
    assert "--max-turn and --faces only apply to clocks" in capsys.readouterr().err


def test_generate_never_overwrites_foreign_files(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="without faces.json"):
        generate_faces(2, directory=tmp_path)
    with pytest.raises(ValueError):
        generate_faces(0, directory=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_generate_never_overwrites_files_beside_a_sidecar_it_did_not_write(tmp_path):
    mine = np.arange(12, dtype=np.int64)
    np.save(tmp_path / "images.npy", mine)
    (tmp_path / "faces.json").write_text(json.dumps({"notes": "mine"}))
    with pytest.raises(ValueError, match="not a sidecar fastdl wrote"):
        generate_faces(2, directory=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "images.npy"), mine)
    assert json.loads((tmp_path / "faces.json").read_text()) == {"notes": "mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.json", "images.npy"]
    # A set fastdl wrote is replaced.
    generate_faces(2, directory=tmp_path / "own", size=16)
    generate_faces(3, directory=tmp_path / "own", size=16)
    assert json.loads((tmp_path / "own" / "faces.json").read_text())["n"] == 3


def test_load_face_array_checks_a_generated_set_against_its_sidecar(tmp_path):
    """A set generate_faces wrote is read back as rendered; a changed byte, or a damaged
    faces.json, is a ValueError that says how to re-generate it (verify=False reads the bytes as
    they are), and generate_faces replaces such a set; an array beside no sidecar of fastdl's is
    not checked."""
    from fastdl.data import load_face_array

    directory = generate_faces(3, seed=1, directory=tmp_path / "faces", size=16)
    images = directory / "images.npy"
    np.testing.assert_array_equal(load_face_array(images, size=16), render_faces(3, seed=1, size=16)[0])
    data = bytearray(images.read_bytes())
    data[-1] ^= 1
    images.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"does not match the SHA-256 recorded in faces.json.*re-generate it "
                                         r"\(fastdl.data.generate_faces\(directory='.*faces', n=3, seed=1, size=16\)\)"):
        load_face_array(images, size=16)
    assert load_face_array(images, size=16, verify=False)[-1, -1, -1, -1] != render_faces(3, seed=1, size=16)[0][
        -1, -1, -1, -1]
    sidecar = directory / "faces.json"
    sidecar.write_text(sidecar.read_text()[:-20])  # cut short
    with pytest.raises(ValueError, match="faces.json is damaged"):
        load_face_array(images, size=16)
    assert len(load_face_array(images, size=16, verify=False)) == 3
    generate_faces(2, seed=1, directory=directory, size=16)  # as the message says: a damaged set is fastdl's
    np.testing.assert_array_equal(load_face_array(images, size=16), render_faces(2, seed=1, size=16)[0])
    # Someone else's sidecar, valid JSON (even with fastdl's kind in it): the array is theirs, read
    # unchecked and never overwritten.
    for theirs in ({"notes": "mine"}, {"kind": "synthetic", "source": "my GAN's samples"}):
        sidecar.write_text(json.dumps(theirs))
        assert load_face_array(images, size=16).shape == (2, 16, 16, 3)
        with pytest.raises(ValueError, match="not a sidecar fastdl wrote"):
            generate_faces(3, directory=directory, size=16)
        assert json.loads(sidecar.read_text()) == theirs


def test_renders_on_the_cpu_when_the_default_backend_is_cuda():
    expected = render_faces(3, seed=2, size=16, backend="numpy")
    fastdl.set_backend("cuda")  # conftest puts the default back
    images, factors = render_faces(3, seed=2, size=16)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(factors, expected[1])
    with pytest.raises(ValueError, match="CPU backends"):
        render_faces(1, size=16, backend="cuda")
