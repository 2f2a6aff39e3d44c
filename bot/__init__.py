"""Signoff: a self-hosted chat-ops approval bot for human-in-the-loop AI workflows."""

__version__ = "0.1.0"
