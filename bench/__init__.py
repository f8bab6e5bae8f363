"""The serving benchmark (bench/README.md)."""
