"""API keys for the server: the full key, and scoped keys that may only run models.

Keys come from three places, all checked alike:

- ``--api-key`` / ``CORRAL_API_KEY``: one key of scope ``full`` named ``default``;
- ``CORRAL_API_KEYS``: ``name:scope:key`` entries separated by commas;
- the keys file ``CORRAL_HOME/keys``, managed by ``corral keys add|ls|rm``: one ``name:scope:sha256:HEX``
  line per key. Only the SHA-256 of a key is stored, so the file gives no key away; generated keys carry
  256 random bits, for which one SHA-256 is as strong as a slow password hash.

Scope ``full`` may do everything; ``inference`` may run models but not manage them (the server's route
table, :mod:`corral.server.scopes`, says which routes manage). Standard library only: the CLI imports it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping

import attrs

from corral.errors import Conflict, CorralError, NotFound
from corral.home import corral_home

FULL = "full"
INFERENCE = "inference"
SCOPES = (FULL, INFERENCE)

KEYS_FILE = "keys"
ENV_KEYS = "CORRAL_API_KEYS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@attrs.frozen
class ApiKey:
    """One accepted key: its name (shown in logs), scope, the SHA-256 of the secret, and where it is from."""

    name: str
    scope: str
    digest: str = attrs.field(repr=False)
    source: str = "file"


def digest(secret: str) -> str:
    """What the keys file stores for ``secret``."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    """A fresh key: ``corral-`` and 43 URL-safe characters (256 random bits)."""
    return "corral-" + secrets.token_urlsafe(32)


def keys_path(home: Path | None = None) -> Path:
    return (home or corral_home()) / KEYS_FILE


def _check_name(name: str, where: str = "") -> str:
    if not _NAME.match(name):
        raise CorralError(f"{where}key name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return name


def _check_scope(scope: str, where: str = "") -> str:
    if scope not in SCOPES:
        raise CorralError(f"{where}key scope {scope!r} is not one of {', '.join(SCOPES)}")
    return scope


def parse_entry(text: str, *, hashed: bool, source: str, where: str = "") -> ApiKey:
    """One ``name:scope:key`` entry (``hashed``: the key part is ``sha256:HEX``, as in the keys file)."""
    name, sep1, rest = text.strip().partition(":")
    scope, sep2, secret = rest.partition(":")
    if not (sep1 and sep2 and secret):
        raise CorralError(f"{where}expected name:scope:key, got {text.strip()[:40]!r}")
    _check_name(name, where)
    _check_scope(scope, where)
    if hashed:
        if not _DIGEST.match(secret):
            raise CorralError(f"{where}the key of {name!r} is not stored as sha256:HEX; add it again with `corral keys add`")
        return ApiKey(name, scope, secret, source)
    return ApiKey(name, scope, digest(secret), source)


def env_keys(value: str | None) -> list[ApiKey]:
    """The keys in a ``CORRAL_API_KEYS`` value."""
    if not value:
        return []
    return [parse_entry(item, hashed=False, source=ENV_KEYS, where=f"{ENV_KEYS}: ")
            for item in value.split(",") if item.strip()]


def read_file(path: Path) -> list[ApiKey]:
    """The keys in a keys file (none when it does not exist)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CorralError(f"cannot read the keys file {path}: {exc}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            keys.append(parse_entry(line, hashed=True, source="file", where=f"{path}:{number}: "))
    return keys


def _write_file(path: Path, keys: Iterable[ApiKey]) -> None:
    """Replace the keys file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Corral API keys: name:scope:sha256 of the key. Managed by `corral keys add|ls|rm`."]
    lines += [f"{k.name}:{k.scope}:{k.digest}" for k in keys]
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def add_key(name: str, scope: str = FULL, home: Path | None = None, secret: str | None = None) -> tuple[ApiKey, str]:
    """Add a key to the keys file; returns it and its secret (shown once, never stored)."""
    _check_name(name)
    _check_scope(scope)
    path = keys_path(home)
    keys = read_file(path)
    if any(k.name == name for k in keys):
        raise Conflict(f"a key named {name!r} exists; remove it first (`corral keys rm {name}`)")
    secret = secret or new_secret()
    key = ApiKey(name, scope, digest(secret), "file")
    _write_file(path, [*keys, key])
    return key, secret


def remove_key(name: str, home: Path | None = None) -> ApiKey:
    """Remove a key from the keys file."""
    path = keys_path(home)
    keys = read_file(path)
    found = [k for k in keys if k.name == name]
    if not found:
        from corral.suggest import did_you_mean

        close = did_you_mean(name, [k.name for k in keys])
        raise NotFound(f"no key named {name!r} in {path}; {close or 'see `corral keys ls`'}")
    _write_file(path, [k for k in keys if k.name != name])
    return found[0]


def list_keys(home: Path | None = None, environ: Mapping[str, str] | None = None) -> list[ApiKey]:
    """Every key the server would accept from the environment and the keys file."""
    environ = os.environ if environ is None else environ
    keys = []
    if environ.get("CORRAL_API_KEY"):
        keys.append(ApiKey("default", FULL, digest(environ["CORRAL_API_KEY"]), "CORRAL_API_KEY"))
    return keys + env_keys(environ.get(ENV_KEYS)) + read_file(keys_path(home))


class KeyRing:
    """The keys a server accepts: fixed ones (option, environment) and the keys file, read again when it
    changes (looked at no more than once a second), so ``corral keys add`` works without a restart.

    Once keys are on they stay on: removing every key locks every route instead of opening them.
    """

    RECHECK = 1.0

    def __init__(self, fixed: Iterable[ApiKey] = (), path: Path | None = None) -> None:
        self.fixed = tuple(fixed)
        self.path = path
        self._file: tuple[ApiKey, ...] = ()
        self._stamp: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if path is not None:
            self._file = tuple(read_file(path))  # a broken file at start-up is an error, not no keys
            self._stamp = self._file_stamp()
        self._required = bool(self.keys)

    @classmethod
    def for_server(cls, home: Path | None = None, api_key: str | None = None,
                   environ: Mapping[str, str] | None = None, *, use_file: bool = True) -> KeyRing:
        """The key given (``--api-key``, which click fills from CORRAL_API_KEY), CORRAL_API_KEYS, the keys file."""
        environ = os.environ if environ is None else environ
        fixed = [ApiKey("default", FULL, digest(api_key), "--api-key")] if api_key else []
        fixed += env_keys(environ.get(ENV_KEYS))
        return cls(fixed, keys_path(home) if use_file else None)

    @classmethod
    def single(cls, api_key: str | None) -> KeyRing:
        """Just one full key (or none): what ``ServerThread(api_key=...)`` uses."""
        return cls([ApiKey("default", FULL, digest(api_key), "--api-key")] if api_key else [])

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self._checked < self.RECHECK:
            return
        with self._lock:
            self._checked = now
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            try:
                self._file = tuple(read_file(self.path))
            except CorralError:
                return  # half-edited or broken: keep the keys read before
            self._stamp = stamp
            self._required = self._required or bool(self._file)

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        return self.fixed + self._file

    @property
    def enabled(self) -> bool:
        """Whether requests need a key."""
        self._refresh()
        return self._required

    def check(self, secret: str | bytes) -> ApiKey | None:
        """The key ``secret`` is, or None. Every stored digest is compared, in constant time."""
        self._refresh()
        if isinstance(secret, bytes):
            secret = secret.decode("latin-1")
        given = digest(secret).encode()
        found = None
        for key in self.keys:
            if hmac.compare_digest(given, key.digest.encode()):
                found = key
        return found

    def describe(self) -> str:
        """``"3 API keys: 1 full, 2 inference"`` or ``"no API key"``."""
        keys = self.keys
        if not keys:
            return "API key required, none set yet" if self._required else "no API key"
        counts = {s: sum(k.scope == s for k in keys) for s in SCOPES}
        detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"API key required ({len(keys)} key{'s' if len(keys) != 1 else ''}: {detail})"
