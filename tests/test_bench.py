import math
import struct

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from ml_audio_encoder.eval import datasets, metrics, peers, report


def _tone(seconds, sr, seed=0):
    """Harmonic tone with vibrato, a tremolo and a little noise (a few seconds: ViSQOL needs some)."""
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f * t * (1 + 0.01 * np.sin(2 * np.pi * 3 * t))) for f in (220, 440, 660, 1320, 2500,
                                                                                         4000, 6000))  # fmt: skip
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2) + 0.02 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _lowpass(x, sr, hz):
    b, a = scipy.signal.butter(8, hz / (sr / 2))
    return scipy.signal.lfilter(b, a, x).astype(np.float32)


# -- sizes --------------------------------------------------------------------------------------------------------
def test_compression_ratio_hand_computed(tmp_path):
    # 2 s of 24 kHz stereo as 16-bit PCM = 2 * 24000 * 2 ch * 2 B = 192000 B; a 750-byte file -> 256:1
    sr, ch = 24000, 2
    sf.write(tmp_path / "x.wav", np.zeros((2 * sr, ch), np.float32), sr, subtype="PCM_16")
    n = sf.info(str(tmp_path / "x.wav")).frames
    assert metrics.pcm16_bytes(n, ch) == 192000 == (tmp_path / "x.wav").stat().st_size - 44  # WAV = 44 B + PCM
    assert metrics.compression_ratio(n, sr, ch, 750) == pytest.approx(256.0)
    assert metrics.kbps(750, 2.0) == pytest.approx(3.0)
    # codes: 75 frames/s * 12 levels * 10 bits = 9 kbps; 1 s -> 1125 bytes, ratio vs 24 kHz mono = 48000/1125
    assert metrics.codes_payload_bytes(75, 12, 1024) == 1125
    assert metrics.codes_payload_bytes(3, 1, 64) == 3  # 18 bits -> 3 bytes (rounded up)
    assert metrics.compression_ratio(24000, sr, 1, 1125) == pytest.approx(48000 / 1125)


# -- distances ----------------------------------------------------------------------------------------------------
def test_mel_and_stft_distance_zero_for_identical_audio():
    sr = 16000
    x = _tone(0.5, sr)
    assert metrics.mel_distance(x, x, sr) == pytest.approx(0.0, abs=1e-6)
    assert metrics.stft_distance(x, x, sr) == pytest.approx(0.0, abs=1e-6)
    assert metrics.mel_distance(x, _lowpass(x, sr, 1000), sr) > 0.1
    assert metrics.si_sdr(x, x) > 60
    assert metrics.si_sdr(x, x + 0.1 * np.random.default_rng(1).standard_normal(x.size)) < 20
    # est at another rate is resampled to the reference's rate and cropped to its length
    y = metrics.resample(x, sr, 24000)
    assert metrics.mel_distance(x, y, sr, est_sample_rate=24000) < 0.5


def test_distances_equal_the_training_losses():
    """The benchmark's distances are DAC's, computed without importing training: same numbers as the losses."""
    from ml_audio_encoder.training import losses

    sr = 24000
    x = _tone(0.5, sr)
    y = _lowpass(x, sr, 2000) + 0.01 * np.random.default_rng(2).standard_normal(x.size).astype(np.float32)
    batch = lambda a: a[None, :, None]  # noqa: E731
    mel = float(losses.MelSpectrogramLoss(sample_rate=sr)(batch(x), batch(y)))
    stft = float(losses.MultiScaleSTFTLoss()(batch(x), batch(y)))
    sdr = float(np.asarray(losses.si_sdr(batch(x), batch(y)))[0])
    assert metrics.mel_distance(x, y, sr) == pytest.approx(mel, rel=1e-5)
    assert metrics.stft_distance(x, y, sr) == pytest.approx(stft, rel=1e-5)
    assert metrics.si_sdr(x, y) == pytest.approx(sdr, abs=1e-3)
    stereo = np.stack([x, x])  # channels-first, the package's one layout: averaged to mono
    assert metrics.mel_distance(stereo, y, sr) == pytest.approx(mel, rel=1e-5)


