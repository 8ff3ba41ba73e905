"""Every table of inhouse. Times are UNIX seconds (float); secrets are stored only as hashes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Limits:
    """Quota columns shared by keys, users and groups (NULL: no limit at this level)."""

    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_month: Mapped[int | None] = mapped_column(BigInteger, default=None)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)


class User(Limits, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)


class Group(Limits, Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[float] = mapped_column(Float)


class GroupCollection(Base):
    """A knowledge collection a group may read."""

    __tablename__ = "group_collections"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    collection: Mapped[str] = mapped_column(String(128), primary_key=True)


class ApiKey(Limits, Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    models: Mapped[list[str] | None] = mapped_column(JSON, default=None)  # None: every model
    collections: Mapped[list[str] | None] = mapped_column(JSON, default=None)  # None: the user's
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)
    last_used_at: Mapped[float | None] = mapped_column(Float, default=None)


class WebSession(Base):
    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class QuotaCounter(Base):
    """Tokens used and reserved (and requests) of one subject in one window."""

    __tablename__ = "quota_counters"
    __table_args__ = (UniqueConstraint("scope", "subject_id", "window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))  # key | user | group
    subject_id: Mapped[int] = mapped_column(Integer)
    window: Mapped[str] = mapped_column(String(24))  # d:2026-11-29 | m:2026-11 | r:<minute>
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class Reservation(Base):
    """Tokens held for a request in flight; settled (deleted) when it ends."""

    __tablename__ = "reservations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    counter_ids: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)


class UsageRecord(Base):
    """One row per API request that reached a model, whatever its end."""

    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    key_id: Mapped[int | None] = mapped_column(Integer)
    group_id: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32))  # ok | aborted | <error code>


class AuditEntry(Base):
    """One link of the hash chain: `hash` covers every field and the previous entry's hash."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's newest link, MAC-signed: appends lock this row, truncation breaks its MAC."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    ts: Mapped[float] = mapped_column(Float)
    mac: Mapped[str] = mapped_column(String(64))


class ContentRecord(Base):
    """Redacted prompt and response text, kept only when content logging is on."""

    __tablename__ = "content_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(128))
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)


# Full-text rows of knowledge chunks live in tables SQLAlchemy cannot declare, made with raw
# DDL: on SQLite an FTS5 virtual table per collection, `knowledge_fts_<id>` (created by its
# first write, see knowledge/index.py), on PostgreSQL one tsvector table (migration 0002).
# Schema comparisons skip every table whose name starts with this.
KNOWLEDGE_FTS = "knowledge_fts"


class KnowledgeCollection(Base):
    """A named set of documents; readable by the groups granted it (GroupCollection)."""

    __tablename__ = "knowledge_collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    owner_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[float] = mapped_column(Float)


