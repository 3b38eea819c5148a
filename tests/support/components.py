"""Real PostgreSQL, Prometheus and Alertmanager servers (and promtool, amtool) for the tests.

Everything here starts its own throw-away processes on 127.0.0.1 with free ports and
temporary directories; nothing depends on system services. The Debian packages that
provide the binaries are installed by ``./scripts/bootstrap --test-deps`` (the list is
``scripts/debian-packages.txt``).

Availability policy: a test that needs a component calls :func:`require_component`
(or one of the ``require_*`` shortcuts). When the component is missing the test is
skipped with a message saying what to install, except under ``CI=true`` where it
fails with that message: CI never skips silently.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

HOST = "127.0.0.1"
INSTALL_HINT = "run `./scripts/bootstrap --test-deps` (installs the Debian packages in {where})"
PACKAGES_FILE = "scripts/debian-packages.txt"

# --------------------------------------------------------------------------- general


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to a true-ish value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def require_component(name: str, available: bool, how_to_install: str) -> None:
    """Skip the current test if ``name`` is missing -- or fail it under ``CI=true``."""
    if available:
        return
    message = f"{name} is not available: {how_to_install}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: missing test components fail, never skip)", pytrace=False)
    pytest.skip(message)


def _hint(package: str) -> str:
    return f"{INSTALL_HINT.format(where=PACKAGES_FILE)}; Debian package: {package}"


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _clean_env() -> dict[str, str]:
    """The environment for child processes, without PG* variables that could redirect them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _is_root() -> bool:
    return os.geteuid() == 0


def _end_process(proc: subprocess.Popen[bytes], pid: int | None, sig: int, grace: float) -> None:
    """Send ``sig`` to ``pid`` (default: ``proc``), wait ``grace`` seconds, then SIGKILL both."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid if pid is not None else proc.pid, sig)
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    for target in (pid, proc.pid):
        if target is None:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- PostgreSQL

POSTGRES_BINARIES = ("initdb", "postgres", "pg_ctl")
POSTGRES_START_TIMEOUT = 30.0


def find_postgres_bindir() -> Path | None:
    """The PostgreSQL server binaries: Debian's highest ``/usr/lib/postgresql/N/bin``, else PATH."""

    def version_key(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in POSTGRES_BINARIES):
            return bindir
    return None


def _postgres_user_exists() -> bool:
    try:
        import pwd

        pwd.getpwnam("postgres")
    except (ImportError, KeyError):
        return False
    return True


def postgres_available() -> bool:
    if find_postgres_bindir() is None:
        return False
    if _is_root():
        return shutil.which("runuser") is not None and _postgres_user_exists()
    return True


