"""Protocols are plug-ins: outside protocols/, only protocols/registry.py names one.

No module under flows/, api/, ports/, schemas/ or defimon/ imports `protocols.<name>` for a
protocol the registry lists; they reach protocols through the registry (PLUGINS, READ_SIDES)
and the shared modules (protocols/base.py, spec.py, read_side.py, ...). Every import in the
source counts, also those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

from protocols.registry import PROTOCOLS, READ_SIDES

ROOT = Path(__file__).resolve().parents[2]
NAMES = frozenset(PROTOCOLS) | {side.name for side in READ_SIDES}

OUTSIDE = ("flows", "api", "ports", "schemas", "defimon")


def protocol_imports(tree: ast.AST) -> list[str]:
    """The `protocols.<name>...` modules a module imports, for a registered name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from protocols import aave_v3` names the protocol as an imported member.
            members = [f"{node.module}.{a.name}" for a in node.names]
            modules = members if node.module == "protocols" else [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if len(parts) >= 2 and parts[0] == "protocols" and parts[1] in NAMES:
                found.append(module)
    return found


def offenders(packages: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found = protocol_imports(ast.parse(path.read_text(), str(path)))
            if found:
                out[module] = found
    return out


def test_the_registry_names_the_protocols_it_lists() -> None:
    assert {"uniswap_v3", "aave_v3", "compound_v3", "erc20"} <= NAMES
    assert len(READ_SIDES) == len({side.name for side in READ_SIDES})


def test_nothing_outside_protocols_imports_a_protocol() -> None:
    assert offenders(OUTSIDE) == {}


def test_a_protocol_import_outside_is_found_where_it_is() -> None:
    # The search reads the packages' files: the protocols' own modules import themselves.
    assert "protocols.registry" in offenders(("protocols",))
    assert "protocols.uniswap_v3.read" in offenders(("protocols",))


def test_only_the_registry_imports_the_protocols_from_outside() -> None:
    assert (ROOT / "protocols" / "registry.py").exists()
    registry = protocol_imports(ast.parse((ROOT / "protocols" / "registry.py").read_text()))
    for name in NAMES:
        assert any(m.startswith(f"protocols.{name}.") for m in registry), name


def test_every_kind_of_import_of_a_protocol_is_seen() -> None:
    source = (
        "import protocols.aave_v3.state\n"
        "from protocols.uniswap_v3.math import fee_growth_inside\n"
        "from protocols import compound_v3, read_side\n"
        "from protocols.read_side import AsOf\n"
        "import protocols.base\n"
        "def f():\n"
        "    from protocols.erc20 import book\n"
        "from . import aave_v3\n"
    )
    assert protocol_imports(ast.parse(source)) == [
        "protocols.aave_v3.state",
        "protocols.uniswap_v3.math",
        "protocols.compound_v3",
        "protocols.erc20",
    ]
