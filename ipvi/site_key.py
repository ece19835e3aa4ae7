"""The site secret: the key of the audit log's chain and of every one-way pseudonym.

A hash that anyone can recompute protects nothing when the values are sequential ids (every
``P00000001``... can be hashed in milliseconds and looked up). So every one-way hash the
project keeps of an identifier (purge tombstones, purged record ids, MLflow's list of the
persons a model was trained on, person ids in the audit log) is a keyed HMAC-SHA-256, and the
audit log's chain is keyed too, so that whoever can write the database cannot re-hash it.

The secret lives outside the database: ``IPVI_AUDIT_KEY`` (at least 32 characters), else the
file ``paths.audit_key_file`` (created with 64 random hex digits, mode 0600, by the first
command that writes, when missing). Every server and command of one site must use the same
secret, and it must not change: a different one makes the chain fail verification and
forgets which records were purged (docs/ARCHITECTURE.md, "Purge and the audit log").
Separate keys are derived for each purpose, so no two uses share one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ipvi.errors import IpviError

KEY_ENV = "IPVI_AUDIT_KEY"
MIN_KEY_CHARS = 32
PSEUDONYM_CHARS = 32  # 128 bits of HMAC-SHA-256, hex

NO_KEY = (
    "no site key: set {env} (at least {n} characters) or create the key file {path} "
    "(any command that writes the audit log creates it)"
)
SHORT_KEY = "the site key in {where} is shorter than {n} characters"


@dataclass(frozen=True)
class SiteKey:
    """The site secret and the keys derived from it.

    Parameters
    ----------
    secret : bytes
        The secret as configured.
    source : str
        Where it came from (the variable's name or the file), for messages.
    """

    secret: bytes = field(repr=False)
    source: str = ""

    def derive(self, purpose: str) -> bytes:
        """The key for one ``purpose`` (``"audit-chain"``, ``"pseudonym"``), computed once per
        process."""
        cached = (self.secret, purpose)
        if cached not in _DERIVED:
            _DERIVED[cached] = hmac.digest(self.secret, f"ipvi:{purpose}".encode(), "sha256")
        return _DERIVED[cached]

    @property
    def key_id(self) -> str:
        """A fingerprint that names the key without revealing it (stored with audit rows)."""
        return self.derive("key-id").hex()[:16]

    def pseudonym(self, value: str) -> str:
        """The keyed one-way hash of an identifier: the same value gives the same pseudonym,
        and without the secret no value can be tried against it."""
        digest = hmac.digest(self.derive("pseudonym"), value.encode("utf-8"), "sha256")
        return digest.hex()[:PSEUDONYM_CHARS]


_DERIVED: dict[tuple[bytes, str], bytes] = {}


def load_site_key(path: str | Path, *, create: bool = False) -> SiteKey:
    """The site key from ``IPVI_AUDIT_KEY``, else from the file at ``path``.

    Parameters
    ----------
    path : str or Path
        The key file (``paths.audit_key_file``).
    create : bool
        Create the file with a new random key when neither exists (commands that write).

    Raises
    ------
    IpviError
        No key (and ``create`` is false), or a key shorter than 32 characters.
    """
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return _checked(from_env.strip(), KEY_ENV)
    path = Path(path)
    if not path.exists() and create:
        _create(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IpviError(NO_KEY.format(env=KEY_ENV, n=MIN_KEY_CHARS, path=path)) from None
    except OSError as error:
        raise IpviError(f"cannot read the site key file {path}: {error.strerror}") from None
    return _checked(text, str(path))


def _checked(text: str, where: str) -> SiteKey:
    if len(text) < MIN_KEY_CHARS:
        raise IpviError(SHORT_KEY.format(where=where, n=MIN_KEY_CHARS))
    return SiteKey(secret=text.encode("utf-8"), source=where)


def _create(path: Path) -> None:
    """A new random key, written in full under a temporary name and then linked into place:
    of two processes creating it at once, the second keeps the first one's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process's key won
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def legacy_hash(value: str) -> str:
    """The unkeyed SHA-256 that versions before the site key stored (read, never written:
    purge and ingest still recognise such rows)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
