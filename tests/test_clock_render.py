"""The synthetic clock renderer: backends against the numpy reference, determinism, labels that
match the hands, and bad input."""

import numpy as np
import pytest

import fastdl
from conftest import ready_backends, skip_unless_available
from fastdl.data import clock_design, render_clocks
from fastdl.data.clock_render import _static_tables
from fastdl.kernels.npy import clock_layout as L

COMPILED = ["numba", "cython"]


@pytest.fixture(params=COMPILED)
def compiled(request):
    skip_unless_available(request.param)
    return request.param


def _kernels(backend):
    return fastdl.backend.kernels("clock", backend)[0]


def _render_params(params, keys, size, backend, n_threads=1):
    """Render given parameter rows with one backend's kernel (the tests' way to draw special clocks)."""
    params = params.copy()
    clock_design.pixel_boxes(params, size)
    out = np.empty((len(params), size, size), dtype=np.uint8)
    _kernels(backend).render_clocks(params, keys, *_static_tables(), out, n_threads)
    return out


@pytest.mark.parametrize("size", [150, 41])
def test_compiled_backends_match_the_numpy_reference_bit_for_bit(compiled, size):
    reference, labels = render_clocks(12, seed=3, size=size, backend="numpy")
    images, same_labels = render_clocks(12, seed=3, size=size, backend=compiled)
    np.testing.assert_array_equal(labels, same_labels)
    np.testing.assert_array_equal(images, reference)


def test_numba_and_cython_give_the_same_pixels():
    backends = [b for b in ready_backends() if b in COMPILED]
    if len(backends) < 2:
        pytest.skip("needs both compiled backends")
    numba_images, _ = render_clocks(200, seed=7, backend="numba")
    cython_images, _ = render_clocks(200, seed=7, backend="cython")
    np.testing.assert_array_equal(numba_images, cython_images)


def test_every_feature_is_drawn_alike_by_all_backends(compiled):
    """Force each option on (second hand, glare, logo, markers, roman and arabic numerals, every
    hand shape, stripes, shadow, clutter) so no branch goes untested against the reference."""
    labels, params, keys = clock_design.draw_parameters(11, 0, 8)
    params[:, L.SECONDS] = 1.0
    params[:, L.GLARE] = 0.3
    params[:, L.LOGO] = 1.0
    params[:, L.SHADOW] = 0.3
    params[:, L.STRIPE_AMP] = 0.1
    params[:, L.MARKER] = np.arange(8) % 3
    params[:, L.NUMERALS] = 1 + np.arange(8) % 2
    params[:, L.FONT] = np.arange(8) // 4
    params[:, L.TICKS] = np.arange(8) % 3
    for base in (L.HOUR_HAND, L.MINUTE_HAND):
        params[:, base + L.HAND_SHAPE] = np.arange(8) % 3
    params[:, L.CLUTTER + L.SHAPE_KIND] = 1 + np.arange(8) % 2
    reference = _render_params(params, keys, 64, "numpy")
    np.testing.assert_array_equal(_render_params(params, keys, 64, compiled), reference)


def test_images_do_not_depend_on_threads_or_batch(compiled):
    fastdl.set_num_threads(1)
    one, labels_one = render_clocks(24, seed=5, backend=compiled)
    fastdl.set_num_threads(2)
    two, labels_two = render_clocks(24, seed=5, backend=compiled)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(labels_one, labels_two)
    # Image i depends on (seed, i) only: a prefix, or a piece rendered from `first`, is the same.
    prefix, prefix_labels = render_clocks(7, seed=5, backend=compiled)
    np.testing.assert_array_equal(prefix, one[:7])
    np.testing.assert_array_equal(prefix_labels, labels_one[:7])
    piece, piece_labels = render_clocks(10, seed=5, backend=compiled, first=14)
    np.testing.assert_array_equal(piece, one[14:])
    np.testing.assert_array_equal(piece_labels, labels_one[14:])
    other, _ = render_clocks(24, seed=6, backend=compiled)
    assert (other != one).mean() > 0.5


