"""Target-gap reports: the report model, how it is built from the service, and its formats."""
