"""The one way to 16 kHz mono: uploads recognised by their first bytes (and nothing else
opened), live frames of any rate and channel count converted in order."""

from __future__ import annotations

import numpy as np
import pytest

from roomscribe.audio import FrameConverter, UnsupportedFormatError, load_audio, pcm16_to_float, sniff_format


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
        (b"fLaC\x00\x00", "flac"),
        (b"OggS\x00\x02", "ogg"),
        (b"\x1a\x45\xdf\xa3\x9f\x42", "webm"),
        (b"\x00\x00\x00\x20ftypM4A ", "mp4"),
        (b"ID3\x04\x00", "mp3"),
        (b"\xff\xfb\x90\x64", "mp3"),
        (b"#EXTM3U\n#EXT-X", None),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"hello", None),
    ],
)
def test_uploads_are_recognised_by_their_first_bytes(head, kind):
    assert sniff_format(head) == kind


def test_raw_pcm_starting_like_an_mp3_frame_is_not_taken_for_one_in_a_stream():
    assert sniff_format(b"\xff\xff\x00\x00", frame_sync=False) is None


def test_a_playlist_upload_is_refused_before_ffmpeg_opens_it(tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"not for clients")
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{secret}\n#EXT-X-ENDLIST\n".encode()
    with pytest.raises(UnsupportedFormatError, match="not a supported audio format"):
        load_audio(playlist, untrusted=True)


def _tone(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
    return np.repeat(mono[:, None], channels, axis=1).reshape(-1)


def test_frames_at_16k_mono_pass_as_they_are():
    pcm = _tone(16000, 0.01)
    out = FrameConverter().pcm(pcm.tobytes(), 16000, 1)
    assert out.dtype == np.float32 and np.array_equal(out, pcm16_to_float(pcm))


@pytest.mark.parametrize("rate, channels", [(48000, 2), (48000, 1), (44100, 2), (24000, 1), (8000, 1)])
def test_frames_of_any_rate_and_channel_count_become_16k_mono_in_order(rate, channels):
    converter = FrameConverter()
    frame = _tone(rate, 0.01, channels)  # 10 ms frames, as LiveKit and WebRTC send them
    out = np.concatenate([converter.pcm(frame.tobytes(), rate, channels) for _ in range(100)] + [converter.flush()])
    assert abs(len(out) - 16000) <= 64  # one second in, one second out
    assert out.dtype == np.float32 and 0.3 < np.abs(out[1000:-1000]).max() < 0.4  # the tone, not doubled or lost


def test_frames_that_do_not_fit_their_channel_count_are_refused():
    with pytest.raises(ValueError, match="do not split into 2 channels"):
        FrameConverter().pcm(np.zeros(3, np.int16).tobytes(), 48000, 2)
    with pytest.raises(ValueError, match="at least one channel"):
        FrameConverter().pcm(b"", 48000, 0)
