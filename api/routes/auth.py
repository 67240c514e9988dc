"""/api/v1/auth: accounts, tokens, API keys."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from msgspec import Meta

from api.deps import json_body, principal_of, resources_of
from api.openapi import JsonBody
from api.routes.checklists import json_response
from api.security import client_address
from shared.validation import decode_body

__all__ = ["AuthController"]

Email = Annotated[str, Meta(min_length=3, max_length=320)]
Password = Annotated[str, Meta(min_length=1, max_length=1024)]


class Credentials(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=200)]


class LogoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(max_length=200)] | None = None


class ApiKeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]


_encoder = msgspec.json.Encoder()
_CREDENTIALS = {"access": "credentials"}


def _client(request: Request[Any, Any, Any]) -> str:
    return client_address(request.scope, resources_of(request).trusted_proxies)


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post("/register", status_code=HTTP_201_CREATED, opt=_CREDENTIALS, operation_class=JsonBody(Credentials))
    async def register(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = decode_body(await json_body(request), Credentials)
        user = await resources_of(request).auth.register(body.email, body.password)
        return json_response(_encoder.encode(user), HTTP_201_CREATED)

    @post("/login", status_code=200, opt=_CREDENTIALS, operation_class=JsonBody(Credentials))
    async def login(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = decode_body(await json_body(request), Credentials)
        tokens = await resources_of(request).auth.login(body.email, body.password, _client(request))
        return json_response(_encoder.encode(tokens))

    @post("/refresh", status_code=200, opt=_CREDENTIALS, operation_class=JsonBody(RefreshRequest))
    async def refresh(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = decode_body(await json_body(request), RefreshRequest)
        tokens = await resources_of(request).auth.refresh(body.refresh_token, _client(request))
        return json_response(_encoder.encode(tokens))

    @post("/logout", status_code=HTTP_204_NO_CONTENT, operation_class=JsonBody(LogoutRequest))
    async def logout(self, request: Request[Any, Any, Any]) -> None:
        raw = await request.body()
        body = decode_body(raw, LogoutRequest) if raw.strip() else LogoutRequest()
        await resources_of(request).auth.logout(principal_of(request), body.refresh_token)

    @get("/me")
    async def me(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        return json_response(_encoder.encode(await resources_of(request).auth.me(principal_of(request))))

    @delete("/me", status_code=HTTP_204_NO_CONTENT)
    async def delete_me(self, request: Request[Any, Any, Any]) -> None:
        await resources_of(request).auth.delete_account(principal_of(request))

    @get("/test", summary="200 with the principal when the credentials are valid")
    async def test_get(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        return json_response(_encoder.encode(_principal_view(request)))

    @post("/test", status_code=200, summary="200 with the principal when the credentials are valid")
    async def test_post(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        return json_response(_encoder.encode(_principal_view(request)))

    @post("/api-keys", status_code=HTTP_201_CREATED, operation_class=JsonBody(ApiKeyRequest))
    async def create_api_key(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = decode_body(await json_body(request), ApiKeyRequest)
        created = await resources_of(request).auth.create_api_key(principal_of(request), body.name)
        return json_response(_encoder.encode(created), HTTP_201_CREATED)

    @get("/api-keys")
    async def list_api_keys(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        records = await resources_of(request).auth.list_api_keys(principal_of(request))
        return json_response(_encoder.encode({"items": records}))

    @delete("/api-keys/{key_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def revoke_api_key(self, request: Request[Any, Any, Any], key_id: FromPath[str]) -> None:
        await resources_of(request).auth.revoke_api_key(principal_of(request), key_id)


def _principal_view(request: Request[Any, Any, Any]) -> dict[str, Any]:
    principal = principal_of(request)
    return {"user_id": principal.user_id, "kind": principal.kind, "api_key_id": principal.api_key_id}