def require_postgres() -> None:
    require_component("PostgreSQL server", postgres_available(), _hint("postgresql"))


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, listening on 127.0.0.1."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_postgres_bindir()
        if found is None:
            raise RuntimeError("PostgreSQL server binaries not found (Debian package postgresql)")
        self.bindir = found
        self.host = HOST
        self.port = 0
        self.user = "postgres"
        self.base_dir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- process plumbing

    def _cmd(self, *args: str) -> list[str]:
        if _is_root():
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "sock"

    def _initdb(self) -> None:
        assert self.base_dir is not None
        last = ""
        for locale in ("C.UTF-8", "C"):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            result = subprocess.run(
                self._cmd(
                    str(self.bindir / "initdb"),
                    "-D", str(self.data_dir),
                    "-A", "trust",
                    "-U", self.user,
                    "-E", "UTF8",
                    f"--locale={locale}",
                    "--no-sync",
                ),
                cwd=self.base_dir,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
                check=False,
            )  # fmt: skip
            if result.returncode == 0:
                return
            last = (result.stdout + result.stderr).decode("utf-8", "replace")
            if "locale" not in last.lower():
                break
        raise RuntimeError(f"initdb failed:\n{last}")

    def start(self) -> PostgresServer:
        if self._proc is not None:
            return self
        self.base_dir = Path(tempfile.mkdtemp(prefix="egovmon-pg-"))
        try:
            if _is_root():
                shutil.chown(self.base_dir, "postgres", "postgres")
            self.log_path = self.base_dir / "postgres.log"
            self.socket_dir.mkdir(mode=0o700)
            if _is_root():
                shutil.chown(self.socket_dir, "postgres", "postgres")
            self._initdb()
            for _attempt in range(3):
                if self._start_once():
                    break
            else:
                raise RuntimeError(f"PostgreSQL could not bind a port:\n{_log_tail(self.log_path)}")
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _start_once(self) -> bool:
        """Start postgres on a fresh port; False if the port was taken meanwhile."""
        assert self.log_path is not None
        self.port = free_port(self.host)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._cmd(
                    str(self.bindir / "postgres"),
                    "-D", str(self.data_dir),
                    "-p", str(self.port),
                    "-c", f"listen_addresses={self.host}",
                    "-c", f"unix_socket_directories={self.socket_dir}",
                    "-c", "fsync=off",
                    "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off",
                ),
                cwd=self.base_dir,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + POSTGRES_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = _log_tail(self.log_path)
                self._proc = None
                if "could not bind" in tail or "already in use" in tail:
                    return False
                raise RuntimeError(f"PostgreSQL exited during startup:\n{tail}")
            try:
                with self.connect():
                    return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(
            f"PostgreSQL did not accept connections within {POSTGRES_START_TIMEOUT:.0f}s:\n"
            f"{_log_tail(self.log_path)}"
        )

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, IndexError, ValueError):
            return None

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after a bound; then remove the directory."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            # With runuser in between, signal the postmaster itself (from postmaster.pid).
            pid = self._postmaster_pid() if _is_root() else None
            _end_process(self._proc, pid, signal.SIGINT, grace=30)
            self._proc = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """An autocommit psycopg connection (for admin statements and checks)."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (UTF8) and return its SQLAlchemy URL."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(
                    sql.Identifier(name)
                )
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting whoever is still connected."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --------------------------------------------------------------------------- Prometheus

PROMETHEUS_START_TIMEOUT = 30.0


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    fallback = Path("/usr/bin") / name
    return str(fallback) if os.access(fallback, os.X_OK) else None


def prometheus_binary() -> str | None:
    return _find_binary("prometheus")


def promtool_binary() -> str | None:
    return _find_binary("promtool")


def require_prometheus() -> None:
    require_component("Prometheus", prometheus_binary() is not None, _hint("prometheus"))


def require_promtool() -> None:
    require_component("promtool", promtool_binary() is not None, _hint("prometheus"))


class PrometheusQueryError(RuntimeError):
    """Prometheus' HTTP API answered with an error (bad PromQL, for instance)."""


