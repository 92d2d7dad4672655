import fnmatch
import json
import shutil
import warnings

import pytest
import torch

from conftest import make_tiny_model
from qualaudit.calibration import TemperatureScaler
from qualaudit.errors import ModelLoadError
from qualaudit.model import QualityModel, UntrainedModelWarning
from qualaudit.scorer import Auditor


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        return QualityModel.from_pretrained(path)


def test_save_load_round_trip_gives_identical_scores(tiny_encoder_dir, tmp_path, toy_transcripts):
    model = make_tiny_model(tiny_encoder_dir, seed=3)
    model.calibration["resolution.v1"] = TemperatureScaler().fit(
        torch.randn(50, 5).numpy(), torch.randint(0, 5, (50,)).numpy())
    model.save_pretrained(tmp_path / "m")
    assert {"config.json", "model.safetensors", "calibration.json", "README.md",
            "tokenizer.json"} <= {p.name for p in (tmp_path / "m").iterdir()}
    loaded = load(tmp_path / "m")
    before = [r.to_dict() for r in Auditor(model).score(toy_transcripts)]
    after = [r.to_dict() for r in Auditor(loaded).score(toy_transcripts)]
    assert before == after
    assert loaded.calibration["resolution.v1"].temperature_ == model.calibration["resolution.v1"].temperature_


def test_fp16_weights_load_and_stay_close(tiny_model, tmp_path, toy_transcripts):
    tiny_model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    half = Auditor(load(tmp_path / "half")).score(toy_transcripts)
    full = Auditor(tiny_model).score(toy_transcripts)
    for a, b in zip(half, full):
        assert abs(a.resolution - b.resolution) < 1e-2


def test_weights_hash_depends_on_weights_only(tiny_encoder_dir, tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    assert load(tmp_path / "m").weights_sha256 == tiny_model.weights_sha256
    assert make_tiny_model(tiny_encoder_dir, seed=99).weights_sha256 != tiny_model.weights_sha256


def test_untrained_heads_warn_loudly(tiny_model_dir):
    with pytest.warns(UntrainedModelWarning, match="UNTRAINED"):
        QualityModel.from_pretrained(tiny_model_dir)
    card = (tiny_model_dir / "README.md").read_text()
    assert "WARNING: UNTRAINED HEADS" in card
    assert "## Training data\nNone: no head of this model was trained." in card
    assert QualityModel.from_pretrained(tiny_model_dir).weights_sha256 in card


def test_default_model_is_never_an_untrained_one():
    from qualaudit.model import default_model_path

    path = default_model_path()
    if path is None:
        with pytest.raises(ModelLoadError, match="no default model"):
            Auditor.from_pretrained()
    else:
        assert QualityModel.from_pretrained(path).config.untrained_heads == []


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "copy")


def edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_pickle_weights_are_refused(model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        load(model_copy)


@pytest.mark.parametrize("changes, message", [
    ({"qualaudit_format": 7}, "unsupported qualaudit_format"),
    ({"heads": ["resolution.v1", "mystery.v3"]}, "unknown head"),
    ({"surprise": 1}, "unknown config field"),
])
def test_tampered_configs_are_refused(model_copy, changes, message):
    edit_config(model_copy, **changes)
    with pytest.raises(ModelLoadError, match=message):
        load(model_copy)


def test_remote_code_is_refused(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    edit_config(model_copy, encoder={**config["encoder"], "auto_map": {"AutoModel": "evil.Model"}})
    with pytest.raises(ModelLoadError, match="never runs remote code"):
        load(model_copy)
    edit_config(model_copy, encoder={**config["encoder"], "model_type": "evil"})
    with pytest.raises(ModelLoadError, match="unknown encoder model_type"):
        load(model_copy)


def test_weights_that_do_not_match_the_config_are_refused(model_copy):
    edit_config(model_copy, conversation_dim=8)
    with pytest.raises(ModelLoadError, match="does not match config.json"):
        load(model_copy)


def test_a_plain_encoder_is_not_a_qualaudit_model(tiny_encoder_dir):
    with pytest.raises(ModelLoadError, match="from_encoder"):
        load(tiny_encoder_dir)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no model directory"):
        load(tmp_path / "nope")


def test_too_long_windows_for_the_encoder_are_refused(tiny_encoder_dir):
    with pytest.raises(ModelLoadError, match="positions"):
        make_tiny_model(tiny_encoder_dir, max_turn_tokens=250, max_context_tokens=50)


def test_hub_ids_are_fetched_as_safetensors_only(tiny_model_dir, monkeypatch):
    import huggingface_hub

    asked = {}

    def fake_snapshot_download(repo_id, allow_patterns):
        asked.update(repo_id=repo_id, patterns=allow_patterns)
        return str(tiny_model_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = load("acme/support-quality")
    assert asked["repo_id"] == "acme/support-quality"
    assert "model.safetensors" in asked["patterns"]
    for pickle_file in ("pytorch_model.bin", "model.pt", "weights.pkl", "training_args.bin"):
        assert not any(fnmatch.fnmatch(pickle_file, p) for p in asked["patterns"])
    assert model.config.heads


def test_hub_failure_is_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(repo_id, allow_patterns):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelLoadError, match="fetching it from the hub failed.*no network"):
        load("acme/support-quality")


def test_a_mistyped_local_path_is_never_fetched(tmp_path, monkeypatch):
    import huggingface_hub

    def no_fetch(*args, **kwargs):
        raise AssertionError("tried the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_fetch)
    (tmp_path / "local").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="no model directory"):
        load("local/untrained-minlm")


@pytest.mark.parametrize("changes, message", [
    ({"max_turn_tokens": "64"}, "max_turn_tokens must be a positive integer"),
    ({"dropout": None}, "dropout must be a number"),
    ({"heads": "resolution.v1"}, "heads must be a list"),
    ({"trained_heads": "resolution.v1 escalation.v1"}, "trained_heads must be a list"),
    ({"trained_heads": ["mystery.v1"]}, "not among the heads"),
])
def test_config_fields_are_type_checked(model_copy, changes, message):
    edit_config(model_copy, **changes)
    with pytest.raises(ModelLoadError, match=message):
        load(model_copy)


def test_calibration_must_fit_the_heads(model_copy):
    bad = {"format": 1, "heads": {"resolution.v1": {
        "method": "temperature", "binary": False, "n_classes": 3, "temperature": 1.5}}}
    (model_copy / "calibration.json").write_text(json.dumps(bad))
    with pytest.raises(ModelLoadError, match="does not fit the head"):
        load(model_copy)
    bad["heads"] = {"mystery.v1": {"method": "temperature", "binary": True, "n_classes": None,
                                   "temperature": 1.5}}
    (model_copy / "calibration.json").write_text(json.dumps(bad))
    with pytest.raises(ModelLoadError, match="not a head of this model"):
        load(model_copy)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.ckpt", "weights.pkl"])
def test_every_pickle_format_is_refused_and_never_unpickled(model_copy, name, monkeypatch):
    import pickle

    def no_unpickling(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    state = torch.nn.Linear(2, 2).state_dict()
    (model_copy / "model.safetensors").unlink()
    torch.save(state, model_copy / name)
    with pytest.raises(ModelLoadError, match=f"pickle file.*{name}.*safetensors only"):
        load(model_copy)


@pytest.mark.parametrize("content", [
    b"not a safetensors file",
    b"\x80\x04\x95pickle",          # pickle bytes under the safetensors name
    None,                            # a real torch pickle renamed
    b"\xff" * 8 + b"{}",            # a header length that does not fit the file
])
def test_tampered_weights_are_refused(model_copy, content):
    path = model_copy / "model.safetensors"
    if content is None:
        torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    else:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="not a valid safetensors file"):
        load(model_copy)


def test_truncated_weights_are_refused(model_copy):
    path = model_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match="not a valid safetensors file"):
        load(model_copy)


def test_a_tokenizer_asking_for_custom_code_never_runs_it(model_copy, tmp_path):
    marker = tmp_path / "ran"
    (model_copy / "evil_tokenizer.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PreTrainedTokenizerFast\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n")
    config_path = model_copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]}
    config["tokenizer_class"] = "EvilTokenizer"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer.*custom code"):
        load(model_copy)
    assert not marker.exists()


@pytest.mark.parametrize("changes", [
    {"hidden_size": "big"},
    {"num_hidden_layers": -1},
    {"num_attention_heads": 0},
    {"vocab_size": None},
])
def test_tampered_encoder_settings_are_a_clear_error(model_copy, changes):
    config = json.loads((model_copy / "config.json").read_text())
    edit_config(model_copy, encoder={**config["encoder"], **changes})
    with pytest.raises(ModelLoadError, match="encoder"):
        load(model_copy)


@pytest.mark.parametrize("text", ["[1, 2]", '{"qualaudit_format": 1, "encoder": "bert"}', "\xff"])
def test_configs_that_are_not_model_configs_are_refused(model_copy, text):
    (model_copy / "config.json").write_text(text, encoding="latin-1")
    with pytest.raises(ModelLoadError):
        load(model_copy)


def test_remote_code_is_never_asked_for(model_copy, monkeypatch):
    import transformers

    asked = []
    for name in ("AutoModel", "AutoTokenizer", "AutoConfig"):
        cls = getattr(transformers, name)
        for method in ("from_pretrained", "from_config", "for_model"):
            original = getattr(cls, method, None)
            if original is None:
                continue

            def spy(*args, _original=original, **kwargs):
                asked.append(kwargs.get("trust_remote_code"))
                return _original(*args, **kwargs)

            monkeypatch.setattr(cls, method, spy)
    load(model_copy)
    assert asked and True not in asked


def test_the_card_leads_with_transfer_figures(tiny_model):
    from qualaudit.modelcard import render_model_card

    card = render_model_card(tiny_model, {"Recipe": "how it was made", "Transfer": "| pair | AUROC |"})
    assert card.index("## Transfer") < card.index("## Architecture") < card.index("## Recipe")
    assert card.count("## Transfer") == 1
