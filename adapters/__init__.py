"""Review surfaces: one subpackage per platform, each implementing `bot.protocols.Adapter`."""
