"""signatures of mutating requests, so that a replay gets the first answer

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 21:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signatures",
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("expires_at", "digest", name=op.f("pk_signatures")),
        # on SQLite the rows live in the primary key's tree itself: one tree per insert
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("signatures")
