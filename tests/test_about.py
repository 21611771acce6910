"""The About tab and the model card name the data each model was trained on, with licences, and its FairFace
figures, all read from the files shipped with the model."""
from __future__ import annotations

import json

from huggingface_hub import ModelCard

from demo.ui_about import about_markdown, model_section
from demo.ui_models import ModelBank
from model.card import model_card
from test_card import METRICS, make_run

BOTH = {"sources": [{"layout": "utkface"}, {"layout": "fairface"}],
        "counts": {"train": {"by_source": {"utkface": {"n": 16141}, "fairface": {"n": 36002}}}}}
UTK_ONLY = {"sources": [{"layout": "utkface"}], "train_images": 16141}  # a report from before per-source counts
FAIRFACE_VAL = {"n": 5000, "gender_accuracy": 0.8731, "gender_ece": 0.012, "age_range_accuracy": 0.456,
                "race_gap": {"worst_group": "Southeast_Asian", "worst": 0.8312, "gap": 0.0421,
                             "mean_of_groups": 0.8733},
                "detection_on": {"face_found": 0.964, "gender_accuracy": 0.8452, "age_range_accuracy": 0.44}}


def test_model_section_names_its_data_and_fairface_figures():
    text = model_section("scratch", METRICS | {"fairface_val": FAIRFACE_VAL}, BOTH)
    assert "Trained on UTKFace (16,141 training faces) and FairFace (36,002 training faces)." in text
    assert "gender accuracy **87.3%** on its face crops, **84.5%** through this app" in text
    assert "faces found in 96.4% of the crops" in text and "labelled age range for 46%" in text
    assert "**Southeast Asian** (83.1%, 4.2 points below the mean of groups)" in text


def test_model_section_of_a_utkface_model_without_fairface_figures():
    text = model_section("vgg16", METRICS, UTK_ONLY)
    assert "Trained on UTKFace (16,141 training faces)." in text and "FairFace" not in text


def write_model(folder, report, metrics):
    (folder / "eval").mkdir(parents=True)
    (folder / "data_report.json").write_text(json.dumps(report))
    (folder / "eval" / "metrics.json").write_text(json.dumps(metrics))
    return str(folder)


def test_about_lists_the_licences_of_the_data_the_models_used(tmp_path):
    specs = {"scratch": write_model(tmp_path / "s", BOTH, METRICS | {"fairface_val": FAIRFACE_VAL}),
             "vgg16": write_model(tmp_path / "v", UTK_ONLY, METRICS)}
    text = about_markdown(ModelBank(loader=None, specs=specs))
    assert "Licence: **non-commercial research only**" in text and "Licence: **CC BY 4.0**" in text
    assert text.count("Trained on UTKFace") == 2
    only_utk = about_markdown(ModelBank(loader=None, specs={"scratch": write_model(tmp_path / "u", UTK_ONLY, METRICS),
                                                            "vgg16": specs["vgg16"]}))
    assert "CC BY 4.0" not in only_utk and "[FairFace](" not in only_utk  # the data section; a label may name it
    # An ensemble of models other than the bundled ones has no shipped figures: none are shown for it.
    ensemble = only_utk.split("### Both together")[1]
    assert "No evaluation results are bundled with this model" in ensemble
    assert "FairFace's validation set" not in ensemble


def test_card_of_a_utkface_fairface_run(tmp_path):
    run = make_run(tmp_path)
    (run / "data_report.json").write_text(json.dumps(BOTH))
    (run / "eval" / "metrics.json").write_text(json.dumps(METRICS | {"fairface_val": FAIRFACE_VAL}))
    card = ModelCard(model_card(run, "someone/age-gender-scratch"))
    assert card.data.datasets == ["UTKFace", "FairFace"] and card.data.license == "cc-by-nc-4.0"
    assert "Licence: **CC BY 4.0**" in card.text and "Licence: **non-commercial research only**" in card.text
    assert "karkkainen2021fairface" in card.text and "zhang2017age" in card.text
    assert "| Gender accuracy, end to end (every image counted) | 84.5% |" in card.text
    assert "| Weakest race group, gender accuracy (face crops) | Southeast Asian 83.1% (4.2 points" in card.text
    fairface = {r.metric_name: r.metric_value for r in card.data.eval_results if r.dataset_type == "FairFace"}
    assert fairface == {"Gender accuracy (face crops)": 0.8731, "Gender accuracy (end to end, detection on)": 0.8452,
                        "Age-range accuracy (face crops)": 0.456}


def test_model_section_and_card_say_how_long_and_on_what_the_model_trained(tmp_path):
    trained = ({"epochs_run": 2, "train_minutes": 47.6, "machine": "AMD EPYC, 2 cores"},
               {"init_from": "assets/models/vgg16"})
    text = model_section("vgg16", METRICS, BOTH, trained)
    assert ("Fine-tuned for 2 epochs (48 min on AMD EPYC, 2 cores) from the weights then in "
            "`assets/models/vgg16` (trained by earlier runs).") in text
    untold = model_section("vgg16", METRICS, BOTH)  # nothing shipped: nothing claimed
    assert "Trained for" not in untold and "Fine-tuned for" not in untold
    run = make_run(tmp_path)
    (run / "metrics.json").write_text(json.dumps(trained[0] | {"epochs_run": 1}))
    card = model_card(run)
    assert "Trained for 1 epoch (48 min on AMD EPYC, 2 cores)." in card


def test_model_section_says_when_faces_are_read_with_their_mirror_image():
    assert "mirrored" not in model_section("vgg16", METRICS, BOTH)
    assert "as it is and mirrored" in model_section("vgg16", METRICS | {"flip_average": True}, BOTH)


def test_model_section_says_how_many_vgg16_blocks_were_tuned():
    assert "its last block fine-tuned" in model_section("vgg16", METRICS, BOTH)  # options not shipped: block 5
    two = model_section("vgg16", METRICS, BOTH, ({}, {"tuned_blocks": 2}))
    assert "its last 2 blocks fine-tuned" in two and "its last block" not in two


def test_model_section_says_what_size_each_network_reads():
    """From the evaluation's record of the model (metrics.json "model"), as the shipped reports carry it."""
    assert "It reads each face at 160x160 px." in model_section("vgg16", METRICS | {"model": {"image_size": 160}}, BOTH)
    assert "It reads each face at 80x80 px." in model_section("scratch", METRICS | {"model": {"image_size": 80}}, BOTH)
    assert " px." not in model_section("vgg16", METRICS, BOTH)  # not recorded: nothing claimed
