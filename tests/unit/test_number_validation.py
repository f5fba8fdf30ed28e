"""ID-card and bank-card numbers are checked (python-stdnum) before they become "the
scammer's account". Every number here is generated with stdnum's check-digit functions
from made-up digits: no real person's number."""

from __future__ import annotations

import pytest
from stdnum import luhn
from stdnum.cn import ric

from actions import parsing

# 镇海区 (330211), born 1990-03-07, sequence 002: the check digit comes from stdnum.
ID_BASE = "33021119900307002"
ID_VALID = ID_BASE + ric.calc_check_digit(ID_BASE + "0")
ID_MISTYPED = ID_BASE + next(d for d in "0123456789X" if d != ID_VALID[-1])


def card(prefix: str, length: int, *, valid: bool = True) -> str:
    body = (prefix + "31415926535897932384")[: length - 1]
    check = luhn.calc_check_digit(body)
    return body + (check if valid else str((int(check) + 1) % 10))


# One whose check character is X (sequence chosen so that it is).
ID_X = next(
    number
    for number in (f"330211198512150{n:02d}" for n in range(100))
    if ric.calc_check_digit(number + "0") == "X"
)
ID_X += "X"

CARD_16 = card("622202", 16)
CARD_19 = card("621700", 19)
CARD_BAD = card("622848", 19, valid=False)
# An 18-digit card whose digits after the BIN look like a birth date, from a BIN that is
# no county code: a card, not an ID.
CARD_18_DATELIKE = card("62220219900307", 18)


def test_the_generated_numbers_are_what_they_claim():
    assert ric.is_valid(ID_VALID) and not ric.is_valid(ID_MISTYPED) and ric.is_valid(ID_X)
    assert all(luhn.is_valid(n) for n in (CARD_16, CARD_19, CARD_18_DATELIKE))
    assert not luhn.is_valid(CARD_BAD)


def test_id_card_check_digit():
    assert parsing.is_valid_id_card(ID_VALID)
    assert not parsing.is_valid_id_card(ID_MISTYPED)
    assert parsing.looks_like_id_card(ID_VALID) and parsing.looks_like_id_card(ID_MISTYPED)
    assert not parsing.looks_like_id_card(CARD_18_DATELIKE)  # 622202 is no county


def test_luhn():
    assert parsing.is_luhn_valid(CARD_16) and parsing.is_luhn_valid("6222 " + CARD_16[4:])
    assert not parsing.is_luhn_valid(CARD_BAD)
    assert not parsing.is_luhn_valid("")


@pytest.mark.parametrize(
    "text, accounts",
    [
        (f"转到卡号{CARD_16}了", [CARD_16]),
        (
            f"卡号{CARD_19[:4]} {CARD_19[4:8]} {CARD_19[8:12]} {CARD_19[12:16]} {CARD_19[16:]}",
            [CARD_19],
        ),
        (f"他的身份证{ID_VALID}", []),  # a valid ID card is never an account
        (f"他的身份证{ID_MISTYPED}", []),  # nor a mistyped one
        (f"身份证{ID_X}，卡{CARD_16}", [CARD_16]),
        (f"身份证{ID_X.lower()}，卡{CARD_16}", [CARD_16]),
        (f"对方账户{CARD_18_DATELIKE}", [CARD_18_DATELIKE]),
        (f"账号{CARD_BAD}", [CARD_BAD]),  # kept, flagged below
    ],
)
def test_find_bank_accounts(text, accounts):
    assert parsing.find_bank_accounts(text) == accounts


def test_luhn_failures_are_kept_but_flagged():
    accounts = parsing.find_bank_accounts(f"先转{CARD_16}，又转{CARD_BAD}")
    assert accounts == [CARD_16, CARD_BAD]
    assert parsing.unverified_accounts(accounts) == [CARD_BAD]


def test_find_id_cards_only_returns_valid_ones():
    text = f"身份证{ID_VALID}，另一个{ID_MISTYPED}，{ID_X.lower()}，卡{CARD_16}"
    assert parsing.find_id_cards(text) == [ID_VALID, ID_X]


def test_the_case_details_flag_accounts_that_fail_luhn():
    from actions import records
    from tests.unit.trackers import tracker

    contact = f"{CARD_16} {CARD_BAD} 身份证{ID_VALID}"
    t = tracker(contact, slots={"scammer_contact": contact, "money_lost": True})
    details = records.details_for(t, "fraud_suspicion")
    assert details["scammer_accounts"] == [CARD_16, CARD_BAD]
    assert details["unverified_accounts"] == [CARD_BAD]
    assert ID_VALID not in details["scammer_accounts"]
