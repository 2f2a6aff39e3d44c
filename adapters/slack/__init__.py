"""Slack: cards in Block Kit, clicks through Bolt, calls through slack_sdk."""

from adapters.slack.adapter import SlackAdapter
from adapters.slack.surface import EVENTS_PATH, SlackSurface

__all__ = ["EVENTS_PATH", "SlackAdapter", "SlackSurface"]
