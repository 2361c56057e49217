"""The settings of every process the project starts that runs TensorFlow: one definition,
applied by entry points (stages, emotion-predict --backend tensorflow, benchmarks, the test
suite), never by importing the library or constructing a TextClassifier.

- TENSORFLOW_ENV: oneDNN kernels on every CPU (TensorFlow's own default is on for some Intel
  CPUs and off on AMD EPYC, so without it two machines, or a stage and a test's reference
  run, compute with different kernels and give different bytes; docs/performance.md), and
  tf.keras as tf_keras (which transformers and the stages use), so that importing TensorFlow
  does not also import Keras 3 (~1.5 s).
- TRAINING_MALLOC: glibc malloc keeps TF's large per-step buffers mapped instead of
  mmap/munmap on every step (~15-19% faster training steps on CPU; docs/performance.md).
- At exit, the interpreter's last garbage collection walks every object still alive (about
  1.2-1.6 s of a TensorFlow process's exit) for memory the system takes back anyway: the
  objects are frozen out of it (atexit handlers and finalisers still run).
- TensorFlow's start-up lines that say nothing on these machines (the oneDNN notice, "no
  CUDA driver", cuInit failing where there is no GPU, the build's instruction-set hint) are
  dropped by their text; every other line, errors included, reaches stderr.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

TENSORFLOW_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_USE_LEGACY_KERAS": "1"}
# glibc mallopt() parameters and values, set in the process itself (so in-process runs get
# them too): one arena, blocks up to 32 MiB from the heap instead of mmap, the heap's top
# trimmed only past 2 GiB (mallopt takes an int; the former MALLOC_TRIM_THRESHOLD_ said 4 GiB,
# both far above what a training step frees), 256 MiB of padding per heap extension.
TRAINING_MALLOC = {"M_ARENA_MAX": (-8, 1), "M_MMAP_THRESHOLD": (-3, 32 * 2**20),
                   "M_TRIM_THRESHOLD": (-1, 2**31 - 1), "M_TOP_PAD": (-2, 256 * 2**20)}
# Quieter logs for hour-long runs (a user's own setting wins).
QUIET_ENV = {"HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
# TensorFlow's start-up lines that mean nothing here, matched by their text.
STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|\] oneDNN custom operations are (on|off)\."
    r"|\] Could not find cuda drivers on your machine, GPU will not be used\."
    r"|\] failed call to cuInit: "
    r"|\] This TensorFlow binary is optimized to use available CPU instructions"
    r"|^To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    r"compiler flags\.$")

_frozen_at_exit = False


def freeze_at_exit() -> None:
    """Leave the objects alive at exit out of the interpreter's last garbage collection."""
    global _frozen_at_exit
    if not _frozen_at_exit:
        atexit.register(gc.freeze)
        _frozen_at_exit = True


def set_training_malloc() -> bool:
    """Apply TRAINING_MALLOC to this process through glibc's mallopt (False where there is no
    glibc). Call it before the training stack allocates (before TensorFlow loads)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(parameter, value) == 1
               for parameter, value in TRAINING_MALLOC.values())


def start_stage() -> None:
    """A stage's process without TensorFlow: QUIET_ENV (where not set) and the exit-time
    freeze. Call it before the stage imports datasets."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    freeze_at_exit()


def start_tensorflow(training: bool = False, onednn: bool = True) -> ModuleType:
    """An entry point's TensorFlow: start_stage(), TENSORFLOW_ENV (oneDNN as told: only the
    oneDNN benchmark turns it off), TRAINING_MALLOC if `training`, and TensorFlow imported
    with its start-up noise dropped. Call it before anything imports TensorFlow."""
    start_stage()
    os.environ.update(TENSORFLOW_ENV, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0")
    if training:
        set_training_malloc()
    with startup_noise_dropped():
        import tensorflow as tf

        tf.config.list_physical_devices()  # loads the GPU platform (cuInit), not the runtime
    return tf


# The filter of startup_noise_dropped: its own process, so that what TensorFlow writes just
# before it aborts (a fatal error at start-up) still reaches stderr.
_FILTER = """import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile(sys.argv[1].encode())
for line in sys.stdin.buffer:
    if not noise.search(line):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""


@contextmanager
def startup_noise_dropped() -> Iterator[None]:
    """Inside the block, file descriptor 2 goes through a filter process to stderr, which
    drops the lines STARTUP_NOISE matches and passes every other line on as it comes."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        noise = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER,
                                  STARTUP_NOISE.pattern], stdin=subprocess.PIPE,
                                 stdout=saved, stderr=saved)
    except OSError:  # no filter to be had: everything goes to stderr as it is
        os.close(saved)
        yield
        return
    os.dup2(noise.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        noise.stdin.close()
        noise.wait()  # every line passed on before anything else is written
