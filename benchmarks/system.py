"""Facts about the machine a benchmark ran on, and power / clocks / temperature on a Jetson.

Every reader takes a ``root`` (default ``/``) so tests can hand it a fake sysfs tree. Nothing is
ever invented: a value that cannot be read is recorded as the string ``"unavailable"`` (a fact
that should exist but did not read) or left out of a list, and power on a machine without
readable rails is recorded as not measured, with the reason.

On a Jetson (``/etc/nv_tegra_release`` exists, or ``/sys/devices/soc0/family`` says Tegra):

- power mode from ``nvpmodel -q``;
- clocks: CPU ``scaling_cur_freq`` (kHz) and every devfreq device's ``cur_freq`` (Hz; the GPU is
  one of them: ``gpu.0``, ``17000000.gpu``, ``57000000.gpu``...);
- temperatures from ``/sys/class/thermal/thermal_zone*/{type,temp}`` (millidegrees C);
- power rails of the INA3221 monitors, either the IIO layout of JetPack 4
  (``/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_N`` + ``in_power{N}_input`` in mW) or
  the hwmon layout of JetPack 5/6 (``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/inN_label``,
  ``inN_input`` in mV, ``currN_input`` in mA).

`PowerMonitor` samples rails and clocks in a thread while the latency loop runs and integrates
energy (trapezoids over the sample times), so energy per inference = joules / iterations. When no
rail is readable in sysfs it reads them from ``tegrastats`` output instead (`parse_tegrastats`).
"""

from __future__ import annotations

import glob
import itertools
import os
import platform
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNAVAILABLE = "unavailable"

#: Rails that measure the whole module's input (their sub-rails would double count if summed).
#: Not VIN_SYS_5V0: on AGX Orin that is the carrier's 5 V I/O rail, not the module input
#: (rbonghi/jetson_stats#344; jtop treats only VDD_IN / POM_5V_IN as a total). "VIN" is Jetson
#: Thor's system input as jtop reports it (rbonghi/jetson_stats#900; not verified on a Thor).
INPUT_RAILS = frozenset({"VDD_IN", "POM_5V_IN", "VDD_IN_SYS", "VIN"})

#: Labels of unconnected INA3221 channels (AGX Orin's 1-0041 has two).
_UNCONNECTED_RAILS = frozenset({"NC"})

#: devfreq device names of Jetson GPUs (Nano gpu, Xavier gv11b, Orin ga10b, TX2 gp10b).
_GPU_DEVFREQ = re.compile(r"gpu|gv11b|ga10b|gp10b|gm20b", re.I)


def _p(root: str | Path, path: str) -> Path:
    return Path(root) / path.lstrip("/")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _read_number(path: Path) -> float | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


# -- generic host facts -------------------------------------------------------------------------


def cpu_model(root: str | Path = "/") -> str:
    """``model name`` from /proc/cpuinfo; on ARM boards the device-tree model or ``Hardware``."""
    text = _read(_p(root, "/proc/cpuinfo"))
    if text:
        for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
            for line in text.splitlines():
                name, sep, value = line.partition(":")
                if sep and name.strip() == key and value.strip():
                    return value.strip()
    dt = _read(_p(root, "/proc/device-tree/model"))
    if dt:
        return dt.replace("\x00", "").strip()
    return platform.processor() or UNAVAILABLE


def governor(root: str | Path = "/") -> str:
    """The cpufreq scaling governor of cpu0 (``performance``, ``schedutil``...)."""
    value = _read(_p(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))
    return value or UNAVAILABLE


def load_average(root: str | Path = "/") -> list[float] | str:
    """1, 5 and 15 minute load averages from /proc/loadavg."""
    text = _read(_p(root, "/proc/loadavg"))
    if not text:
        return UNAVAILABLE
    try:
        return [float(x) for x in text.split()[:3]]
    except ValueError:
        return UNAVAILABLE


def cpu_freqs_khz(root: str | Path = "/") -> dict[str, float]:
    """Current frequency of each CPU in kHz (``scaling_cur_freq``); CPUs without it are left out."""
    out: dict[str, float] = {}
    base = _p(root, "/sys/devices/system/cpu")
    for d in sorted(glob.glob(str(base / "cpu[0-9]*")), key=lambda s: int(s.rsplit("cpu", 1)[1])):
        value = _read_number(Path(d) / "cpufreq" / "scaling_cur_freq")
        if value is not None:
            out[Path(d).name] = value
    return out


