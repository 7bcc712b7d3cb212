"""Ed25519 signatures over a bundle's manifest digest, for fleets that must run only what they published.

The manifest digest covers every field and, through each file's sha256, every file; signing the digest
therefore signs the whole bundle. Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public), made by
`edgecls keygen`; the private key stays on the build machine, the public key goes to the robots
($EDGECLS_PUBLIC_KEY or `Classifier.load(..., public_key=...)`). Uses `cryptography` (pyca), never
home-made cryptography.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from edgecls.errors import ConfigError, SignatureError

ALGORITHM = "ed25519"
_CONTEXT = b"edgecls-manifest\n"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - cryptography is a dependency
        raise ConfigError("bundle signatures need the `cryptography` package: pip install cryptography") from exc
    return serialization, ed25519


def key_id(public_key) -> str:
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(path: str | os.PathLike) -> tuple[Path, Path]:
    """Write a new private key to `path` (mode 0600) and its public key to `path` + `.pub`; refuse to overwrite."""
    from edgecls.fileio import atomic_write_bytes

    serialization, ed25519 = _crypto()
    path, public = Path(path), Path(f"{path}.pub")
    for p in (path, public):
        if p.exists():
            raise ConfigError(f"{p} exists; keygen never overwrites a key (a lost private key cannot be recovered)")
    private_key = ed25519.Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write_bytes(path, pem, private=True)  # 0600 from the first byte: no other user can read it mid-write
    atomic_write_bytes(public, public_key_pem(private_key.public_key()).encode())
    return path, public


def _pem(source) -> bytes:
    if isinstance(source, bytes):
        return source
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"key file {path} not found")
    return path.read_bytes()


def load_public_key(source):
    """An Ed25519 public key from a key object, PEM bytes or a PEM file path."""
    serialization, ed25519 = _crypto()
    if isinstance(source, ed25519.Ed25519PublicKey):
        return source
    try:
        key = serialization.load_pem_public_key(_pem(source))
    except ValueError as exc:
        raise ConfigError(
            f"{source!r:.80} is not a PEM public key ({exc}); use the .pub file `edgecls keygen` wrote"
        ) from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{source!r:.80} is a {type(key).__name__}; edgecls bundles are signed with Ed25519 keys")
    return key


def public_key_pem(source) -> str:
    """The PEM text (SubjectPublicKeyInfo) of a public key given as `load_public_key` takes it."""
    serialization, _ = _crypto()
    pem = load_public_key(source).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def load_private_key(source):
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(_pem(source), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{source} is not an unencrypted PEM private key ({exc}); make one with `edgecls keygen`"
        ) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{source} is a {type(key).__name__}; edgecls bundles are signed with Ed25519 keys")
    return key


def sign_manifest(manifest: dict, private_key) -> dict:
    """The signature block for a sealed manifest."""
    signature = private_key.sign(_CONTEXT + manifest["digest"].encode())
    return {
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "value": base64.b64encode(signature).decode(),
    }


def verify_manifest(manifest: dict, public_key, path: Path) -> None:
    """Raise SignatureError unless `manifest` carries a valid signature by `public_key` over its (checked) digest."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key)
    block = manifest.get("signature")
    if not isinstance(block, dict) or not isinstance(block.get("value"), str):
        raise SignatureError(
            f"{path} is not signed, and a public key was given ({key_id(key)}), so only signed bundles load. "
            "Sign it on the build machine: edgecls sign BUNDLE --key KEY"
        )
    if block.get("algorithm") != ALGORITHM:
        raise SignatureError(f"{path} is signed with {block.get('algorithm')!r}; edgecls accepts {ALGORITHM} only")
    try:
        key.verify(base64.b64decode(block["value"], validate=True), _CONTEXT + manifest["digest"].encode())
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(
            f"{path}: the signature (key {block.get('key_id')}) does not verify with the trusted key "
            f"{key_id(key)}: the bundle was signed by another key or altered after signing. Do not run it; "
            "fetch the published bundle again."
        ) from exc
