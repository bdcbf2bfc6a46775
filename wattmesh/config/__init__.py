"""The agent's and the ledger's configuration files: schemas, loading, validation."""
