"""The arithmetic the networks run in: float32, or bfloat16 where the chip computes it natively.

On a CPU with AVX-512 BF16 (or AMX) and on CUDA devices with bfloat16 units, oneDNN and cuDNN
run the convolutions in bfloat16 about 1.7 times as fast as in float32 (the shipped ensemble,
1,024 frames of 128 x 128 on 2 EPYC cores: 7,100 against 4,200 frames/s). The rounding (8
mantissa bits) is far below what the networks resolve: on the shipped held-out sets the two
readings differ by 0.0015 % rms in strain against a 0.10 % error
(``tests/inference/test_precision.py`` holds them to that). The networks' read-out layer stays
in float32 either way (:class:`~.network.DescriptorNet`). Without native units bfloat16 is
emulated and slower, so ``"auto"`` keeps float32 there.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: What :func:`resolve_precision` takes.
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")
#: CPU flags (``/proc/cpuinfo``) of native bfloat16 matrix arithmetic.
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: no flags known, so no native bfloat16 assumed
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions in hardware (not emulated)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return bool(_NATIVE_BF16_FLAGS & _cpu_flags()) and torch.backends.mkldnn.is_available()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"float32"`` or ``"bfloat16"``: ``precision``, with ``"auto"`` decided for ``device``.

    Raises
    ------
    ValueError
        If ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return precision
