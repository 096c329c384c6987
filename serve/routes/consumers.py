"""The registered consumers (the other papers' models) and their params schemas."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from contracts import registry
from serve.deps import key_id
from serve.models import ConsumerInfo, ConsumerList
from serve.routes import errors

router = APIRouter(prefix="/v1/consumers", tags=["consumers"], dependencies=[Depends(key_id)], responses=errors(401))


def find_consumer(name: str) -> registry.Consumer:
    try:
        return registry.get(name)
    except registry.UnknownConsumer as e:
        raise HTTPException(404, str(e)) from None


Consumer = Annotated[registry.Consumer, Depends(find_consumer)]


def info(c: registry.Consumer) -> dict:
    return c.info() | {"links": {"runs": f"/v1/consumers/{c.name}/runs"}}


@router.get("", response_model=ConsumerList)
def list_consumers():
    """The registered consumers, each with the JSON schema of its params."""
    return {"consumers": [info(c) for c in registry.consumers()]}


@router.get("/{name}", response_model=ConsumerInfo, responses=errors(404))
def get_consumer(consumer: Consumer):
    """One consumer and the JSON schema of its params."""
    return info(consumer)
