"""`pkcs11` KMS provider: an AES-256 key inside an HSM, AES-GCM encrypt/decrypt via PyKCS11.

KMS_LIBRARY (PKCS#11 module), KMS_TOKEN_LABEL (token, found by label: SoftHSM2 and many HSMs
renumber slots) or KMS_SLOT (slot id), KMS_LABEL (key label), KMS_PIN_FILE (user PIN).
AES-GCM through C_Encrypt, because SoftHSM2 (and others) refuse GCM in C_WrapKey; the key is
sensitive and non-extractable. The PIN is read from its file and never logged.

The same token can hold PKI CA signing keys (`key_storage: hsm`): `Pkcs11Key.signing_keys()`
generates RSA/EC key pairs in the token (sensitive, non-extractable) and signs with them over
the provider's logged-in session; scaivault.pki.signer builds what gets signed.
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

    def signing_keys(self) -> "HsmSigningKeys":
        """The token's asymmetric signing keys, over this provider's shared logged-in session."""
        return HsmSigningKeys(self._p, self._token)

    def close(self) -> None:
        # the token session is shared by every provider of this process; it lives as long as it
        return None


# DER OIDs of the curves PKI CAs use (CKA_EC_PARAMS = namedCurve)
_EC_PARAMS = {256: bytes.fromhex("06082a8648ce3d030107"), 384: bytes.fromhex("06052b81040022")}
SIGN_MECHANISMS = ("CKM_SHA256_RSA_PKCS", "CKM_SHA384_RSA_PKCS", "CKM_ECDSA")


class HsmKeyHandle:
    """One signing key pair in the token, found by CKA_ID; sign() runs inside the HSM."""

    def __init__(self, keys: "HsmSigningKeys", key_id: bytes, key_type: str, public_numbers):
        self.keys = keys
        self.key_id = key_id
        self.key_type = key_type
        self.public_numbers = public_numbers     # (modulus, exponent) for rsa; (curve bits, point) for ec

    def sign(self, mechanism: str, data: bytes) -> bytes:
        """The raw signature: PKCS#1 v1.5 bytes (RSA), r||s (CKM_ECDSA over a digest)."""
        if mechanism not in SIGN_MECHANISMS:
            raise KmsError(f"unsupported signing mechanism {mechanism}")
        p = self.keys.p
        return self.keys.run(lambda session: bytes(session.sign(
            self.keys.private_handle(session, self.key_id), data, p.Mechanism(getattr(p, mechanism), None))))


