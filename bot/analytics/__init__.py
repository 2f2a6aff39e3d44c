"""Analytics over the decisions in the store: weekly reports, flags, charts, export."""
