"""Encrypt a token with Airflow's Fernet key for its hand-over between tasks through XCom."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.fernet import InvalidToken

from parkmobile_token.exceptions import TokenSealError

if TYPE_CHECKING:
    from airflow.sdk.crypto import FernetProtocol

_NO_KEY_MESSAGE = (
    "No Fernet key is configured ([core] fernet_key, or AIRFLOW__CORE__FERNET_KEY), so the token "
    "cannot be encrypted for its hand-over through XCom; refusing to pass it in plain text. Generate a "
    "key with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def seal_token(token: str) -> str:
    """Encrypt ``token`` with Airflow's Fernet key; refuse when no key is configured."""
    return _fernet().encrypt(token.encode("utf-8")).decode("ascii")


def unseal_token(sealed: str) -> str:
    """Decrypt a token sealed by :func:`seal_token` in this deployment."""
    try:
        return _fernet().decrypt(sealed.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as err:
        raise TokenSealError(
            "The sealed token cannot be decrypted with the configured Fernet key; was the key changed "
            "between the fetch and the store? Run the whole DAG again."
        ) from err


def _fernet() -> FernetProtocol:
    from airflow.sdk.crypto import get_fernet

    fernet = get_fernet()
    if not fernet.is_encrypted:
        raise TokenSealError(_NO_KEY_MESSAGE)
    return fernet