class HsmSigningKeys:
    """Asymmetric key pairs on the KMS token: generated inside it, never extractable."""

    def __init__(self, p, token: _Token):
        self.p = p
        self.token = token
        self._handles: dict[bytes, tuple[int, object]] = {}

    def run(self, fn):
        """fn(session) under the token lock; a dropped session is re-opened once (as for wrap/unwrap)."""
        p = self.p
        with self.token.lock:
            for attempt in (1, 2):
                try:
                    return fn(self.token.session)
                except p.PyKCS11Error as exc:
                    code = _rv(exc)
                    if code in SESSION_LOST and attempt == 1:
                        self.token.open()
                        self._handles.clear()
                        continue
                    if code in SESSION_LOST or code in ("CKR_DEVICE_REMOVED", "CKR_TOKEN_NOT_PRESENT", "CKR_DEVICE_ERROR"):
                        raise KmsUnavailable(f"the HSM is unavailable ({code})") from None
                    raise KmsError(f"the HSM refused the operation ({code})") from None
        raise AssertionError("unreachable")

    def _find(self, session, key_id: bytes, cls) -> object:
        found = session.findObjects([(self.p.CKA_CLASS, cls), (self.p.CKA_ID, key_id)])
        if not found:
            raise KmsError(f"the HSM token has no signing key with id {key_id.hex()}")
        return found[0]

    def private_handle(self, session, key_id: bytes):
        cached = self._handles.get(key_id)
        if cached is not None and cached[0] == self.token.generation:
            return cached[1]
        handle = self._find(session, key_id, self.p.CKO_PRIVATE_KEY)
        self._handles[key_id] = (self.token.generation, handle)
        return handle

    def generate(self, key_type: str, key_size: int, label: str) -> bytes:
        """A new key pair in the token (private half sensitive, non-extractable); its CKA_ID."""
        p = self.p
        key_id = os.urandom(16)
        common = [(p.CKA_TOKEN, p.CK_TRUE), (p.CKA_LABEL, label), (p.CKA_ID, key_id)]
        private = common + [(p.CKA_CLASS, p.CKO_PRIVATE_KEY), (p.CKA_PRIVATE, p.CK_TRUE),
                            (p.CKA_SENSITIVE, p.CK_TRUE), (p.CKA_EXTRACTABLE, p.CK_FALSE), (p.CKA_SIGN, p.CK_TRUE),
                            (p.CKA_DECRYPT, p.CK_FALSE), (p.CKA_UNWRAP, p.CK_FALSE)]
        public = common + [(p.CKA_CLASS, p.CKO_PUBLIC_KEY), (p.CKA_VERIFY, p.CK_TRUE), (p.CKA_ENCRYPT, p.CK_FALSE),
                           (p.CKA_WRAP, p.CK_FALSE)]
        if key_type == "rsa":
            public += [(p.CKA_KEY_TYPE, p.CKK_RSA), (p.CKA_MODULUS_BITS, key_size),
                       (p.CKA_PUBLIC_EXPONENT, (0x01, 0x00, 0x01))]
            private.append((p.CKA_KEY_TYPE, p.CKK_RSA))
            mechanism = p.Mechanism(p.CKM_RSA_PKCS_KEY_PAIR_GEN, None)
        elif key_type == "ec" and key_size in _EC_PARAMS:
            public += [(p.CKA_KEY_TYPE, p.CKK_EC), (p.CKA_EC_PARAMS, _EC_PARAMS[key_size])]
            private.append((p.CKA_KEY_TYPE, p.CKK_EC))
            mechanism = p.Mechanism(p.CKM_EC_KEY_PAIR_GEN, None)
        else:
            raise KmsError(f"unsupported HSM key shape {key_type} {key_size}")
        self.run(lambda session: session.generateKeyPair(public, private, mechanism))
        return key_id

    def key(self, key_id: bytes) -> HsmKeyHandle:
        """The key pair with this CKA_ID, with its public half read from the token."""
        p = self.p

        def read(session):
            pub = self._find(session, key_id, p.CKO_PUBLIC_KEY)
            key_type = session.getAttributeValue(pub, [p.CKA_KEY_TYPE])[0]
            if key_type == p.CKK_RSA:
                modulus, exponent = session.getAttributeValue(pub, [p.CKA_MODULUS, p.CKA_PUBLIC_EXPONENT],
                                                              allAsBinary=True)
                return HsmKeyHandle(self, key_id, "rsa", (int.from_bytes(bytes(modulus), "big"),
                                                          int.from_bytes(bytes(exponent), "big")))
            params, point = session.getAttributeValue(pub, [p.CKA_EC_PARAMS, p.CKA_EC_POINT], allAsBinary=True)
            bits = next((b for b, der in _EC_PARAMS.items() if der == bytes(params)), None)
            if bits is None:
                raise KmsError("the HSM key uses an unsupported curve")
            return HsmKeyHandle(self, key_id, "ec", (bits, bytes(point)))

        return self.run(read)

    def destroy(self, key_id: bytes) -> None:
        """Remove both halves of a key pair (one no CA row names, after a failed creation)."""
        p = self.p

        def remove(session):
            for cls in (p.CKO_PRIVATE_KEY, p.CKO_PUBLIC_KEY):
                for obj in session.findObjects([(p.CKA_CLASS, cls), (p.CKA_ID, key_id)]):
                    session.destroyObject(obj)
            self._handles.pop(key_id, None)

        self.run(remove)

    def attributes(self, key_id: bytes, names: tuple[str, ...]) -> dict[str, object]:
        """Boolean attributes of the private key (CKA_SENSITIVE, CKA_EXTRACTABLE, ...): for checks and tests."""
        p = self.p

        def read(session):
            values = session.getAttributeValue(self.private_handle(session, key_id), [getattr(p, n) for n in names])
            return dict(zip(names, values))

        return self.run(read)


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
