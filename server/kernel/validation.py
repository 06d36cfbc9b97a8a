"""Field constraints declared in the contract (``switchboard.options.v1.field``).

Rules are compiled once per message type. Violations are reported in descriptor field
order (nested fields depth-first), so the same bad request always yields the same list.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from switchboard.options.v1 import validate_pb2

from server.kernel.errors import FieldViolation, InvalidArgument

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INT_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}


@dataclass(frozen=True, slots=True)
class _FieldCheck:
    field: FieldDescriptor
    rules: validate_pb2.FieldRules | None
    pattern: re.Pattern[str] | None
    nested: bool  # a message field whose own fields have rules


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


@cache
def _checks_for(message: Descriptor) -> tuple[_FieldCheck, ...]:
    checks: list[_FieldCheck] = []
    for field in message.fields:
        options = field.GetOptions()
        rules = (
            options.Extensions[validate_pb2.field]
            if options.HasExtension(validate_pb2.field)
            else None
        )
        nested = (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and field.message_type is not None
            and not field.message_type.GetOptions().map_entry
            and bool(_checks_for(field.message_type))
        )
        if rules is None and not nested:
            continue
        pattern = re.compile(rules.pattern) if rules is not None and rules.pattern else None
        checks.append(_FieldCheck(field=field, rules=rules, pattern=pattern, nested=nested))
    return tuple(checks)


def _has_value(message: Message, field: FieldDescriptor) -> bool:
    if _is_repeated(field):
        return len(getattr(message, field.name)) > 0
    if field.type == FieldDescriptor.TYPE_MESSAGE or field.has_presence:
        return message.HasField(field.name)
    return bool(getattr(message, field.name))


def _check_scalar(path: str, value: object, check: _FieldCheck, out: list[FieldViolation]) -> None:
    rules = check.rules
    assert rules is not None
    field = check.field
    if isinstance(value, str):
        if rules.HasField("min_len") and len(value) < rules.min_len:
            out.append(
                FieldViolation(path, f"must be at least {rules.min_len} characters", "TOO_SHORT")
            )
        if rules.HasField("max_len") and len(value) > rules.max_len:
            out.append(
                FieldViolation(path, f"must be at most {rules.max_len} characters", "TOO_LONG")
            )
        if check.pattern is not None and value and not check.pattern.fullmatch(value):
            out.append(FieldViolation(path, "has an invalid format", "PATTERN_MISMATCH"))
        if value and rules.format == validate_pb2.STRING_FORMAT_UUID:
            try:
                uuid.UUID(value)
            except ValueError:
                out.append(FieldViolation(path, "must be a UUID", "NOT_A_UUID"))
        if (
            value
            and rules.format == validate_pb2.STRING_FORMAT_EMAIL
            and not _EMAIL.fullmatch(value)
        ):
            out.append(FieldViolation(path, "must be an email address", "NOT_AN_EMAIL"))
        if value and rules.format == validate_pb2.STRING_FORMAT_URI and "://" not in value:
            out.append(FieldViolation(path, "must be an absolute URI", "NOT_A_URI"))
    elif field.type in _INT_TYPES and isinstance(value, int):
        if rules.HasField("gte") and value < rules.gte:
            out.append(FieldViolation(path, f"must be >= {rules.gte}", "OUT_OF_RANGE"))
        if rules.HasField("lte") and value > rules.lte:
            out.append(FieldViolation(path, f"must be <= {rules.lte}", "OUT_OF_RANGE"))
    elif (
        field.type == FieldDescriptor.TYPE_ENUM
        and isinstance(value, int)
        and rules.defined_only
        and field.enum_type is not None
        and field.enum_type.values_by_number.get(value) is None
    ):
        out.append(FieldViolation(path, "must be a defined value", "UNDEFINED_ENUM"))


def _validate(message: Message, prefix: str, out: list[FieldViolation]) -> None:
    for check in _checks_for(message.DESCRIPTOR):
        field = check.field
        path = f"{prefix}{field.name}"
        rules = check.rules
        present = _has_value(message, field)
        if rules is not None and rules.required and not present:
            out.append(FieldViolation(path, "is required", "REQUIRED"))
            continue
        if _is_repeated(field):
            items = getattr(message, field.name)
            if rules is not None:
                if rules.HasField("min_len") and len(items) < rules.min_len:
                    out.append(
                        FieldViolation(path, f"needs at least {rules.min_len} items", "TOO_FEW")
                    )
                if rules.HasField("max_len") and len(items) > rules.max_len:
                    out.append(
                        FieldViolation(path, f"takes at most {rules.max_len} items", "TOO_MANY")
                    )
            if check.nested:
                for index, item in enumerate(items):
                    _validate(item, f"{path}[{index}].", out)
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if check.nested and present:
                _validate(getattr(message, field.name), f"{path}.", out)
            continue
        if rules is not None and present:
            _check_scalar(path, getattr(message, field.name), check, out)


def violations(message: Message) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    _validate(message, "", out)
    return out


def validate(message: Message) -> None:
    """Raise INVALID_ARGUMENT with every violation, or return quietly."""
    found = violations(message)
    if found:
        raise InvalidArgument(
            "INVALID_FIELDS",
            "request has invalid fields: " + ", ".join(v.field for v in found),
            violations=found,
        )
