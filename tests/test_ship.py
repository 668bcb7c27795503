"""train/ship.py: a checkpoint becomes verified pretrained weights for both runtimes, written as data."""

import json
import os
import shutil

import numpy as np
import pytest

from ml_audio_encoder.models import presets
from ml_audio_encoder.weights import save_arrays
from train import ship

pytest.importorskip("ai_edge_litert")


def _run(tmp_path, model, step=7, config=True):
    run = tmp_path / "run"
    folder = run / "checkpoints" / f"step-{step:08d}"
    folder.mkdir(parents=True)
    meta = {"config": model.get_config()} if config else None
    save_arrays(str(folder / "generator.npz"), [np.asarray(w) for w in model.weights], meta=meta)
    (run / "checkpoints" / "best.json").write_text(json.dumps({"folder": folder.name, "step": step, "val_mel": 1.5}))
    (run / "log.csv").write_text(f"step,val_mel,machine\n{step},1.5,test\n")
    return run


def _manifest(tmp_path):
    """A training manifest of the test clips, for fitting entropy priors."""
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    rows = ["path,domain,source,duration_s,split"]
    for name, domain in (("speech_male", "speech"), ("speech_female", "speech"), ("music", "music"),
                         ("general", "general")):
        rows.append(f"{os.path.join(data, name + '.ogg')},{domain},{name},3.0,train")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def shipped_once(tiny_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ship")
    out = tmp_path / "pretrained"
    meta, written = ship.ship(str(_run(tmp_path, tiny_model)), "tiny_test", out_dir=str(out),
                              priors_manifest=_manifest(tmp_path), priors_seconds=2.0)
    return meta, written


@pytest.fixture
def shipped(shipped_once, tmp_path, monkeypatch):
    """The shipped files installed as the package's (a copy per test: tests may damage them)."""
    meta, written = shipped_once
    out = tmp_path / "pretrained"
    shutil.copytree(os.path.dirname(os.path.dirname(written[0])), out)
    monkeypatch.setattr(presets, "PRETRAINED_DIR", str(out))
    return meta, written


def test_ship_writes_a_preset_folder_of_data(shipped, tiny_model):
    meta, written = shipped
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["config.json", "lite.decoder.tflite", "lite.encoder.tflite", "lite.json", "metadata.json",
                     "priors.npz", "weights.npz"]
    assert meta == presets.read_metadata("tiny_test")
    assert meta["step"] == 7 and meta["lite_prefix"] == "lite" and meta["keras_weights"] == "weights.npz"
    assert meta["priors"] == "priors.npz"
    assert sorted(meta["files"]) == [n for n in names if n != "metadata.json"]
    assert meta["training"]["record"] == {"step": 7, "val_mel": 1.5}
    assert meta["training"]["log"] == {"step": 7, "val_mel": 1.5, "machine": "test"}
    config = presets.preset_config("tiny_test", pretrained=True)
    assert config["n_codebooks"] == tiny_model.n_codebooks and "preset" not in config and "name" not in config
    assert presets.shipped_presets() == ["tiny_test"] and presets.has_pretrained("tiny_test")
    assert not presets.has_pretrained("thesis_44khz")


def test_both_runtimes_load_the_shipped_weights(shipped, tiny_model):
    from ml_audio_encoder import MLAudioEncoder, load_model
    from ml_audio_encoder.runtime.lite import LiteCodec

    meta = shipped[0]
    keras_model = MLAudioEncoder.from_preset("tiny_test", pretrained=True)
    assert keras_model.fingerprint() == meta["fingerprint"] == presets.pretrained_fingerprint("tiny_test")
    # float16 rounding: close to, not equal to, the float32 weights trained
    pairs = zip(keras_model.weights, tiny_model.weights)
    assert max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in pairs) < 1e-2
    codec = load_model("tiny_test")
    assert isinstance(codec, LiteCodec) and codec.fingerprint() == meta["fingerprint"]
    assert not isinstance(load_model("tiny_test", engine="keras"), LiteCodec)


def test_shipped_priors_code_files_of_the_shipped_weights(shipped, tmp_path):
    """ship.py fitted entropy priors on the manifest's training audio with the weights it shipped: `compress`
    entropy-codes with them by default, the files decode, and fit_priors.py refuses priors of other weights."""
    from conftest import sweep

    from ml_audio_encoder import load_model
    from ml_audio_encoder.runtime import codec_file, entropy
    from ml_audio_encoder.runtime.compress import compress
    from train import fit_priors

    meta = shipped[0]
    codec = load_model("tiny_test")
    priors = entropy.priors_for(codec)
    assert priors is not None and priors.fingerprint == meta["fingerprint"]
    fit = priors.meta["fit"]
    assert fit["seconds"] == pytest.approx(8.0) and fit["split"] == "train"
    # --priors-manifest replaces the default data; each excerpt coded at the eight offsets of fit_priors.SHIFTS
    assert [part["shifts"] for part in fit["parts"]] == [list(fit_priors.SHIFTS)] == [[i / 8 for i in range(8)]]
    assert fit["sequences"] == 8 * fit["excerpts"] and fit["min_count"] == entropy.fit.MIN_COUNT
    assert priors.id == meta["files"]["priors.npz"][:32]
    f = compress(codec, sweep(0.5, 16000)[None], sample_rate=16000)
    assert f.entropy == "context"
    data = codec_file.to_bytes(f)
    np.testing.assert_array_equal(codec_file.from_bytes(data).codes, f.codes)
    other = entropy.fit.fit_priors([f.codes[0]], priors.codebook_size, "0" * 64, "tiny_test")
    with pytest.raises(ValueError, match="other weights|ships"):
        fit_priors.record_priors(presets.pretrained_dir("tiny_test"), other)
    meta2 = fit_priors.record_priors(presets.pretrained_dir("tiny_test"), priors)  # re-recording is idempotent
    assert meta2["files"] == meta["files"] and meta2["priors"] == "priors.npz"


