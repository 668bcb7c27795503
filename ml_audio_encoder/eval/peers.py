"""Reference codecs for the benchmark: Opus (ffmpeg/libopus, soundfile fallback) and Codec2 (c2enc/c2dec).

Sizes are reported two ways, like ours:
- `file_bytes`: the whole file as a user would store it (Ogg/Opus with its container, `.c2` with its header);
- `payload_bytes`: the codec's own bits only. For Opus that is the sum of the audio packet sizes, recovered by
  parsing the Ogg pages here (segment/lacing tables), i.e. without page headers and without the OpusHead/OpusTags
  header packets. At 6 kbps the container alone costs ~1.3 kbps, so the difference matters.

Every round trip returns mono float32 audio at the input's own rate and exact length.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from ml_audio_encoder.eval.metrics import match_length
from ml_audio_encoder.runtime.audio_io import resample, to_mono

DEFAULT_OPUS_KBPS = (6, 12, 16, 24, 32)
CODEC2_MODES = {"3200": 3.2, "2400": 2.4, "1300": 1.3}  # c2enc mode -> nominal kbps (speech only)
OPUS_RATE = 48000
CODEC2_RATE = 8000
_SOUNDFILE_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


# --------------------------------------------------------------------------------------------------------------------
# Ogg parsing (RFC 3533) and Opus packet accounting (RFC 7845)
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class OggPage:
    offset: int
    header_type: int
    granule_position: int
    serial: int
    sequence: int
    segments: list  # lacing values
    header_bytes: int  # 27 + number of segments
    body: bytes

    @property
    def continued(self) -> bool:
        return bool(self.header_type & 0x01)


def parse_ogg_pages(data: bytes) -> list[OggPage]:
    """Split an Ogg bitstream into pages. Raises ValueError on a bad capture pattern or a truncated page."""
    pages = []
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos : pos + 4] != b"OggS":
            raise ValueError(f"Ogg: no capture pattern 'OggS' at byte {pos}")
        if pos + 27 > n:
            raise ValueError("Ogg: truncated page header")
        version, header_type, granule, serial, seq, _crc, n_seg = struct.unpack_from("<BBqIIIB", data, pos + 4)
        if version != 0:
            raise ValueError(f"Ogg: unsupported stream structure version {version}")
        seg_start = pos + 27
        if seg_start + n_seg > n:
            raise ValueError("Ogg: truncated segment table")
        segments = list(data[seg_start : seg_start + n_seg])
        body_start = seg_start + n_seg
        body_len = sum(segments)
        if body_start + body_len > n:
            raise ValueError("Ogg: truncated page body")
        pages.append(
            OggPage(pos, header_type, granule, serial, seq, segments, 27 + n_seg,
                    data[body_start : body_start + body_len])
        )
        pos = body_start + body_len
    return pages


def ogg_packets(data: bytes, serial: int | None = None) -> list[bytes]:
    """Reassemble the packets of one logical stream (the first one unless `serial` is given).

    A packet ends at the first lacing value < 255; a run of 255s continues, possibly onto the next page.
    """
    pages = parse_ogg_pages(data)
    if not pages:
        return []
    if serial is None:
        serial = pages[0].serial
    packets: list[bytes] = []
    partial = bytearray()
    for page in pages:
        if page.serial != serial:
            continue
        pos = 0
        for lace in page.segments:
            partial += page.body[pos : pos + lace]
            pos += lace
            if lace < 255:
                packets.append(bytes(partial))
                partial = bytearray()
    if partial:  # unterminated last packet (truncated stream): count it anyway
        packets.append(bytes(partial))
    return packets


@dataclass
class OpusSizes:
    file_bytes: int  # whole .opus/.ogg file
    payload_bytes: int  # sum of Opus audio packet sizes
    header_packet_bytes: int  # OpusHead + OpusTags packets
    page_overhead_bytes: int  # Ogg page headers + segment tables
    n_audio_packets: int
    pre_skip: int  # samples at 48 kHz
    input_sample_rate: int  # as stored in OpusHead


def opus_sizes(ogg: bytes) -> OpusSizes:
    """Account for every byte of an Ogg/Opus file: page overhead + header packets + audio packets."""
    pages = parse_ogg_pages(ogg)
    packets = ogg_packets(ogg)
    if not packets or not packets[0].startswith(b"OpusHead"):
        raise ValueError("not an Ogg/Opus stream (no OpusHead packet)")
    head = packets[0]
    pre_skip, input_rate = struct.unpack_from("<HI", head, 10)
    n_header = 1
    if len(packets) > 1 and packets[1].startswith(b"OpusTags"):
        n_header = 2
    header_bytes = sum(len(p) for p in packets[:n_header])
    audio = packets[n_header:]
    return OpusSizes(
        file_bytes=len(ogg),
        payload_bytes=sum(len(p) for p in audio),
        header_packet_bytes=header_bytes,
        page_overhead_bytes=sum(p.header_bytes for p in pages),
        n_audio_packets=len(audio),
        pre_skip=pre_skip,
        input_sample_rate=input_rate,
    )


# --------------------------------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class PeerResult:
    codec: str  # "opus" | "codec2"
    setting: str  # e.g. "6k", "3200"
    target_kbps: float
    file_bytes: int
    payload_bytes: int
    audio: np.ndarray  # decoded mono float32 at the input rate, same length as the input
    sample_rate: int
    encode_seconds: float
    decode_seconds: float
    backend: str  # "ffmpeg-libopus", "soundfile-libsndfile", "codec2"
    extra: dict = field(default_factory=dict)


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def codec2_available() -> bool:
    return shutil.which("c2enc") is not None and shutil.which("c2dec") is not None


def opus_backend() -> str | None:
    """'ffmpeg' when ffmpeg has libopus, else 'soundfile' when libsndfile writes Opus, else None."""
    if ffmpeg_available():
        return "ffmpeg"
    try:
        import soundfile as sf

        if "OPUS" in sf.available_subtypes("OGG"):
            return "soundfile"
    except Exception:
        pass
    return None


def ffmpeg_opus_command(in_path: str, out_path: str, kbps: float) -> list[str]:
    """The exact encoder command of the benchmark (constrained VBR: libopus's default VBR overshoots on music)."""
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", in_path,
        "-ac", "1", "-ar", str(OPUS_RATE), "-c:a", "libopus", "-b:a", f"{kbps:g}k", "-vbr", "constrained",
        "-map_metadata", "-1", out_path,
    ]  # fmt: skip


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-800:]}")