# -- ViSQOL -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def visqol_ok():
    if not metrics.visqol_available():
        pytest.skip("visqol-python not installed (pip install 'visqol-python[accel,lattice]==3.8.0')")


def test_visqol_audio_mode_self_and_lowpass(visqol_ok):
    sr = 48000
    x = _tone(3.0, sr)
    s = metrics.visqol(x, x, sr, "audio")
    assert s.mode == "audio@48k (SVR)"
    assert s.moslqo == pytest.approx(4.73, abs=0.02)
    assert metrics.visqol(x, _lowpass(x, sr, 3000), sr, "audio").moslqo < s.moslqo - 1.0


def test_visqol_speech_mode_self_and_lowpass(visqol_ok):
    if not metrics.lattice_available():
        pytest.skip("ai-edge-litert missing: visqol-python[lattice] extra not installed")
    sr = 22050  # resampled to 16 kHz inside
    x = _tone(3.0, sr, seed=1)
    s = metrics.visqol(x, x, sr, "speech")
    assert s.mode == "speech@16k (lattice)"
    assert 4.4 < s.moslqo <= 5.0
    assert metrics.visqol(x, _lowpass(x, sr, 2000), sr, "speech").moslqo < s.moslqo - 1.0


# -- Opus and Ogg -------------------------------------------------------------------------------------------------
def _page(body_packets, serial=1, seq=0, header_type=0, granule=0, continued_tail=False):
    """Hand-built Ogg page: lacing of each packet (a packet whose length is a multiple of 255 ends with a 0)."""
    lacing, body = [], b""
    for i, p in enumerate(body_packets):
        n = len(p)
        lacing += [255] * (n // 255)
        if not (continued_tail and i == len(body_packets) - 1):
            lacing.append(n % 255)
        body += p
    hdr = b"OggS" + struct.pack("<BBqIIIB", 0, header_type, granule, serial, seq, 0, len(lacing)) + bytes(lacing)
    return hdr + body


def test_ogg_packet_parsing_and_opus_accounting():
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    a1, a2, a3 = b"\x01" * 10, b"\x02" * 255, b"\x03" * 600  # 255: needs a 0 lacing; 600 spans two pages
    data = (
        _page([head], seq=0, header_type=2)
        + _page([tags], seq=1)
        + _page([a1, a2, a3[:510]], seq=2, continued_tail=True)
        + _page([a3[510:]], seq=3, header_type=1 | 4)
    )
    pages = peers.parse_ogg_pages(data)
    assert len(pages) == 4 and pages[3].continued
    packets = peers.ogg_packets(data)
    assert [len(p) for p in packets] == [len(head), len(tags), 10, 255, 600]
    assert packets[4] == a3
    s = peers.opus_sizes(data)
    assert s.payload_bytes == 10 + 255 + 600
    assert s.n_audio_packets == 3 and s.pre_skip == 312 and s.input_sample_rate == 48000
    assert s.header_packet_bytes == len(head) + len(tags)
    assert s.page_overhead_bytes + s.header_packet_bytes + s.payload_bytes == s.file_bytes == len(data)
    with pytest.raises(ValueError):
        peers.parse_ogg_pages(b"RIFF" + data)
    with pytest.raises(ValueError):
        peers.parse_ogg_pages(data[:-5])


def test_opus_roundtrip_keeps_length_and_rate():
    if peers.opus_backend() is None:
        pytest.skip("no Opus encoder: install ffmpeg (Debian) or a libsndfile with Opus")
    sr = 22050
    x = _tone(1.3, sr)
    r = peers.opus_roundtrip(x, sr, 12)
    assert r.sample_rate == sr and r.audio.shape == x.shape and r.audio.dtype == np.float32
    assert 0 < r.payload_bytes < r.file_bytes
    assert metrics.kbps(r.payload_bytes, 1.3) == pytest.approx(12, rel=0.3)
    # Opus is delay-compensated (pre-skip): the decoded signal lines up with the input (with either backend:
    # ffmpeg's libopus, or libsndfile's, whose 12 kbps sounds worse on this tone but is just as aligned)
    inner = slice(2000, -2000)
    xcorr = np.correlate(r.audio[inner], x[inner], "full")
    assert abs(int(np.argmax(xcorr)) - (x[inner].size - 1)) <= 1
    assert np.corrcoef(x, r.audio)[0, 1] > (0.8 if r.backend == "ffmpeg-libopus" else 0.5)


# -- datasets -----------------------------------------------------------------------------------------------------
def _wav(path, seconds=0.1, sr=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * sr), np.float32), sr)