def test_course_shapes_dtypes_and_label_ranges():
    images, labels = render_clocks(300, seed=1)
    assert images.shape == (300, 150, 150) and images.dtype == np.uint8
    assert labels.shape == (300, 2) and labels.dtype == np.int64
    assert labels[:, 0].min() == 0 and labels[:, 0].max() == 11
    assert labels[:, 1].min() >= 0 and labels[:, 1].max() == 59
    assert len(np.unique(labels[:, 1])) > 50
    # Real contrast, not a flat or saturated frame.
    spread = images.reshape(300, -1).std(axis=1)
    assert (spread > 10).mean() > 0.95
    empty_images, empty_labels = render_clocks(0)
    assert empty_images.shape == (0, 150, 150) and empty_labels.shape == (0, 2)


def test_hand_angles_follow_the_label():
    """The hour hand sits between the hours (3:30 half way from 3 to 4), the minute hand on the minute."""
    labels, params, _ = clock_design.draw_parameters(0, 0, 500)
    hours, minutes = labels[:, 0], labels[:, 1]
    for base, expected in ((L.HOUR_HAND, (hours + minutes / 60) * 30.0), (L.MINUTE_HAND, minutes * 6.0)):
        angle = np.degrees(np.arctan2(params[:, base + L.HAND_DX], params[:, base + L.HAND_DY])) % 360
        np.testing.assert_allclose(angle, expected % 360, atol=1e-9)
    # The minute hand is the longer one, so the two can be told apart.
    assert (params[:, L.MINUTE_HAND + L.HAND_LEN] > params[:, L.HOUR_HAND + L.HAND_LEN] * 1.3).all()


def test_numerals_sit_inside_the_ticks_and_the_12_marker():
    """The numerals' ring clears the hour ticks and what marks 12 (a double tick an hour tick long,
    a triangle 1.5 times that): on dials without ticks the marker was drawn through the "12"
    (10% of varied clocks)."""
    _, params, _ = clock_design.draw_parameters(3, 0, 2000)
    shown = params[:, L.NUMERALS] > 0
    tick = params[:, L.HOUR_TICK_LEN]
    marker = np.select([params[:, L.MARKER] == 1, params[:, L.MARKER] == 2], [tick, 1.5 * tick], 0.0)
    inner = np.maximum(np.where(params[:, L.TICKS] > 0, tick, 0.0), marker)
    top_of_numerals = params[:, L.NUM_RADIUS] + 0.6 * params[:, L.NUM_HEIGHT]
    assert (params[shown & (marker > 0), L.TICKS] == 0).any() and (params[:, L.MARKER] == 2).any()
    assert (top_of_numerals[shown] <= params[shown, L.TICK_OUTER] - inner[shown] - 0.03 + 1e-12).all()


def _face_to_pixel(params, u, v, size):
    forward = np.linalg.inv(params[L.HINV:L.HINV + 9].reshape(3, 3))
    x, y, w = forward @ np.array([u, v, 1.0])
    return x / w * size - 0.5, y / w * size - 0.5


def test_rendered_hands_point_where_the_label_says(compiled):
    """Clean clocks (no noise, blur, glare, second hand; plain light): the pixels along each hand
    have the hand's shade, and the same radius a quarter turn away does not."""
    size = 150
    labels, params, keys = clock_design.draw_parameters(2, 0, 40)
    params[:, L.NOISE] = 0.0
    params[:, L.BLUR:L.BLUR + 7] = clock_design.blur_taps(np.zeros(40))
    params[:, L.GLARE] = params[:, L.SECONDS] = params[:, L.LOGO] = 0.0
    params[:, L.LIGHT], params[:, L.LIGHT_GX], params[:, L.LIGHT_GY] = 1.0, 0.0, 0.0
    params[:, L.VIGNETTE], params[:, L.CONTRAST], params[:, L.CURVE] = 0.0, 1.0, 0.0
    params[:, L.NUMERALS] = params[:, L.TICKS] = params[:, L.MARKER] = 0.0
    images = _render_params(params, keys, size, compiled).astype(float) / 255
    checked = 0
    for image, p, (hour, minute) in zip(images, params, labels):
        hand, face = p[L.HAND], p[L.FACE]
        if abs(hand - face) < 0.4:
            continue
        for base in (L.MINUTE_HAND, L.HOUR_HAND):
            # Half way along, where even a tapered or leaf hand is over half its width.
            angle = np.arctan2(p[base + L.HAND_DX], p[base + L.HAND_DY])
            radius = 0.5 * p[base + L.HAND_LEN]
            x, y = _face_to_pixel(p, radius * np.sin(angle), radius * np.cos(angle), size)
            covered = (image[int(round(y)), int(round(x))] - face) / (hand - face)
            assert covered > 0.3, (hour, minute, base, covered)
        # 90 degrees past the minute hand, at 90% of its length, is bare face (no other hand
        # reaches that far).
        angle = np.arctan2(p[L.MINUTE_HAND + L.HAND_DX], p[L.MINUTE_HAND + L.HAND_DY]) + np.pi / 2
        radius = 0.9 * p[L.MINUTE_HAND + L.HAND_LEN]
        x, y = _face_to_pixel(p, radius * np.sin(angle), radius * np.cos(angle), size)
        assert abs(image[int(round(y)), int(round(x))] - face) < 0.05
        checked += 1
    assert checked >= 20


