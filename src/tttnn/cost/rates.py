"""Throughputs of the cost model: devices (CPU per-thread rates, GPU peaks x assumed efficiency) and the
calibration files they come from (config/calibration.yaml, this machine's `snakemake calibrate`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tttnn.cost.archs import Arch
from tttnn.jobs import (
    PlanError,
)

# ----------------------------------------------------------------------------------------------- devices


@dataclass
class Device:
    """Where the model rules run and how fast: ``cpu`` (per-thread rates) or a GPU kind."""

    kind: str
    cal: dict[str, Any]
    threads: int = 1

    @property
    def gpu(self) -> bool:
        return self.kind != "cpu"

    def thread_speed(self) -> float:
        return self.threads ** self.cal["cpu"]["thread_exponent"]

    def gpu_rate(self, dtype: str, tf32: bool, batch: int) -> float:
        """Achieved FLOP/s on a GPU: the published peak of the dtype times the assumed efficiency at ``batch``."""
        peaks = self.cal["gpu"]["peaks"][self.kind]
        key = "bfloat16" if dtype.startswith("bfloat16") else ("tf32" if tf32 else "float32")
        return peaks[key] * gpu_efficiency(self.cal, batch)

    def step_seconds(self, arch: Arch, flops: float, dtype: str, tf32: bool, batch: int, train: bool) -> float:
        """Seconds of ``flops`` of training (or evaluation) work for one document of a lock-step batch."""
        if self.gpu:
            g = self.cal["gpu"]
            over = g["train_layer_overhead_s" if train else "eval_layer_overhead_s"] * arch.n_layers
            return flops / self.gpu_rate(dtype, tf32, batch) + over / batch
        c = self.cal["cpu"]
        rate = c["train_flops_per_s" if train else "eval_flops_per_s"] * self.thread_speed()
        rate *= c["dtype_factor"].get(dtype, 1.0)
        factor = (
            c.get("arch_factors", {}).get(arch.family.removesuffix("_text"), {}).get("train" if train else "eval", 1)
        )
        return flops / rate * factor

    def optimizer_seconds(self, arch: Arch) -> float:
        """One AdamW update of one copy (memory-bound)."""
        if self.gpu:
            g = self.cal["gpu"]
            return arch.params * g["adamw_bytes_per_param"] / g["peaks"][self.kind]["bandwidth"]
        return arch.params * self.cal["cpu"]["optimizer_ns_per_param"] * 1e-9


def gpu_efficiency(cal: dict[str, Any], batch: int) -> float:
    """The assumed fraction of a GPU's peak at ``batch`` documents in lock-step (log-linear between entries)."""
    table = sorted((int(b), float(e)) for b, e in cal["gpu"]["efficiency"].items())
    if batch <= table[0][0]:
        return table[0][1]
    for (b0, e0), (b1, e1) in zip(table, table[1:]):
        if batch <= b1:
            return e0 + (e1 - e0) * (math.log2(batch) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
    return table[-1][1]


def _read_yaml(path: Path) -> dict[str, Any]:
    """A calibration file as a mapping; a syntax error names the file (not "<unicode string>")."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PlanError(f"{path}: not valid YAML ({err}); fix it, or delete it and run `snakemake --cores 1 calibrate`") from err
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a mapping of calibration entries, got {type(data).__name__}")
    return data


def _check_rates(rates: Any, path: Path) -> None:
    """Every CPU rate must be a finite number > 0 (a negative rate would plan negative hours)."""
    if not isinstance(rates, dict):
        raise PlanError(f"{path}: `cpu` must be a mapping of rates")
    for key, value in rates.items():
        if isinstance(value, dict):
            _check_rates({f"{key}.{k}": v for k, v in value.items()}, path)
            continue
        if key == "thread_exponent" and isinstance(value, (int, float)) and 0 < value <= 1:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            if key.endswith("_fixed_s") and isinstance(value, (int, float)) and value == 0:
                continue  # "no fixed part" is a valid measurement
            raise PlanError(
                f"{path}: cpu.{key} = {value!r}: every rate must be a finite number > 0; fix it, or delete the file "
                "and run `snakemake --cores 1 calibrate`"
            )


def load_calibration(path: str | Path, cpu_path: str | Path | None = None) -> dict[str, Any]:
    """The calibration file (config/calibration.yaml), with the ``cpu`` rates that ``snakemake calibrate``
    measured on this machine (``cpu_path``, when the file exists) over its own. A bad file is an error naming it."""
    p = Path(path)
    if not p.is_file():
        raise PlanError(f"plan.calibration: {str(p)!r} does not exist")
    cal = _read_yaml(p)
    _check_rates(cal.get("cpu"), p)
    cal["cpu_source"] = f"{p} (a 2-core AVX2 VM; run `snakemake calibrate` to measure this machine)"
    if cpu_path is not None and Path(cpu_path).is_file():
        measured = _read_yaml(Path(cpu_path))
        unknown = set(measured.get("cpu", {})) - set(cal["cpu"]) - {"job_startup_light_s", "embed_startup_s"}
        if unknown:
            raise PlanError(f"{cpu_path}: unknown cpu rates {sorted(unknown)}")
        _check_rates(measured.get("cpu", {}), Path(cpu_path))
        cal["cpu"] = {**cal["cpu"], **measured.get("cpu", {})}
        cal["cpu_source"] = (
            f"{cpu_path} (measured on {measured.get('measured_on', '?')}, {measured.get('measured_at', '?')})"
        )
    return cal


def cpu_calibration_path(config: dict[str, Any]) -> str:
    """Where ``snakemake calibrate`` writes this machine's CPU rates (``plan.cpu_calibration``)."""
    plan = config.get("plan") or {}
    return plan.get("cpu_calibration") or str(Path(config.get("resources_dir", "resources")) / "calibration/cpu.yaml")
