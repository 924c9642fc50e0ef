"""Numbers beyond what a posting or a price can be are refused by the schemas (a 422 naming the field),
never passed on to the JSON encoder or the database, where a 64-bit overflow was a 500."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from services.loyalty.household_routes import PoolTransferIn
from services.loyalty.rules.schemas import PurchaseIn
from services.loyalty.schemas import AdjustIn, TransferIn

HUGE = 2**64


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (PoolTransferIn, {"from_member_id": "a", "to_member_id": "b", "points": HUGE}, "points"),
        (TransferIn, {"to_member_id": "b", "points": HUGE}, "points"),
        (AdjustIn, {"points": -HUGE, "reason": "goodwill"}, "points"),
        (PurchaseIn, {"currency": "EUR", "total_minor": HUGE}, "total_minor"),
    ],
)
def test_out_of_range_numbers_name_their_field(
    model: type[BaseModel], body: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    assert field in {str(error["loc"][0]) for error in refused.value.errors()}


def test_real_amounts_still_pass() -> None:
    assert AdjustIn.model_validate({"points": -500, "reason": "goodwill"}).points == -500
    assert TransferIn.model_validate({"to_member_id": "b", "points": 1_000_000}).points == 1_000_000