def test_every_face_marks_twelve():
    _, params, _ = clock_design.draw_parameters(0, 0, 5000)
    assert ((params[:, L.NUMERALS] > 0) | (params[:, L.MARKER] > 0)).all()
    # The variety the renderer promises: both fonts, every tick style, faces dark and light.
    assert set(np.unique(params[:, L.FONT])) == {0.0, 1.0}
    assert set(np.unique(params[:, L.TICKS])) == {0.0, 1.0, 2.0}
    assert (params[:, L.FACE] < 0.4).mean() > 0.1 and (params[:, L.FACE] > 0.7).mean() > 0.6


def test_numeral_glyphs_fit_their_grid():
    strokes, half_widths = clock_design.glyph_strokes()
    assert max(half_widths.values()) <= 0.5
    distances = clock_design.glyph_distances()
    assert distances.shape == (2, 12, L.GLYPH_N, L.GLYPH_N)
    # Every numeral has ink near its centre line and none near the grid's edge.
    assert (distances.min(axis=(2, 3)) < 0.02).all()
    assert (distances[:, :, 0, :] > 0.3).all() and (distances[:, :, :, 0] > 0.3).all()


def test_cython_layout_matches_clock_layout():
    skip_unless_available("cython")
    from fastdl.kernels.cy import clock

    for name, value in clock.layout().items():
        assert getattr(L, name) == value, name


@pytest.mark.parametrize("kwargs, error", [
    ({"n": -1}, ValueError), ({"n": 2.5}, TypeError), ({"n": True}, TypeError),
    ({"n": 2, "seed": -1}, ValueError), ({"n": 2, "seed": "0"}, TypeError),
    ({"n": 2, "size": 8}, ValueError), ({"n": 2, "size": 4096}, ValueError),
    ({"n": 2, "first": -3}, ValueError), ({"n": 2, "backend": "gpu"}, ValueError),
    ({"n": 2, "max_turn": 200}, ValueError), ({"n": 2, "max_turn": "30"}, TypeError),
    ({"n": 2, "faces": "many"}, ValueError), ({"n": 2, "faces": None}, TypeError),
])
def test_bad_arguments_raise_before_rendering(kwargs, error):
    with pytest.raises(error):
        render_clocks(**kwargs)


def test_max_turn_limits_the_whole_clocks_turn_and_nothing_else():
    labels, full, _ = clock_design.draw_parameters(4, 0, 2000)
    same_labels, upright, _ = clock_design.draw_parameters(4, 0, 2000, max_turn=0.0)
    _, limited, _ = clock_design.draw_parameters(4, 0, 2000, max_turn=30.0)
    np.testing.assert_array_equal(labels, same_labels)
    pose = slice(L.HINV, L.DET + 1)
    np.testing.assert_array_equal(np.delete(full, np.r_[pose], axis=1), np.delete(upright, np.r_[pose], axis=1))

    def twelve_direction(params):
        """Image-plane angle of the face's 12 o'clock direction, degrees from straight up."""
        forward = np.linalg.inv(params[:, :9].reshape(-1, 3, 3))
        centre = forward[:, :2, 2] / forward[:, 2, 2, None]
        tip = (forward[:, :2, 1] + forward[:, :2, 2]) / (forward[:, 2, 1] + forward[:, 2, 2])[:, None]
        d = tip - centre
        return np.degrees(np.arctan2(d[:, 0], -d[:, 1]))

    # Tilt shears the image of the 12 direction a little; the turn itself is what is bounded.
    assert np.abs(twelve_direction(upright)).max() < 45
    assert np.abs(twelve_direction(limited)).max() < 80
    assert np.abs(twelve_direction(full)).max() > 170
    images, _ = render_clocks(3, max_turn=0)
    assert images.shape == (3, 150, 150)


