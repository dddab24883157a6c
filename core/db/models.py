"""Every table, imported here so Alembic and the tests see the whole schema."""

from core.db.agents import Agent
from core.db.auth import ApiKey, AuthSession, OAuthIdentity, RefreshToken, User
from core.db.base import Base
from core.db.drift import DriftAlert
from core.db.files import SessionFile
from core.db.functions import Dataset, DatasetEntry, Function, FunctionRevision
from core.db.golden import GoldenResult, GoldenRun, GoldenTest
from core.db.knowledge import KnowledgeBase, KnowledgeChunk, KnowledgeDocument, KnowledgeFile
from core.db.llm import LlmModel, LlmProvider
from core.db.mcp import McpServer
from core.db.rate_limits import RateLimit
from core.db.replays import Replay
from core.db.sessions import Event, Message, Session
from core.db.traces import ExternalSession, Project, ProjectKey, Span, SpanEvent, SpanMetric, Trace
from core.db.webhooks import Webhook, WebhookDelivery

__all__ = [
    "Agent",
    "ApiKey",
    "AuthSession",
    "Base",
    "Dataset",
    "DatasetEntry",
    "DriftAlert",
    "Event",
    "ExternalSession",
    "Function",
    "FunctionRevision",
    "GoldenResult",
    "GoldenRun",
    "GoldenTest",
    "KnowledgeBase",
    "KnowledgeChunk",
    "KnowledgeDocument",
    "KnowledgeFile",
    "LlmModel",
    "LlmProvider",
    "McpServer",
    "Message",
    "OAuthIdentity",
    "Project",
    "ProjectKey",
    "RateLimit",
    "RefreshToken",
    "Replay",
    "Session",
    "SessionFile",
    "Span",
    "SpanEvent",
    "SpanMetric",
    "Trace",
    "User",
    "Webhook",
    "WebhookDelivery",
]
