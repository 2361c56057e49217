"""What this machine's CPU can do: its model name and the instruction-set flags that decide
which precision trains fastest (bfloat16 units: AVX512_BF16, AMX)."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

# /proc/cpuinfo flags that matter for training speed, in the order they are printed.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# A test hook: flags (comma-separated) this process acts as if the CPU lacked, so that the
# fallbacks of a CPU without them run on one with them.
HIDE_FLAGS_VARIABLE = "EMOTION_HIDE_CPU_FLAGS"


@cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    """The CPU's model name, e.g. "AMD EPYC 9R14"."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags (Linux; empty elsewhere), less those hidden by
    EMOTION_HIDE_CPU_FLAGS."""
    hidden = set(os.environ.get(HIDE_FLAGS_VARIABLE, "").split(","))
    return set(_cpuinfo().get("flags", "").split()) - hidden


def speed_flags() -> list[str]:
    """The flags of SPEED_FLAGS this CPU has."""
    flags = cpu_flags()
    return [flag for flag in SPEED_FLAGS if flag in flags]


def has_bfloat16_units() -> bool | None:
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16); None where the
    flags cannot be read."""
    flags = cpu_flags()
    if not flags:
        return None
    return any(flag in flags for flag in BFLOAT16_FLAGS)
