"""The boundaries of DESIGN.md's decision 10, read from the source (``ast``), so a wrong import
fails here before it couples two services:

- a service (control, sfu, ai, gateway, egress) imports no other service, nor the launcher,
  the tests or the benchmarks: services talk over their gRPC contracts;
- the SDK (``sdk/parley``, generated code aside) imports no service: it installs without them;
- only the launcher (``parley up``) imports them all; tests may import anything;
- benchmarks use the services' public entry points (the names in their ``__init__``), never a
  private module (``ai._summary``) or private name (``from sfu import _media``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("control", "sfu", "ai", "gateway", "egress")
#: Packages that only the launcher and the tests may import (besides each service itself).
NOT_FOR_SERVICES = (*SERVICES, "launcher", "tests", "bench")


def _python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[:2] == ("sdk", "parley") and "v1" in relative.parts[2:-1]:
            continue  # generated from protos/
        if relative.parts[:2] == ("sdk", "buf") or "node_modules" in relative.parts:
            continue
        yield path


def _imports(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line, absolute module, statement)`` for each module an ``import`` or ``from`` names;
    ``from package import name`` yields ``package.name`` (it may be a module). Relative imports
    stay inside their own package and are left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}", f"from {node.module} import {alias.name}"


def _violations(folders: tuple[str, ...], forbidden: str) -> list[str]:
    """Every import in ``folders`` that ``forbidden(owner, module) -> reason`` refuses."""
    found = []
    for folder in folders:
        for path in _python_files(ROOT / folder):
            owner = path.relative_to(ROOT).parts[0]
            for line, module, statement in _imports(path):
                reason = _RULES[forbidden](owner, module)
                if reason:
                    found.append(f"{path.relative_to(ROOT)}:{line}: `{statement}`: {reason}")
    return found


def _service_rule(owner: str, module: str) -> str:
    top = module.split(".")[0]
    if top in NOT_FOR_SERVICES and top != owner:
        return f"the {owner} service imports {top}; services reach each other over gRPC (DESIGN.md, decision 10)"
    return ""


def _sdk_rule(owner: str, module: str) -> str:
    top = module.split(".")[0]
    if top in NOT_FOR_SERVICES:
        return f"the SDK imports {top}; it must install and run without any service (DESIGN.md, decision 10)"
    return ""


def _bench_rule(owner: str, module: str) -> str:
    parts = module.split(".")
    if parts[0] in (*SERVICES, "launcher") and any(part.startswith("_") for part in parts[1:]):
        return f"a benchmark reaches into {parts[0]}'s private parts; use (or add) a public name in {parts[0]}.__all__"
    return ""


_RULES = {"service": _service_rule, "sdk": _sdk_rule, "bench": _bench_rule}


def test_services_import_no_other_service() -> None:
    violations = _violations(SERVICES, "service")
    assert not violations, "\n".join(violations)


def test_sdk_imports_no_service() -> None:
    violations = _violations(("sdk/parley",), "sdk")
    assert not violations, "\n".join(violations)


def test_benchmarks_use_public_entry_points() -> None:
    violations = _violations(("bench",), "bench")
    assert not violations, "\n".join(violations)


def test_the_rules_see_what_they_must(tmp_path: Path) -> None:
    """The checker itself: each kind of import it must refuse, and those it must let through."""
    assert _service_rule("sfu", "control._service.ControlPlane")
    assert _service_rule("gateway", "launcher.up")
    assert not _service_rule("control", "control._db.migrate")
    assert not _service_rule("sfu", "parley.sfu.v1.signal_service_pb2")
    assert _sdk_rule("sdk", "sfu.SfuServer")
    assert not _sdk_rule("sdk", "parley.control.v1.resources_pb2")  # the SDK's own `parley.control`
    assert _bench_rule("bench", "ai._summary.LlamaCppEngine")
    assert _bench_rule("bench", "sfu._media")  # from sfu import _media
    assert not _bench_rule("bench", "sfu.SfuServer")
    assert not _bench_rule("bench", "bench._sfu_servers.BENCH_SECRET")  # the benchmarks' own helpers
    source = tmp_path / "example.py"
    source.write_text("import control._db\nfrom sfu import _media, SfuServer\nfrom . import sibling\n")
    assert [(line, module) for line, module, _ in _imports(source)] == [
        (1, "control._db"),
        (2, "sfu._media"),
        (2, "sfu.SfuServer"),
    ]
    # every service folder that exists holds Python the test reads (egress may hold none yet)
    assert all(any(_python_files(ROOT / s)) for s in SERVICES if s != "egress")