def _ffmpeg_decode(path: str, rate: int) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path,
           "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg decode failed: {proc.stderr.decode(errors='replace')[-800:]}")
    return np.frombuffer(proc.stdout, dtype="<f4").copy()


def opus_encode(audio: np.ndarray, sample_rate: int, kbps: float, backend: str = "auto") -> tuple[bytes, str]:
    """Encode mono audio to Ogg/Opus bytes. Returns (ogg bytes, backend label)."""
    import soundfile as sf

    x = to_mono(audio)
    if backend == "auto":
        backend = opus_backend() or "none"
    if backend == "ffmpeg":
        with tempfile.TemporaryDirectory(prefix="mlae_opus_") as tmp:
            src, dst = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.opus")
            sf.write(src, x, int(sample_rate), subtype="FLOAT")
            _run(ffmpeg_opus_command(src, dst, kbps))
            with open(dst, "rb") as f:
                return f.read(), "ffmpeg-libopus"
    if backend == "soundfile":
        rate = int(sample_rate) if int(sample_rate) in _SOUNDFILE_OPUS_RATES else OPUS_RATE
        y = resample(x, sample_rate, rate)
        # libsndfile maps compression_level q to bitrate = (1 - q) * 250 kbps + 6 kbps per channel
        q = float(np.clip(1.0 - (kbps * 1000.0 - 6000.0) / 250000.0, 0.0, 1.0))
        import io

        buf = io.BytesIO()
        sf.write(buf, y, rate, format="OGG", subtype="OPUS", compression_level=q)
        return buf.getvalue(), "soundfile-libsndfile"
    raise RuntimeError("no Opus encoder: install ffmpeg (Debian `ffmpeg`) or a libsndfile >= 1.1 with Opus")


