"""Who may reach the HTTP listener: the rule for non-loopback listeners.

On loopback only this machine (and a reverse proxy on it) can connect, so
reading stays open there. On any other address every endpoint but the probes
(``/healthz``, ``/readyz``) needs a bearer token, ``/metrics`` included, and
the service refuses to start without ``http.token_hashes`` rather than serve
the province's data to the network unauthenticated.
"""

from __future__ import annotations

import ipaddress

from monitor.errors import ConfigError

# Liveness and readiness probes come from orchestrators that carry no token; they
# answer only "ok"/"ready" and the names of failing checks, nothing about units.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the usual names for them; anything else
    (0.0.0.0, ::, a LAN address, any other host name) counts as reachable from outside."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listener(host: str, port: int, token_hashes: tuple[str, ...], *, config_file: str = "") -> None:
    """Refuse a non-loopback listener that nobody could authenticate against."""
    if is_loopback(host) or token_hashes:
        return
    raise ConfigError.single(
        config_file or "configuration", field="http.listen",
        message=(f"{host}:{port} is not a loopback address, so every endpoint except /healthz and /readyz "
                 "needs a token, and http.token_hashes is empty: add one (`egovmon token new`), or listen on "
                 "127.0.0.1 behind a reverse proxy"))
