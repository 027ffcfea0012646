"""The contract diff: what changed in openapi/ and asyncapi/ since a git revision, classified."""
