"""Decoding the server's answers into the SDK's typed records (msgspec)."""

from __future__ import annotations

from typing import TypeVar

import httpx
import msgspec

from automation_sdk import errors
from automation_sdk.models import Page

T = TypeVar("T")


def decode_as(response: httpx.Response, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=kind)
    except msgspec.DecodeError as exc:
        raise errors.ApiError(
            response.status_code,
            "unexpected_response",
            f"{response.request.method} {response.request.url.path}: {exc}",
        ) from exc


def decode_items(response: httpx.Response, kind: type[T]) -> list[T]:
    page = decode_as(response, Page)
    return [msgspec.json.decode(raw, type=kind) for raw in page.items]
