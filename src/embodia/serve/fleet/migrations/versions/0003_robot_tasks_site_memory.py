"""Tasks queued for robots, and each site's shared scene memory.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "robot_tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("robot_id", sa.String(32), sa.ForeignKey("robots.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("ix_robot_tasks_robot_id", "robot_tasks", ["robot_id"])
    op.create_table(
        "site_objects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("robot_id", sa.String(32), sa.ForeignKey("robots.id"), nullable=True),
        sa.Column("seen_at", TS, nullable=False),
        sa.UniqueConstraint("site", "name"),
    )


def downgrade() -> None:
    op.drop_table("site_objects")
    op.drop_index("ix_robot_tasks_robot_id", "robot_tasks")
    op.drop_table("robot_tasks")
