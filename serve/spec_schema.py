"""The job spec's JSON schema placed in OpenAPI's components, so every `$ref` in a request body resolves."""

from __future__ import annotations

from functools import cache

from pipeline.spec import JobSpec

REF = "#/components/schemas/{model}"


@cache
def spec_components() -> tuple[dict, dict]:
    """(JobSpec's schema, its definitions) with refs into #/components/schemas."""
    schema = JobSpec.model_json_schema(ref_template=REF)
    defs = schema.pop("$defs", {})
    return schema, defs


SPEC_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": REF.format(model="JobSpec")}},
    "application/yaml": {"schema": {"$ref": REF.format(model="JobSpec")}}}}}

PARAMS_BODY = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": {"type": "object", "description": "The consumer's params (GET /v1/consumers "
                                    "lists each one's schema), or a whole job spec of kind `consumer`."}},
    "application/yaml": {"schema": {"type": "object"}}}}}


def add_to(openapi: dict) -> dict:
    schema, defs = spec_components()
    openapi.setdefault("components", {}).setdefault("schemas", {}).update(defs | {"JobSpec": schema})
    return openapi
