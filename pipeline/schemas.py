"""The explicit Arrow schemas that stages hand over to each other. Never inferred from data."""

from __future__ import annotations

import pyarrow as pa

UTC_MS = pa.timestamp("ms", tz="UTC")

# One row per gateway log, as extracted (DESIGN "Parquet: logs"). Every field of a list entry, with
# fixed types; `metadata` is the API's JSON string as received; `extra` holds, as a JSON object, any
# field the API returned that this schema does not know, so nothing is lost.
LOG_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("created_at", UTC_MS, nullable=False),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_type", pa.string()),
        pa.field("path", pa.string()),
        pa.field("request_type", pa.string()),
        pa.field("status_code", pa.int32()),
        pa.field("step", pa.int32()),
        pa.field("duration", pa.int64()),
        pa.field("success", pa.bool_()),
        pa.field("cached", pa.bool_()),
        pa.field("tokens_in", pa.int64()),
        pa.field("tokens_out", pa.int64()),
        pa.field("cost", pa.float64()),
        pa.field("custom_cost", pa.bool_()),
        pa.field("metadata", pa.string()),
        pa.field("request_content_type", pa.string()),
        pa.field("response_content_type", pa.string()),
        pa.field("feedback", pa.int8()),
        pa.field("score", pa.float64()),
        # Whether the entry carried `feedback` and `score` at all: the list schema does not promise
        # them, and a field the server did not show is unknown, not empty (false: look it up).
        pa.field("feedback_shown", pa.bool_()),
        pa.field("extra", pa.string()),
        pa.field("extracted_at", UTC_MS, nullable=False),
    ]
)

# One row per (log_id, source) (DESIGN "Labels").
LABEL_SCHEMA = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("feedback", pa.int8()),  # -1 or 1; null = no opinion
        pa.field("score", pa.float64()),  # 0..100; null = none
        pa.field(
            "source", pa.string(), nullable=False
        ),  # csv:<file> | rule:<name> | external:<name>
        pa.field("reason", pa.string()),
        pa.field("labeled_at", UTC_MS, nullable=False),
    ]
)


# Two scores closer than this are the same score (the API stores floats; 0..100 needs no more).
SCORE_TOLERANCE = 1e-9