class KnowledgeDocument(Base):
    """One source file (or later, row) of a collection; `status` is indexed | failed."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (UniqueConstraint("collection_id", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("knowledge_collections.id", ondelete="CASCADE")
    )
    source: Mapped[str] = mapped_column(String(1024))  # absolute path or URI
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the bytes
    title: Mapped[str] = mapped_column(String(512), default="")
    size: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[float] = mapped_column(Float)


class KnowledgeChunk(Base):
    """A passage of a document and where it was (page, heading path, row) for citations."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("knowledge_documents.id", ondelete="CASCADE")
    )
    # the document's collection, repeated so retrieval filters by permission without a join
    collection_id: Mapped[int] = mapped_column(Integer, index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    location: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    token_count: Mapped[int] = mapped_column(Integer)


class KnowledgeConnector(Base):
    """A collection's SQL source and its sync bookkeeping. `url` never holds the password:
    that is sealed (AES-GCM, key outside the database) in `secret`."""

    __tablename__ = "knowledge_connectors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("knowledge_collections.id", ondelete="CASCADE"), unique=True
    )
    url: Mapped[str] = mapped_column(String(2048))  # without the password
    secret: Mapped[str | None] = mapped_column(Text, default=None)
    query: Mapped[str | None] = mapped_column(Text, default=None)
    tables: Mapped[list[str]] = mapped_column(JSON, default=list)
    id_column: Mapped[str] = mapped_column(String(128))
    updated_column: Mapped[str | None] = mapped_column(String(128), default=None)
    every_s: Mapped[float | None] = mapped_column(Float, default=None)
    allow_writable: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    # bookkeeping: `status` is never | running | ok | failed; `marks` the high-water marks
    status: Mapped[str] = mapped_column(String(16), default="never")
    started_at: Mapped[float | None] = mapped_column(Float, default=None)
    finished_at: Mapped[float | None] = mapped_column(Float, default=None)
    progress_at: Mapped[float | None] = mapped_column(Float, default=None)
    rows_seen: Mapped[int] = mapped_column(Integer, default=0)
    rows_changed: Mapped[int] = mapped_column(Integer, default=0)
    rows_removed: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    marks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class KnowledgeVector(Base):
    """A chunk's embedding: float32 little-endian, L2-normalized (cosine = dot product)."""

    __tablename__ = "knowledge_vectors"

    chunk_id: Mapped[int] = mapped_column(
        ForeignKey("knowledge_chunks.id", ondelete="CASCADE"), primary_key=True
    )
    collection_id: Mapped[int] = mapped_column(Integer, index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    # the embedding's sign bits (one per dimension, numpy.packbits order): a search's first,
    # coarse pass reads these from the (collection_id, bits) index instead of the blobs
    bits: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class Conversation(Base):
    """A user's chat in the web app: its messages are ConversationMessage rows."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # what URLs and the API use
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(128))
    collections: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class ConversationMessage(Base):
    """One turn of a conversation, in order; an assistant turn keeps its completion id (the
    handle feedback refers to) and the citations it was grounded on."""

    __tablename__ = "conversation_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "ordinal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content: Mapped[str] = mapped_column(Text)
    completion_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    # how an assistant turn ended: stop | length | stopped (the reader left) | error
    finish_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[float] = mapped_column(Float)


class Feedback(Base):
    """A rating (+1 / -1) and optionally a better answer, given by a user on a completion.

    `prompt` and `answer` are copies kept for tuning data sets only when the user or an admin
    setting opted in; otherwise they stay NULL."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("completion_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    completion_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(128), default="")
    rating: Mapped[int] = mapped_column(Integer)
    correction: Mapped[str | None] = mapped_column(Text, default=None)
    prompt: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    updated_at: Mapped[float] = mapped_column(Float)


class Widget(Base):
    """An embeddable chat widget. Its publishable token (stored hashed) may only chat with
    `model`, grounded on `collections`, from `origins`; the API key behind it (`key_id`)
    carries its limits, so its traffic is admitted, metered and audited like any key's."""

    __tablename__ = "widgets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), unique=True)
    model: Mapped[str] = mapped_column(String(128))
    collections: Mapped[list[str]] = mapped_column(JSON, default=list)
    origins: Mapped[list[str]] = mapped_column(JSON, default=list)  # scheme://host[:port]
    branding: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


Index("ix_usage_user_ts", UsageRecord.user_id, UsageRecord.ts)
Index("ix_knowledge_vectors_collection_bits", KnowledgeVector.collection_id, KnowledgeVector.bits)
Index("ix_conversations_user_updated", Conversation.user_id, Conversation.updated_at)


class TuningDataset(Base):
    """A data set for tuning: read by its owner and the groups it is shared with
    (TuningDatasetShare); `public_id` is its OpenAI file id. Its examples are rows of
    TuningExample, already checked, deduplicated and split."""

    __tablename__ = "tuning_datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # file-<hex>
    name: Mapped[str] = mapped_column(String(128), unique=True)
    owner_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )  # None: the server's operator (the CLI without --owner)
    format: Mapped[str] = mapped_column(String(16))  # chat | text
    source: Mapped[str] = mapped_column(String(1024))  # file name, feedback:..., collection:...
    size: Mapped[int] = mapped_column(BigInteger)  # bytes of the examples as JSONL
    train_count: Mapped[int] = mapped_column(Integer)
    eval_count: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    redacted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)


