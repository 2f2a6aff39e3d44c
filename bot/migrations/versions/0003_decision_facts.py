"""the case's dimensions on each decision, for reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPIED = ("kind", "lane", "confidence", "blind_review", "created_at", "due_at")


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lane", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("blind_review", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("case_created_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("due_at", sa.DateTime(), nullable=True))
    # Decisions made before this revision get their case's values (one pass per column,
    # in SQL that SQLite and PostgreSQL both take).
    for column in COPIED:
        target = "case_created_at" if column == "created_at" else column
        op.execute(
            f"UPDATE decisions SET {target} = "  # noqa: S608 - fixed column names
            f"(SELECT cases.{column} FROM cases WHERE cases.id = decisions.case_id)"
        )


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        for column in ("due_at", "case_created_at", "blind_review", "confidence", "lane", "kind"):
            batch_op.drop_column(column)
