"""Request validation: JSON Schema (shared with the OpenAPI document) plus field formats."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

from idp.api.errors import ApiError, invalid
from idp.domain.sp_sources import is_rsa_certificate
from idp.saml.urls import endpoint_url_problem

FORMATS = FormatChecker(formats=())
ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-")
MAX_EMAIL_LENGTH = 320
MAX_LOCAL_LENGTH = 64
MAX_LABEL_LENGTH = 63
LABEL_ASCII = frozenset(string.ascii_letters + string.digits + "-")
MAX_DEPTH = 32  # arrays and objects nested in a request body


def check_absolute_uri(value: object) -> bool:
    """A URI with a scheme (and a host for http/https), without a fragment."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.path):
        raise ValueError("must be an absolute URI")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ValueError("must be an absolute URI with a host")
    if parts.fragment or any(c.isspace() for c in value):
        raise ValueError("must be an absolute URI without spaces or a fragment")
    return True


def check_endpoint_url(value: object) -> bool:
    """An absolute https URL; plain http only for loopback hosts."""
    if not isinstance(value, str):
        return True
    problem = endpoint_url_problem(value)
    if problem:
        raise ValueError(problem)
    return True


def check_pem_certificate(value: object) -> bool:
    """A PEM-encoded X.509 certificate."""
    if not isinstance(value, str):
        return True
    try:
        x509.load_pem_x509_certificate(value.encode())
    except ValueError:
        raise ValueError("must be a PEM-encoded X.509 certificate") from None
    return True


def check_rsa_pem_certificate(value: object) -> bool:
    """A PEM-encoded X.509 certificate of an RSA key (to encrypt to, with RSA-OAEP)."""
    if not isinstance(value, str) or not check_pem_certificate(value):
        return True
    if not is_rsa_certificate(value):
        raise ValueError("must be the certificate of an RSA key (RSA-OAEP key transport)")
    return True


def _is_intl_letter(char: str) -> bool:
    """A non-ASCII letter, or a combining mark (which many scripts write letters with)."""
    return not char.isascii() and unicodedata.category(char)[0] in "LM"


def _is_atom(atom: str) -> bool:
    """RFC 5322 atext, plus non-ASCII letters (internationalized mailboxes)."""
    return bool(atom) and all(c in ATEXT or _is_intl_letter(c) for c in atom)


def _is_label(label: str) -> bool:
    """A DNS label: ASCII letters and digits, non-ASCII letters, and inner hyphens."""
    if not 0 < len(label) <= MAX_LABEL_LENGTH or label[0] == "-" or label[-1] == "-":
        return False
    return all(c in LABEL_ASCII or _is_intl_letter(c) for c in label)


def is_email(value: str) -> bool:
    """A practical mailbox: dot-separated atoms, @, and a domain of two or more labels.

    No quoted local parts, comments or IP literals (nor a numeric top-level label);
    at most 320 characters, 64 before the @.
    """
    local, _, domain = value.rpartition("@")
    if len(value) > MAX_EMAIL_LENGTH or len(local) > MAX_LOCAL_LENGTH:
        return False
    labels = domain.split(".")
    return (
        all(_is_atom(atom) for atom in local.split("."))
        and len(labels) >= 2
        and all(_is_label(label) for label in labels)
        and not labels[-1].isdigit()
    )


def check_email(value: object) -> bool:
    """The ``email`` format: see is_email."""
    if isinstance(value, str) and not is_email(value):
        raise ValueError("must be an email address")
    return True


for _name, _check in (
    ("absolute-uri", check_absolute_uri),
    ("endpoint-url", check_endpoint_url),
    ("pem-certificate", check_pem_certificate),
    ("rsa-pem-certificate", check_rsa_pem_certificate),
    ("email", check_email),
):
    FORMATS.checks(_name, raises=ValueError)(_check)


