"""One SoftHSM2 token per test process, shared by the pkcs11 KMS tests and the HSM-backed CA tests.

SoftHSM2 reads SOFTHSM2_CONF once, when the library is first initialised in a process, and the
pkcs11 plugin keeps the loaded library for the life of the process: two test modules with two
token directories would see only the first. So the token is made once per process (the
variable stays set for the rest of it) and every module uses it.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile

import pytest

LIBRARY = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "scaivault-test"
PIN = "4321"
AES_KEYS = ("root-a", "root-b")


@functools.lru_cache(maxsize=1)
def softhsm_token() -> dict:
    """{"slot", "conf"} of the process's token, with the AES keys root-a and root-b for the KMS."""
    if not os.path.exists(LIBRARY):
        pytest.fail("SoftHSM2 is missing: apt-get install softhsm2 (tests/run.sh does)")
    root = tempfile.mkdtemp(prefix="softhsm-")
    atexit.register(shutil.rmtree, root, True)
    os.mkdir(os.path.join(root, "tokens"))
    conf = os.path.join(root, "softhsm2.conf")
    with open(conf, "w") as fh:
        fh.write(f"directories.tokendir = {root}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = conf     # read by the SoftHSM2 library itself when it is loaded
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "8765"],
                   check=True, capture_output=True)
    import PyKCS11

    lib = PyKCS11.PyKCS11Lib()
    lib.load(LIBRARY)
    slot = next(s for s in lib.getSlotList(tokenPresent=True) if lib.getTokenInfo(s).label.strip() == TOKEN)
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    session.login(PIN)
    for label in AES_KEYS:
        session.generateKey([
            (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES),
            (PyKCS11.CKA_VALUE_LEN, 32), (PyKCS11.CKA_LABEL, label), (PyKCS11.CKA_TOKEN, PyKCS11.CK_TRUE),
            (PyKCS11.CKA_SENSITIVE, PyKCS11.CK_TRUE), (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_FALSE),
            (PyKCS11.CKA_ENCRYPT, PyKCS11.CK_TRUE), (PyKCS11.CKA_DECRYPT, PyKCS11.CK_TRUE),
        ], PyKCS11.MechanismAESGENERATEKEY)
    session.logout()
    session.closeSession()
    return {"slot": slot, "conf": conf}


def write_pin_file(directory) -> str:
    path = os.path.join(str(directory), "hsm-pin")
    with open(path, "w") as fh:
        fh.write(PIN + "\n")
    os.chmod(path, 0o600)
    return path


def pkcs11_env(pin_file: str, label: str = "root-a", **extra) -> dict:
    """KMS variables selecting the pkcs11 provider on the test token (None removes a variable)."""
    return {"KMS_PROVIDER": "pkcs11", "KMS_LIBRARY": LIBRARY, "KMS_TOKEN_LABEL": TOKEN, "KMS_LABEL": label,
            "KMS_PIN_FILE": pin_file, "KMS_LOCAL_KEY_FILE": None, **extra}
