"""The cffi binding of the C helper is generated from its headers (csrc/cffi_cdef.py reads the regions
marked cffi:begin/cffi:end). These tests read the headers as they are now and compare them with the module
that was built: a header changed without a rebuild, or a binding that drifted from the headers, fails here.
Unit tests: no root, no compiler (the comparison uses the built module and cffi's parser)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import cffi
import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, CSRC / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cffi_cdef = _load("cffi_cdef")


def _system_constants() -> tuple[str, ...]:
    # build_helper.py runs compiler probes on import: read its list of names from the source instead.
    import ast

    tree = ast.parse((CSRC / "build_helper.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SYSTEM_CONSTANTS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("build_helper.py has no SYSTEM_CONSTANTS")


def _surface(ffi: Any, lib: Any | None, declarations: dict[str, Any] | None = None) -> dict[str, Any]:
    """What Python can see: struct layouts (field name, C type, offset; size), function signatures, constants."""
    typedefs, structs, unions = ffi.list_types()
    out: dict[str, Any] = {"types": (sorted(typedefs), sorted(structs), sorted(unions))}
    for name in typedefs:
        ctype = ffi.typeof(name)
        if ctype.kind == "struct":
            out[name] = ([(f, t.type.cname, t.offset) for f, t in ctype.fields], ffi.sizeof(ctype))
    for name in structs:
        ctype = ffi.typeof(f"struct {name}")
        out[f"struct {name}"] = ([(f, t.type.cname, t.offset) for f, t in ctype.fields], ffi.sizeof(ctype))
    if lib is not None:  # the built module
        names = dir(lib)
        out["functions"] = {n: ffi.typeof(getattr(lib, n)).cname for n in names if callable(getattr(lib, n))}
        out["constants"] = sorted(n for n in names if not callable(getattr(lib, n)))
    else:  # a parsed cdef: its declarations, with C names in the ctype spelling of the built module
        assert declarations is not None
        out["functions"] = {key.split(" ", 1)[1]: ffi.typeof(tp.get_c_name()).cname
                            for key, (tp, _quals) in declarations.items() if key.startswith("function ")}
        out["constants"] = sorted([key.split(" ", 1)[1] for key in declarations if key.startswith("macro ")]
                                  + list(_system_constants()))
    return out


def _parsed(directory: Path) -> dict[str, Any]:
    ffi = cffi.FFI()
    ffi.cdef(cffi_cdef.cdef_from_headers(str(directory)))
    return _surface(ffi, None, ffi._parser._declarations)


def _built() -> dict[str, Any]:
    from ctrpy._helper import ffi, lib  # type: ignore[import-not-found]

    return _surface(ffi, lib)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    # A typedef of a named struct (`typedef struct ctrpy_seccomp_s ctrpy_seccomp_t`) may be spelled either way.
    import re

    aliases = dict(re.findall(r"typedef struct (\w+) (\w+);", cffi_cdef.cdef_from_headers(str(CSRC))))

    def spelling(functions: dict[str, str]) -> dict[str, str]:
        return {name: re.sub(r"struct (\w+)", lambda m: aliases.get(m.group(1), m.group(0)), sig)
                for name, sig in functions.items()}

    a, b = {**a, "functions": spelling(a["functions"])}, {**b, "functions": spelling(b["functions"])}
    diffs = [key for key in sorted(set(a) | set(b)) if key not in ("functions", "constants") and a.get(key) != b.get(key)]
    for key in ("functions", "constants"):
        if a[key] != b[key]:
            diffs.append(key)
    return diffs


def test_built_helper_matches_its_headers() -> None:
    built, parsed = _built(), _parsed(CSRC)
    # Worth saying which declaration differs: the usual cause is a header edited without `make venv`.
    assert _differences(built, parsed) == [], "ctrpy/_helper is stale or the headers' cffi regions changed"
    assert "ctrpy_spawn" in built["functions"] and "CLONE_NEWUSER" in built["constants"]
    assert built["ctrpy_err_t"] == ([("errno_", "int", 0), ("msg", "char[256]", 4)], 260)


@pytest.mark.parametrize("edit,expected", [
    # a field added to a struct
    (("  char msg[256];\n} ctrpy_err_t;", "  char msg[256];\n  int extra;\n} ctrpy_err_t;"), ["ctrpy_err_t"]),
    # a function's signature changed
    (("int ctrpy_start (const char *fifo, int pid, ctrpy_err_t *err);",
      "int ctrpy_start (const char *fifo, long pid, ctrpy_err_t *err);"), ["functions"]),
    # a declaration taken out of the binding
    (("/* cffi:begin */\ntypedef struct\n{\n  int errno_;", "typedef struct\n{\n  int errno_;"), None),
])
def test_a_header_that_disagrees_with_the_build_is_caught(tmp_path: Path, edit: tuple[str, str],
                                                          expected: list[str] | None) -> None:
    for header in cffi_cdef.HEADERS:
        shutil.copy(CSRC / header, tmp_path / header)
    text = (tmp_path / "helper.h").read_text()
    assert edit[0] in text
    (tmp_path / "helper.h").write_text(text.replace(edit[0], edit[1], 1))
    if expected is None:  # the markers no longer balance: the build stops with the header's name
        with pytest.raises(ValueError, match="helper.h"):
            _parsed(tmp_path)
        return
    assert _differences(_built(), _parsed(tmp_path)) == expected


def test_regions_become_cdef_text() -> None:
    header = (
        "#ifndef X_H\n#define X_H\n#include <stdint.h>\n"
        "int hidden (void);\n"
        "/* cffi:begin */\n"
        "#define SIZE (4096 * 8)\n"
        "#if 0\n"
        "int shown (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));\n"
        "/* cffi:end */\n"
        "int also_hidden (void);\n"
        "/* cffi:begin */\ntypedef struct { int a; } s_t;\n/* cffi:end */\n#endif\n"
    )
    regions = cffi_cdef.regions(header)
    assert len(regions) == 2 and "hidden" not in "".join(regions)
    text = cffi_cdef.to_cdef(regions[0])
    assert "#define SIZE ..." in text and "#if" not in text and "__attribute__" not in text
    assert "int shown (const char *fmt, ...) ;" in text
    for bad in ("/* cffi:begin */\n", "/* cffi:end */\n", "/* cffi:begin */\n/* cffi:begin */\n"):
        with pytest.raises(ValueError):
            cffi_cdef.regions(bad, "x.h")