def opus_decode(ogg: bytes, sample_rate: int, n_samples: int | None = None) -> np.ndarray:
    """Decode Ogg/Opus bytes to mono float32 at `sample_rate` (decoded at 48 kHz, resampled here)."""
    with tempfile.TemporaryDirectory(prefix="mlae_opus_") as tmp:
        path = os.path.join(tmp, "in.opus")
        with open(path, "wb") as f:
            f.write(ogg)
        if ffmpeg_available():
            y = _ffmpeg_decode(path, OPUS_RATE)
            rate = OPUS_RATE
        else:
            import soundfile as sf

            y, rate = sf.read(path, dtype="float32", always_2d=True)
            y = y.mean(axis=1)
    y = resample(y, rate, sample_rate)
    if n_samples is not None:
        _, y = match_length(np.zeros(n_samples, np.float32), y)
    return y.astype(np.float32)


def opus_roundtrip(audio: np.ndarray, sample_rate: int, kbps: float, backend: str = "auto") -> PeerResult:
    """Encode + decode with Opus at `kbps`; sizes from our own Ogg parse."""
    x = to_mono(audio)
    t0 = time.perf_counter()
    ogg, label = opus_encode(x, sample_rate, kbps, backend=backend)
    t1 = time.perf_counter()
    y = opus_decode(ogg, sample_rate, n_samples=x.shape[0])
    t2 = time.perf_counter()
    sizes = opus_sizes(ogg)
    return PeerResult(
        codec="opus", setting=f"{kbps:g}k", target_kbps=float(kbps), file_bytes=sizes.file_bytes,
        payload_bytes=sizes.payload_bytes, audio=y, sample_rate=int(sample_rate), encode_seconds=t1 - t0,
        decode_seconds=t2 - t1, backend=label,
        extra={"page_overhead_bytes": sizes.page_overhead_bytes, "header_packet_bytes": sizes.header_packet_bytes},
    )  # fmt: skip


def codec2_roundtrip(audio: np.ndarray, sample_rate: int, mode: str = "3200") -> PeerResult:
    """Codec2 (narrowband speech codec, 8 kHz input) via c2enc/c2dec. The `.c2` file has a 7-byte header."""
    if not codec2_available():
        raise RuntimeError("codec2 not installed (Debian `codec2`: c2enc/c2dec)")
    mode = str(mode)
    x = to_mono(audio)
    x8 = resample(x, sample_rate, CODEC2_RATE)
    pcm = (np.clip(x8, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with tempfile.TemporaryDirectory(prefix="mlae_c2_") as tmp:
        raw, enc, bit, dec = (os.path.join(tmp, n) for n in ("in.raw", "out.c2", "out.bit", "out.raw"))
        pcm.tofile(raw)
        t0 = time.perf_counter()
        _run(["c2enc", mode, raw, enc])
        t1 = time.perf_counter()
        _run(["c2dec", mode, enc, dec])
        t2 = time.perf_counter()
        _run(["c2enc", mode, raw, bit])  # headerless: the payload
        file_bytes, payload_bytes = os.path.getsize(enc), os.path.getsize(bit)
        y8 = np.fromfile(dec, dtype="<i2").astype(np.float32) / 32768.0
    y = resample(y8, CODEC2_RATE, sample_rate)
    _, y = match_length(x, y)
    return PeerResult(
        codec="codec2", setting=mode, target_kbps=CODEC2_MODES.get(mode, float("nan")), file_bytes=file_bytes,
        payload_bytes=payload_bytes, audio=y.astype(np.float32), sample_rate=int(sample_rate),
        encode_seconds=t1 - t0, decode_seconds=t2 - t1, backend="codec2",
    )  # fmt: skip
