"""The bounds an order obeys, in one place: the web checks requests against them and every
consumer checks messages against them again (a message is trusted no more than a request).

The settings `MAX_QUANTITY_PER_LINE` and `MAX_UNITS_PER_ORDER` tighten the web's intake;
a message is held to the hard ceilings below, which no setting may exceed.
"""

from __future__ import annotations

from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field, StrictInt, StrictStr

#: No quantity setting may exceed this: it keeps totals far inside a 64-bit integer.
QUANTITY_CEILING = 1_000_000
#: Most lines in one order.
MAX_LINES = 50
#: Longest SKU (the stores' column width).
MAX_SKU = 64
#: Longest product name carried in an event.
MAX_NAME = 200
#: Highest unit price, in cents (with QUANTITY_CEILING and MAX_LINES, totals stay in 64 bits).
MAX_PRICE_CENTS = 100_000_000
#: Longest address (RFC 5321's path limit, the stores' column width).
MAX_EMAIL = 254
#: Longest id (events, orders, traces).
MAX_ID = 64
#: Longest reason a service result carries; longer ones are cut.
MAX_REASON = 2000


def ses_address(value: str) -> str:
    """An address SES can send to, normalized: ASCII only (SES does not take SMTPUTF8, and
    look-alike letters from other scripts are refused with it); an international domain
    only in its ASCII (punycode, `xn--`) form.

    :raise ValueError: naming what is wrong, for pydantic to report.
    """
    if not value.isascii():
        raise ValueError("must be ASCII: SES sends only to ASCII addresses (punycode domains)")
    if len(value) > MAX_EMAIL:
        raise ValueError(f"at most {MAX_EMAIL} characters")
    try:
        parts = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise ValueError(f"value is not a valid email address: {error}") from None
    # `normalized` would turn a punycode domain back into Unicode.
    return str(parts.ascii_email)


Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID, pattern=r"^[A-Za-z0-9_.:-]+$")]
Sku = Annotated[StrictStr, Field(min_length=1, max_length=MAX_SKU)]
Quantity = Annotated[StrictInt, Field(ge=1, le=QUANTITY_CEILING)]
SesAddress = Annotated[StrictStr, AfterValidator(ses_address)]

#: Most SKUs the analytics summary reports (the best sellers by units).
SUMMARY_SKUS = 20
#: How many recent minutes the analytics summary reports.
SUMMARY_MINUTES = 60
#: Largest count or amount a result may report (a 64-bit integer).
MAX_COUNT = 2**63 - 1
