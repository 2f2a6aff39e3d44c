"""Shipped policy files and the schema every policy file is checked against."""

from pathlib import Path

DEFAULT_POLICY = Path(__file__).with_name("default.yaml")
