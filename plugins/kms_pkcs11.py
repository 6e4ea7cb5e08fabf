"""`pkcs11` KMS provider: an AES-256 key inside an HSM, AES-GCM encrypt/decrypt via PyKCS11.

KMS_LIBRARY (PKCS#11 module), KMS_TOKEN_LABEL (token, found by label: SoftHSM2 and many HSMs
renumber slots) or KMS_SLOT (slot id), KMS_LABEL (key label), KMS_PIN_FILE (user PIN).
AES-GCM through C_Encrypt, because SoftHSM2 (and others) refuse GCM in C_WrapKey; the key is
sensitive and non-extractable. The PIN is read from its file and never logged.
"""
from __future__ import annotations

import hmac
import os
import threading

from scaivault.config import ConfigError
from scaivault.crypto.errors import KmsError, KmsUnavailable, KmsWrongKey
from scaivault.crypto.kms import KmsProvider, missing_sdk, read_secret_file, require_option
from scaivault.plugins import hookimpl

FORMAT = b"P1"
SESSION_LOST = {"CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED", "CKR_USER_NOT_LOGGED_IN"}
WRONG_KEY = {"CKR_GENERAL_ERROR", "CKR_ENCRYPTED_DATA_INVALID", "CKR_ENCRYPTED_DATA_LEN_RANGE",
             "CKR_DATA_INVALID", "CKR_DATA_LEN_RANGE"}


def _rv(exc) -> str:
    import PyKCS11

    return PyKCS11.CKR.get(getattr(exc, "value", None), str(exc))