class TuningDatasetShare(Base):
    """A group whose members may read (and train on) a data set."""

    __tablename__ = "tuning_dataset_shares"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("tuning_datasets.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )


class TuningExample(Base):
    """One example of a data set, in order: `split` is train | eval, `data` the example
    (`{"messages": [...]}` or `{"text": ...}`)."""

    __tablename__ = "tuning_examples"
    __table_args__ = (UniqueConstraint("dataset_id", "ordinal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("tuning_datasets.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(8))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class TuningJob(Base):
    """A fine-tuning job: what to train (base model, data set, hyperparameters) and how far it
    got. `name` is the tuned model's name once trained (an adapter set in the model store);
    `public_id` its OpenAI id (ftjob-<hex>). One job trains at a time: the runner that claims
    it writes `runner` and keeps `heartbeat_at` fresh; a running job whose heartbeat is stale
    (its runner died) is claimed again and resumes from its last checkpoint."""

    __tablename__ = "tuning_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    owner_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )  # None: the server's operator
    created_by: Mapped[str] = mapped_column(String(128))
    base_model: Mapped[str] = mapped_column(String(128))  # a model store name (not an alias)
    parent_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("tuning_jobs.id", ondelete="SET NULL"), default=None
    )  # continued from that version's adapter
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("tuning_datasets.id", ondelete="SET NULL"), default=None
    )
    dataset_name: Mapped[str] = mapped_column(String(128))  # kept when the data set is deleted
    eval_dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("tuning_datasets.id", ondelete="SET NULL"), default=None
    )  # held-out examples from another data set (OpenAI's validation_file)
    method: Mapped[str] = mapped_column(String(16))  # lora
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    scorer: Mapped[str] = mapped_column(String(512), default="contains")
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, default=None)
    finished_at: Mapped[float | None] = mapped_column(Float, default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    runner: Mapped[str | None] = mapped_column(String(128), default=None)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # last step
    trained_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    train_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    torch_eval_loss: Mapped[float | None] = mapped_column(Float, default=None)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(128), default=None)


class TuningJobEvent(Base):
    """One line of a job's log: a message, or metrics (`data`) of a step or checkpoint."""

    __tablename__ = "tuning_job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("tuning_jobs.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(8))  # info | warn | error
    type: Mapped[str] = mapped_column(String(16))  # message | metrics
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class TuningAliasChange(Base):
    """One move of an alias to a tuned version (promote) or back (rollback): the history that
    `rollback` walks, with the gate's verdict and whether it was forced."""

    __tablename__ = "tuning_alias_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias: Mapped[str] = mapped_column(String(128), index=True)
    target: Mapped[str] = mapped_column(String(128))
    previous: Mapped[str | None] = mapped_column(String(128), default=None)
    action: Mapped[str] = mapped_column(String(16))  # promote | rollback
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class TuningSchedule(Base):
    """Continual learning: when `min_new_feedback` new rated answers exist since the last
    run, retrain from the newest succeeded version of `base_job` on a data set built from
    feedback, and promote it to `alias` if the gate passes."""

    __tablename__ = "tuning_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    base_job: Mapped[str] = mapped_column(String(128))  # the first version's job name
    alias: Mapped[str | None] = mapped_column(String(128), default=None)
    min_new_feedback: Mapped[int] = mapped_column(Integer)
    min_rating: Mapped[int] = mapped_column(Integer, default=-1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_feedback_id: Mapped[int] = mapped_column(Integer, default=0)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    last_run_at: Mapped[float | None] = mapped_column(Float, default=None)
    last_job: Mapped[str | None] = mapped_column(String(128), default=None)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)


class StoredCompletion(Base):
    """A chat completion of /v1/chat/completions kept because its caller asked (`store: true`)
    or the admin setting `tuning.keep_feedback_text` is on: the prompt as sent and choice 0's
    answer, so that its user can rate it and tune on it. Nothing is kept otherwise."""

    __tablename__ = "stored_completions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    completion_id: Mapped[str] = mapped_column(String(64), unique=True)  # the response's id
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[int | None] = mapped_column(Integer, default=None)  # None: a web session
    model: Mapped[str] = mapped_column(String(128))  # as requested
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(16), default=None)  # None: cut short
    meta: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, default=None)
    created_at: Mapped[float] = mapped_column(Float, index=True)
