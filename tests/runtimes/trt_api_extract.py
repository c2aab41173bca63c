"""Derive ``runtimes/trt_api_surface.json`` from NVIDIA's TensorRT Python binding sources.

Run by hand (not by the test suite) against a git clone of https://github.com/NVIDIA/TensorRT::

    python tests/runtimes/trt_api_extract.py /path/to/TensorRT/.git runtimes/trt_api_surface.json

For each release tag in `TAGS` it reads the pybind11 sources (``python/src/infer/py*.cpp``,
``python/src/parsers/pyOnnx.cpp``) and the wheel's ``tensorrt/__init__.py`` with ``git show``,
and records, for the classes and enums in `CLASSES` (everything edgedet and its test fake
touch), every Python-visible member: ``.def`` / ``.def_property*`` / ``.def_readwrite`` /
``.def_static`` names, enum ``.value`` names (with ``.export_values()`` members copied to the
enclosing class), members inherited from bound base classes, and module-level ``m.def`` and
``def`` functions.

It is a regular-expression reading of pybind11 declarations, not a C++ parser: it relies on
each ``.def(...)`` following its ``py::class_`` / ``py::enum_`` declaration (or being called on
the declaration's variable). The tests in ``test_trt_api_surface.py`` pin a few facts it must
get right per version (FP16 gone in 11, EXPLICIT_BATCH in 8.6...).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

#: Release tags read, with the TensorRT versions they stand for. JetPack 6.0 ships 8.6.2, which
#: has no tag of its own (v8.6.1 is the 8.6 GA source); PyPI has 11.4, the repository's newest
#: 11.x tag is v11.1; v10.16 is the newest 10.x tag.
TAGS = {"8.6": "v8.6.1", "10.3": "v10.3.0", "10.16": "v10.16", "11.1": "v11.1"}

FILES = (
    "python/src/infer/pyCore.cpp",
    "python/src/infer/pyGraph.cpp",
    "python/src/infer/pyInt8.cpp",
    "python/src/infer/pyPlugin.cpp",
    "python/src/infer/pyFoundationalTypes.cpp",
    "python/src/parsers/pyOnnx.cpp",
)
INIT_PY = "python/packaging/bindings_wheel/tensorrt/__init__.py"

#: The classes and enums recorded (what edgedet calls and what the fake models).
CLASSES = (
    "Builder", "BuilderFlag", "DataType", "DeviceType", "EngineInspector", "IBuilderConfig",
    "ICudaEngine", "ILogger", "LayerInformationFormat", "ProfilingVerbosity",
    "IExecutionContext", "IInt8Calibrator", "IInt8EntropyCalibrator2", "INetworkDefinition",
    "IOptimizationProfile", "ITensor", "ITimingCache", "Logger", "MemoryPoolType",
    "NetworkDefinitionCreationFlag", "OnnxParser", "ParserError", "Runtime", "TensorIOMode",
)  # fmt: skip

_DECL = re.compile(
    r"py::(class_|enum_)<(?P<targs>[^;{}]*?)>\s*(?P<var>\w+)?\s*[({]\s*(?P<scope>\w+)\s*,\s*"
    r'"(?P<name>\w+)"'
)
_MEMBER = re.compile(
    r"(?P<var>\b\w+)?\s*\.\s*(?:def|def_property|def_property_readonly|def_readwrite|"
    r'def_readonly|def_static|value)\s*\(\s*"(?P<name>\w+)"'
)
_EXPORT = re.compile(r"\.export_values\(\)")
#: ``binding.def(...)`` on a declared variable: later chained ``.def``s belong to its class.
_VARCALL = re.compile(r"\b(?P<var>\w+)\s*\.\s*def\w*\s*\(")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def surface(sources: list[str], init_py: str) -> dict[str, list[str]]:
    """``{"tensorrt": [module names], "<Class>": [members]}`` from the given source texts."""
    members: dict[str, set[str]] = {}
    bases: dict[str, list[str]] = {}
    cpp_to_py: dict[str, str] = {}
    var_to_py: dict[str, str] = {}
    module: set[str] = set()
    for raw in sources:
        text = _strip_comments(raw)
        events = [(m.start(), "decl", m) for m in _DECL.finditer(text)]
        events += [(m.start(), "member", m) for m in _MEMBER.finditer(text)]
        events += [(m.start(), "export", m) for m in _EXPORT.finditer(text)]
        events += [(m.start(), "varcall", m) for m in _VARCALL.finditer(text)]
        current: str | None = None
        scope_of: dict[str, str] = {}
        for _pos, kind, m in sorted(events, key=lambda e: e[0]):
            if kind == "decl":
                name = m.group("name")
                targs = [t.strip() for t in m.group("targs").split(",")]
                cpp_to_py[targs[0]] = name
                bases.setdefault(name, []).extend(t for t in targs[1:] if t)
                members.setdefault(name, set())
                if m.group("var"):
                    var_to_py[m.group("var")] = name
                scope = m.group("scope")
                scope_of[name] = var_to_py.get(scope, "tensorrt" if scope == "m" else scope)
                if scope_of[name] == "tensorrt":
                    module.add(name)
                current = name
            elif kind == "member":
                var = m.group("var")
                if var == "m":
                    module.add(m.group("name"))
                elif var in var_to_py:
                    members[var_to_py[var]].add(m.group("name"))
                elif current is not None:
                    members[current].add(m.group("name"))
            elif kind == "varcall":
                if m.group("var") in var_to_py:
                    current = var_to_py[m.group("var")]
            elif kind == "export" and current is not None:
                parent = scope_of.get(current)
                if parent and parent != "tensorrt":
                    members.setdefault(parent, set()).update(members[current])
    for line in init_py.splitlines():
        m = re.match(r"def (\w+)\(", line)
        if m and not m.group(1).startswith("_"):
            module.add(m.group(1))

    def resolved(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out = set(members.get(name, ()))
        for base in bases.get(name, ()):
            py = cpp_to_py.get(base)
            if py and py not in seen and py != name:
                out |= resolved(py, seen | {name})
        return out

    table = {c: sorted(resolved(c)) for c in CLASSES if c in members}
    table["tensorrt"] = sorted(module)
    return table


def _git_show(git_dir: str, tag: str, path: str) -> str | None:
    proc = subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"{tag}:{path}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.stdout if proc.returncode == 0 else None


def main(git_dir: str, out: str) -> None:
    versions = {}
    for version, tag in TAGS.items():
        sources = [t for t in (_git_show(git_dir, tag, f) for f in FILES) if t is not None]
        read = [f for f in FILES if _git_show(git_dir, tag, f) is not None]
        init_py = _git_show(git_dir, tag, INIT_PY) or ""
        commit = subprocess.run(
            ["git", "--git-dir", git_dir, "rev-list", "-n1", tag],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        versions[version] = {
            "tag": tag,
            "commit": commit,
            "files": [*read, INIT_PY],
            "api": surface(sources, init_py),
        }
    doc = {
        "source": "https://github.com/NVIDIA/TensorRT (pybind11 bindings, per release tag)",
        "generated_by": "tests/runtimes/trt_api_extract.py",
        "versions": versions,
    }
    Path(out).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