def test_gtzan_loader_both_layouts(tmp_path):
    for g, i in (("blues", 0), ("blues", 1), ("jazz", 54)):
        _wav(tmp_path / "a" / "genres_original" / g / f"{g}.{i:05d}.wav")
    (tmp_path / "a" / "genres_original" / "README.txt").write_text("not audio")
    items = datasets.load_gtzan(tmp_path / "a")
    assert [(it.label, it.name) for it in items] == [("blues", "blues.00000.wav"), ("blues", "blues.00001.wav"),
                                                     ("jazz", "jazz.00054.wav")]  # fmt: skip
    assert all(it.domain == "music" and it.dataset == "gtzan" for it in items)
    (tmp_path / "b" / "genres" / "rock").mkdir(parents=True)
    sf.write(tmp_path / "b" / "genres" / "rock" / "rock.00003.au", np.zeros(80), 8000)
    items = datasets.resolve_dataset(str(tmp_path / "b"), kind="music")
    assert [(it.dataset, it.label, it.name) for it in items] == [("gtzan", "rock", "rock.00003.au")]
    assert len(datasets.resolve_dataset(str(tmp_path / "a"), limit=2)) == 2


def test_ravdess_loader_parses_names(tmp_path):
    _wav(tmp_path / "Actor_01" / "03-01-06-01-02-01-01.wav")
    _wav(tmp_path / "Actor_02" / "03-01-03-02-01-02-02.wav")
    _wav(tmp_path / "Actor_02" / "03-02-03-02-01-02-02.wav")  # song: excluded
    items = datasets.resolve_dataset(str(tmp_path), kind="speech")
    assert [(it.dataset, it.speaker, it.gender, it.label) for it in items] == [
        ("ravdess", "actor01", "male", "fearful"),
        ("ravdess", "actor02", "female", "happy"),
    ]
    assert items[1].meta["intensity"] == "strong" and items[1].meta["statement"] == "01"
    assert datasets.parse_ravdess_name("hello.wav") is None
    assert len(datasets.load_ravdess(tmp_path, include_song=True)) == 3


def test_folder_and_manifest_loaders(tmp_path):
    _wav(tmp_path / "audio" / "s1.wav")
    _wav(tmp_path / "audio" / "m1.wav")
    _wav(tmp_path / "audio" / "sub" / "s2.flac")
    assert [it.name for it in datasets.resolve_dataset(str(tmp_path / "audio"))] == ["m1.wav", "s1.wav", "s2.flac"]
    man = tmp_path / "data" / "manifest.csv"
    man.parent.mkdir()
    man.write_text(
        "path,domain,speaker,gender,split\n"
        "audio/s1.wav,speech,ann,female,dev\naudio/m1.wav,music,,,dev\naudio/sub/s2.flac,speech,bob,male,train\n"
    )
    items = datasets.resolve_dataset(str(man), kind="speech")
    assert [(it.name, it.speaker, it.gender) for it in items] == [("s1.wav", "ann", "female")]
    assert items[0].path == str(tmp_path / "audio" / "s1.wav")
    assert len(datasets.load_manifest(man, split="train")) == 1
    assert len(datasets.resolve_dataset(f"manifest:{man}:train", kind="speech")) == 1
    with pytest.raises(FileNotFoundError):
        datasets.resolve_dataset(str(tmp_path / "nope"))


