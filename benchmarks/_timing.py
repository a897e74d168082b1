"""Shared by the benchmarks: both sides interleaved over repeats, medians, paired ratios, the machine line.

A benchmark hands :func:`interleave` one function per side; each call returns a :class:`Sample` (seconds per phase,
e.g. ``load`` and ``eval``, and the side's output for the same-output check). Repeat ``r`` runs the sides in the
given order when ``r`` is even and reversed when odd (A B, B A, A B ...): a machine whose load drifts, or a cache
that the first side warms, hits both alike. Reported: the median per side and phase, the ratio of the medians, and
the range of the per-repeat ratios (how noisy the machine was).

The benchmarks are run as ``python benchmarks/bench_x.py``, which puts this folder on ``sys.path``.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Sequence

__all__ = ["Sample", "interleave", "median", "paired_ratios", "ratio_table", "machine", "Stopwatch"]


@dataclass
class Sample:
    """One side's result in one repeat.

    Attributes:
        times (dict[str, float]): wall seconds per phase (``{"total": s}`` at least for one-phase sides).
        output (Any): what the side produced, for the same-output check.
    """

    times: dict[str, float]
    output: Any = None


class Stopwatch:
    """Wall-clock phases: ``with sw("load"): ...`` adds the seconds to ``sw.times["load"]``."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, phase: str) -> "_Phase":
        return _Phase(self, phase)


class _Phase:
    def __init__(self, watch: Stopwatch, phase: str) -> None:
        self.watch, self.phase = watch, phase

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.watch.times[self.phase] = self.watch.times.get(self.phase, 0.0) + time.perf_counter() - self.start


def interleave(sides: dict[str, Callable[[int], Sample]], repeats: int,
               log: Callable[[str], None] | None = print) -> dict[str, list[Sample]]:
    """Run every side ``repeats`` times, alternating the order each repeat (A B, B A, A B, ...).

    Args:
        sides (dict[str, callable]): side name -> ``fn(repeat) -> Sample``.
        repeats (int): rounds (>= 1; the benchmarks default to >= 3).
        log (callable or None): called with one line per finished run.

    Returns:
        dict[str, list[Sample]]: per side, its samples in repeat order.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: must be >= 1")
    names = list(sides)
    out: dict[str, list[Sample]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sample = sides[name](r)
            out[name].append(sample)
            if log is not None:
                phases = "  ".join(f"{k} {v:.3f} s" for k, v in sample.times.items())
                log(f"  repeat {r + 1}/{repeats} {name:>14s}: {phases}  (load average {os.getloadavg()[0]:.1f})")
    return out


def median(samples: Sequence[Sample], phase: str) -> float:
    """Median seconds of ``phase`` over the samples."""
    return statistics.median(s.times[phase] for s in samples)


def paired_ratios(ref: Sequence[Sample], new: Sequence[Sample], phase: str) -> list[float]:
    """Per-repeat ``ref / new`` (> 1: ``new`` is faster), from runs that were next to each other."""
    return [a.times[phase] / b.times[phase] for a, b in zip(ref, new)]


def ratio_table(results: dict[str, list[Sample]], ref: str, new: str, rows: Sequence[tuple[str, str]],
                unit: str = "s") -> str:
    """A markdown table: per row, both medians, the ratio of the medians and the range of per-repeat ratios.

    Args:
        results (dict): from :func:`interleave`.
        ref (str): the reference side (the ratio is ref / new: > 1 means ``new`` is faster).
        new (str): the side measured against it.
        rows (list[tuple[str, str]]): (label, phase) per row.
        unit (str): the unit of the times, for the header.

    Returns:
        str: the table, one line per row.
    """
    n = len(results[ref])
    lines = [f"| {'':s} | {ref} ({unit}, median of {n}) | {new} ({unit}, median of {n}) | {ref} / {new} "
             f"| per-repeat ratios |", "|---|---:|---:|---:|---|"]
    for label, phase in rows:
        a, b = median(results[ref], phase), median(results[new], phase)
        per = paired_ratios(results[ref], results[new], phase)
        lines.append(f"| {label} | {a:.3f} | {b:.3f} | **{a / b:.2f}x** | "
                     f"{', '.join(f'{p:.2f}' for p in per)} |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: CPU model (as ``lscpu`` says), cores, torch threads, load average, date (``date -I``)."""
    try:
        import torch

        threads = f", torch threads {torch.get_num_threads()}"
    except ImportError:
        threads = ""
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{_cpu_model()}, {os.cpu_count()} CPUs{threads}, load average {load}, python "
            f"{platform.python_version()}, {date.today().isoformat()}")
