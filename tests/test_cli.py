"""The `mlae` command end to end, through `main([...])`."""

import numpy as np
import pytest
import soundfile as sf
from conftest import sweep

from ml_audio_encoder import cli
from ml_audio_encoder.runtime import audio_io, codec_file
from ml_audio_encoder.runtime.compress import n_quantizers_for_kbps


@pytest.fixture(scope="module")
def weights(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.weights.h5"
    tiny_model.save_weights(str(path))
    return str(path)


@pytest.fixture
def use_tiny(monkeypatch, tiny_model):
    """Skip rebuilding the model for tests about plumbing rather than model loading."""
    monkeypatch.setattr(cli, "load_model", lambda spec=None, preset=None, engine="auto": tiny_model)


@pytest.fixture
def wav(tmp_path):
    x = np.stack([sweep(0.6, 22050), 0.5 * sweep(0.6, 22050, f0=300)])
    path = tmp_path / "in.wav"
    audio_io.save(path, x, 22050)
    return path


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlae: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_compress_info_decompress_with_weights_file(weights, wav, tmp_path, capsys, tiny_model, monkeypatch):
    out = tmp_path / "in.mlae"
    assert cli.main(["compress", str(wav), "-o", str(out), "--model", weights, "--preset", "tiny_test", "-q"]) == 0
    f = codec_file.read(out)
    assert f.fingerprint == tiny_model.fingerprint() and f.channels == 2 and f.original_length == 13230

    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for expected in ("22050 Hz, 2 channels, 13230 samples", "tiny_test", "kbps", "compression"):
        assert expected in text

    # Loading is covered above (and costs a model build), so decompress reuses the in-memory model.
    monkeypatch.setattr(cli, "load_model", lambda spec=None, preset=None, engine="auto": tiny_model)
    dst = tmp_path / "back.flac"
    assert cli.main(["decompress", str(out), "-o", str(dst), "--model", f"tiny_test:{weights}", "-q"]) == 0
    info = sf.info(dst)
    assert (info.samplerate, info.channels, info.frames) == (22050, 2, 13230)


def test_many_inputs_to_a_folder(use_tiny, wav, tmp_path):
    second = tmp_path / "second.wav"
    audio_io.save(second, sweep(0.3, 16000), 16000)
    outdir = tmp_path / "codes"
    assert cli.main(["compress", str(wav), str(second), "-o", str(outdir), "-q"]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == ["in.mlae", "second.mlae"]
    assert cli.main(["decompress", *map(str, sorted(outdir.iterdir())), "-q"]) == 0
    assert sf.info(outdir / "second_decoded.wav").frames == 4800
    assert sf.info(outdir / "in_decoded.wav").channels == 2


def test_kbps_and_n_quantizers(use_tiny, tiny_model, wav, tmp_path):
    per_level = tiny_model.bits_per_code * tiny_model.frame_rate / 1000  # 6 bits x 400 frames/s = 2.4 kbps
    assert cli.main(["compress", str(wav), "-o", str(tmp_path / "k.mlae"), "--kbps", str(2.5 * per_level), "-q"]) == 0
    assert codec_file.read(tmp_path / "k.mlae").n_quantizers == 2
    assert cli.main(["compress", str(wav), "-o", str(tmp_path / "n.mlae"), "-n", "1", "-q"]) == 0
    assert codec_file.read(tmp_path / "n.mlae").n_quantizers == 1
    assert (tmp_path / "n.mlae").stat().st_size < (tmp_path / "k.mlae").stat().st_size
    assert n_quantizers_for_kbps(tiny_model, 1000) == tiny_model.n_codebooks


def test_kbps_too_low(use_tiny, wav, capsys):
    assert cli.main(["compress", str(wav), "--kbps", "0.1", "-q"]) == 1
    assert "lowest bitrate" in one_error_line(capsys)


@pytest.mark.parametrize("blob", [b"", b"garbage" * 20, b"MLAE\x63\x00" + b"\x00" * 80])
def test_bad_mlae_gives_one_line(use_tiny, tmp_path, capsys, blob):
    bad = tmp_path / "bad.mlae"
    bad.write_bytes(blob)
    for command in ("info", "decompress"):
        assert cli.main([command, str(bad)]) == 1
        assert str(bad) in one_error_line(capsys)


def test_bit_flipped_file_rejected(use_tiny, wav, tmp_path, capsys):
    out = tmp_path / "a.mlae"
    assert cli.main(["compress", str(wav), "-o", str(out), "-q"]) == 0
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x08
    out.write_bytes(bytes(data))
    assert cli.main(["decompress", str(out), "-q"]) == 1
    assert "CRC32" in one_error_line(capsys)


def test_bad_audio_and_missing_files(use_tiny, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\x00" * 40)
    assert cli.main(["compress", str(bad)]) == 1
    assert "bad.wav" in one_error_line(capsys)
    assert cli.main(["compress", str(tmp_path / "missing.wav")]) == 1
    one_error_line(capsys)
    assert cli.main(["info", str(tmp_path / "missing.mlae")]) == 1
    one_error_line(capsys)


def test_default_model_is_the_shipped_one(wav, tmp_path, capsys):
    """No --model: the shipped weights of the default preset (LiteRT where installed), and the file says which
    weights."""
    from ml_audio_encoder.models.presets import DEFAULT_PRESET, pretrained_fingerprint

    out = tmp_path / "a.mlae"
    assert cli.main(["compress", str(wav), "-o", str(out), "-q"]) == 0
    assert codec_file.read(out).fingerprint == pretrained_fingerprint(DEFAULT_PRESET)
    assert cli.main(["decompress", str(out), "-o", str(tmp_path / "b.wav"), "-q", "--engine", "keras"]) == 0


def test_entropy_coding_by_default_and_the_switch(wav, tmp_path, capsys):
    """The shipped model has priors: files are range-coded (version 2) unless --entropy none; info shows the saving
    and the bits per level; --kbps plans with the expected entropy-coded rate."""
    from ml_audio_encoder.models.presets import DEFAULT_PRESET
    from ml_audio_encoder.runtime import entropy

    if entropy.shipped_priors(DEFAULT_PRESET) is None:
        pytest.skip(f"no priors ship for {DEFAULT_PRESET}")
    paths = {kind: tmp_path / f"{kind}.mlae" for kind in ("auto", "context", "static", "none")}
    for kind, path in paths.items():
        assert cli.main(["compress", str(wav), "-o", str(path), "-n", "8", "--entropy", kind, "-q"]) == 0
    files = {kind: codec_file.read(path) for kind, path in paths.items()}
    assert [files[k].entropy for k in paths] == ["context", "context", "static", "none"]
    assert files["none"].version == 1 and files["context"].version == 2
    for kind in ("context", "static"):
        np.testing.assert_array_equal(files[kind].codes, files["none"].codes)
    # Payloads (the version 2 header is longer): the context prior beats bit-packing even on this 0.6 s synthetic
    # sweep; the static one (code frequencies of real audio) need not: fast_24khz uses its codebooks evenly
    # (docs/entropy_coding.md), so the static prior only saves on real audio.
    payload = {kind: f.payload_bytes for kind, f in files.items()}
    assert payload["context"] < min(payload["static"], payload["none"])
    assert cli.main(["info", str(paths["context"]), str(paths["none"])]) == 0
    text = capsys.readouterr().out
    assert "context-coded with priors" in text and "smaller" in text and "bits per code   L1 " in text
    assert "bit-packed" in text and "entropy coding  would save" in text
    assert cli.main(["decompress", str(paths["context"]), "-o", str(tmp_path / "back.wav"), "-q"]) == 0
    assert sf.info(tmp_path / "back.wav").frames == 13230
    # 6 kbps: 8 bit-packed levels, but more when the expected entropy-coded rate is what counts
    assert cli.main(["compress", str(wav), "-o", str(tmp_path / "k.mlae"), "--kbps", "6", "--entropy", "none",
                     "-q"]) == 0
    assert codec_file.read(tmp_path / "k.mlae").n_quantizers == 8
    assert cli.main(["compress", str(wav), "-o", str(tmp_path / "k.mlae"), "--kbps", "6", "-q"]) == 0
    assert codec_file.read(tmp_path / "k.mlae").n_quantizers > 8
    assert "expected entropy-coded rate" in " ".join(cli.build_parser()._subparsers._group_actions[0]
                                                     .choices["compress"].format_help().split())


def test_entropy_needs_priors(use_tiny, wav, tmp_path, capsys):
    assert cli.main(["compress", str(wav), "-o", str(tmp_path / "a.mlae"), "--entropy", "context", "-q"]) == 1
    assert "no entropy priors" in one_error_line(capsys)
    assert cli.main(["compress", str(wav), "-o", str(tmp_path / "a.mlae"), "-q"]) == 0  # auto: bit-packed
    assert codec_file.read(tmp_path / "a.mlae").entropy == "none"


def test_model_resolution_errors(wav, tmp_path, capsys, monkeypatch):
    from ml_audio_encoder.models import presets

    # Without shipped weights the default model says how to proceed, without building anything first.
    monkeypatch.setattr(presets, "PRETRAINED_DIR", str(tmp_path / "no_pretrained"))
    assert cli.main(["compress", str(wav)]) == 1
    assert "--model" in one_error_line(capsys)
    assert cli.main(["compress", str(wav), "--model", str(tmp_path / "nope.keras")]) == 1
    assert "no such model file" in one_error_line(capsys)
    assert cli.main(["compress", str(wav), "--model", "no_such_preset"]) == 1
    one_error_line(capsys)


def test_usage_errors_exit_nonzero():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compress", "x.wav", "--kbps", "6", "-n", "2"])  # mutually exclusive
    assert exit_info.value.code != 0
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code != 0


def test_bench_is_delegated(monkeypatch):
    seen = []
    import ml_audio_encoder.eval.cli as bench_cli

    monkeypatch.setattr(bench_cli, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["bench", "--model", "random:tiny_test", "--limit", "1"]) == 0
    assert seen == [["--model", "random:tiny_test", "--limit", "1"]]


def test_random_model_spec_is_the_same_in_every_call():
    from ml_audio_encoder import load_model

    assert load_model("random:tiny_test").fingerprint() == load_model("random:tiny_test").fingerprint()