def test_one_clock_keeps_its_design_and_varies_pose_time_and_scene():
    labels, varied, _ = clock_design.draw_parameters(5, 0, 400)
    same_labels, one, _ = clock_design.draw_parameters(5, 0, 400, faces="one")
    np.testing.assert_array_equal(labels, same_labels)
    design = [L.RIM_WIDTH, L.FACE, L.INK, L.HAND, L.RIM, L.TICKS, L.NUMERALS, L.FONT,
              L.NUM_HEIGHT, L.MARKER, L.LOGO, L.SECONDS, L.CAP]
    design += [hand + part for hand in (L.HOUR_HAND, L.MINUTE_HAND, L.SECOND_HAND)
               for part in (L.HAND_LEN, L.HAND_WIDTH, L.HAND_TAIL, L.HAND_VALUE)]
    design += [L.HOUR_HAND + L.HAND_SHAPE, L.MINUTE_HAND + L.HAND_SHAPE]  # second hands: bars
    assert np.all(one[:, design] == one[:1, design])
    assert not np.all(varied[:, design] == varied[:1, design], axis=0).any()
    scene = [L.HINV, L.BG, L.LIGHT, L.NOISE, L.SECOND_HAND + L.HAND_DX]
    assert np.all(np.ptp(one[:, scene], axis=0) > 0)
    # The seed's clock: the first images of another batch, or of another start, are the same.
    np.testing.assert_array_equal(clock_design.draw_parameters(5, 100, 3, faces="one")[1][0, design],
                                  one[0, design])
    assert not np.array_equal(clock_design.draw_parameters(6, 0, 1, faces="one")[1][0, design],
                              one[0, design])


def test_one_clock_is_drawn_alike_by_all_backends(compiled):
    reference, labels = render_clocks(3, seed=2, size=48, backend="numpy", faces="one")
    images, same_labels = render_clocks(3, seed=2, size=48, backend=compiled, faces="one")
    np.testing.assert_array_equal(images, reference)
    np.testing.assert_array_equal(labels, same_labels)


def test_renders_on_the_cpu_when_the_default_backend_is_cuda():
    expected = render_clocks(3, seed=2, size=24, backend="numpy")
    fastdl.set_backend("cuda")  # conftest puts the default back
    images, labels = render_clocks(3, seed=2, size=24)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])
    with pytest.raises(ValueError, match="CPU backends"):
        render_clocks(1, size=24, backend=" CUDA ")


