"""A model with mirror_average reads each face as the mean of its outputs and its mirror image's, the same way
in predict, the app's fast path, Grad-CAM and the evaluation; train.mirror sets it in config.json."""
import json

import pytest
import torch

from model.cam import explain
from model.fast import FastModel
from model.hub import load_model
from model.nets import build_model
from model.preprocess import normalize
from train.checkpoint import save_model_dir
from train.evaluate import predict_images
from train.mirror import main as mirror_main


@pytest.fixture(scope="module")
def plain():
    torch.manual_seed(0)
    model = build_model("scratch", image_size=32, widths=(8, 8, 16, 16, 16), hidden=16).eval()
    model.gender_temperature.fill_(0.7)  # calibration must travel unchanged
    return model


@pytest.fixture(scope="module")
def faces():
    torch.manual_seed(1)
    return torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)


@pytest.fixture(scope="module")
def mirrored(plain, tmp_path_factory):
    folder = tmp_path_factory.mktemp("m")
    save_model_dir(plain, folder / "plain")
    mirror_main(["--model", str(folder / "plain"), "--out", str(folder / "mirror")])
    assert json.loads((folder / "mirror" / "config.json").read_text())["mirror_average"] is True
    return load_model(str(folder / "mirror"))


def test_old_configs_read_faces_as_they_are(plain):
    assert plain.mirror_average is False


def test_every_path_reads_the_mean_of_face_and_mirror(plain, mirrored, faces):
    batch = normalize()(faces)
    with torch.no_grad():
        expected = plain.readouts((plain(batch) + plain(batch.flip(-1))) / 2)
    assert float(mirrored.gender_temperature) == pytest.approx(0.7)
    fast = FastModel(mirrored, "fp32")
    for got in (mirrored.predict(batch), fast.predict(batch), explain(fast, batch)[0], explain(mirrored, batch)[0],
                {k: torch.from_numpy(v) for k, v in predict_images(mirrored, faces).items()}):
        for key in ("p_female", "age", "age_low", "age_high"):
            torch.testing.assert_close(got[key].float(), expected[key].float(), rtol=1e-4, atol=1e-4)
    # and differs from reading the face alone (the test would pass vacuously otherwise)
    assert not torch.allclose(plain.predict(batch)["p_female"], expected["p_female"], atol=1e-4)


def test_an_evaluation_reads_as_asked_on_every_path_and_leaves_the_callers_model_alone(plain, mirrored, faces):
    """train.evaluate's --flip-average on a plain model: the crops and the app's path (FastModel, as the
    end-to-end pass runs it) read mirrored; the model it was given still reads faces alone."""
    from train.evaluate import reading_faces
    assert reading_faces(plain, None) is plain and reading_faces(mirrored, True) is mirrored
    forced = reading_faces(plain, True)
    assert forced.mirror_average and not plain.mirror_average
    assert all(a is b for a, b in zip(forced.parameters(), plain.parameters()))  # the same weights, not a copy
    batch = normalize()(faces)
    for got, want in ((FastModel(forced, "fp32").predict(batch), mirrored.predict(batch)),
                      (FastModel(reading_faces(mirrored, False), "fp32").predict(batch), plain.predict(batch))):
        torch.testing.assert_close(got["p_female"], want["p_female"], rtol=1e-4, atol=1e-4)
    assert mirrored.mirror_average


def test_gradcam_of_a_mirror_model_is_mirror_symmetric_on_a_symmetric_face(mirrored, faces):
    symmetric = torch.cat([faces[..., :16], faces[..., :16].flip(-1)], -1)
    _, cams = explain(mirrored, normalize()(symmetric))
    for maps in cams.values():
        assert maps.max() > 0
        torch.testing.assert_close(torch.from_numpy(maps), torch.from_numpy(maps).flip(-1), rtol=1e-4, atol=1e-4)


def test_mirror_command_refuses_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(SystemExit, match="is not a model folder"):
        mirror_main(["--model", str(tmp_path), "--out", str(tmp_path / "out")])
    (tmp_path / "config.json").write_text('{"arch": "scratch"}')
    with pytest.raises(SystemExit, match="has no model.safetensors"):
        mirror_main(["--model", str(tmp_path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
