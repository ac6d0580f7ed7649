"""The designs under test, one module per target."""
