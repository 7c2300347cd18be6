"""Ed25519 key files: an agency's signing key and the deployment's log key.

A private key is stored as unencrypted PKCS#8 PEM in a file created with mode 0600 (it
is written through a file descriptor opened with that mode, so it is never readable by
others, not even for a moment); a public key as SubjectPublicKeyInfo PEM. Nothing here
logs or formats a private key: errors name the path only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contract.errors import ConfigError
from contract.signing import key_id

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "create_private_key",
    "key_id_of",
    "load_private_key",
    "load_public_key",
    "parse_public_key",
    "public_pem",
    "public_raw",
]


def public_raw(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32 bytes of a public key (of a private key: its public half)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The key id of a key (see :func:`contract.signing.key_id`)."""
    return key_id(public_raw(key))


def public_pem(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The public key as SubjectPublicKeyInfo PEM."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def create_private_key(path: Path) -> Ed25519PrivateKey:
    """Generate a key and write it to a new file with mode 0600 (directories are made).

    Raises:
        ConfigError: the file exists already (a key is never overwritten) or cannot be
            written.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(
            f"key file {str(path)!r} exists already; it is never overwritten"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot create key file {str(path)!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key file written by :func:`create_private_key` (or any PKCS#8 PEM).

    Raises:
        ConfigError: missing, unreadable, readable by others than its owner, or not an
            Ed25519 private key.
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {str(path)!r}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"key file {str(path)!r} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):o}); run chmod 600 on it"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"key file {str(path)!r} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"key file {str(path)!r} is not an Ed25519 key")
    return key


def parse_public_key(data: bytes, what: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, or from 32 raw bytes given as base64url/hex text.

    Raises:
        ConfigError: ``what`` (a path or a label) holds no Ed25519 public key.
    """
    from contract.signing import b64decode

    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            s = text.decode("ascii")
            raw = bytes.fromhex(s) if len(s) == 64 else b64decode(s)
            if raw is None or len(raw) != 32:
                raise ValueError("not 32 bytes")
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, UnicodeDecodeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{what} holds no Ed25519 public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{what} is not an Ed25519 public key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key file (PEM, or the base64url of the 32 raw bytes)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read public key file {str(path)!r}: {exc.strerror}") from exc
    return parse_public_key(data, f"public key file {str(path)!r}")
