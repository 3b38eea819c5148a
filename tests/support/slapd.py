"""A real OpenLDAP ``slapd`` for the tests, on 127.0.0.1 with free ports.

``SlapdServer`` writes a ``slapd.conf`` (mdb backend, the schemas it is given,
a TLS certificate from a private trustme CA), loads the entries with
``slapadd`` and starts ``slapd`` in the foreground on ``ldap://`` and
``ldaps://`` ports; ``stop()`` ends it and removes its directory. Nothing
touches the system slapd service or ``/etc/ldap/slapd.d``.

Like the other components (``tests/support/components.py``): when slapd is not
installed a test calling :func:`require_slapd` is skipped, or fails under
``CI=true``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import trustme

from tests.support.components import HOST, _end_process, _hint, _log_tail, free_port, require_component

with warnings.catch_warnings():
    # As in collectors/ldap_directory.py: ldap3 2.9.1 imports names pyasn1 0.6 deprecates.
    warnings.filterwarnings("ignore", r"(tagMap|typeMap) is deprecated", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPException

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SYSTEM_SCHEMAS = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
BASE_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
START_TIMEOUT = 20.0


def slapd_available() -> bool:
    return (all(os.access(p, os.X_OK) for p in (SLAPD, SLAPADD))
            and all((SYSTEM_SCHEMAS / f"{name}.schema").is_file() for name in BASE_SCHEMAS))


def require_slapd() -> None:
    require_component("OpenLDAP slapd", slapd_available(), _hint("slapd"))


class SlapdServer:
    """A private slapd holding ``ldif`` under ``suffix``.

    ``size_limit`` is slapd's limit for a plain search; a search with the
    paged-results control may return ``paged_total`` entries in all, page by
    page (``"hard"``: the size limit, OpenLDAP's default). The root DN is exempt from limits, so tests bind as an
    ordinary entry to see them.
    """

    def __init__(self, ldif: str, *, suffix: str = "dc=sonha,dc=gov,dc=vn",
                 schemas: Sequence[Path] = (), size_limit: int | None = None,
                 paged_total: int | str = "unlimited") -> None:
        self.ldif = ldif
        self.suffix = suffix
        self.schemas = [Path(p).resolve() for p in schemas]
        self.size_limit = size_limit
        self.paged_total = paged_total
        self.root_dn = f"cn=admin,{suffix}"
        self.root_password = "quản-trị-thử"  # a throw-away server's; never a real secret
        self.host = HOST
        self.port = 0
        self.tls_port = 0
        self.ca = trustme.CA()
        self.base_dir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def ldap_url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "ca.pem"

    # -- lifecycle

    def start(self) -> SlapdServer:
        if self._proc is not None:
            return self
        self.base_dir = Path(tempfile.mkdtemp(prefix="egovmon-slapd-"))
        self.log_path = self.base_dir / "slapd.log"
        try:
            config = self._write_files()
            self._slapadd(config)
            for _attempt in range(3):
                if self._start_once(config):
                    break
            else:
                raise RuntimeError(f"slapd could not bind a port:\n{_log_tail(self.log_path)}")
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _write_files(self) -> Path:
        assert self.base_dir is not None
        (self.base_dir / "data").mkdir()
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert = self.ca.issue_cert(self.host)  # not "localhost": a test reaches it by a name it lacks
        cert.cert_chain_pems[0].write_to_path(str(self.base_dir / "server.pem"))
        cert.private_key_pem.write_to_path(str(self.base_dir / "server.key"))
        includes = [SYSTEM_SCHEMAS / f"{name}.schema" for name in BASE_SCHEMAS] + self.schemas
        limit = ((f"sizelimit size.soft={self.size_limit} size.hard={self.size_limit} "
                  f"size.prtotal={self.paged_total}")
                 if self.size_limit is not None else "sizelimit unlimited")
        lines = [
            *(f'include "{path}"' for path in includes),
            f'pidfile "{self.base_dir / "slapd.pid"}"',
            f'argsfile "{self.base_dir / "slapd.args"}"',
            f'modulepath "{MODULES}"',
            "moduleload back_mdb",
            f'TLSCertificateFile "{self.base_dir / "server.pem"}"',
            f'TLSCertificateKeyFile "{self.base_dir / "server.key"}"',
            limit,
            "database mdb",
            "maxsize 67108864",
            f'suffix "{self.suffix}"',
            f'rootdn "{self.root_dn}"',
            f'rootpw "{self.root_password}"',
            f'directory "{self.base_dir / "data"}"',
            # Passwords only serve to bind; every bound entry may read the rest;
            # an anonymous client sees nothing (as on a real mail directory).
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by users read by * none",
        ]
        config = self.base_dir / "slapd.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    def _slapadd(self, config: Path) -> None:
        assert self.base_dir is not None
        ldif = self.base_dir / "entries.ldif"
        ldif.write_text(self.ldif, encoding="utf-8")
        done = subprocess.run([str(SLAPADD), "-q", "-f", str(config), "-l", str(ldif)],
                              cwd=self.base_dir, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"slapadd failed:\n{(done.stdout + done.stderr).decode('utf-8', 'replace')}")

    def _start_once(self, config: Path) -> bool:
        """Start slapd on fresh ports; False if a port was taken meanwhile."""
        assert self.base_dir is not None and self.log_path is not None
        self.port, self.tls_port = free_port(self.host), free_port(self.host)
        urls = f"{self.ldap_url}/ {self.ldaps_url}/"
        with self.log_path.open("ab") as log:
            # -d keeps slapd in the foreground (our child, stopped by us); level 0 logs little.
            self._proc = subprocess.Popen([str(SLAPD), "-d", "0", "-f", str(config), "-h", urls],
                                          cwd=self.base_dir, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = _log_tail(self.log_path)
                self._proc = None
                if "Address already in use" in tail or "bind(" in tail:
                    return False
                raise RuntimeError(f"slapd exited during startup:\n{tail}")
            try:
                self.admin().unbind()
                return True
            except LDAPException:
                time.sleep(0.1)
        raise RuntimeError(f"slapd did not accept binds within {START_TIMEOUT:.0f}s:\n{_log_tail(self.log_path)}")

    def stop(self) -> None:
        """SIGTERM (slapd flushes and exits), SIGKILL after a bound; then remove the directory."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            _end_process(self._proc, None, signal.SIGTERM, grace=10)
            self._proc = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> SlapdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for the tests

    def admin(self) -> ldap3.Connection:
        """A connection bound as the root DN, to change entries during a test."""
        server = ldap3.Server(self.host, port=self.port, get_info=ldap3.NONE, connect_timeout=2)
        return ldap3.Connection(server, self.root_dn, self.root_password, auto_bind=True,
                                receive_timeout=5, raise_exceptions=True)

    def plain_search(self, bind_dn: str, password: str, base: str, search_filter: str) -> tuple[str, int]:
        """A search without the paged-results control: (result name, entries returned)."""
        server = ldap3.Server(self.host, port=self.port, get_info=ldap3.NONE, connect_timeout=2)
        with ldap3.Connection(server, bind_dn, password, auto_bind=True, receive_timeout=5) as conn:
            conn.search(base, search_filter, attributes=["1.1"])
            return str(conn.result["description"]), len(conn.response or [])

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines) if self.log_path is not None else ""