# Never send requests to 127.0.0.1 through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _ReadyDaemon:
    """A Prometheus-family server (Prometheus, Alertmanager) in a private temporary
    directory on a free loopback port: written config, started, ready on ``/-/ready``,
    stopped with SIGTERM then SIGKILL, directory removed. Subclasses say what to run."""

    title = "server"
    prefix = "egovmon-"
    config_name = "config.yml"
    start_timeout = 30.0

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.host = HOST
        self.port = 0
        self.base_dir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def arguments(self, config_path: Path) -> list[str]:
        """Command-line arguments after the binary; the listen address comes from ``self``."""
        raise NotImplementedError

    def start(self) -> Any:
        if self._proc is not None:
            return self
        self.base_dir = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.log_path = self.base_dir / f"{self.title.lower()}.log"
        config_path = self.base_dir / self.config_name
        config_path.write_text(
            yaml.safe_dump(self.config(), allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        try:
            for _attempt in range(3):
                if self._start_once(config_path):
                    break
            else:
                raise RuntimeError(f"{self.title} could not bind a port:\n{_log_tail(self.log_path)}")
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _start_once(self, config_path: Path) -> bool:
        assert self.base_dir is not None and self.log_path is not None
        self.port = free_port(self.host)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, *self.arguments(config_path)],
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = _log_tail(self.log_path)
                self._proc = None
                if "address already in use" in tail:
                    return False
                raise RuntimeError(f"{self.title} exited during startup:\n{tail}")
            try:
                with _OPENER.open(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.title} was not ready within {self.start_timeout:.0f}s:\n{_log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGTERM, SIGKILL after a bound; then remove the directory."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            _end_process(self._proc, None, signal.SIGTERM, grace=20)
            self._proc = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's own log, for failure messages."""
        return _log_tail(self.log_path, lines) if self.log_path is not None else ""


class PrometheusServer(_ReadyDaemon):
    """A private Prometheus on 127.0.0.1 scraping ``targets`` (``["127.0.0.1:9480"]``)."""

    title = "Prometheus"
    prefix = "egovmon-prom-"
    config_name = "prometheus.yml"
    start_timeout = PROMETHEUS_START_TIMEOUT

    def __init__(
        self,
        targets: Sequence[str],
        *,
        scrape_interval: str = "1s",
        metrics_path: str = "/metrics",
        job_name: str = "egovmon",
        rule_files: Sequence[str | os.PathLike[str]] = (),
        binary: str | None = None,
    ) -> None:
        if isinstance(targets, str):
            raise TypeError("targets must be a list of host:port strings")
        found = binary or prometheus_binary()
        if found is None:
            raise RuntimeError("prometheus binary not found (Debian package prometheus)")
        super().__init__(found)
        self.scrape_targets = list(targets)
        self.scrape_interval = scrape_interval
        self.metrics_path = metrics_path
        self.job_name = job_name
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]

    def config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": self.rule_files,
            "scrape_configs": [
                {
                    "job_name": self.job_name,
                    "metrics_path": self.metrics_path,
                    "static_configs": [{"targets": self.scrape_targets}],
                }
            ],
        }

    def arguments(self, config_path: Path) -> list[str]:
        assert self.base_dir is not None
        return [
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
        ]

    # -- HTTP API

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; errors raise PrometheusQueryError."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with _OPENER.open(url, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            try:
                payload = json.loads(raw)
                detail = f"{payload.get('errorType')}: {payload.get('error')}"
            except ValueError:
                detail = f"HTTP {exc.code}: {raw[:500]}"
            raise PrometheusQueryError(f"Prometheus /api/v1/{path} {params}: {detail}") from None
        if body.get("status") != "success":
            raise PrometheusQueryError(
                f"Prometheus /api/v1/{path} {params}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def wait_for_data(self, expr: str, timeout: float = 30.0) -> list[Any]:
        """The first non-empty answer to ``expr``. A target reports "up" as soon as its
        scrape returns, before the samples are committed, so a query right after
        ``wait_until_scraped`` can still come back empty on a large scrape."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() >= deadline:
                return result
            time.sleep(0.2)

    def query(self, expr: str) -> list[Any]:
        """Instant query; the ``result`` list (vector: ``[{"metric": {…}, "value": [t, "v"]}]``)."""
        result = self.api("query", {"query": expr})["result"]
        return list(result)

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets as the API reports them."""
        return list(self.api("targets", {"state": "active"})["activeTargets"])

    def wait_until_scraped(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every configured target is health "up" with a completed scrape."""
        deadline = time.monotonic() + timeout
        active: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            active = self.targets()
            if len(active) >= len(self.scrape_targets) and all(
                t.get("health") == "up" and not str(t.get("lastScrape", "")).startswith("0001")
                for t in active
            ):
                return active
            time.sleep(0.2)
        summary = [
            (t.get("scrapeUrl"), t.get("health"), t.get("lastError")) for t in active
        ] or "no active targets yet"
        raise TimeoutError(f"targets not scraped within {timeout}s: {summary}")


# --------------------------------------------------------------------------- promtool


def _promtool(args: list[str], stdin: str | None = None) -> tuple[bool, str]:
    require_promtool()
    binary = promtool_binary()
    assert binary is not None
    result = subprocess.run(
        [binary, *args],
        input=(stdin or "").encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    return result.returncode == 0, output


def promtool_check_metrics(text: str) -> tuple[bool, str]:
    """``promtool check metrics`` on an exposition; (ok, what promtool printed).

    promtool 2.42 exits 1 for a parse error and 3 for lint problems (a counter
    without ``_total``, a metric without HELP, ...); it does not notice duplicates.
    """
    return _promtool(["check", "metrics"], stdin=text)


def promtool_check_rules(path: str | os.PathLike[str]) -> tuple[bool, str]:
    """``promtool check rules PATH``; (ok, what promtool printed)."""
    return _promtool(["check", "rules", os.fspath(path)])


def promtool_test_rules(path: str | os.PathLike[str]) -> tuple[bool, str]:
    """``promtool test rules PATH`` (unit tests for alerting/recording rules)."""
    return _promtool(["test", "rules", os.fspath(path)])


# --------------------------------------------------------------------------- Alertmanager

ALERTMANAGER_START_TIMEOUT = 30.0


def alertmanager_binary() -> str | None:
    # Debian renames the binary; upstream tarballs call it plain "alertmanager".
    return _find_binary("prometheus-alertmanager") or _find_binary("alertmanager")


def amtool_binary() -> str | None:
    return _find_binary("amtool")


def require_alertmanager() -> None:
    require_component(
        "Alertmanager", alertmanager_binary() is not None, _hint("prometheus-alertmanager")
    )


def require_amtool() -> None:
    require_component("amtool", amtool_binary() is not None, _hint("prometheus-alertmanager"))


class AlertmanagerServer(_ReadyDaemon):
    """A private, single-instance Alertmanager on 127.0.0.1 that notifies nobody.

    Every alert is routed to the ``null`` receiver: the tests look at what
    Alertmanager holds through its API, not at notifications.
    """

    title = "Alertmanager"
    prefix = "egovmon-am-"
    config_name = "alertmanager.yml"
    start_timeout = ALERTMANAGER_START_TIMEOUT

    def __init__(self, *, binary: str | None = None) -> None:
        found = binary or alertmanager_binary()
        if found is None:
            raise RuntimeError(
                "alertmanager binary not found (Debian package prometheus-alertmanager)"
            )
        super().__init__(found)

    def config(self) -> dict[str, Any]:
        return {
            "route": {"receiver": "null", "group_wait": "1s"},
            "receivers": [{"name": "null"}],
        }

    def arguments(self, config_path: Path) -> list[str]:
        assert self.base_dir is not None
        return [
            f"--config.file={config_path}",
            f"--storage.path={self.base_dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            # Empty: no gossip cluster. Otherwise it binds 0.0.0.0:9094, a fixed port
            # on every interface that two test runs (or a system service) would share.
            "--cluster.listen-address=",
        ]

    # -- HTTP API

    def api(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """GET ``/api/v2/<path>`` and return the decoded JSON (params may repeat a key)."""
        url = f"{self.url}/api/v2/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(list(params))
        try:
            with _OPENER.open(url, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            raise RuntimeError(
                f"Alertmanager /api/v2/{path} {list(params)}: HTTP {exc.code}: {raw[:500]}"
            ) from None

    def alerts(self, *matchers: str, active: bool | None = None) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (never resolved ones), optionally filtered by
        matchers such as ``'test="abc"'`` and by ``active``."""
        params = [("filter", matcher) for matcher in matchers]
        if active is not None:
            params.append(("active", "true" if active else "false"))
        return list(self.api("alerts", params))

    def amtool(self, *args: str) -> tuple[bool, str]:
        """``amtool --alertmanager.url=<this> ARGS``; (ok, stdout), stderr appended on failure."""
        require_amtool()
        binary = amtool_binary()
        assert binary is not None
        result = subprocess.run(
            [binary, f"--alertmanager.url={self.url}", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
            # amtool reads defaults from ~/.config/amtool; a HOME without one keeps a
            # developer's settings (another URL, say) out of the test.
            env={**os.environ, "HOME": str(self.base_dir or tempfile.gettempdir())},
        )
        output = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0:
            output += result.stderr.decode("utf-8", "replace")
        return result.returncode == 0, output


# --------------------------------------------------------------------------- Chromium (headless)
#
# For the HTML report test: render a page in a real browser, take a screenshot, read the
# rendered DOM and every console message. Approach: one headless Chromium driven over the
# DevTools protocol (CDP) -- ``--remote-debugging-port=0`` on 127.0.0.1, the port read from
# ``DevToolsActivePort`` in the private profile, a websocket client from aiohttp. One run
# gives the DOM (``document.documentElement.outerHTML``, what ``--dump-dom`` prints), the
# screenshot (``Page.captureScreenshot``, what ``--screenshot`` writes) and the console,
# from structured events rather than log lines:
#   - ``Runtime.consoleAPICalled`` (console.error / console.assert are errors),
#   - ``Runtime.exceptionThrown`` (uncaught exceptions),
#   - ``Log.entryAdded`` at level error (failed loads, CSP refusals, browser interventions),
#   - ``Network.loadingFailed``; and ``Network.requestWillBeSent`` lists every URL asked for.
# Scraping ``--enable-logging=stderr`` for "CONSOLE" lines was the alternative; it depends
# on the log format and verbosity of each Chromium release, misses network and CSP errors,
# and would need a second run for the screenshot, so it is not used.
#
# Limits: the page is considered rendered after its load event, ``document.fonts.ready``
# and two animation frames (enough for static pages; a page that keeps working after that
# is not waited for -- there is no ``--virtual-time-budget``); messages logged before
# ``Runtime.enable`` on a fresh about:blank tab cannot exist. Call it from synchronous
# code (from inside a running event loop it runs on a worker thread). Everything is
# bounded: one overall ``timeout``, the browser's process group is SIGTERMed then
# SIGKILLed, and its temporary profile removed, whatever happens.

import asyncio  # noqa: E402
import base64  # noqa: E402
import concurrent.futures  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

CHROMIUM_START_TIMEOUT = 30.0
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests may run as root (containers), where the sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def chromium_binary() -> str | None:
    return _find_binary("chromium") or _find_binary("chromium-browser")


def require_chromium() -> None:
    require_component("Chromium", chromium_binary() is not None, _hint("chromium"))


@dataclass
class ChromiumResult:
    """What headless Chromium made of a page."""

    dom: str  # the rendered DOM, serialised (document.documentElement.outerHTML)
    screenshot: Path  # PNG of the viewport (or the whole page with full_page=True)
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    console: list[str] = field(default_factory=list)  # every console/log message, "level: text"
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, in order
    value: Any = None  # what ``script`` returned (JSON-able), if one was given
    version: str = ""
    seconds: float = 0.0


class _Cdp:
    """A minimal DevTools-protocol client: commands by id, events to one callback."""

    def __init__(self, ws: Any, on_event: Any) -> None:
        self.ws = ws
        self.on_event = on_event
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import aiohttp

        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if "id" in data:
                    future = self.pending.pop(data["id"], None)
                    if future is not None and not future.done():
                        if "error" in data:
                            future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                        else:
                            future.set_result(data.get("result", {}))
                else:
                    self.on_event(data.get("method", ""), data.get("params", {}), data.get("sessionId"))
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(RuntimeError("the DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(json.dumps(message))
        return await future

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


def _remote_text(arg: dict[str, Any]) -> str:
    if "value" in arg:
        return str(arg["value"])
    return str(arg.get("description") or arg.get("unserializableValue") or arg.get("type", ""))


async def _chromium_session(
    proc: subprocess.Popen[bytes],
    profile: Path,
    url: str,
    screenshot: Path,
    *,
    window: tuple[int, int],
    full_page: bool,
    script: str | None,
    media: str | None,
) -> ChromiumResult:
    import aiohttp

    started = time.monotonic()
    active_port = profile / "DevToolsActivePort"
    deadline = time.monotonic() + CHROMIUM_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"Chromium exited at startup with status {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            lines = (await asyncio.to_thread(active_port.read_text)).split()
            port, path = int(lines[0]), lines[1]
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"Chromium did not open its DevTools port within {CHROMIUM_START_TIMEOUT:.0f}s")
        await asyncio.sleep(0.05)

    result = ChromiumResult(dom="", screenshot=screenshot)
    loaded = asyncio.Event()
    page_session: list[str] = []

    def on_event(method: str, params: dict[str, Any], session: str | None) -> None:
        if not page_session or session != page_session[0]:
            return
        if method == "Page.loadEventFired":
            loaded.set()
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(_remote_text(a) for a in params.get("args", []))
            kind = params.get("type", "log")
            result.console.append(f"{kind}: {text}")
            if kind in ("error", "assert"):
                result.errors.append(f"console.{kind}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text", "")
            result.console.append(f"exception: {description}")
            result.errors.append(f"uncaught exception: {description}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            text = f"{entry.get('text', '')} {entry.get('url', '')}".strip()
            result.console.append(f"{entry.get('level', 'info')} ({entry.get('source', '')}): {text}")
            if entry.get("level") == "error":
                result.errors.append(f"{entry.get('source', 'log')}: {text}")
        elif method == "Network.requestWillBeSent":
            result.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            reason = params.get("errorText") or params.get("blockedReason") or "failed"
            result.errors.append(f"network: {reason} ({params.get('type', '')})")

    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0, autoping=True) as ws,
    ):
        cdp = _Cdp(ws, on_event)
        try:
            version = await cdp.send("Browser.getVersion")
            result.version = str(version.get("product", ""))
            target = await cdp.send("Target.createTarget", {"url": "about:blank"})
            attached = await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
            session = attached["sessionId"]
            page_session.append(session)
            for domain in ("Page", "Runtime", "Log", "Network"):
                await cdp.send(f"{domain}.enable", session=session)
            width, height = window
            await cdp.send("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                           session=session)
            if media is not None:
                await cdp.send("Emulation.setEmulatedMedia", {"media": media}, session=session)
            navigation = await cdp.send("Page.navigate", {"url": url}, session=session)
            if navigation.get("errorText"):
                raise RuntimeError(f"Chromium could not open {url}: {navigation['errorText']}")
            await loaded.wait()
            settle = ("document.fonts.ready.then(() => new Promise(done => "
                      "requestAnimationFrame(() => requestAnimationFrame(() => done(true)))))")
            await cdp.send("Runtime.evaluate", {"expression": settle, "awaitPromise": True}, session=session)
            if script is not None:
                evaluated = await cdp.send("Runtime.evaluate", {"expression": script, "awaitPromise": True,
                                                                "returnByValue": True}, session=session)
                if "exceptionDetails" in evaluated:
                    raise RuntimeError(f"the script failed: {evaluated['exceptionDetails']}")
                result.value = evaluated.get("result", {}).get("value")
            dom = await cdp.send("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                      "returnByValue": True}, session=session)
            result.dom = str(dom.get("result", {}).get("value", ""))
            capture: dict[str, Any] = {"format": "png"}
            if full_page:
                metrics = await cdp.send("Page.getLayoutMetrics", session=session)
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                capture.update(captureBeyondViewport=True, clip={
                    "x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16384), "scale": 1})
            shot = await cdp.send("Page.captureScreenshot", capture, session=session)
            await asyncio.to_thread(screenshot.write_bytes, base64.b64decode(shot["data"]))
            # Messages that arrive with the last frames: give the event loop one more turn.
            await asyncio.sleep(0.1)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cdp.send("Browser.close"), 5)
        finally:
            await cdp.close()
    result.seconds = time.monotonic() - started
    return result


def chromium_render(
    html_path: Path,
    screenshot: Path,
    *,
    timeout: float = 60,
    window: tuple[int, int] = (1280, 2000),
    full_page: bool = False,
    script: str | None = None,
    media: str | None = None,
) -> ChromiumResult:
    """Open ``html_path`` in headless Chromium; write a PNG to ``screenshot``; return the
    rendered DOM, console errors, requested URLs and (optionally) what ``script`` -- a JS
    expression, awaited if it is a promise -- evaluates to. ``media="print"`` lays the page
    out with its print style sheet. Raises RuntimeError (with the end of Chromium's log)
    when the browser cannot do it within ``timeout`` seconds."""
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium not found (Debian package chromium)")
    url = Path(html_path).resolve().as_uri()
    base = Path(tempfile.mkdtemp(prefix="egovmon-chromium-"))
    log_path = base / "chromium.log"
    profile = base / "profile"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                 f"--window-size={window[0]},{window[1]}", "about:blank"],
                cwd=base,
                env={**_clean_env(), "HOME": str(base)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: renderers and zygotes end with it
            )
        session = _chromium_session(proc, profile, url, Path(screenshot), window=window, full_page=full_page,
                                    script=script, media=media)

        async def bounded() -> ChromiumResult:
            return await asyncio.wait_for(session, timeout)

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(bounded())
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, bounded()).result()
    except (TimeoutError, RuntimeError, OSError) as exc:
        raise RuntimeError(f"headless Chromium failed on {url}: {exc!r}\n{_log_tail(log_path)}") from exc
    finally:
        if proc is not None:
            _end_process_group(proc)
        shutil.rmtree(base, ignore_errors=True)


def _end_process_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End the browser's process group (it is its leader): wait ``grace`` for it to exit
    (after ``Browser.close`` it usually does), else SIGTERM the group, then SIGKILL whatever
    is left in it (zygotes, crashpad), and only then reap the leader. Until it is reaped the
    leader's id -- the group's id -- cannot be reused, so the signals reach only our processes."""

    def leader_exited(within: float) -> bool:
        deadline = time.monotonic() + within
        while True:
            try:
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    if proc.returncode is not None:  # already reaped: its group id may be someone else's by now
        return
    if not leader_exited(grace):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        leader_exited(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