# -- report -------------------------------------------------------------------------------------------------------
def test_summary_table_has_every_column():
    rows = []
    for f in ("a.wav", "b.wav"):
        for codec, setting, k in (("opus", "6k", 6.0), ("ours", "1", 0.75), ("ours", "2", 1.5)):
            rows.append(dict(file=f, codec=codec, setting=setting, target_kbps=k, kbps_file=k + 1, kbps_payload=k,
                             ratio_file=100.0, ratio_payload=120.0, mel_distance=1.0, stft_distance=2.0,
                             visqol=3.0 if f == "a.wav" else float("nan"), visqol_mode="audio@48k (SVR)",
                             si_sdr=5.0, enc_rtf=0.1, dec_rtf=0.2, duration_s=1.0))  # fmt: skip
    summary = report.summarize(rows, {"ours": {"peak_rss_mb": 512.0}})
    assert [(s["codec"], s["setting"]) for s in summary] == [("ours", "1"), ("ours", "2"), ("opus", "6k")]
    assert summary[0]["visqol"] == 3.0 and summary[0]["n_files"] == 2 and summary[0]["peak_mb"] == 512.0
    table = report.markdown_table(summary)
    header = table.splitlines()[0]
    for title in ("Codec", "Bitrate (kbps)", "Compression ratio", "Mel distance ↓", "ViSQOL ↑", "SI-SDR", "RTF",
                  "Peak MB", "Payload (kbps)", "STFT distance", "Bit-packed (kbps)", "Bit-packed ratio"):  # fmt: skip
        assert title in header
    n_cols = len(report.SUMMARY_COLUMNS)
    assert all(line.count("|") == n_cols + 1 for line in table.splitlines())
    assert "| 512 |" in table and "| – |" in table  # opus has no memory number: a dash, not a fake value


# -- end to end ---------------------------------------------------------------------------------------------------
def test_end_to_end_bench_cli(tmp_path, capsys):
    from ml_audio_encoder.eval.cli import main

    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "tone.wav", _tone(1.0, 22050), 22050)
    sf.write(data / "noise.flac", 0.1 * np.random.default_rng(0).standard_normal((16000, 2)), 16000)
    (data / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "out"
    argv = ["--model", "random:tiny_test", "--data", str(data), "--kind", "music", "--out", str(out),
            "--opus-kbps", "6,12", "--no-visqol", "--no-memory", "--quiet"]  # fmt: skip
    with pytest.warns(UserWarning, match="undecodable"):
        assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipped (undecodable): 1" in printed and "broken.wav" in printed
    import csv

    rows = list(csv.DictReader(open(out / "per_file.csv")))
    # 2 files x (4 levels of tiny_test + 2 Opus bitrates)
    assert len(rows) == 2 * (4 + 2)
    for r in rows:
        assert float(r["ratio_file"]) > 1 and float(r["ratio_payload"]) >= float(r["ratio_file"])
        assert math.isfinite(float(r["mel_distance"])) and math.isfinite(float(r["si_sdr"]))
    ours1 = [r for r in rows if r["codec"] == "ours" and r["setting"] == "1" and r["name"] == "tone.wav"][0]
    assert float(ours1["kbps_payload"]) == pytest.approx(2.4, rel=0.05)  # 400 frames/s * 6 bits
    # random weights have no entropy priors: the files are bit-packed, so both columns agree
    assert ours1["entropy"] == "none" and float(ours1["ratio_file_packed"]) == float(ours1["ratio_file"])
    summary = (out / "summary.md").read_text()
    assert "Mel distance ↓" in summary and "Peak MB" in summary and "bitrate efficiency" in summary
    for name in ("summary.csv", "skipped.csv", "quality_vs_kbps.png", "spectrograms.png", "codebooks.md", "run.json"):
        assert (out / name).exists(), name


def test_peak_rss_of_a_child_command():
    import sys

    from ml_audio_encoder.eval.memprobe import peak_rss_of_command

    grab = "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    r = peak_rss_of_command([sys.executable, "-c", grab])
    assert r["peak_rss_mb"] > 200  # the child's own peak, whatever the parent holds
    assert r["seconds"] > 0


def test_memory_probe_and_speed_table_of_our_codec():
    """Compress + decompress in a fresh interpreter (imports TensorFlow: ~15 s) and the speed table built on it."""
    from ml_audio_encoder.eval import speed

    rows = speed.measure("random:tiny_test", seconds=(2.0,), sample_rate=16000)
    (r,) = rows
    assert r["peak_rss_mb"] >= r["baseline_mb"] > 50
    assert r["encode_rtf"] > 0 and r["decode_rtf"] > 0
    table = speed.markdown(rows, "random:tiny_test")
    assert "| 2 s |" in table and "peak RSS MB" in table
