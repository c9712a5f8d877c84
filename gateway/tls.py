"""TLS for the listeners: the rule against plain text off loopback, and a certificate that
reloads without dropping sessions.

* ``plaintext_refusal``: a listener bound to anything but a loopback address (``127.0.0.0/8``,
  ``::1``, ``localhost``) refuses to start without TLS (``[server] tls_cert``/``tls_key``)
  unless the configuration says plain text is intended (``[server] allow_plaintext = true``,
  or ``carbonx serve --allow-plaintext``: e.g. behind a proxy that terminates TLS).
* ``ReloadableTls``: one ``ssl.SSLContext`` shared by the listeners. ``reload()`` (SIGHUP)
  first loads the certificate and key files into a scratch context, so a bad or half-written
  file changes nothing (the error is returned for the log), then loads them into the live
  context: every new handshake uses the new certificate, connections already open keep
  theirs and are not dropped.
"""

from __future__ import annotations

import ipaddress
import ssl

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for a loopback address or name; False for anything else (wildcards, other names)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plaintext_refusal(listeners: dict[str, str], tls: bool, allow_plaintext: bool) -> str | None:
    """Why the process must not start (``listeners``: name -> host), or None."""
    if tls or allow_plaintext:
        return None
    exposed = [f"{name} ({host or 'all interfaces'})" for name, host in listeners.items() if not is_loopback(host)]
    if not exposed:
        return None
    return (
        f"refusing to serve plain text on {', '.join(exposed)}: set [server] tls_cert and tls_key "
        "(docs/operations.md, TLS), or allow_plaintext = true if a proxy terminates TLS in front of it"
    )


def _context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


class ReloadableTls:
    """The listeners' TLS context and its reload (see the module docstring)."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self.context = _context(cert, key)  # a bad file at start-up raises: the process does not start
        self.reloads = 0

    def reload(self) -> str | None:
        """Load the files again; None on success, else why not (the old certificate stays)."""
        try:
            _context(self.cert, self.key)
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            return f"TLS certificate not reloaded, the previous one stays in use: {exc}"
        self.reloads += 1
        return None