def test_no_fitting_data_ships_no_priors(tiny_model, tmp_path):
    with pytest.warns(UserWarning, match="no entropy priors"):
        meta, written = ship.ship(str(_run(tmp_path, tiny_model)), "tiny_test", out_dir=str(tmp_path / "out"),
                                  lite=False, priors_manifest=str(tmp_path / "missing.csv"))
    assert meta["priors"] is None and not any(p.endswith("priors.npz") for p in written)


def test_corrupted_or_swapped_files_are_refused(shipped):
    from ml_audio_encoder import MLAudioEncoder, load_model

    path = os.path.join(presets.pretrained_dir("tiny_test"), "lite.decoder.tflite")
    with open(path, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        f.write(b"xyz")
    with pytest.raises(OSError, match="corrupted"):
        load_model("tiny_test")
    meta_path = os.path.join(presets.pretrained_dir("tiny_test"), "metadata.json")
    meta = json.load(open(meta_path))
    json.dump(dict(meta, fingerprint="0" * 64), open(meta_path, "w"))
    with pytest.raises(OSError, match="fingerprint"):
        MLAudioEncoder.from_preset("tiny_test", pretrained=True)


def test_keras_only_ship_and_reship(tiny_model, tmp_path, monkeypatch):
    """--no-lite ships Keras weights that the default engine then runs; shipping again replaces the folder."""
    from ml_audio_encoder import load_model

    out = tmp_path / "pretrained"
    run = _run(tmp_path, tiny_model, config=False)  # an old checkpoint without a config: the preset's is used
    meta, written = ship.ship(str(run), "tiny_test", out_dir=str(out), lite=False, priors=False)
    assert meta["lite_prefix"] is None and meta["priors"] is None and not any("tflite" in p for p in written)
    monkeypatch.setattr(presets, "PRETRAINED_DIR", str(out))
    assert presets.pretrained_lite_prefix("tiny_test") is None
    assert load_model("tiny_test").fingerprint() == meta["fingerprint"]  # auto falls back to Keras
    with pytest.raises(ValueError, match="no LiteRT files"):
        load_model("tiny_test", engine="lite")
    again, _ = ship.ship(str(run), "tiny_test", out_dir=str(out), lite=False, priors=False)
    assert again["fingerprint"] == meta["fingerprint"] and sorted(os.listdir(out)) == ["tiny_test"]


def test_a_compact_state_ships_like_its_checkpoint(tiny_model, tmp_path):
    """A fresh checkout has the committed compact state, not the checkpoints: shipping the state gives the weights
    of the checkpoint it came from (both float16); a state that already points at shipped weights is refused."""
    from ml_audio_encoder.training.state import state_from_checkpoint

    run = _run(tmp_path, tiny_model)
    best = run / "checkpoints" / "best.json"
    best.write_text(json.dumps(dict(json.loads(best.read_text()), epoch=1)))  # as the trainer's pointers have it
    state = tmp_path / "state"
    state_from_checkpoint(str(run / "checkpoints"), str(state), which="best")
    a, _ = ship.ship(str(run), "tiny_test", out_dir=str(tmp_path / "a"), lite=False, priors=False)
    b, _ = ship.ship(str(state), "tiny_test", out_dir=str(tmp_path / "b"), lite=False, priors=False)
    assert b["fingerprint"] == a["fingerprint"] and b["step"] == 7 and b["training"]["checkpoint"] == "state"
    (state / "state.json").write_text(json.dumps({"step": 7, "generator": {"shipped": "tiny_test"}}))
    with pytest.raises(SystemExit, match="already"):
        ship.ship(str(state), "tiny_test", out_dir=str(tmp_path / "c"), lite=False, priors=False)


# The weights each shipped preset folder must hold (train/ship.py prints the fingerprint); a reship updates these.
SHIPPED = {
    "small_24khz": "180604ba8b5074b7906669fbce8240802464df05b93fb1c752238aa7dc0350b5",
    "fast_24khz": "33b8f283aedbcc6231a26d8922f092404e417be5e5a7ebb4e653d39fdba3aaaf",
}


@pytest.mark.parametrize("preset", sorted(SHIPPED))
def test_the_shipped_folders_are_consistent(preset):
    """The package's own shipped weights: every file matches metadata.json, config.json matches the preset, the
    LiteRT files and the entropy priors name the same weights."""
    meta = presets.read_metadata(preset)
    for name in meta["files"]:
        presets.pretrained_file(preset, name)  # checks the SHA-256 recorded in metadata.json
    assert presets.preset_config(preset, pretrained=True) == json.loads(json.dumps(presets.PRESETS[preset]))
    assert meta["fingerprint"] == SHIPPED[preset]
    lite = json.load(open(presets.pretrained_file(preset, "lite.json")))
    assert lite["fingerprint"] == meta["fingerprint"]
    from ml_audio_encoder.runtime.entropy import Priors

    priors = Priors.load(presets.pretrained_file(preset, meta["priors"]))
    # fitted on the whole training pack (101 min, each excerpt at eight offsets) and, for the default model, the
    # manifest's music (129 min at four): ~12 MiB, well under the weights
    assert priors.fingerprint == meta["fingerprint"] and priors.size_bytes < 14 << 20
    if preset == presets.DEFAULT_PRESET:
        from train import fit_priors

        parts = priors.meta["fit"]["parts"]
        assert [(p["domains"], len(p["shifts"])) for p in parts] == [(None, 8), (["music"], 4)]
        assert [p["manifest"] for p in parts] == [os.path.relpath(d.manifest, fit_priors.ROOT)
                                                  for d in fit_priors.DEFAULT_DATA]


def test_the_default_model_ships():
    assert presets.DEFAULT_PRESET in SHIPPED and presets.has_pretrained(presets.DEFAULT_PRESET)


def test_fit_priors_skips_slices_shorter_than_a_hop(tiny_model, tmp_path):
    """The training split holds sound effects of a few milliseconds and files with fewer samples than the manifest
    lists: an offset past their end gave an empty slice (and the whole fit failed); now such slices are skipped and
    each sequence's excerpt is kept for the grouped cross-validation."""
    import soundfile as sf
    from conftest import sweep

    from train import fit_priors

    sr = tiny_model.sample_rate
    paths = {name: str(tmp_path / f"{name}.wav") for name in ("long", "blip", "lying")}
    sf.write(paths["long"], sweep(0.5, sr), sr)
    blip = tiny_model.hop_length // 2
    sf.write(paths["blip"], sweep(0.5, sr)[:blip], sr)
    sf.write(paths["lying"], sweep(0.5, sr)[:6], sr)  # the manifest says 1 s
    excerpts = [{"path": paths["blip"], "seconds": blip / sr}, {"path": paths["long"], "seconds": 0.5},
                {"path": paths["lying"], "seconds": 1.0}]
    codes, groups = fit_priors.encode_excerpts(tiny_model, excerpts, shifts=(0.0, 0.5))
    assert groups == [1, 1]
    frames = int(0.5 * sr) // tiny_model.hop_length
    assert len(codes) == 2 and all(c.ndim == 2 and frames - 1 <= c.shape[1] <= frames + 1 for c in codes)


def test_fit_priors_fits_on_every_part_of_its_data(tiny_model, tmp_path):
    """The default data is two parts (the pack's training split at eight offsets, the music of the full manifest's at
    four): each part's excerpts are coded at its own offsets, filtered to its domains, and never share a
    cross-validation fold with another part's; the metadata says what each part held."""
    from train import fit_priors

    assert [p.domains for p in fit_priors.DEFAULT_DATA] == [None, ("music",)]
    assert [len(p.shifts) for p in fit_priors.DEFAULT_DATA] == [8, 4]
    manifest = _manifest(tmp_path)
    data = (fit_priors.FitData(manifest, (0.0, 0.5), seconds_per_source=1.0),
            fit_priors.FitData(manifest, (0.0, 0.25, 0.5, 0.75), ("music",), seconds_per_source=1.0))
    priors = fit_priors.fit_model_priors(tiny_model, data, min_count=1)
    fit = priors.meta["fit"]
    assert [(part["excerpts"], part["domains"], len(part["shifts"])) for part in fit["parts"]] == [
        (4, None, 2), (1, ["music"], 4)]
    assert fit["excerpts"] == 5 and fit["sequences"] == 4 * 2 + 1 * 4 and fit["min_count"] == 1
    assert fit["seconds_by_domain"] == {"general": 1.0, "music": 2.0, "speech": 2.0}
    with pytest.raises(ValueError, match="no train audio"):
        fit_priors.fit_model_priors(tiny_model, (fit_priors.FitData(manifest, domains=("birdsong",)),))
    with pytest.raises(ValueError, match="fractions of a hop"):
        fit_priors.FitData(manifest, (0.0, 1.0))
    one = fit_priors.FitData(manifest, seconds_per_source=2.0)
    assert fit_priors.choose_data(manifest, seconds_per_source=2.0) == (one,)
    assert [p.manifest for p in fit_priors.choose_data()] == [p.manifest for p in fit_priors.DEFAULT_DATA]
