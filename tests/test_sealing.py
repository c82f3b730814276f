"""Sealing a token with Airflow's Fernet key for its hand-over through XCom, and unsealing it again."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from airflow.sdk.crypto import get_fernet
from cryptography.fernet import Fernet, InvalidToken

from parkmobile_token.exceptions import TokenSealError
from parkmobile_token.sealing import seal_token, unseal_token

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TOKEN = "pmTOKEN-seal-93c1d7-SEKRIT"
FERNET_ENV = "AIRFLOW__CORE__FERNET_KEY"


@pytest.fixture
def use_fernet_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Switch Airflow's Fernet key in this process; ``get_fernet`` caches its answer, so clear it."""

    def use(key: str) -> None:
        monkeypatch.setenv(FERNET_ENV, key)
        get_fernet.cache_clear()

    get_fernet.cache_clear()
    yield use
    get_fernet.cache_clear()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(TOKEN, id="plain"),
        pytest.param("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwbSJ9.c2lnbmF0dXJl-SEKRIT", id="jwt-like"),
        pytest.param("t\u00f6k\u20acn-SEKRIT", id="non-ascii"),
        pytest.param("x" * 4096 + "-SEKRIT", id="4k-chars"),
    ],
)
def test_seal_and_unseal_round_trip_without_showing_the_token(
    use_fernet_key: Callable[[str], None], token: str
) -> None:
    use_fernet_key(Fernet.generate_key().decode())

    sealed = seal_token(token)

    assert sealed.isascii()
    assert token not in sealed
    assert "SEKRIT" not in sealed
    assert unseal_token(sealed) == token


def test_sealing_twice_gives_different_texts(use_fernet_key: Callable[[str], None]) -> None:
    use_fernet_key(Fernet.generate_key().decode())

    assert seal_token(TOKEN) != seal_token(TOKEN)


def test_seal_without_a_key_is_refused_naming_fernet_key(use_fernet_key: Callable[[str], None]) -> None:
    use_fernet_key("")

    with pytest.raises(TokenSealError) as excinfo:
        seal_token(TOKEN)

    assert "fernet_key" in str(excinfo.value)
    assert TOKEN not in str(excinfo.value)


def test_unseal_without_a_key_is_refused_rather_than_passed_through(
    use_fernet_key: Callable[[str], None],
) -> None:
    use_fernet_key(Fernet.generate_key().decode())
    sealed = seal_token(TOKEN)
    use_fernet_key("")

    # Without a key Airflow's stand-in "decrypts" to the input itself; that must not pass as a token.
    with pytest.raises(TokenSealError, match="fernet_key"):
        unseal_token(sealed)
    with pytest.raises(TokenSealError, match="fernet_key"):
        unseal_token(TOKEN)


def test_unseal_with_another_key_is_refused_without_the_token(use_fernet_key: Callable[[str], None]) -> None:
    use_fernet_key(Fernet.generate_key().decode())
    sealed = seal_token(TOKEN)
    use_fernet_key(Fernet.generate_key().decode())

    with pytest.raises(TokenSealError) as excinfo:
        unseal_token(sealed)

    assert TOKEN not in str(excinfo.value)
    assert sealed not in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, InvalidToken)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda sealed: sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB"), id="changed"
        ),
        pytest.param(lambda sealed: sealed[: len(sealed) // 2], id="truncated"),
        pytest.param(lambda sealed: "not a sealed token", id="garbage"),
        pytest.param(lambda sealed: "", id="empty"),
        pytest.param(lambda sealed: sealed + "\u00e9", id="non-ascii"),
    ],
)
def test_unseal_of_a_damaged_text_is_refused_without_the_token(
    use_fernet_key: Callable[[str], None], tamper: Callable[[str], str]
) -> None:
    use_fernet_key(Fernet.generate_key().decode())
    damaged = tamper(seal_token(TOKEN))

    with pytest.raises(TokenSealError) as excinfo:
        unseal_token(damaged)

    assert TOKEN not in str(excinfo.value)


def test_unseal_accepts_a_token_sealed_with_a_key_still_listed_after_rotation(
    use_fernet_key: Callable[[str], None],
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    use_fernet_key(old_key)
    sealed = seal_token(TOKEN)
    use_fernet_key(f"{new_key},{old_key}")

    assert unseal_token(sealed) == TOKEN
