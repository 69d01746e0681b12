"""Regenerates the Python protocol package (``sdk/parley/<domain>/v1``) from ``protos/``, then
the TypeScript SDK's generated code (``scripts/gen_typescript.py``: ``sdk/typescript/src/gen``).

Run: ``python scripts/gen_protos.py``. CI runs it and fails when the committed code differs.
Outputs: ``*_pb2.py`` (messages), ``*_pb2_grpc.py`` (stubs and servicers), ``*.pyi`` stubs from
mypy-protobuf, the ``buf.validate`` module the contracts import, and
``parley/descriptors.binpb``, a FileDescriptorSet of every contract that the gateway and the
grpc reflection service read.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "protos"
OUT = ROOT / "sdk"
WELL_KNOWN = Path(grpc_tools.__file__).parent / "_proto"
DESCRIPTORS = OUT / "parley" / "descriptors.binpb"


def _protoc(*args: str) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"-I{THIRD_PARTY}", f"-I{WELL_KNOWN}", *args]
    # mypy-protobuf reports each file it writes on stderr; show the output only on failure.
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"protoc failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def main() -> None:
    ours = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    for domain_dir in (OUT / "parley").iterdir():
        if domain_dir.is_dir() and (domain_dir / "v1").exists() and any((domain_dir / "v1").glob("*_pb2.py")):
            shutil.rmtree(domain_dir)
    shutil.rmtree(OUT / "buf", ignore_errors=True)
    _protoc(
        f"--python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *ours,
    )
    _protoc(f"--python_out={OUT}", f"--mypy_out={OUT}", "buf/validate/validate.proto")
    _protoc(f"--descriptor_set_out={DESCRIPTORS}", "--include_imports", "--include_source_info", *ours)
    # Generated folders are plain packages so that type checkers and importers find them.
    for folder in [*(OUT / "parley").rglob("v1"), OUT / "buf", OUT / "buf" / "validate"]:
        for pkg in [folder, *folder.parents]:
            if pkg == OUT or OUT not in pkg.parents:
                break
            init = pkg / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated from protos/ by scripts/gen_protos.py; do not edit."""\n')
    # A process of its own: it imports the gateway, which must load the modules written above.
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_typescript.py")])
    if done.returncode:
        sys.exit(done.returncode)


if __name__ == "__main__":
    main()
