"""A throw-away PostgreSQL server for the benchmarks: initdb and ``postgres`` in a
temporary directory, listening on 127.0.0.1 on a free port, removed at the end.

The same recipe as the tests' ``PostgresServer`` (tests/support/components.py),
written out here because benchmarks must not import the tests. Durability is
relaxed (``fsync=off``, ``synchronous_commit=off``) the same way for the write
path and for its baseline, so the ratio compares the code paths, not the disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"
BINARIES = ("initdb", "postgres")


def find_bindir() -> Path | None:
    """Debian's highest ``/usr/lib/postgresql/N/bin``, else the directory of ``initdb`` on PATH."""
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in BINARIES):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


@contextlib.contextmanager
def postgres_url(dbname: str = "bench") -> Iterator[str]:
    """Start a server, create ``dbname`` and yield its SQLAlchemy URL; stop and remove it after.
    Raises RuntimeError with the reason when the binaries are missing or it does not start."""
    import psycopg

    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, postgres) not found: install the Debian "
                           "package postgresql (./scripts/bootstrap --test-deps)")
    base = Path(tempfile.mkdtemp(prefix="egovmon-bench-pg-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        data, log_path = base / "data", base / "postgres.log"
        result = subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                              "-E", "UTF8", "--locale=C", "--no-sync"]),
                                cwd=base, env=_clean_env(), capture_output=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {(result.stdout + result.stderr).decode(errors='replace')}")
        port = _free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(_as_postgres([
                str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-c", f"listen_addresses={HOST}",
                "-c", f"unix_socket_directories={base}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off"]), cwd=base, env=_clean_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited during startup: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                with psycopg.connect(host=HOST, port=port, user="postgres", dbname="postgres",
                                     autocommit=True, connect_timeout=5) as admin:
                    admin.execute(f'CREATE DATABASE "{dbname}" ENCODING \'UTF8\' TEMPLATE template0')
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not accept connections within 30 s") from None
                time.sleep(0.1)
        yield f"postgresql+psycopg://postgres@{HOST}:{port}/{dbname}"
    finally:
        if proc is not None and proc.poll() is None:
            # With runuser in between, signal the postmaster itself (its pid is in postmaster.pid).
            pid = proc.pid
            with contextlib.suppress(OSError, IndexError, ValueError):
                pid = int((base / "data" / "postmaster.pid").read_text().splitlines()[0])
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for target in {pid, proc.pid}:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(target, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
