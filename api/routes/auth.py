"""/api/v1/auth: accounts, tokens, API keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from msgspec import Meta

from api.auth.service import NewApiKey, TokenPair, User
from api.auth.store import ApiKeyRecord
from api.deps import json_body, principal_of, resources_of
from api.openapi import AUTHENTICATED, BODY_ERRORS, CREDENTIALS_ERRORS, PRINCIPAL_ERRORS, Documented
from api.problems import problem_responses
from api.routes.checklists import json_response
from api.security import client_address
from shared.errors import AuthenticationFailed, EmailTaken, InvalidRequest, MalformedBody, NotFound, WeakPassword
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


class PrincipalView(msgspec.Struct, kw_only=True):
    """Who the credentials belong to: a user (access token) or one of their API keys."""

    user_id: str
    kind: Literal["user", "api_key"]
    api_key_id: str | None


class ApiKeyList(msgspec.Struct, kw_only=True):
    items: list[ApiKeyRecord]


_encoder = msgspec.json.Encoder()
_CREDENTIALS = {"access": "credentials"}


def _client(request: Request[Any, Any, Any]) -> str:
    return client_address(request.scope, resources_of(request).trusted_proxies)


_ANSWERS = problem_responses(*PRINCIPAL_ERRORS)


class AuthController(Controller):
    """Register, log in and refresh are open (with a quota per client address); the rest need credentials."""

    path = "/api/v1/auth"
    tags = ["auth"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/register",
        operation_id="register",
        summary="Create an account",
        response_description="The new account (never the password hash)",
        status_code=HTTP_201_CREATED,
        opt=_CREDENTIALS,
        operation_class=Documented(Credentials),
        responses=problem_responses(*CREDENTIALS_ERRORS, *BODY_ERRORS, WeakPassword, EmailTaken),
    )
    async def register(self, request: Request[Any, Any, Any]) -> Response[User]:
        body = decode_body(await json_body(request), Credentials)
        user = await resources_of(request).auth.register(body.email, body.password)
        return json_response(_encoder.encode(user), HTTP_201_CREATED)

    @post(
        "/login",
        operation_id="login",
        summary="Log in: an access token and a refresh token",
        response_description="An access token and a refresh token",
        status_code=200,
        opt=_CREDENTIALS,
        operation_class=Documented(Credentials),
        responses=problem_responses(*CREDENTIALS_ERRORS, *BODY_ERRORS, AuthenticationFailed),
    )
    async def login(self, request: Request[Any, Any, Any]) -> Response[TokenPair]:
        body = decode_body(await json_body(request), Credentials)
        tokens = await resources_of(request).auth.login(body.email, body.password, _client(request))
        return json_response(_encoder.encode(tokens))

    @post(
        "/refresh",
        operation_id="refreshTokens",
        summary="Trade a refresh token for a new pair",
        response_description="A new pair; the presented refresh token is used up",
        status_code=200,
        opt=_CREDENTIALS,
        operation_class=Documented(RefreshRequest),
        responses=problem_responses(*CREDENTIALS_ERRORS, *BODY_ERRORS, AuthenticationFailed),
    )
    async def refresh(self, request: Request[Any, Any, Any]) -> Response[TokenPair]:
        body = decode_body(await json_body(request), RefreshRequest)
        tokens = await resources_of(request).auth.refresh(body.refresh_token, _client(request))
        return json_response(_encoder.encode(tokens))

    @post(
        "/logout",
        operation_id="logout",
        summary="Log out: revoke this login's refresh tokens and this access token",
        status_code=HTTP_204_NO_CONTENT,
        security=AUTHENTICATED,
        operation_class=Documented(LogoutRequest, body_required=False),
        # The body is optional and read whatever its content type, so no 415.
        responses=problem_responses(*PRINCIPAL_ERRORS, MalformedBody, RequestEntityTooLarge, InvalidRequest),
    )
    async def logout(self, request: Request[Any, Any, Any]) -> None:
        raw = await request.body()
        body = decode_body(raw, LogoutRequest) if raw.strip() else LogoutRequest()
        await resources_of(request).auth.logout(principal_of(request), body.refresh_token)

    @get(
        "/me",
        operation_id="getAccount",
        summary="The account",
        security=AUTHENTICATED,
        operation_class=Documented(),
        responses=_ANSWERS,
    )
    async def me(self, request: Request[Any, Any, Any]) -> Response[User]:
        return json_response(_encoder.encode(await resources_of(request).auth.me(principal_of(request))))

    @delete(
        "/me",
        operation_id="deleteAccount",
        summary="Delete the account, its keys, tokens and jobs",
        status_code=HTTP_204_NO_CONTENT,
        security=AUTHENTICATED,
        operation_class=Documented(),
        responses=problem_responses(*PRINCIPAL_ERRORS, NotFound),
    )
    async def delete_me(self, request: Request[Any, Any, Any]) -> None:
        await resources_of(request).auth.delete_account(principal_of(request))

    @get(
        "/test",
        operation_id="testCredentials",
        summary="200 with the principal when the credentials are valid",
        security=AUTHENTICATED,
        operation_class=Documented(),
        responses=_ANSWERS,
    )
    async def test_get(self, request: Request[Any, Any, Any]) -> Response[PrincipalView]:
        return json_response(_encoder.encode(_principal_view(request)))

    @post(
        "/test",
        operation_id="testCredentialsPost",
        status_code=200,
        summary="200 with the principal when the credentials are valid",
        security=AUTHENTICATED,
        operation_class=Documented(),
        responses=_ANSWERS,
    )
    async def test_post(self, request: Request[Any, Any, Any]) -> Response[PrincipalView]:
        return json_response(_encoder.encode(_principal_view(request)))

    @post(
        "/api-keys",
        operation_id="createApiKey",
        summary="Create an API key",
        response_description="The new key: `key` is shown only this once",
        status_code=HTTP_201_CREATED,
        security=AUTHENTICATED,
        operation_class=Documented(ApiKeyRequest),
        responses=problem_responses(*PRINCIPAL_ERRORS, *BODY_ERRORS),
    )
    async def create_api_key(self, request: Request[Any, Any, Any]) -> Response[NewApiKey]:
        body = decode_body(await json_body(request), ApiKeyRequest)
        created = await resources_of(request).auth.create_api_key(principal_of(request), body.name)
        return json_response(_encoder.encode(created), HTTP_201_CREATED)

    @get(
        "/api-keys",
        operation_id="listApiKeys",
        summary="The account's API keys (prefix, name, created, last used; never the key)",
        security=AUTHENTICATED,
        operation_class=Documented(),
        responses=_ANSWERS,
    )
    async def list_api_keys(self, request: Request[Any, Any, Any]) -> Response[ApiKeyList]:
        records = await resources_of(request).auth.list_api_keys(principal_of(request))
        return json_response(_encoder.encode(ApiKeyList(items=records)))

    @delete(
        "/api-keys/{key_id:str}",
        operation_id="revokeApiKey",
        summary="Revoke an API key",
        status_code=HTTP_204_NO_CONTENT,
        security=AUTHENTICATED,
        operation_class=Documented(),
        responses=problem_responses(*PRINCIPAL_ERRORS, NotFound),
    )
    async def revoke_api_key(self, request: Request[Any, Any, Any], key_id: FromPath[str]) -> None:
        await resources_of(request).auth.revoke_api_key(principal_of(request), key_id)


def _principal_view(request: Request[Any, Any, Any]) -> PrincipalView:
    principal = principal_of(request)
    return PrincipalView(user_id=principal.user_id, kind=principal.kind, api_key_id=principal.api_key_id)