def clock_limits(root: str | Path = "/") -> dict[str, tuple[float, float]]:
    """(floor, ceiling) of each CPU (``cpu:cpuN``, kHz: scaling_min/max_freq) and GPU devfreq
    clock (``devfreq:<name>``, Hz: min/max_freq), keyed like `PowerMonitor`'s clocks. A clock
    whose floor equals its ceiling is locked (``jetson_clocks``): DVFS cannot move it."""
    out: dict[str, tuple[float, float]] = {}
    base = _p(root, "/sys/devices/system/cpu")
    for d in glob.glob(str(base / "cpu[0-9]*")):
        lo = _read_number(Path(d) / "cpufreq" / "scaling_min_freq")
        hi = _read_number(Path(d) / "cpufreq" / "scaling_max_freq")
        if lo is not None and hi is not None:
            out[f"cpu:{Path(d).name}"] = (lo, hi)
    for d in glob.glob(str(_p(root, "/sys/class/devfreq") / "*")):
        lo = _read_number(Path(d) / "min_freq")
        hi = _read_number(Path(d) / "max_freq")
        if lo is not None and hi is not None and _GPU_DEVFREQ.search(Path(d).name):
            out[f"devfreq:{Path(d).name}"] = (lo, hi)
    return out


def is_jetson(root: str | Path = "/") -> bool:
    """True on an NVIDIA Jetson (Tegra) board."""
    if _p(root, "/etc/nv_tegra_release").is_file():
        return True
    family = _read(_p(root, "/sys/devices/soc0/family"))
    return bool(family and "tegra" in family.lower())


def parse_nvpmodel(text: str) -> dict[str, Any]:
    """Parse ``nvpmodel -q`` output (``NV Power Mode: MAXN`` then the mode id)."""
    name: str | None = None
    mode: int | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.lower().startswith("nv power mode"):
            name = line.partition(":")[2].strip() or None
        elif line.isdigit() and mode is None:
            mode = int(line)
    if name is None and mode is None:
        return {"name": UNAVAILABLE, "id": None, "raw": text.strip()}
    return {"name": name or UNAVAILABLE, "id": mode}


def power_mode() -> dict[str, Any]:
    """The Jetson power mode through ``nvpmodel -q`` (missing tool recorded as unavailable)."""
    exe = shutil.which("nvpmodel")
    if exe is None:
        return {"name": UNAVAILABLE, "id": None, "reason": "nvpmodel not found on PATH"}
    try:
        res = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"name": UNAVAILABLE, "id": None, "reason": f"nvpmodel -q failed: {err}"}
    return parse_nvpmodel(res.stdout + res.stderr)


def devfreq_hz(root: str | Path = "/") -> dict[str, float]:
    """Current frequency (Hz) of each devfreq device (the Jetson GPU is one), by device name."""
    out: dict[str, float] = {}
    for d in sorted(glob.glob(str(_p(root, "/sys/class/devfreq") / "*"))):
        value = _read_number(Path(d) / "cur_freq")
        if value is not None:
            out[Path(d).name] = value
    gpu = _read_number(_p(root, "/sys/devices/gpu.0/devfreq/gpu.0/cur_freq"))
    if gpu is not None and not any("gpu" in k for k in out):
        out["gpu.0"] = gpu
    return out


def temperatures_c(root: str | Path = "/") -> dict[str, float]:
    """Temperature of every thermal zone in °C, by zone type (``CPU-therm``, ``GPU-therm``...)."""
    out: dict[str, float] = {}
    zones = glob.glob(str(_p(root, "/sys/class/thermal") / "thermal_zone*"))
    for z in sorted(zones, key=lambda s: int(s.rsplit("thermal_zone", 1)[1] or 0)):
        milli = _read_number(Path(z) / "temp")
        if milli is None or milli <= -40000:  # -40 °C or below: an absent sensor's placeholder
            continue
        name = _read(Path(z) / "type") or Path(z).name
        key = name if name not in out else f"{name}:{Path(z).name}"
        out[key] = milli / 1000.0
    return out


