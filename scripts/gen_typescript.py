"""Regenerates the TypeScript SDK's generated code (``sdk/typescript/src/gen``) from ``protos/``.

Run by ``scripts/gen_protos.py`` after the Python package (it reads the ``descriptors.binpb``
that step writes), or alone: ``python scripts/gen_typescript.py``. CI regenerates both and
fails when the committed code differs. Outputs:

- ``*_pb.ts``: message types, enums and their JSON mapping, from ``@bufbuild/protoc-gen-es``
  (run by grpc_tools' protoc), for every contract and the files they import (well-known types
  excepted: ``@bufbuild/protobuf/wkt`` ships them);
- ``openapi.json``: the OpenAPI document the gateway serves at ``/api/openapi.json``, built here
  by the gateway's own code from the descriptors (no server runs);
- ``openapi.ts``: its paths and schemas as TypeScript types (openapi-typescript), which
  ``openapi-fetch`` turns into a typed client for every REST route.

The npm tools come from ``sdk/typescript/node_modules`` (``./scripts/setup`` runs ``npm ci``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "protos"
WELL_KNOWN = Path(grpc_tools.__file__).parent / "_proto"
DESCRIPTORS = ROOT / "sdk" / "parley" / "descriptors.binpb"
PACKAGE = ROOT / "sdk" / "typescript"
OUT = PACKAGE / "src" / "gen"
BIN = PACKAGE / "node_modules" / ".bin"

# The document, written by the gateway's code from this checkout's sources (not an installed
# copy): the same function the served /api/openapi.json comes from.
_DOCUMENT = "import json, sys, gateway; json.dump(gateway.build_openapi_document(), sys.stdout)"


def _run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode:
        sys.exit(f"{cmd[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    out: str = done.stdout
    return out


# Not imported by a contract, but what error statuses carry (`BadRequest`, `ErrorInfo`): the
# room client reads them from the signal socket's errors.
_ERROR_DETAILS = "google/rpc/error_details.proto"


def _contract_files() -> list[str]:
    """Every file the contracts are made of, imports included, but not the well-known types."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes()).file
    return sorted({f.name for f in files if not f.name.startswith("google/protobuf/")} | {_ERROR_DETAILS})


def main() -> None:
    if not (BIN / "protoc-gen-es").exists() or not (BIN / "openapi-typescript").exists():
        sys.exit("sdk/typescript/node_modules is missing: run ./scripts/setup (npm ci in sdk/typescript)")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    _run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{THIRD_PARTY}",
            f"-I{WELL_KNOWN}",
            f"--plugin=protoc-gen-es={BIN / 'protoc-gen-es'}",
            f"--es_out={OUT}",
            # .js in imports: the files resolve as ESM in Node and in every bundler; JSON types
            # (`RoomJson`...) describe the JSON mapping the REST API and the signal socket carry.
            "--es_opt=target=ts,import_extension=js,json_types=true",
            *_contract_files(),
        ]
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sdk")])}
    document = json.loads(_run([sys.executable, "-c", _DOCUMENT], env=env, cwd=ROOT))
    (OUT / "openapi.json").write_text(json.dumps(document, indent=2) + "\n")
    _run([str(BIN / "openapi-typescript"), str(OUT / "openapi.json"), "-o", str(OUT / "openapi.ts")], cwd=PACKAGE)


if __name__ == "__main__":
    main()
