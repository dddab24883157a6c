"""tool results as text, as Everruns sends them (issue 12)

A tool message's `tool_result` part holds its result as text parts (one, with the result's JSON
text), null for a failed call; a `tool.call_completed` event holds the same text parts as `result`,
none for a failed call. Rows written before held the result itself (the event: the tool message's
part). They are rewritten here, once, rather than read in both forms: stored events are sent as they
are stored (the events list, SSE), so an old row would reach clients in the old form; and a reader
cannot tell an old result that happens to be a list of `{type: text, text}` objects from a new one.
The text is json.dumps of the stored result: what the model has always read for it, so a session's
conversation reads the same to its model after the upgrade.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 18:00:00
"""

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500
Convert = Callable[[Any], Any]


def _is_text(result: Any) -> TypeGuard[list[dict[str, str]]]:
    """A result in the new form (`core.schemas.content.result_parts`)."""
    return (
        isinstance(result, list)
        and bool(result)
        and all(
            isinstance(p, dict) and p.keys() == {'type', 'text'} and p['type'] == 'text'
            and isinstance(p['text'], str)
            for p in result
        )
    )


def _text(value: Any) -> list[dict[str, str]]:
    return [{'type': 'text', 'text': json.dumps(value)}]


def _value(parts: list[dict[str, str]]) -> Any:
    text = ''.join(p['text'] for p in parts)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message_up(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for part in content:
        if part.get('type') == 'tool_result' and not _is_text(part.get('result')):
            error = part.get('error')
            result = None if error is not None else _text(part.get('result'))
            part = {
                'type': 'tool_result', 'tool_call_id': part['tool_call_id'], 'result': result, 'error': error,
            }
        out.append(part)
    return out


def _message_down(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for part in content:
        if part.get('type') == 'tool_result' and _is_text(part.get('result')):
            part = {**part, 'result': _value(part['result'])}
        out.append(part)
    return out


def _event_up(data: dict[str, Any]) -> dict[str, Any]:
    parts = data.get('result')
    old = isinstance(parts, list) and all(isinstance(p, dict) and p.get('type') == 'tool_result' for p in parts)
    if not old:
        return data  # the new form already
    new = {k: v for k, v in data.items() if k != 'result'}
    if data.get('error') is None:  # a failed call's event has no result
        new['result'] = _text(parts[0].get('result') if parts else None)
    return new


def _event_down(data: dict[str, Any]) -> dict[str, Any]:
    parts = data.get('result')
    if isinstance(parts, list) and parts and parts[0].get('type') == 'tool_result':
        return data  # the old form already
    value = _value(parts) if _is_text(parts) else None
    error = data.get('error')
    part = {'type': 'tool_result', 'tool_call_id': data['tool_call_id'], 'result': value, 'error': error}
    return {**data, 'result': [part]}


def _rewrite(table: str, column: str, where: str, convert: Convert) -> None:
    """Every row of `table` matching `where`, its `column` through `convert`, a batch at a time."""
    connection = op.get_bind()
    read = sa.text(
        f'SELECT id, {column} FROM {table} WHERE {where} AND id > :after ORDER BY id LIMIT {BATCH}'
    ).columns(sa.column('id', postgresql.UUID(as_uuid=True)), sa.column(column, postgresql.JSONB))
    write = sa.text(f'UPDATE {table} SET {column} = :value WHERE id = :id').bindparams(
        sa.bindparam('value', type_=postgresql.JSONB), sa.bindparam('id', type_=postgresql.UUID(as_uuid=True))
    )
    after = uuid.UUID(int=0)
    while rows := connection.execute(read, {'after': after}).all():
        changed = [{'id': id_, 'value': new} for id_, old in rows if (new := convert(old)) != old]
        if changed:
            connection.execute(write, changed)
        after = rows[-1][0]


def upgrade() -> None:
    _rewrite('messages', 'content', "role = 'tool_result'", _message_up)
    _rewrite('events', 'data', "type = 'tool.call_completed'", _event_up)


def downgrade() -> None:
    _rewrite('events', 'data', "type = 'tool.call_completed'", _event_down)
    _rewrite('messages', 'content', "role = 'tool_result'", _message_down)
