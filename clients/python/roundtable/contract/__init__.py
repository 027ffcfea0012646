"""The contract's models, generated from openapi/openapi.yaml (api) and asyncapi/asyncapi.yaml (events)."""
