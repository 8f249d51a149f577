"""Pydantic v2 models of every topic and of the settings; (de)serialisation; JSON Schema.

This package imports neither bytewax, Kafka nor River: it is the contract.
"""
