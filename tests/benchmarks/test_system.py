"""Host facts and Jetson sensors, read from fake sysfs trees."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from edgedet.benchmarks import system
from edgedet.benchmarks.system import UNAVAILABLE, PowerMonitor


def _write(root: Path, rel: str, text: str) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_x86_host_facts(tmp_path: Path) -> None:
    _write(
        tmp_path, "/proc/cpuinfo", "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\n"
    )
    _write(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n")
    _write(tmp_path, "/proc/loadavg", "0.52 0.40 0.31 1/200 4242\n")
    assert system.cpu_model(tmp_path) == "AMD EPYC 7B13"
    assert system.governor(tmp_path) == "performance"
    assert system.load_average(tmp_path) == [0.52, 0.40, 0.31]
    assert not system.is_jetson(tmp_path)
    info = system.host_info(tmp_path)
    assert info["cpu_model"] == "AMD EPYC 7B13" and info["jetson"] is False
    assert "power_mode" not in info


def test_missing_files_are_recorded_as_unavailable(tmp_path: Path) -> None:
    assert system.governor(tmp_path) == UNAVAILABLE
    assert system.load_average(tmp_path) == UNAVAILABLE
    assert system.cpu_freqs_khz(tmp_path) == {}
    assert system.temperatures_c(tmp_path) == {}
    assert system.find_power_rails(tmp_path) == []


def test_arm_cpu_model_falls_back_to_device_tree(tmp_path: Path) -> None:
    _write(tmp_path, "/proc/cpuinfo", "processor\t: 0\nBogoMIPS\t: 62.50\n")
    _write(tmp_path, "/proc/device-tree/model", "NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert system.cpu_model(tmp_path) == "NVIDIA Jetson Orin Nano Developer Kit"


def test_nvpmodel_output() -> None:
    assert system.parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert system.parse_nvpmodel("NVPM WARN: ...\nNV Power Mode: 15W\n2\n") == {
        "name": "15W",
        "id": 2,
    }
    assert system.parse_nvpmodel("garbage")["name"] == UNAVAILABLE


def _jetson_tree(root: Path, *, layout: str) -> dict[str, Path]:
    _write(root, "/etc/nv_tegra_release", "# R35 (release), REVISION: 4.1\n")
    _write(root, "/proc/device-tree/model", "NVIDIA Orin Nano\x00")
    for i, f in enumerate((1510400, 1510400)):
        _write(root, f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq", f"{f}\n")
    _write(root, "/sys/class/devfreq/17000000.gpu/cur_freq", "624750000\n")
    _write(root, "/sys/class/thermal/thermal_zone0/type", "CPU-therm\n")
    _write(root, "/sys/class/thermal/thermal_zone0/temp", "45500\n")
    _write(root, "/sys/class/thermal/thermal_zone1/type", "GPU-therm\n")
    _write(root, "/sys/class/thermal/thermal_zone1/temp", "-256000\n")  # absent sensor
    files: dict[str, Path] = {}
    if layout == "iio":
        dev = "/sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0"
        for k, (name, mw) in enumerate(
            [("POM_5V_IN", 5000), ("POM_5V_GPU", 1200), ("POM_5V_CPU", 900)]
        ):
            _write(root, f"{dev}/rail_name_{k}", name + "\n")
            files[name] = _write(root, f"{dev}/in_power{k}_input", f"{mw}\n")
    else:
        dev = "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
        for k, (name, mv, ma) in enumerate(
            [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 300), ("VDD_SOC", 5000, 200)], 1
        ):
            _write(root, f"{dev}/in{k}_label", name + "\n")
            _write(root, f"{dev}/in{k}_input", f"{mv}\n")
            files[name] = _write(root, f"{dev}/curr{k}_input", f"{ma}\n")
        _write(root, f"{dev}/in7_label", "sum of shunt voltages\n")
    return files


@pytest.mark.parametrize("layout", ["iio", "hwmon"])
def test_jetson_sensors(tmp_path: Path, layout: str) -> None:
    _jetson_tree(tmp_path, layout=layout)
    assert system.is_jetson(tmp_path)
    assert system.cpu_freqs_khz(tmp_path) == {"cpu0": 1510400.0, "cpu1": 1510400.0}
    assert system.devfreq_hz(tmp_path) == {"17000000.gpu": 624750000.0}
    assert system.temperatures_c(tmp_path) == {"CPU-therm": 45.5}
    rails = system.find_power_rails(tmp_path)
    powers = system.read_rails_mw(rails)
    if layout == "iio":
        assert powers == {"POM_5V_IN": 5000.0, "POM_5V_GPU": 1200.0, "POM_5V_CPU": 900.0}
    else:
        assert powers == {"VDD_IN": 5000.0, "VDD_CPU_GPU_CV": 1500.0, "VDD_SOC": 1000.0}
    info = system.host_info(tmp_path)
    assert info["jetson"] and info["board"] == "NVIDIA Orin Nano"
    assert info["l4t_release"].startswith("# R35")


def test_jetson_soc_family_detection(tmp_path: Path) -> None:
    _write(tmp_path, "/sys/devices/soc0/family", "Tegra\n")
    assert system.is_jetson(tmp_path)


def test_power_monitor_energy_and_throttling(tmp_path: Path) -> None:
    files = _jetson_tree(tmp_path, layout="hwmon")
    mon = PowerMonitor(root=tmp_path, interval_s=0.01).start()
    time.sleep(0.05)
    # GPU clock drops by half mid-run: thermal throttling
    _write(tmp_path, "/sys/class/devfreq/17000000.gpu/cur_freq", "312000000\n")
    files["VDD_IN"].write_text("2000\n")  # 10 W from now on
    time.sleep(0.05)
    res = mon.stop()
    assert res["measured"] is True
    assert res["total_from"] == "VDD_IN"  # the input rail, not the double-counting sum
    assert 5000.0 <= res["mean_power_mw"] <= 10000.0
    assert res["energy_total_j"] == pytest.approx(res["energy_j"]["VDD_IN"])
    assert res["throttled"] is True
    assert any("17000000.gpu" in w and "dropped" in w for w in res["warnings"])
    assert res["temperatures_c_before"] == {"CPU-therm": 45.5}


def test_power_monitor_without_rails_says_not_measured(tmp_path: Path) -> None:
    res = PowerMonitor(root=tmp_path, interval_s=0.01).start().stop()
    assert res["measured"] is False
    assert "no readable power rails" in res["reason"]
    assert res["throttled"] is False and res["warnings"] == []


JP4_LINE = (
    "RAM 2303/3964MB (lfb 9x2MB) SWAP 0/1982MB (cached 0MB) CPU [9%@1479,4%@1479,off,off] "
    "EMC_FREQ 0% GR3D_FREQ 0% PLL@27C CPU@29.5C PMIC@100C GPU@28C AO@36C thermal@28.75C "
    "POM_5V_IN 2030/2030 POM_5V_GPU 0/0 POM_5V_CPU 290/290"
)
JP6_LINE = (
    "RAM 2185/7620MB (lfb 1x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,0%@729] "
    "GR3D_FREQ 0% cpu@47.718C soc2@46.25C tj@48.093C cv0@-256C "
    "VDD_IN 4789mW/4789mW VDD_CPU_GPU_CV 475mW/475mW VDD_SOC 1267mW/1267mW"
)


def test_tegrastats_lines() -> None:
    jp4 = system.parse_tegrastats(JP4_LINE)
    assert jp4["rails_mw"] == {"POM_5V_IN": 2030.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 290.0}
    assert jp4["temperatures_c"]["CPU"] == 29.5 and "RAM" not in jp4["rails_mw"]
    jp6 = system.parse_tegrastats(JP6_LINE)
    assert jp6["rails_mw"] == {"VDD_IN": 4789.0, "VDD_CPU_GPU_CV": 475.0, "VDD_SOC": 1267.0}
    assert jp6["temperatures_c"] == {"cpu": 47.718, "soc2": 46.25, "tj": 48.093}  # cv0 absent
    assert system.parse_tegrastats("nothing here") == {"rails_mw": {}, "temperatures_c": {}}


def test_power_monitor_falls_back_to_tegrastats(tmp_path: Path) -> None:
    script = tmp_path / "fake_tegrastats.sh"
    script.write_text(f'#!/bin/sh\nwhile true; do echo "{JP6_LINE}"; sleep 0.01; done\n')
    script.chmod(0o755)
    mon = PowerMonitor(root=tmp_path, interval_s=0.01, tegrastats_cmd=[str(script)]).start()
    time.sleep(0.3)
    res = mon.stop()
    assert res["measured"] is True and res["source"] == "tegrastats"
    assert res["total_from"] == "VDD_IN"
    assert res["mean_power_mw"] == pytest.approx(4789.0)


def _agx_orin_tree(root: Path) -> None:
    """AGX Orin's two INA3221s (jetson_stats#344): no module-input rail, two NC channels."""
    _write(root, "/etc/nv_tegra_release", "# R36 (release), REVISION: 4.0\n")
    chips = {
        "1-0040": [("VDD_GPU_SOC", 5000, 1200), ("VDD_CPU_CV", 5000, 300), ("VIN_SYS_5V0", 5000, 700)],
        "1-0041": [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 100), ("NC", 0, 0)],
    }
    for n, (addr, chans) in enumerate(chips.items()):
        dev = f"/sys/bus/i2c/drivers/ina3221/{addr}/hwmon/hwmon{3 + n}"
        for k, (name, mv, ma) in enumerate(chans, 1):
            _write(root, f"{dev}/in{k}_label", name + "\n")
            _write(root, f"{dev}/in{k}_input", f"{mv}\n")
            _write(root, f"{dev}/curr{k}_input", f"{ma}\n")


