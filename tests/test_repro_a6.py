"""fastdl.repro.a6 on a few synthetic faces: every output, the scores, the data choices and the CLI."""

import json

import numpy as np
import pytest
from PIL import Image

from fastdl import nn
from fastdl.cli import main
from fastdl.repro import ASSIGNMENTS, a6, a6_models, a6_score

OUTPUT_FILES = ["vae_samples_epoch_1.png", "gan_samples_epoch_1.png", "vae_interpolation.png",
                "gan_interpolation.png", "vae_reconstructions.png", "losses.png", "frechet.md", "frechet.json",
                "summary.json"]


@pytest.fixture(autouse=True)
def small_scorer(monkeypatch, tmp_path):
    """A feature network trained on 96 faces for one epoch; caches in the test's own directory."""
    monkeypatch.setitem(a6_score.SETTINGS, True, {"images": 96, "epochs": 1})
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "cache"))


def test_quick_run_writes_every_output(tmp_path, capsys):
    result = a6.run(out_dir=tmp_path, quick=True, images=16, epochs=1, scored=24)
    printed = capsys.readouterr().out
    # The feature network's training (19 s in a fresh `make run`) is said before it starts.
    said = "Feature network for the Fréchet score: read from the cache, or trained here and cached (96 images, 1 epoch)"
    assert printed.index("data: ") < printed.index(said) < printed.index("VAE (")
    out = tmp_path / "a6" / "faces"
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert set(result["scores"]) == {"vae", "gan"}
    for kind in ("vae", "gan"):
        assert np.isfinite([result["scores"][kind]["first"], result["scores"][kind]["last"]]).all()
    assert result["floor"] >= 0
    assert result["parameters"]["vae"] == a6_models.build_vae((64, 64, 3))[0].count_params()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"] == {"images": 16, "epochs": 1, "scored": 24}
    # Fewer training images than scored ones: the floor says how many it compared.
    assert "held-out real images from 16 training images" in (out / "frechet.md").read_text()
    assert json.loads((out / "frechet.json").read_text())["data"]["n_floor"] == 16
    assert "synthetic cartoon faces" in summary["source"]
    assert set(result["history"]["vae"]) == {"loss", "reconstruction", "kl"}
    # The loss per image splits into the summed cross-entropy of 64x64x3 pixels (about ln 2 each
    # from a fresh decoder) and a small positive KL term.
    vae_history = {key: values[0] for key, values in result["history"]["vae"].items()}
    assert 0 < vae_history["kl"] < 0.01 * vae_history["reconstruction"]
    assert 0.3 * 12288 < vae_history["reconstruction"] < 0.8 * 12288
    # The cached feature network is read back by the next run.
    again = a6.run(out_dir=tmp_path / "again", quick=True, images=16, epochs=1, scored=24)
    assert again["feature_source"].endswith("cached")
    assert again["floor"] == pytest.approx(result["floor"], rel=1e-6)


def test_image_folder_data(tmp_path):
    folder = tmp_path / "simpsons"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(folder / f"face_{i}.png")
    train, held, described = a6.load_images(f"folder:{folder}", n_images=100, n_scored=8, seed=0)
    assert train.shape == (16, 64, 64, 3) and held.shape == (4, 64, 64, 3)
    assert str(folder) in described


def _image_folder(folder, n_images):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / f"face_{i}.png")
    return f"folder:{folder}"


@pytest.mark.parametrize("n_images, n_train", [(9, 7), (4, 2)])
def test_small_folder_holds_out_two_images(tmp_path, n_images, n_train):
    """A fifth of 9 images is 1, and a covariance needs 2: the score's side must have 2."""
    train, held, _ = a6.load_images(_image_folder(tmp_path / "faces", n_images), n_images=100, n_scored=8)
    assert len(held) == 2 and len(train) == n_train


@pytest.mark.parametrize("options, message", [
    ({"images": 1}, r"images \(--images\) must be at least 2: the real-data floor .* got 1"),
    ({"scored": 1}, r"scored must be at least 2: .* got scored=1"),
    ({"data": "folder"}, r"holds 3 image\(s\); a6 needs at least 4: 2 held out to score against and 2 to train on"),
])
@pytest.mark.parametrize("quick", [True, None])
def test_sizes_too_small_to_score_fail_before_anything_loads(tmp_path, monkeypatch, options, message, quick):
    """Each side of a score needs 2 images: said at once, not after the feature network has trained."""
    def not_now(*args, **kwargs):
        raise AssertionError("loaded or trained before the sizes were checked")

    for module, name in ((a6, "load_images"), (a6, "estimate_full_seconds"), (a6_score, "feature_network")):
        monkeypatch.setattr(module, name, not_now)
    if options.get("data") == "folder":
        options = {"data": _image_folder(tmp_path / "faces", 3)}
    with pytest.raises(ValueError, match=message):
        a6.run(out_dir=tmp_path, quick=quick, epochs=1, **options)


