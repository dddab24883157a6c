"""Projects (001) and their keys. A project key (`vgl_` + 64 hex) is stored as SHA-256, like an API
key; it proves one project's trace routes and nothing else (api/security.py enforces the routes,
the trace services the project). Rotating deactivates the project's earlier keys in the same
transaction that makes the new one, so an old key fails from the next request on."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import User
from core.db.traces import Project, ProjectKey
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.schemas import trace_api as schema
from services.traces import default_project

PROJECT_KEY_PREFIX = "vgl_"
PROJECT_KEY_SHAPE = re.compile(r"^vgl_[0-9a-f]{64}$")
LAST_USED_EVERY = timedelta(minutes=1)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_project_key(credential: str) -> bool:
    return PROJECT_KEY_SHAPE.fullmatch(credential) is not None


async def _new_key(db: AsyncSession, project_id: uuid.UUID) -> str:
    key = PROJECT_KEY_PREFIX + secrets.token_hex(32)
    db.add(ProjectKey(project_id=project_id, prefix=key[:12], key_hash=_hash(key)))
    return key


async def create(db: AsyncSession, who: Identity, data: schema.CreateProject) -> schema.Project:
    name = data.name.strip()
    if not name:
        raise InvalidInput("name: a project needs a name", field="name")
    await default_project(db, who.user_id)  # the list always shows it, so make it first
    project = Project(owner_id=who.user_id, name=name, description=data.description)
    db.add(project)
    await db.flush()
    key = await _new_key(db, project.id)
    await db.commit()
    out = await _to_schema(db, project)
    out.api_key = key
    return out


async def get(db: AsyncSession, who: Identity, project_id: uuid.UUID) -> Project:
    project = await db.get(Project, project_id)
    if project is None or project.owner_id != who.user_id:
        raise NotFound("project not found")
    return project


async def list_(db: AsyncSession, who: Identity) -> schema.ProjectList:
    await default_project(db, who.user_id)
    await db.commit()
    rows = (
        await db.scalars(
            select(Project)
            .where(Project.owner_id == who.user_id)
            .order_by(Project.is_default.desc(), Project.created_at, Project.id)
        )
    ).all()
    keys = await _keys_of(db, [p.id for p in rows])
    projects = [_schema(p, keys.get(p.id, [])) for p in rows]
    return schema.ProjectList(projects=projects, total=len(projects))


async def one(db: AsyncSession, who: Identity, project_id: uuid.UUID) -> schema.Project:
    return await _to_schema(db, await get(db, who, project_id))


async def rotate_key(db: AsyncSession, who: Identity, project_id: uuid.UUID) -> str:
    project = await get(db, who, project_id)
    await db.execute(
        update(ProjectKey)
        .where(ProjectKey.project_id == project.id, ProjectKey.active)
        .values(active=False, updated_at=func.now())
    )
    key = await _new_key(db, project.id)
    await db.commit()
    return key


async def resolve(db: AsyncSession, who: Identity, given: str | None) -> uuid.UUID:
    """The project a write goes to: a project key's own (whatever the body says), else the one named
    by id or by name, else the caller's default project."""
    if who.project_id is not None:
        return who.project_id
    if given is None:
        return await default_project(db, who.user_id)
    try:
        wanted = uuid.UUID(given)
    except ValueError:
        # 001's example names its project ("my-project"): a name is understood too.
        found = await db.scalar(
            select(Project.id)
            .where(Project.owner_id == who.user_id, Project.name == given)
            .order_by(Project.created_at, Project.id)
            .limit(1)
        )
    else:
        found = await db.scalar(
            select(Project.id).where(Project.owner_id == who.user_id, Project.id == wanted)
        )
    if found is None:
        raise NotFound(f"project_id: no project {given!r}", field="project_id")
    return found


@dataclass(frozen=True)
class KeyOwner:
    user: User
    project_id: uuid.UUID
    key_id: uuid.UUID  # the key's own (its own rate-limit bucket)


async def authenticate_key(db: AsyncSession, key: str) -> KeyOwner | None:
    """Whose project an active project key opens, or None."""
    row = (
        await db.execute(
            select(ProjectKey, Project.owner_id)
            .join(Project, Project.id == ProjectKey.project_id)
            .where(ProjectKey.key_hash == _hash(key), ProjectKey.active)
        )
    ).first()
    if row is None:
        return None
    found, owner_id = row
    now = datetime.now(UTC)
    if found.last_used_at is None or now - found.last_used_at > LAST_USED_EVERY:
        # At most one write a minute per key, not one per ingested batch.
        await db.execute(update(ProjectKey).where(ProjectKey.id == found.id).values(last_used_at=now))
        await db.commit()
    user = await db.get(User, owner_id)
    return KeyOwner(user=user, project_id=found.project_id, key_id=found.id) if user else None


async def _keys_of(db: AsyncSession, project_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[ProjectKey]]:
    found: dict[uuid.UUID, list[ProjectKey]] = {}
    if not project_ids:
        return found
    rows = await db.scalars(
        select(ProjectKey)
        .where(ProjectKey.project_id.in_(project_ids))
        .order_by(ProjectKey.created_at.desc(), ProjectKey.id.desc())
    )
    for key in rows:
        found.setdefault(key.project_id, []).append(key)
    return found


async def _to_schema(db: AsyncSession, project: Project) -> schema.Project:
    return _schema(project, (await _keys_of(db, [project.id])).get(project.id, []))


def _schema(project: Project, keys: list[ProjectKey]) -> schema.Project:
    return schema.Project(
        id=project.id,
        name=project.name,
        description=project.description,
        is_default=project.is_default,
        created_at=project.created_at,
        updated_at=project.updated_at,
        keys=[
            schema.ProjectKeyInfo(
                id=k.id,
                prefix=k.prefix,
                active=k.active,
                created_at=k.created_at,
                last_used_at=k.last_used_at,
            )
            for k in keys
        ],
    )