@dataclass(frozen=True)
class Rail:
    """One power rail: how to read its instantaneous power in milliwatts."""

    name: str
    power_path: Path | None = None  # mW (IIO layout)
    volt_path: Path | None = None  # mV (hwmon layout)
    curr_path: Path | None = None  # mA (hwmon layout)

    def read_mw(self) -> float | None:
        if self.power_path is not None:
            return _read_number(self.power_path)
        if self.volt_path is not None and self.curr_path is not None:
            mv = _read_number(self.volt_path)
            ma = _read_number(self.curr_path)
            if mv is None or ma is None:
                return None
            return mv * ma / 1000.0
        return None


def find_power_rails(root: str | Path = "/") -> list[Rail]:
    """The INA3221 rails readable under ``root`` (IIO or hwmon layout); [] when there are none."""
    rails: list[Rail] = []
    drivers = _p(root, "/sys/bus/i2c/drivers")
    # JetPack 4: .../ina3221x/<addr>/iio:device<N>/{rail_name_K, in_power<K>_input}
    for dev in sorted(glob.glob(str(drivers / "ina3221*" / "*" / "iio:device*"))):
        for power in sorted(glob.glob(os.path.join(dev, "in_power*_input"))):
            idx = Path(power).name[len("in_power") : -len("_input")]
            name = _read(Path(dev) / f"rail_name_{idx}") or f"{Path(dev).parent.name}:{idx}"
            rails.append(Rail(name, power_path=Path(power)))
    # JetPack 5/6: .../ina3221/<addr>/hwmon/hwmon<N>/{inK_label, inK_input, currK_input}
    for dev in sorted(glob.glob(str(drivers / "ina3221*" / "*" / "hwmon" / "hwmon*"))):
        for label in sorted(glob.glob(os.path.join(dev, "in*_label"))):
            idx = Path(label).name[len("in") : -len("_label")]
            volt = Path(dev) / f"in{idx}_input"
            curr = Path(dev) / f"curr{idx}_input"
            name = _read(Path(label)) or f"in{idx}"
            if volt.is_file() and curr.is_file() and not name.lower().startswith("sum of"):
                rails.append(Rail(name, volt_path=volt, curr_path=curr))
    return rails


def read_rails_mw(rails: list[Rail]) -> dict[str, float]:
    """Instantaneous power of each rail in mW; unreadable rails are left out."""
    out: dict[str, float] = {}
    for r in rails:
        mw = r.read_mw()
        if mw is not None:
            out[r.name] = mw
    return out


def clocks(root: str | Path = "/") -> dict[str, Any]:
    """CPU (kHz) and devfreq (Hz) clocks now."""
    return {"cpu_khz": cpu_freqs_khz(root), "devfreq_hz": devfreq_hz(root)}


def host_info(root: str | Path = "/") -> dict[str, Any]:
    """The facts every benchmark record carries about its machine."""
    info: dict[str, Any] = {
        "name": platform.node() or UNAVAILABLE,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(root),
        "cores_logical": os.cpu_count() or UNAVAILABLE,
        "governor": governor(root),
        "load_avg": load_average(root),
    }
    try:
        import psutil

        info["cores_physical"] = psutil.cpu_count(logical=False) or UNAVAILABLE
        info["memory_total_mb"] = round(psutil.virtual_memory().total / 2**20)
    except ImportError:
        info["cores_physical"] = UNAVAILABLE
        info["memory_total_mb"] = UNAVAILABLE
    try:
        info["cpu_affinity"] = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["cpu_affinity"] = UNAVAILABLE
    jetson = is_jetson(root)
    info["jetson"] = jetson
    if jetson:
        release = _read(_p(root, "/etc/nv_tegra_release"))
        info["l4t_release"] = release.splitlines()[0] if release else UNAVAILABLE
        info["board"] = (_read(_p(root, "/proc/device-tree/model")) or UNAVAILABLE).replace(
            "\x00", ""
        )
        info["power_mode"] = power_mode() if Path(root) == Path("/") else {"name": UNAVAILABLE}
    return info


_TEGRA_RAIL = re.compile(
    r"\b((?:POM|VDD|VDDQ|VIN|SYS)[A-Z0-9_]*|[A-Z][A-Z0-9_]*(?= \d+mW/))\s+(\d+)(?:mW)?/(\d+)(?:mW)?"
)
_TEGRA_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")


