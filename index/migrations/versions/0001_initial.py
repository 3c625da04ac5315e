"""Initial catalog: collections, videos, segments, jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", big_id, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("encoder_spec", sa.String(500), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
    )
    op.create_table(
        "videos",
        sa.Column("id", big_id, primary_key=True),
        sa.Column(
            "collection_id",
            sa.BigInteger(),
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("duration_s", sa.Float()),
        sa.Column("fps", sa.Float()),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("n_clips", sa.Integer()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("feature_shard", sa.Integer()),
        sa.Column("feature_offset", sa.BigInteger()),
        sa.Column("feature_length", sa.Integer()),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.UniqueConstraint("collection_id", "sha256", name="uq_videos_collection_sha256"),
    )
    op.create_index("ix_videos_collection_status", "videos", ["collection_id", "status"])
    op.create_table(
        "segments",
        sa.Column("id", big_id, primary_key=True),
        sa.Column(
            "video_id",
            sa.BigInteger(),
            sa.ForeignKey("videos.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("vector_id", sa.BigInteger()),
    )
    op.create_index("ix_segments_video_level", "segments", ["video_id", "level"])
    op.create_table(
        "jobs",
        sa.Column("id", big_id, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column(
            "collection_id",
            sa.BigInteger(),
            sa.ForeignKey("collections.id", ondelete="SET NULL"),
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("n_total", sa.Integer(), nullable=False),
        sa.Column("n_done", sa.Integer(), nullable=False),
        sa.Column("n_failed", sa.Integer(), nullable=False),
        sa.Column("n_skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.Column("finished_at", timestamp),
    )


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_index("ix_segments_video_level", table_name="segments")
    op.drop_table("segments")
    op.drop_index("ix_videos_collection_status", table_name="videos")
    op.drop_table("videos")
    op.drop_table("collections")