def test_cli_images_too_few_to_score(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(a6_score, "feature_network", lambda *args, **kwargs: pytest.fail("trained"))
    assert main(["reproduce", "a6", "--quick", "--images", "1", "--epochs", "1", "--out", str(tmp_path)]) == 2
    assert "--images" in capsys.readouterr().err


def test_bad_data_choices():
    with pytest.raises(ValueError, match="folder:PATH"):
        a6.parse_data("simpsons")
    with pytest.raises(ValueError, match="epochs"):
        a6.run(quick=True, epochs=0)
    with pytest.raises(ValueError, match="square"):
        a6_models.build_vae((64, 32, 3))
    with pytest.raises(ValueError, match="power of two"):
        a6_models.build_gan((48, 48, 3))
    with pytest.raises(ValueError, match=r"image size 8 must be at least 16 and 8 times a power of two: 16, 32, 64"):
        a6_models.build_vae((8, 8, 1))


def test_cli_passes_the_a6_options(monkeypatch, tmp_path):
    calls = []

    def run(data_dir=None, out_dir="results", quick=None, data="faces", epochs=None, images=None):
        calls.append({"quick": quick, "data": data, "epochs": epochs, "images": images})
        return {"source": "test", "files": []}

    monkeypatch.setattr(a6, "run", run)
    monkeypatch.setattr(a6, "check_options", lambda **options: None)  # no Fashion-MNIST needed here
    assert "a6" in ASSIGNMENTS
    assert main(["reproduce", "a6", "--quick", "--data", "fashion", "--epochs", "3", "--images", "500",
                 "--out", str(tmp_path)]) == 0
    assert calls == [{"quick": True, "data": "fashion", "epochs": 3, "images": 500}]


def test_data_list_shows_faces(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "faces: synthetic cartoon faces" in out
    assert "fastdl.data.load_face_array(path, size=64, verify=True)" in out


def test_quick_note_keeps_quick_and_full_distances_apart(tmp_path):
    """Quick and full runs score in different feature networks: the note must not compare them."""
    from fastdl.repro import a6_report

    scores = {"vae": {"first": 35.5, "last": 35.4}, "gan": {"first": 36.4, "last": 41.1}}
    a6_report.write_score_table(tmp_path, "tiny faces", scores, 1.2, 2, 24, "feature network", quick=True)
    note = json.loads((tmp_path / "frechet.json").read_text())["notes"][-1]
    quick, full = a6_score.SETTINGS[True], a6_score.SETTINGS[False]
    assert f"({quick['images']:,} images, {quick['epochs']} epochs)" in note
    assert f"({full['images']:,} images, {full['epochs']} epochs)" in note
    assert "different scale" in note and "halves" not in note


def test_floor_note_says_how_many_training_images_it_compared(tmp_path):
    from fastdl.repro import a6_report

    scores = {"vae": {"first": 35.5, "last": 35.4}, "gan": {"first": 36.4, "last": 41.1}}
    a6_report.write_score_table(tmp_path, "tiny faces", scores, 1.2, 2, 24, "feature network", n_floor=5)
    assert "the distance of the held-out real images from 5 training images" in (tmp_path / "frechet.md").read_text()
    a6_report.write_score_table(tmp_path, "tiny faces", scores, 1.2, 2, 24, "feature network")
    assert "from as many training images" in (tmp_path / "frechet.md").read_text()


class _FakeTrainer:
    """A VAE or GAN stand-in: no training, images from the latent vectors' first values."""

    def __init__(self, image_shape, seed, backend=None):
        self.image_shape = image_shape

    def count_params(self):
        return 1

    def epoch(self, images, rng):
        return {"loss": 1.0, "reconstruction": 0.9, "kl": 0.1, "discriminator": 0.7, "generator": 0.7}

    def generate(self, z):
        return np.broadcast_to(1 / (1 + np.exp(-z[:, :1, None, None])), (len(z), *self.image_shape)).astype(np.float32)

    def reconstruct(self, images):
        return images


class _QuadrantMeans:
    """A feature network stand-in: the mean of each image quadrant (4 features)."""

    def predict(self, images, batch_size=None):
        n, size = len(images), images.shape[1] // 2
        return images.reshape(n, 2, size, 2, size, -1).mean(axis=(2, 4, 5)).reshape(n, 4) + np.arange(n)[:, None] % 3


@pytest.mark.parametrize("given, run, quick_run", [
    ({"images": 16, "epochs": 1}, "16 images, 1 epoch per model, scored on 256 images in the quick run's feature network",
     False),
    ({}, "256 images, 2 epochs per model, scored on 256 images in the quick run's feature network", True),
])
def test_sizes_given_run_and_are_what_the_estimate_and_the_messages_describe(tmp_path, monkeypatch, capsys, given,
                                                                             run, quick_run):
    """With quick=None the caller's images and epochs run and are estimated; only the settings not given
    (and the feature network) take the quick run's values; only the quick run's sizes are a "quick run"."""
    estimated = []

    def estimate(image_shape, settings=a6.FULL, seed=0, backend=None, data_kind="faces", cache_dir=None):
        estimated.append(dict(settings))
        print("<timing>")
        return {"vae": 3000.0, "gan": 6000.0, "total": 9000.0}

    monkeypatch.setattr(a6, "estimate_full_seconds", estimate)
    monkeypatch.setattr(a6, "_VaeTrainer", _FakeTrainer)
    monkeypatch.setattr(a6, "_GanTrainer", _FakeTrainer)
    monkeypatch.setattr(a6, "_feature_network", lambda *args: (_QuadrantMeans(), "quadrant means"))
    result = a6.run(out_dir=tmp_path, quick=None, **given)
    sized = {**a6.FULL, **given}
    assert estimated == [sized]
    assert result["settings"] == {**a6.QUICK, **given} and result["quick"] is True
    printed = capsys.readouterr().out
    # The header first (the previous assignment's output stood alone through the timing), then
    # what the seconds of timing are for, then the decision.
    order = ["== Assignment 6: a VAE and a GAN generating faces ==", "Estimating how long the full run takes here",
             "<timing>", "A full run"]
    assert [printed.index(text) for text in order] == sorted(printed.index(text) for text in order)
    epochs = f"{sized['epochs']} epoch{'s' if sized['epochs'] != 1 else ''}"  # "1 epochs" before
    assert f"({sized['images']:,} images, {epochs} per model: VAE 50, GAN 100 min)" in printed
    assert (f"so this is the quick run: {run}." if quick_run else f"so the settings not given are the quick run's: {run}.") \
        in printed
    options = "".join(f" --{key} {value}" for key, value in given.items())
    assert f"The full run: fastdl reproduce a6{options} --full" in printed
    assert ("(quick run)" in result["source"]) is quick_run
    note = json.loads((tmp_path / "a6" / "faces" / "frechet.json").read_text())["notes"][-1]
    assert ("too short for either model to draw recognisable images" in note) is quick_run
    assert "quick run's feature network" in note and "different scale" in note


def test_estimate_counts_the_feature_network_until_it_is_cached(tmp_path, monkeypatch, capsys):
    """The full run's first use trains its feature network: the estimate counts it (a timed step
    times its steps) until the cache holds the network, and the decision names it."""
    shape = (32, 32, 1)
    seconds = a6_score.training_seconds("fashion", shape, False, tmp_path, seed=0)
    steps = -(-a6_score.SETTINGS[False]["images"] // a6_score.BATCH) * a6_score.SETTINGS[False]["epochs"]
    assert 0 < seconds < steps * 10
    path = a6_score.cache_path("fashion", shape, False, tmp_path, seed=0)
    assert path.parent == tmp_path and not path.exists()
    path.write_bytes(b"")  # unreadable: feature_network would train, so it counts
    assert a6_score.training_seconds("fashion", shape, False, tmp_path, seed=0) > 0
    outputs, activation, loss, _ = a6_score._head("fashion", a6_score.SETTINGS[False])
    scorer, _ = a6_score._network(shape, outputs, activation, 0)
    scorer.compile(nn.Adam(1e-3), loss)
    scorer.save(path)  # as feature_network saves it
    assert a6_score.training_seconds("fashion", shape, False, tmp_path, seed=0) == 0
    assert a6_score.cache_path("faces", shape, False, tmp_path, seed=0) != path  # cached apart
    assert a6_score.cache_path("fashion", shape, True, tmp_path, seed=0) != path

    estimate = {"vae": 3000.0, "gan": 6000.0, "features": 120.0, "total": 9120.0}
    a6._print_decision(estimate, True, "faces", {}, a6.QUICK, True, "")
    assert "VAE 50, GAN 100 min, training the feature network 2 min)" in capsys.readouterr().out
    a6._print_decision({**estimate, "features": 0.0}, True, "faces", {}, a6.QUICK, True, "")
    assert "GAN 100 min)" in capsys.readouterr().out
    a6._print_decision({"vae": 20.0, "gan": 40.0, "features": 0.0, "total": 60.0}, False, "faces", {"epochs": 1},
                       {**a6.FULL, "epochs": 1}, False, "")
    assert "1 epoch per model: VAE under 1, GAN 1 min)" in capsys.readouterr().out  # not "1 epochs", "VAE 0"
