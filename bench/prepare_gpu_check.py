"""Prepare, on a machine that reaches PyPI, the folder ``bench/gpu_check.py`` takes to a GPU machine.

    python bench/prepare_gpu_check.py --out gpu-check
    python bench/prepare_gpu_check.py --out gpu-check --python-version 3.12 --package pydantic

Writes into ``--out`` (which must not exist) what :mod:`gpu_bundle` describes: MiniLM
with float16 weights, GoEmotions gzipped (``--data-dir``/goemotions, else
``$LABELCON_DATA``, else ``../shared/data``), and the wheels of ``--package`` (default:
pydantic, the one labelcon dependency the lent GPU machines lack) with their own
dependencies, for ``--python-version`` on manylinux x86-64. Fails when the folder comes
to more than 60 MiB. bench/README.md says how to run the check with it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import gpu_bundle
from data_dir import default_data_dir

from labelcon.encoders import shipped_path

#: manylinux tags pip matches exactly; these cover the wheels of pydantic-core and its kin.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def download_wheels(packages: list[str], target: Path, python_version: str) -> None:
    """Binary wheels of ``packages`` and their dependencies for CPython ``python_version`` on Linux x86-64."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        *platforms,
        "-d",
        str(target),
        *packages,
    ]
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (must not exist)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="holds goemotions/ ($LABELCON_DATA, else ../shared/data)"
    )
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (major.minor)")
    parser.add_argument(
        "--package",
        action="append",
        dest="packages",
        help="a package the GPU machine lacks (repeatable; default: pydantic)",
    )
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"--out {args.out} exists; give a new folder")
    args.out.mkdir(parents=True)
    gpu_bundle.pack_model(shipped_path("minilm"), args.out)
    gpu_bundle.pack_data((args.data_dir or default_data_dir()) / "goemotions", args.out, "GoEmotions")
    download_wheels(args.packages or ["pydantic"], args.out / gpu_bundle.WHEELS, args.python_version)
    size = gpu_bundle.folder_bytes(args.out)
    parts = ", ".join(
        f"{part} {gpu_bundle.folder_bytes(args.out / part) / 2**20:.1f} MiB"
        for part in (gpu_bundle.MODEL, gpu_bundle.DATA, gpu_bundle.WHEELS)
    )
    print(f"{args.out}: {size / 2**20:.1f} MiB ({parts})")
    if size > gpu_bundle.LIMIT_BYTES:
        sys.exit(
            f"{args.out} holds {size / 2**20:.1f} MiB, over the {gpu_bundle.LIMIT_BYTES / 2**20:.0f} MiB a "
            "borrowed machine's call takes along; pass fewer --package"
        )


if __name__ == "__main__":
    main()
