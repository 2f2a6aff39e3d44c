"""The store: tables, engine set-up, migrations, and the queries the service runs."""