# ECMA-262's classes, which JSON Schema patterns use (Python's \s, \d, \w are wider).
ECMA_CLASSES = {
    "s": r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff",
    "d": "0-9",
    "w": "A-Za-z0-9_",
}


@lru_cache(maxsize=256)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """Python's ``re`` with ECMA-262 meanings: ``$`` only at the very end, ECMA's \\s, \\d, \\w."""
    out: list[str] = []
    in_class, i = False, 0
    while i < len(pattern):
        char, following = pattern[i], pattern[i + 1 : i + 2]
        negated = following.isupper()
        if char == "\\" and following.lower() in ECMA_CLASSES and not (in_class and negated):
            chars = ECMA_CLASSES[following.lower()]
            out.append(chars if in_class else f"[{'^' if negated else ''}{chars}]")
            i += 2
            continue
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        in_class = (in_class or char == "[") and char != "]"
        out.append(r"\Z" if char == "$" and not in_class else char)
        i += 1
    return re.compile("".join(out))


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """The ``pattern`` keyword with JSON Schema's (ECMA-262) semantics."""
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


def _first_alternative(error: ValidationError) -> list[ValidationError]:
    """An unmet ``anyOf`` as what its first alternative (the common case) lacks, field by
    field; any other error as itself."""
    if error.validator != "anyOf" or not error.context:
        return [error]
    return [e for e in error.context if e.relative_schema_path[0] == 0] or [error]


def _reason(error: ValidationError) -> str:
    """A short human reason for one schema violation."""
    kind, value = error.validator, error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    if "x-reason" in schema and kind in ("pattern", "enum", "propertyNames", "oneOf"):
        return str(schema["x-reason"])
    if kind == "format" and error.cause is not None:
        return str(error.cause)
    if kind == "type":
        return f"must be {_TYPE_NAMES.get(str(value), str(value))}"
    if kind == "enum":
        return "must be one of: " + ", ".join(str(v) for v in value)
    if kind == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters"
    if kind == "maxLength":
        return f"must be at most {value} characters"
    if kind in ("minimum", "maximum"):
        return f"must be {'>=' if kind == 'minimum' else '<='} {value}"
    if kind == "minItems":
        return f"must have at least {value} item(s)"
    if kind == "maxItems":
        return f"must have at most {value} items"
    if kind == "uniqueItems":
        return "must not repeat items"
    if kind == "pattern":
        return "has an invalid format"
    return "is invalid"


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "number": "a number",
}


def _field(error: ValidationError) -> tuple[str, str]:
    """The top-level field an error belongs to, and its reason."""
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return missing, "is required"
    if error.validator == "additionalProperties" and not path:
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return (extra[0] if extra else "body"), "is not a known field"
    if not path:
        return "body", _reason(error)
    field, rest = str(path[0]), path[1:]
    reason = _reason(error)
    if rest:
        reason = f"{'item' if isinstance(rest[0], int) else 'key'} {rest[0]!s}: {reason}"
    return field, reason


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply arrays and objects nest in a JSON value; counted without recursion, and
    only up to one level past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def too_deep() -> ApiError:
    """400: a body nested deeper than MAX_DEPTH."""
    return invalid(
        {"body": f"must not nest arrays and objects deeper than {MAX_DEPTH} levels"},
        "The request body is nested too deeply",
    )


def check_depth(payload: Any) -> None:
    """Refuse a body nested deeper than MAX_DEPTH, before anything walks it recursively."""
    if nesting_depth(payload) > MAX_DEPTH:
        raise too_deep()


def validate(payload: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """Check a JSON body against a schema; raise a 400 with a reason per field."""
    check_depth(payload)
    validator = Validator(schema, format_checker=FORMATS)
    details: dict[str, str] = {}
    errors = [e for error in validator.iter_errors(payload) for e in _first_alternative(error)]
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        field, reason = _field(error)
        details.setdefault(field, reason)
    if details:
        raise invalid(details)
    assert isinstance(payload, dict)
    return payload