def parse_tegrastats(line: str) -> dict[str, dict[str, float]]:
    """One ``tegrastats`` line -> ``{"rails_mw": {name: now}, "temperatures_c": {name: C}}``.

    Reads both the JetPack 4 form (``POM_5V_IN 2030/2030``) and the later one
    (``VDD_IN 4789mW/4789mW``); the first number is the instantaneous power, the second the
    running average. Temperatures are the ``NAME@41.5C`` fields. Sensors tegrastats marks
    absent (``-256C``) are left out.
    """
    rails = {m.group(1): float(m.group(2)) for m in _TEGRA_RAIL.finditer(line)}
    temps = {
        m.group(1): float(m.group(2))
        for m in _TEGRA_TEMP.finditer(line)
        if float(m.group(2)) > -40.0
    }
    return {"rails_mw": rails, "temperatures_c": temps}


# -- sampling during a run -----------------------------------------------------------------------


@dataclass
class PowerMonitor:
    """Samples power rails, clocks and temperatures in a thread between `start` and `stop`.

    ``interval_s`` is the sampling period. `stop` returns a dict for the record: ``measured``
    (False with a ``reason`` when no rail is readable), ``energy_j`` per rail and total,
    ``mean_power_mw``, clocks and temperatures before and after, the minimum clocks seen during
    the run, and ``throttled`` + ``warnings`` when a clock fell more than ``drop_fraction``
    below its value at the start.
    """

    root: str | Path = "/"
    interval_s: float = 0.05
    drop_fraction: float = 0.10
    #: command that prints tegrastats lines; None: ``tegrastats`` from PATH when no sysfs rail
    #: is readable and ``root`` is the real ``/``.
    tegrastats_cmd: list[str] | None = None
    _rails: list[Rail] = field(default_factory=list, init=False)
    _tegra: subprocess.Popen[str] | None = field(default=None, init=False)
    _tegra_thread: threading.Thread | None = field(default=None, init=False)
    _source: str = field(default="", init=False)
    _samples: list[tuple[float, dict[str, float]]] = field(default_factory=list, init=False)
    _min_clocks: dict[str, float] = field(default_factory=dict, init=False)
    _before: dict[str, Any] = field(default_factory=dict, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _t0: float = field(default=0.0, init=False)

    def _flat_clocks(self) -> dict[str, float]:
        c = clocks(self.root)
        flat = {f"cpu:{k}": v for k, v in c["cpu_khz"].items()}
        flat.update({f"devfreq:{k}": v for k, v in c["devfreq_hz"].items()})
        return flat

    def _sample(self) -> None:
        now = time.perf_counter()
        if self._rails:
            self._samples.append((now, read_rails_mw(self._rails)))
        for k, v in self._flat_clocks().items():
            if v < self._min_clocks.get(k, float("inf")):
                self._min_clocks[k] = v

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _tegrastats_command(self) -> list[str] | None:
        if self.tegrastats_cmd is not None:
            return list(self.tegrastats_cmd)
        exe = shutil.which("tegrastats")
        if exe is None or Path(self.root) != Path("/") or not is_jetson(self.root):
            return None
        return [exe, "--interval", str(max(10, int(self.interval_s * 1000)))]

    def _read_tegrastats(self) -> None:
        proc = self._tegra
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            parsed = parse_tegrastats(line)
            if parsed["rails_mw"]:
                self._samples.append((time.perf_counter(), parsed["rails_mw"]))
            if self._stop.is_set():
                break

    def _start_tegrastats(self) -> None:
        cmd = self._tegrastats_command()
        if cmd is None:
            return
        try:
            self._tegra = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
            )
        except OSError as err:
            self._source = f"tegrastats could not start: {err}"
            return
        self._source = "tegrastats"
        self._tegra_thread = threading.Thread(
            target=self._read_tegrastats, daemon=True, name="edgedet-tegrastats"
        )
        self._tegra_thread.start()

    def _stop_tegrastats(self) -> None:
        if self._tegra is None:
            return
        self._tegra.terminate()
        try:
            self._tegra.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._tegra.kill()
            self._tegra.wait()
        if self._tegra_thread is not None:
            self._tegra_thread.join(timeout=5)
        self._tegra = None

    def start(self) -> PowerMonitor:
        self._rails = find_power_rails(self.root)
        self._source = "sysfs" if self._rails else ""
        self._before = {"clocks": self._flat_clocks(), "temperatures_c": temperatures_c(self.root)}
        self._samples.clear()
        self._min_clocks.clear()
        self._stop.clear()
        self._t0 = time.perf_counter()
        if not self._rails:
            self._start_tegrastats()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="edgedet-power")
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._stop_tegrastats()
        seconds = time.perf_counter() - self._t0
        after = {"clocks": self._flat_clocks(), "temperatures_c": temperatures_c(self.root)}
        result: dict[str, Any] = {
            "seconds": seconds,
            "clocks_before": self._before["clocks"],
            "clocks_after": after["clocks"],
            "clocks_min_during": dict(self._min_clocks),
            "temperatures_c_before": self._before["temperatures_c"],
            "temperatures_c_after": after["temperatures_c"],
        }
        result.update(self._energy())
        result.update(self._throttling())
        return result

    def _throttling(self) -> dict[str, Any]:
        """Throttling = a *locked* clock (floor == ceiling, e.g. after ``jetson_clocks``) that
        fell below its ceiling. An unlocked clock moves with DVFS (schedutil, the GPU's
        governor) as a matter of course, so its drop is not throttling; it is noted once.
        Without readable limits, a CPU or GPU clock that fell below its value at the start is
        flagged as before. Other devfreq devices (VIC, NVDEC...) are not looked at."""
        limits = clock_limits(self.root)
        warnings: list[str] = []
        unlocked: list[str] = []
        for name, start in self._before["clocks"].items():
            if not (name.startswith("cpu:") or _GPU_DEVFREQ.search(name)):
                continue
            low = self._min_clocks.get(name)
            if low is None:
                continue
            if name in limits:
                floor, ceiling = limits[name]
                if floor < ceiling:
                    unlocked.append(name)
                    continue
                reference, what = ceiling, "its locked frequency"
            else:
                reference, what = start, "its value at the start"
            if reference > 0 and low < reference * (1.0 - self.drop_fraction):
                warnings.append(
                    f"clock {name} dropped from {what} {reference:g} to {low:g} during the run "
                    "(thermal throttling or power capping?); latency may be pessimistic"
                )
        out: dict[str, Any] = {
            "throttled": bool(warnings),
            "warnings": warnings,
            "clocks_locked": bool(limits) and not unlocked,
        }
        if unlocked:
            out["notes"] = [
                f"{len(unlocked)} clock(s) not locked ({', '.join(sorted(unlocked)[:4])}...): "
                "DVFS may change them during the run; run `sudo jetson_clocks` for stable numbers"
            ]
        return out

    def _energy(self) -> dict[str, Any]:
        if not self._rails and self._source != "tegrastats":
            reason = "no readable power rails (INA3221 sysfs) and no tegrastats on this machine"
            if self._source:
                reason += f" ({self._source})"
            return {"measured": False, "reason": reason}
        names = sorted(
            {n for _, s in self._samples for n in s if n.upper() not in _UNCONNECTED_RAILS}
        )
        if len(self._samples) < 2 or not names:
            return {"measured": False, "reason": "power rails found but could not be read"}
        energy: dict[str, float] = {}
        for n in names:
            pts = [(t, s[n]) for t, s in self._samples if n in s]
            joules = 0.0
            for (ta, pa), (tb, pb) in itertools.pairwise(pts):
                joules += (pa + pb) / 2.0 / 1000.0 * (tb - ta)
            energy[n] = joules
        span = self._samples[-1][0] - self._samples[0][0]
        inputs = [n for n in names if n.upper() in INPUT_RAILS]
        total = energy[inputs[0]] if inputs else sum(energy.values())
        return {
            "measured": True,
            "rails": names,
            "samples": len(self._samples),
            "energy_j": energy,
            "energy_total_j": total,
            "total_from": inputs[0] if inputs else "sum of all rails (no module-input rail)",
            "source": self._source,
            "mean_power_mw": total / span * 1000.0 if span > 0 else None,
        }
