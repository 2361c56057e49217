"""Process settings (emotion.process) and the entry points that use them: TensorFlow's start-up
notices are dropped by name and its errors still reach the user; every benchmark imports."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from emotion.process import STARTUP_NOISE

START = "from emotion.process import start_tensorflow; start_tensorflow()"


def start_tensorflow_process(**env: str) -> subprocess.CompletedProcess:
    """A process that starts TensorFlow as the stages do (with `env` added); never raises."""
    return subprocess.run([sys.executable, "-c", START], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_a_fatal_tensorflow_error_at_start_up_still_shows():
    """What TensorFlow writes just before it aborts, while the start-up filter is in place,
    still reaches stderr (a stage process's stderr without the notices: test_distribute's
    port-in-use case)."""
    fatal = start_tensorflow_process(TF_XLA_FLAGS="--no_such_flag")
    assert fatal.returncode != 0
    assert "Unknown flag in TF_XLA_FLAGS: --no_such_flag" in fatal.stderr, fatal.stderr[-3000:]
    assert not [line for line in fatal.stderr.splitlines() if STARTUP_NOISE.search(line)]


def test_startup_noise_matches_tensorflow_s_own_lines_and_nothing_else():
    # As TensorFlow 2.21 writes them (without a GPU, oneDNN on); then lines that must pass.
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796339374.032160    2749 port.cc:153] oneDNN custom operations are on. "
        "You may see slightly different numerical results due to floating-point round-off "
        "errors from different computation orders. To turn them off, set the environment "
        "variable `TF_ENABLE_ONEDNN_OPTS=0`.",
        "I0000 00:00:1796339374.034339    2749 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.",
        "I0000 00:00:1796339374.114424    2749 cpu_feature_guard.cc:227] This TensorFlow "
        "binary is optimized to use available CPU instructions in performance-critical "
        "operations.",
        "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in "
        "other operations, rebuild TensorFlow with the appropriate compiler flags.",
        "E0000 00:00:1796339380.258994    2749 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    ]
    kept = [
        "F0000 00:00:1796340048.845913    6842 parse_flags_from_env.cc:234] Unknown flag in "
        "TF_XLA_FLAGS: --no_such_flag",
        "E0000 00:00:1796339380.258994    2749 cuda_executor.cc:1] CUDA error: out of memory",
        "error: param train.epochs must be > 0, got 0",
        "To enable the following instructions: see the docs",
    ]
    assert [bool(STARTUP_NOISE.search(line)) for line in noise + kept] == (
        [True] * len(noise) + [False] * len(kept))


BENCHMARKS = sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py")
                    if path.stem != "__init__")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_imports(name):
    """`make bench*` run these modules; nothing else in the suite runs them, so a refactor
    that breaks one is caught here (the entry points themselves run only as __main__)."""
    assert len(BENCHMARKS) >= 6 and Path(ROOT / "benchmarks" / f"{name}.py").exists()
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(module.main)