def _upright_marker_clocks(size, scale):
    """A triangle and a double tick at the widest design (hour ticks 0.03 wide, 0.16 long), on
    clean clocks seen straight on: face 0.9, ink 0.1, no noise, blur, shading, numerals or logo,
    the hands pointing at 6; face radius `scale` image widths, centred."""
    _, params, keys = clock_design.draw_parameters(3, 0, 2)
    params[:, L.HINV:L.HINV + 9] = [1 / scale, 0, -0.5 / scale, 0, -1 / scale, 0.5 / scale, 0, 0, 1]
    params[:, L.DET] = 1 / scale ** 2
    params[:, L.NOISE] = params[:, L.GLARE] = params[:, L.SHADOW] = params[:, L.SECONDS] = 0.0
    params[:, L.BLUR:L.BLUR + 7] = clock_design.blur_taps(np.zeros(2))
    params[:, L.LIGHT], params[:, L.LIGHT_GX], params[:, L.LIGHT_GY] = 1.0, 0.0, 0.0
    params[:, L.VIGNETTE], params[:, L.CONTRAST], params[:, L.CURVE] = 0.0, 1.0, 0.0
    params[:, L.FACE], params[:, L.INK] = 0.9, 0.1
    params[:, L.NUMERALS] = params[:, L.LOGO] = 0.0
    params[:, L.TICKS], params[:, L.MARKER] = 1.0, [2.0, 1.0]
    params[:, L.TICK_OUTER], params[:, L.HOUR_TICK_LEN], params[:, L.HOUR_TICK_W] = 0.9, 0.16, 0.03
    for base in (L.HOUR_HAND, L.MINUTE_HAND, L.SECOND_HAND):
        params[:, base + L.HAND_DX], params[:, base + L.HAND_DY] = 0.0, -1.0
    return params, keys


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
def test_twelve_oclock_marker_is_drawn_at_its_full_width(backend):
    """The marker is wider than the +-3 degrees of dial that the 12 o'clock tick owns: its ink
    must span its designed width, not stop where the nearest tick becomes minute 59 or 1."""
    skip_unless_available(backend)
    size, scale = 200, 0.42
    params, keys = _upright_marker_clocks(size, scale)
    images = _render_params(params, keys, size, backend).astype(float) / 255
    outer, length, half_width = 0.9, 0.16, 0.03
    centre = size / 2 - 0.5  # the column of u = 0
    for image, marker, v in zip(images, (2.0, 1.0), (0.88, 0.76)):
        row = int(round(size * (0.5 - scale * v) - 0.5))
        v = (0.5 - (row + 0.5) / size) / scale  # the row's own v
        if marker == 2.0:  # the triangle narrows from 2.5 half widths at the rim to a point inside
            designed = 2 * 2.5 * half_width * (v - (outer - 1.5 * length)) / (1.5 * length)
        else:  # two bars, their outer edges 2 half widths from the centre line
            designed = 4 * half_width
        ink = (0.9 - image[row]) / 0.8 > 0.5
        ink[np.abs(np.arange(size) - centre) > 0.15 * scale * size] = False  # the marker only
        columns = np.flatnonzero(ink)
        assert columns.size, (backend, marker)
        span = columns[-1] - columns[0] + 1
        assert abs(span - designed * scale * size) <= 1.5, (backend, marker, span, designed * scale * size)
        assert abs((columns[0] + columns[-1]) / 2 - centre) <= 1.0, (backend, marker)


def test_too_many_images_fail_before_the_draws(monkeypatch):
    """The images are allocated before the parameters are drawn: a set too big for memory raised
    MemoryError only after minutes of draws (10**6 clocks under a 3 GB limit: 25 s)."""
    from fastdl.data import face_design, face_render

    monkeypatch.setattr(clock_design, "draw_parameters", lambda *args: pytest.fail("drew the parameters"))
    monkeypatch.setattr(face_design, "draw_parameters", lambda *args: pytest.fail("drew the parameters"))
    with pytest.raises(MemoryError):
        render_clocks(10**12, size=2048, backend="numpy")
    with pytest.raises(MemoryError):
        face_render.render_faces(10**12, size=1024, backend="numpy")


def test_chosen_times(compiled):
    """times= shows the given times; every other draw of each image is its own, so the images
    with their own times given back are the same bits."""
    images, labels = render_clocks(6, seed=4, size=48, backend=compiled)
    again, same_labels = render_clocks(6, seed=4, size=48, backend=compiled, times=labels)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(same_labels, labels)
    chosen = [[11, 59], [0, 0], [0, 1], [2, 59], [3, 0], [6, 30]]
    shown, shown_labels = render_clocks(6, seed=4, size=48, backend=compiled, times=np.array(chosen, float))
    assert shown_labels.dtype == np.int64 and shown_labels.tolist() == chosen
    _, params, _ = clock_design.draw_parameters(4, 0, 6, times=np.array(chosen))
    hours, minutes = np.array(chosen).T
    angle = np.degrees(np.arctan2(params[:, L.HOUR_HAND + L.HAND_DX], params[:, L.HOUR_HAND + L.HAND_DY])) % 360
    np.testing.assert_allclose(angle, ((hours + minutes / 60) * 30.0) % 360, atol=1e-9)
    # Only the hands moved: an image changes exactly where its time does.
    np.testing.assert_array_equal((shown != images).reshape(6, -1).any(axis=1), (labels != chosen).any(axis=1))


@pytest.mark.parametrize("times, error", [
    ([[1, 2]], ValueError), (np.zeros((2, 3)), ValueError), ([[12, 0], [0, 0]], ValueError),
    ([[0, 60], [0, 0]], ValueError), ([[-1, 0], [0, 0]], ValueError), ([[0.5, 1], [0, 0]], TypeError),
    ([["1", "2"], ["3", "4"]], TypeError), (np.ones((2, 2), bool), TypeError)])
def test_bad_times_raise_before_rendering(times, error):
    with pytest.raises(error, match="times"):
        render_clocks(2, size=32, times=times)