class _Token:
    """One logged-in session per (module, slot) per process: PKCS#11 login state is per token
    and application, so every provider on that token shares it (and its lock)."""

    def __init__(self, lib, slot: int, pin: str):
        self.lock = threading.Lock()
        self.pin = pin
        self.lib = lib
        self.slot = slot
        self.generation = 0
        self.open()

    def open(self) -> None:
        """A new logged-in session (at start, and after the HSM dropped the previous one)."""
        import PyKCS11

        try:
            self.session = self.lib.openSession(self.slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
            self.generation += 1
            self.session.login(self.pin)
        except PyKCS11.PyKCS11Error as exc:
            code = _rv(exc)
            if code == "CKR_PIN_INCORRECT":
                raise KmsError("the HSM refused the PIN from KMS_PIN_FILE (CKR_PIN_INCORRECT)") from None
            if code != "CKR_USER_ALREADY_LOGGED_IN":
                raise KmsUnavailable(f"cannot open an HSM session ({code})") from None


_LIBS: dict[str, object] = {}
_TOKENS: dict[tuple[str, int], _Token] = {}
_REGISTRY_LOCK = threading.Lock()
_REGISTRY_PID = os.getpid()


def _forget_after_fork() -> None:
    # PKCS#11 sessions do not survive fork (gunicorn forks workers after first boot opened
    # one): a child starts its own module instance and session
    global _REGISTRY_PID
    if os.getpid() != _REGISTRY_PID:
        _LIBS.clear()
        _TOKENS.clear()
        _REGISTRY_PID = os.getpid()


class Pkcs11Key(KmsProvider):
    name = "pkcs11"

    def __init__(self, library: str, token_label: str | None, slot: int | None, key_label: str, pin: str):
        super().__init__(key_label)
        import PyKCS11

        self._p = PyKCS11
        with _REGISTRY_LOCK:
            _forget_after_fork()
            self._lib = _LIBS.get(library)
            if self._lib is None:
                lib = PyKCS11.PyKCS11Lib()
                try:
                    lib.load(library)
                except PyKCS11.PyKCS11Error:
                    raise ConfigError("KMS_LIBRARY", f"cannot load the PKCS#11 module {library}") from None
                self._lib = _LIBS[library] = lib
            self._slot = self._find_slot(token_label, slot)
            token = _TOKENS.get((library, self._slot))
            if token is None:
                token = _TOKENS[(library, self._slot)] = _Token(self._lib, self._slot, pin)
            elif not hmac.compare_digest(token.pin.encode(), pin.encode()):
                raise KmsError("the HSM refused the PIN from KMS_PIN_FILE (CKR_PIN_INCORRECT)")
        self._token = token
        self._lock = token.lock
        with self._lock:
            self._find_key()

    def _find_key(self) -> None:
        p = self._p
        keys = self._token.session.findObjects([(p.CKA_CLASS, p.CKO_SECRET_KEY), (p.CKA_LABEL, self.key_ref)])
        if not keys:
            raise KmsError(f"the HSM token has no secret key labelled {self.key_ref!r}")
        self._key = keys[0]
        self._generation = self._token.generation

    def _find_slot(self, token_label: str | None, slot: int | None) -> int:
        p = self._p
        try:
            slots = self._lib.getSlotList(tokenPresent=True)
            if token_label:
                for candidate in slots:
                    if self._lib.getTokenInfo(candidate).label.strip() == token_label:
                        return candidate
                raise KmsUnavailable(f"no HSM token labelled {token_label!r} is present")
            if slot is not None:
                if slot not in slots:
                    raise KmsUnavailable(f"HSM slot {slot} has no token")
                return slot
        except p.PyKCS11Error as exc:
            raise KmsUnavailable(f"the HSM does not answer ({_rv(exc)})") from None
        if not slots:
            raise KmsUnavailable("no HSM token is present")
        return slots[0]

    def _run(self, operation: str, data: bytes, iv: bytes, aad: bytes) -> bytes:
        p = self._p
        mechanism = p.AES_GCM_Mechanism(iv, aad, 128)
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._generation != self._token.generation:
                        self._find_key()           # another provider re-opened the shared session
                    return bytes(getattr(self._token.session, operation)(self._key, data, mechanism))
                except p.PyKCS11Error as exc:
                    code = _rv(exc)
                    if code in WRONG_KEY:
                        raise KmsWrongKey(f"HSM key {self.key_ref} cannot decrypt this value ({code})") from None
                    if code in SESSION_LOST and attempt == 1:
                        # the HSM restarted or dropped the session: log in again once
                        self._token.open()
                        self._find_key()
                        continue
                    if code in SESSION_LOST or code in ("CKR_DEVICE_REMOVED", "CKR_TOKEN_NOT_PRESENT", "CKR_DEVICE_ERROR"):
                        raise KmsUnavailable(f"the HSM is unavailable ({code})") from None
                    raise KmsError(f"the HSM refused the operation ({code})") from None
        raise AssertionError("unreachable")

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        iv = os.urandom(12)
        return FORMAT + iv + self._run("encrypt", plaintext, iv, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if wrapped[:2] != FORMAT or len(wrapped) < 2 + 12 + 16:
            raise KmsWrongKey("not a pkcs11-provider ciphertext")
        return self._run("decrypt", wrapped[14:], wrapped[2:14], aad)

    def close(self) -> None:
        # the token session is shared by every provider of this process; it lives as long as it
        return None


def create(settings, key_ref: str | None) -> Pkcs11Key:
    try:
        import PyKCS11  # noqa: F401
    except ImportError:
        raise missing_sdk("pkcs11", "PyKCS11", "pkcs11") from None
    opts = settings.kms_options
    library = require_option(settings, "KMS_LIBRARY")
    slot = opts.get("KMS_SLOT")
    if slot is not None and not (slot.strip().isascii() and slot.strip().isdigit()):
        raise ConfigError("KMS_SLOT", f"must be a slot number, got {slot!r}")
    pin = read_secret_file("KMS_PIN_FILE", require_option(settings, "KMS_PIN_FILE"))
    return Pkcs11Key(library, opts.get("KMS_TOKEN_LABEL"), int(slot) if slot else None,
                     key_ref or require_option(settings, "KMS_LABEL", "KMS_KEY_ID"), pin)


@hookimpl
def scaivault_kms_providers():
    return {"pkcs11": create}
