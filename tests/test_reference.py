"""fastnn.reference is the tests' oracle: it must not borrow anything from what it checks."""
import ast
import pathlib

import pytest

import fastnn.reference

REFERENCE = pathlib.Path(fastnn.reference.__file__).parent
FORBIDDEN = ("fastnn.kernels", "fastnn._kernels")


def _imports(path):
    """(line, module) of every import in a file, at any depth; relative ones resolved."""
    package = "fastnn.reference"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def _forbidden(path):
    return [(line, m) for line, m in _imports(path)
            if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


@pytest.mark.parametrize("path", sorted(REFERENCE.glob("*.py")), ids=lambda p: p.name)
def test_reference_imports_nothing_from_the_kernels(path):
    assert not _forbidden(path), f"{path.name} imports from the code it is the oracle of"


def test_the_check_sees_every_form(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("import fastnn.kernels.conv\nfrom fastnn._kernels import pool\nfrom fastnn import kernels\n"
                 "def f():\n    from ..kernels._geometry import conv_geometry\n"
                 "from fastnn.reference import activation\nimport numpy\n")
    assert sorted({line for line, _ in _forbidden(p)}) == [1, 2, 3, 5]
