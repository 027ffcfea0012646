"""The base class of every generated contract model (datamodel-codegen `base-class`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator


class ContractModel(BaseModel):
    """A Pydantic model that reads JSON the way JSON Schema does.

    Integers and booleans are strict (`"10"` and `0` are not accepted for them), yet JSON
    Schema counts `10.0` as an integer, so integral numbers are read as integers. The
    contract has no `number` fields, so no other field is affected.
    """

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers_are_integers(cls, data: Any) -> Any:
        # Each nested model applies this to its own fields when it is validated.
        if isinstance(data, dict):
            return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in data.items()}
        return data