def test_agx_orin_energy_sums_the_rails_not_the_5v_io_rail(tmp_path: Path) -> None:
    _agx_orin_tree(tmp_path)
    mon = PowerMonitor(root=tmp_path, interval_s=0.01).start()
    time.sleep(0.05)
    res = mon.stop()
    assert res["measured"] is True
    assert res["total_from"].startswith("sum of all rails")
    assert "NC" not in res["rails"]
    assert res["mean_power_mw"] == pytest.approx(5000 * (1200 + 300 + 700 + 100) / 1000)


def test_dvfs_on_unlocked_clocks_is_not_throttling(tmp_path: Path) -> None:
    _jetson_tree(tmp_path, layout="hwmon")
    gpu = "/sys/class/devfreq/17000000.gpu"
    _write(tmp_path, f"{gpu}/min_freq", "306000000\n")
    _write(tmp_path, f"{gpu}/max_freq", "624750000\n")
    _write(tmp_path, "/sys/class/devfreq/15380000.nvjpg/cur_freq", "600000000\n")
    mon = PowerMonitor(root=tmp_path, interval_s=0.01).start()
    time.sleep(0.03)
    _write(tmp_path, f"{gpu}/cur_freq", "306000000\n")  # the governor clocks down
    _write(tmp_path, "/sys/class/devfreq/15380000.nvjpg/cur_freq", "100000000\n")  # idle engine
    time.sleep(0.03)
    res = mon.stop()
    assert res["throttled"] is False and res["warnings"] == []
    assert res["clocks_locked"] is False and "jetson_clocks" in res["notes"][0]


def test_a_locked_clock_below_its_ceiling_is_throttling(tmp_path: Path) -> None:
    _jetson_tree(tmp_path, layout="hwmon")
    gpu = "/sys/class/devfreq/17000000.gpu"
    _write(tmp_path, f"{gpu}/min_freq", "624750000\n")  # jetson_clocks: floor = ceiling
    _write(tmp_path, f"{gpu}/max_freq", "624750000\n")
    mon = PowerMonitor(root=tmp_path, interval_s=0.01).start()
    time.sleep(0.03)
    _write(tmp_path, f"{gpu}/cur_freq", "420000000\n")
    time.sleep(0.03)
    res = mon.stop()
    assert res["throttled"] is True and res["clocks_locked"] is True
    assert "locked frequency" in res["warnings"][0]
