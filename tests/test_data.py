"""Data pipeline on a tiny folder of synthetic audio (fast, no network, no real data)."""

import csv
import os

import numpy as np
import pytest
import soundfile as sf

from ml_audio_encoder.training import data as D

SR = 24000


def _tone(sr, dur, f0, seed, harmonics=6, am=0.0):
    t = np.arange(int(sr * dur)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, harmonics + 1))
    if am:
        x = x * (0.6 + 0.4 * np.sin(2 * np.pi * am * t))
    x = x + 0.01 * np.random.default_rng(seed).standard_normal(t.shape)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    for d in ("speech", "music", "general"):
        (root / d).mkdir()
    # speech-like: harmonic tones with syllable-rate AM; one stereo 48 kHz FLAC, one 22.05 kHz Ogg
    sf.write(root / "speech" / "a.wav", _tone(SR, 1.5, 140, 1, am=4), SR)
    st = np.stack([_tone(48000, 1.2, 220, 2, am=5), _tone(48000, 1.2, 225, 3, am=5)], 1)
    sf.write(root / "speech" / "b_stereo48k.flac", st, 48000)
    sf.write(root / "speech" / "c22k.ogg", _tone(22050, 1.0, 180, 4, am=3), 22050, format="OGG", subtype="VORBIS")
    # music: chords
    t = np.arange(int(SR * 2.0)) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)).astype(np.float32) * 0.1
    sf.write(root / "music" / "chord.wav", chord, SR)
    sf.write(root / "music" / "short.wav", chord[: int(0.2 * SR)], SR)  # shorter than an excerpt
    # general: noise bursts; plus an all-silent file that must never be sampled
    rng = np.random.default_rng(5)
    noise = (rng.standard_normal(int(SR * 1.5)) * 0.05).astype(np.float32)
    noise[: SR // 2] = 0
    sf.write(root / "general" / "noise.wav", noise, SR)
    sf.write(root / "general" / "silent.wav", np.zeros(SR, np.float32), SR)
    return root


def _ds(folder, **kw):
    args = dict(sample_rate=SR, excerpt_samples=12000, batch_size=6, steps_per_epoch=4, seed=1, split=None)
    args.update(kw)
    return D.AudioDataset(str(folder), **args)


def test_scan_folder_infers_domains(folder):
    items = D.load_items(str(folder))
    doms = {os.path.basename(it.path): it.domain for it in items}
    assert doms["a.wav"] == "speech" and doms["chord.wav"] == "music" and doms["noise.wav"] == "general"
    assert len(items) == 7


def test_batch_shape_dtype_and_balance(folder):
    ds = _ds(folder)
    x = ds[0]
    assert x.shape == (6, 12000, 1) and x.dtype == np.float32
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0
    _, info = ds.get_batch(3, return_info=True)
    counts = {d: sum(i["domain"] == d for i in info) for d in D.DOMAINS}
    assert counts == {"speech": 2, "music": 2, "general": 2}
    # batch size not divisible by the number of domains: shares differ by at most one and rotate
    ds7 = _ds(folder, batch_size=7)
    tot = {d: 0 for d in D.DOMAINS}
    for i in range(3):
        c = {d: 0 for d in D.DOMAINS}
        for d in ds7.slots(i):
            c[d] += 1
        assert max(c.values()) - min(c.values()) <= 1
        for d in c:
            tot[d] += c[d]
    assert tot == {"speech": 7, "music": 7, "general": 7}


def test_deterministic_batches(folder):
    a = _ds(folder, cache=True).get_batch(5)
    b = _ds(folder, cache=False).get_batch(5)  # streaming from disk gives the same excerpts (same rate here)
    assert np.array_equal(a, _ds(folder).get_batch(5))
    assert not np.array_equal(a, _ds(folder).get_batch(6))
    assert a.shape == b.shape


def test_loudness_normalized(folder):
    n = int(0.6 * SR)  # long enough for a BS.1770 measurement without padding
    ds = _ds(folder, excerpt_samples=n, batch_size=6, polarity_flip=0.0)
    x, info = ds.get_batch(0, return_info=True)
    for row, inf in zip(x[:, :, 0], info):
        lufs = D.measure_loudness(row, SR)
        assert abs(lufs - (-24.0)) < 1.0, (inf["path"], lufs)


def test_short_excerpt_loudness_uses_padding():
    x = _tone(SR, 0.2, 300, 9)
    y, _ = D.normalize_loudness(x, SR, -24.0)
    assert abs(D.measure_loudness(y, SR) + 24.0) < 0.1  # measured on the same 0.5 s zero-padded frame
    assert D.measure_loudness(np.zeros(100), SR) == float("-inf")


def test_polarity_flip(folder):
    pos = _ds(folder, polarity_flip=0.0).get_batch(2)
    neg = _ds(folder, polarity_flip=1.0).get_batch(2)
    assert np.allclose(pos, -neg)
    flips = [i["flipped"] for k in range(4) for i in _ds(folder).get_batch(k, return_info=True)[1]]
    assert any(flips) and not all(flips)


def test_digital_silence_augmentation(folder):
    """``silence``: that share of excerpts gets a span of exact zeros, and a batch stays a function of its index."""
    plain = _ds(folder, polarity_flip=0.0)
    some = _ds(folder, polarity_flip=0.0, silence=0.5)
    spans, changed, rows = [], 0, 0
    for k in range(6):
        b, info = some.get_batch(k, return_info=True)
        for row, inf in zip(b[:, :, 0], info):
            lo, hi = inf["silent"]
            assert np.all(row[lo:hi] == 0.0)
            rows += 1
            if hi > lo:
                spans.append(hi - lo)
                changed += 1
        assert np.array_equal(b, some.get_batch(k))  # still a function of the index
    assert 0 < changed < rows and min(spans) < max(spans) == b.shape[1]  # some whole excerpts among them
    # off (the default) draws nothing extra: the batches are the ones earlier runs saw
    assert np.array_equal(plain.get_batch(3), _ds(folder, polarity_flip=0.0, silence=0.0).get_batch(3))


def test_silent_files_and_excerpts_skipped(folder):
    ds = _ds(folder, domains=["general"], batch_size=8, excerpt_samples=6000)
    for k in range(4):
        x, info = ds.get_batch(k, return_info=True)
        assert all(os.path.basename(i["path"]) == "noise.wav" for i in info)
        assert all(i["loudness"] > -40 for i in info)  # the silent first half of noise.wav is re-drawn
        assert np.all(np.sqrt(np.mean(x ** 2, axis=1)) > 1e-3)
    assert str(folder / "general" / "silent.wav") in ds.sampler._dead


def test_multichannel_and_other_rates(folder):
    x, sr = D.decode_audio(folder / "speech" / "b_stereo48k.flac", SR)
    assert sr == SR and x.ndim == 1 and abs(x.shape[0] - int(1.2 * SR)) <= 1
    spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    f = np.argmax(spec) * SR / x.shape[0]
    assert abs(f - 222.5) < 10  # the mix of 220/225 Hz fundamentals survives resampling
    y, sr2 = D.decode_audio(folder / "speech" / "c22k.ogg", SR)
    assert sr2 == SR and abs(y.shape[0] - SR) < 100
    cache = D.AudioCache(SR, dtype="int16")
    cache.preload([str(folder / "speech" / "b_stereo48k.flac"), str(folder / "general" / "silent.wav")], workers=2)
    assert cache.get(str(folder / "speech" / "b_stereo48k.flac")).dtype == np.int16
    assert cache.get(str(folder / "general" / "silent.wav")) is None


def test_short_files_are_padded(folder):
    ds = _ds(folder, domains=["music"], batch_size=4, excerpt_samples=SR)  # 1 s excerpts; short.wav is 0.2 s
    x = ds.get_batch(0)
    assert x.shape == (4, SR, 1) and np.all(np.isfinite(x))


def test_hop_length_and_defaults(folder):
    ds = _ds(folder, excerpt_samples=None, hop_length=320)
    assert ds.excerpt_samples % 320 == 0 and ds.excerpt_samples <= 0.38 * SR
    with pytest.raises(ValueError):
        _ds(folder, excerpt_samples=1000, hop_length=320)


def test_manifest_roundtrip_relative_paths(folder, tmp_path):
    items = D.scan_folder(folder, probe=True)
    split = D.assign_splits([dict(path=os.path.relpath(i.path, folder)) for i in items], dev_fraction=0.5)
    items = [D.AudioItem(**{**i.__dict__, "split": s}) for i, s in zip(items, split)]
    man = folder / "manifest_test.csv"
    D.write_manifest(items, man)
    with open(man) as fh:
        rows = list(csv.DictReader(fh))
    assert not os.path.isabs(rows[0]["path"])
    back = D.load_manifest(man)
    assert [b.path for b in back] == [i.path for i in items]
    assert back[0].sample_rate == items[0].sample_rate and back[0].full_band
    assert {b.split for b in D.load_manifest(man, split="dev")} <= {"dev"}
    os.remove(man)


def test_split_deterministic_and_speaker_disjoint():
    recs = []
    for spk, g, fb, n in [("a", "F", True, 30), ("b", "F", True, 10), ("c", "F", True, 20), ("d", "M", True, 5),
                          ("e", "M", True, 50), ("f", "F", False, 8), ("g", "F", False, 9), ("h", "M", False, 7),
                          ("i", "M", False, 3), ("u", "", True, 40)]:
        recs += [dict(path=f"{spk}/{k}.wav", speaker=spk, gender=g, full_band=fb, duration_s=1.0) for k in range(n)]
    recs += [dict(path=f"music/{k}.ogg", speaker="", gender="", duration_s=60.0) for k in range(200)]
    s1 = D.assign_splits(recs)
    assert s1 == D.assign_splits(list(recs))  # deterministic
    side = {}
    for r, s in zip(recs, s1):
        if r["speaker"]:
            side.setdefault(r["speaker"], set()).add(s)
    assert all(len(v) == 1 for v in side.values())  # speaker-disjoint
    for g in "FM":  # both genders on both sides
        sides = {next(iter(side[r["speaker"]])) for r in recs if r["gender"] == g}
        assert sides == {"train", "dev"}
    music = [s for r, s in zip(recs, s1) if r["path"].startswith("music/")]
    assert 0.03 < music.count("dev") / len(music) < 0.2
    # order of records does not matter
    perm = list(reversed(recs))
    assert list(reversed(D.assign_splits(perm))) == s1


def test_validation_set_deterministic(folder):
    a = D.build_validation_set(str(folder), SR, 9600, n_per_domain=3, seed=3, split=None)
    cache = D.AudioCache(SR, dtype="float32")
    cache.preload([it.path for it in D.load_items(str(folder))], workers=2)
    items = list(reversed(D.load_items(str(folder))))
    b = D.build_validation_set(items, SR, 9600, n_per_domain=3, seed=3, split=None, cache=cache)
    assert a.audio.shape == (9, 9600, 1) and np.array_equal(a.audio, b.audio)
    assert a.domains.count("speech") == 3 and "silent.wav" not in " ".join(a.paths)
    c = D.build_validation_set(str(folder), SR, 9600, n_per_domain=3, seed=4, split=None)
    assert not np.array_equal(a.audio, c.audio)
    assert len(a.as_py_dataset(4)) == 3


def test_pack_folder_loads(folder, tmp_path):
    pack = tmp_path / "pack"
    (pack / "train").mkdir(parents=True)
    x = _tone(SR, 2.0, 200, 7, am=4)
    sf.write(pack / "train" / "s.ogg", x, SR, format="OGG", subtype="VORBIS")
    sf.write(pack / "train" / "m.ogg", x[::-1].copy(), SR, format="OGG", subtype="VORBIS")
    with open(pack / "pack_manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "domain", "speaker", "gender", "full_band", "split"])
        w.writerow(["train/s.ogg", "speech", "spk1", "F", "true", "train"])
        w.writerow(["train/m.ogg", "music", "", "", "true", "train"])
    ds = D.AudioDataset(str(pack), SR, excerpt_samples=4800, batch_size=4, split="train", preload=True)
    assert ds.get_batch(0).shape == (4, 4800, 1) and ds.domains == ("speech", "music")
    assert ds.cache.nbytes == 2 * 2 * 2 * SR  # int16, two 2 s files


def test_pydataset_workers_and_fit_style_iteration(folder):
    ds = _ds(folder, workers=2, return_targets=True)
    x, y = ds[1]
    assert x is y and x.shape == (6, 12000, 1)
    ds.on_epoch_end()
    assert not np.array_equal(ds[1][0], x)  # a new epoch draws new excerpts


def test_as_tf_dataset_matches_sampler(folder):
    tf = pytest.importorskip("tensorflow")
    ds = _ds(folder)
    tds = D.as_tf_dataset(ds, steps=2, start=10)
    got = [b.numpy() for b in tds]
    assert len(got) == 2 and got[0].shape == (6, 12000, 1)
    assert np.array_equal(got[1], ds.get_batch(11))
    assert isinstance(tds, tf.data.Dataset)


def _load_script(name):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), os.pardir, "train", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_mlae_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_get_data_labelling_rules():
    g = _load_script("get_data")
    c = g.classify
    tux = "usr/share/tuxpaint/stamps/animals/birds/"
    lab = c("tuxpaint-stamps-default", tux + "owl_desc_es.ogg")
    assert (lab["domain"], lab["speaker"], lab["gender"], lab["full_band"]) == ("speech", "tuxpaint_es", "F", True)
    assert c("tuxpaint-stamps-default", tux + "owl_desc_el.ogg")["full_band"] is False
    assert c("tuxpaint-stamps-default", tux + "owl.ogg")["domain"] == "general"
    fil = "usr/share/games/fillets-ng/sound/gods/cs/"
    assert c("fillets-ng-data-cs", fil + "ob-m-ach.ogg")["gender"] == "F"
    assert c("fillets-ng-data-cs", fil + "ob-v-ach.ogg")["speaker"] == "fillets_cs_v"
    assert c("fillets-ng-data-cs", fil + "b1-voda1.ogg")["speaker"] == ""
    nl = c("fillets-ng-data-nl", fil.replace("/cs/", "/nl/") + "ob-v-x.ogg")
    assert nl["gender"] == "M" and nl["full_band"] is False
    ast = "usr/share/asterisk/sounds/it_IT_m_Carlo/digits/1.wav"
    lab = c("asterisk-core-sounds-it-wav", ast)
    assert (lab["speaker"], lab["gender"], lab["language"], lab["full_band"]) == ("asterisk_Carlo", "M", "it_IT", False)
    assert c("asterisk-core-sounds-en-wav", "usr/share/asterisk/sounds/en_US_f_Allison/silence/1.wav") is None
    assert c("hydrogen-drumkits", "usr/share/hydrogen/data/drumkits/Kit A/kick.wav")["group"] == "hydrogen/Kit A"
    assert c("hedgewars-data", "usr/share/games/hedgewars/Data/Music/x.ogg")["domain"] == "music"
    assert c("nexuiz-music", "extracted/sound/cdtracks/x.ogg")["domain"] == "music"
    assert "warzone2100-music" not in g.PACKAGES


def test_make_pack_helpers():
    p = _load_script("make_pack")
    alloc = p.water_fill(30.0, {"a": 5.0, "b": 100.0, "c": 100.0})
    assert alloc["a"] == 5.0 and abs(alloc["b"] - 12.5) < 1e-9 and abs(sum(alloc.values()) - 30.0) < 1e-9
    x = np.concatenate([np.zeros(SR), _tone(SR, 0.5, 200, 1), np.zeros(SR)])
    y = p.trim_edges(x, SR)
    assert 0.5 * SR <= y.shape[0] <= 0.65 * SR


def test_manifest_scripts_never_load_keras():
    """train/get_data.py and train/make_pack.py write manifests and packs: the data modules they use load no Keras."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = ("import sys, importlib.util\n"
              "import ml_audio_encoder.training.data.manifest, ml_audio_encoder.training.data.splits\n"
              "import ml_audio_encoder.training.data.excerpts, ml_audio_encoder.training.data.validation\n"
              "for name in ('get_data', 'make_pack'):\n"
              f"    spec = importlib.util.spec_from_file_location(name, {root!r} + f'/train/{{name}}.py')\n"
              "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
              "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_public_names_of_the_package():
    for name in ("AudioDataset", "build_validation_set", "load_items", "iter_audio_files", "AudioItem", "as_tf_dataset",
                 "assign_splits", "ExcerptSampler", "AudioCache", "decode_audio", "measure_loudness", "write_manifest"):
        assert hasattr(D, name), name
    with pytest.raises(ValueError, match="no audio items"):
        D.require_items([], split="train")


def test_a_batch_depends_on_its_index_only_even_from_threads(folder):
    """tf.data builds batches in parallel threads: a batch must not depend on which batches came before it (a file
    found dead used to change the draw weights for every later batch)."""
    import concurrent.futures

    serial = [_ds(folder).get_batch(k) for k in range(8)]  # a fresh dataset per batch: no history at all
    ds = _ds(folder)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(ds.get_batch, reversed(range(8))))[::-1]
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
