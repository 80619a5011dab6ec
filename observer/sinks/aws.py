"""What the AWS sinks share: region and endpoint settings, the ``credentials`` block, client lifetime and
error classification.

Credentials (``credentials: {type, config}``; absent -> botocore's default chain):
  AwsStatic                {accessKeyId, secretAccessKey, sessionToken?}
  AwsEnvironmentVariable   {}  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (checked at build)
  AwsSystemProperty        {}  Python has no JVM system properties (aws.accessKeyId, …); this reads the same
                               environment variables as AwsEnvironmentVariable
  AwsProfile               {profileFilePath (~/.aws/credentials or ~/.aws/config), profileFileType
                            CREDENTIALS|CONFIGURATION (CREDENTIALS), profileName (default)}; the profile must
                            hold static keys (checked at build)
  AwsStsAssumeRoleSession  {roleArn*, roleSessionName (observer), regionId (the sink's region), policy,
                            externalId, transitiveTagKey, durationSeconds, endpointOverride, credentials
                            (nested block for the STS caller; absent -> default chain)}; the session is
                            refreshed before it expires. serialNumber (MFA) is rejected: a daemon cannot
                            type a token code.
  AwsWebIdentityTokenFile  {roleArn*, webIdentityTokenFile* (alias tokenFile), roleSessionName (observer),
                            regionId, endpointOverride}
Endpoints: the sink's ``endpointOverride`` wins; otherwise botocore's own AWS_ENDPOINT_URL_<SERVICE>
(AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_FIREHOSE, AWS_ENDPOINT_URL_STS) and AWS_ENDPOINT_URL apply.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioAssumeRoleCredentialFetcher,
    AioAssumeRoleWithWebIdentityCredentialFetcher,
    AioCredentialResolver,
    AioCredentials,
    AioDeferredRefreshableCredentials,
    AioEnvProvider,
)
from aiobotocore.session import AioSession
from botocore import configloader
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from botocore.utils import FileWebIdentityTokenLoader

from observer.reports.csv import CsvFormat
from observer.sinks.settings import ConfigReader, SinkConfigError

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_TRANSIENT_CODES = {
    "ServiceUnavailable", "ServiceUnavailableException", "InternalError", "InternalFailure",
    "InternalServerError", "Throttling", "ThrottlingException", "SlowDown", "RequestTimeout",
    "RequestTimeoutException", "RequestExpired", "ExpiredToken", "ExpiredTokenException",
    "ProvisionedThroughputExceededException", "TooManyRequestsException",
}


def read_region(reader: ConfigReader, key: str = "regionId", default: str | None = None) -> str:
    region = reader.string(key) if default is None else reader.string(key, default)
    if not _REGION.match(region):
        raise reader.error(key, f"{region!r} is not an AWS region id (like eu-west-1)")
    return region


def read_endpoint(reader: ConfigReader, key: str = "endpointOverride") -> str | None:
    endpoint = reader.string(key, None)
    if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
        raise reader.error(key, f"{endpoint!r} is not an http(s) URL")
    return endpoint


def read_csv_format(reader: ConfigReader, key: str = "csvFormat") -> str:
    csv_format = reader.string(key, "DEFAULT")
    try:
        return CsvFormat.named(csv_format).name
    except ValueError as exc:
        raise reader.error(key, str(exc)) from None


def is_permanent(error: BaseException) -> bool:
    """True for errors a retry cannot fix (4xx other than throttling, malformed requests)."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _TRANSIENT_CODES or status in (408, 429) or status >= 500:
            return False
        return 400 <= status < 500
    return isinstance(error, ParamValidationError)


def error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) or type(error).__name__
    return type(error).__name__


# ---- credentials --------------------------------------------------------------------------------------


class AwsCredentials(abc.ABC):
    """A credentials source; ``load`` is awaited by botocore when a client signs its first request."""

    METHOD = "observer-config"

    @abc.abstractmethod
    async def load(self) -> Any:
        """botocore credentials (static or refreshable), or None."""


@attrs.frozen(repr=False)
class StaticCredentials(AwsCredentials):
    access_key: str
    secret_key: str
    token: str | None = None

    async def load(self) -> AioCredentials:
        return AioCredentials(self.access_key, self.secret_key, self.token, method="observer-static")

    def __repr__(self) -> str:  # never the keys
        return "StaticCredentials(***)"


@attrs.frozen
class EnvironmentCredentials(AwsCredentials):
    async def load(self) -> Any:
        return await AioEnvProvider().load()


@attrs.frozen
class ProfileCredentials(AwsCredentials):
    path: Path
    profile: str
    config_file: bool  # ~/.aws/config syntax ([profile x]) instead of ~/.aws/credentials ([x])

    def keys(self) -> Mapping[str, str]:
        if self.config_file:
            profiles = configloader.load_config(str(self.path)).get("profiles", {})
        else:
            profiles = configloader.raw_config_parse(str(self.path))
        return profiles.get(self.profile) or {}

    async def load(self) -> AioCredentials | None:
        keys = self.keys()
        if "aws_access_key_id" not in keys:
            return None
        return AioCredentials(keys["aws_access_key_id"], keys.get("aws_secret_access_key"),
                              keys.get("aws_session_token"), method="observer-profile")


@attrs.frozen
class AssumeRoleCredentials(AwsCredentials):
    role_arn: str
    session_name: str
    region: str
    endpoint: str | None
    source: AwsCredentials | None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    async def load(self) -> Any:
        if self.source is not None:
            source = await self.source.load()
        else:
            source = await AioSession().get_credentials()
        if source is None:
            raise RuntimeError("no source credentials found for sts:AssumeRole")
        fetcher = AioAssumeRoleCredentialFetcher(
            _client_creator(self.region, self.endpoint), source, self.role_arn,
            extra_args={"RoleSessionName": self.session_name, **self.extra},
        )
        return AioDeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                 method="observer-assume-role")


@attrs.frozen
class WebIdentityCredentials(AwsCredentials):
    role_arn: str
    session_name: str
    token_file: Path
    region: str
    endpoint: str | None

    async def load(self) -> Any:
        fetcher = AioAssumeRoleWithWebIdentityCredentialFetcher(
            _client_creator(self.region, self.endpoint), FileWebIdentityTokenLoader(str(self.token_file)),
            self.role_arn, extra_args={"RoleSessionName": self.session_name},
        )
        return AioDeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                 method="observer-web-identity")


def _client_creator(region: str, endpoint: str | None) -> Callable[..., Any]:
    session = AioSession()

    def create(service_name: str, **kwargs: Any) -> Any:
        return session.create_client(service_name, region_name=region, endpoint_url=endpoint, **kwargs)

    return create


CREDENTIAL_TYPES = ("AwsStatic", "AwsEnvironmentVariable", "AwsSystemProperty", "AwsProfile",
                    "AwsStsAssumeRoleSession", "AwsWebIdentityTokenFile")


def read_credentials(reader: ConfigReader, region: str, key: str = "credentials") -> AwsCredentials | None:
    block = reader.section(key)
    if block is None:
        return None
    kind = block.choice("type", CREDENTIAL_TYPES)
    config = block.section("config") or ConfigReader({}, block.key_path("config"))
    block.finish()
    credentials = _build_credentials(kind, config, region)
    config.finish()
    return credentials


def _build_credentials(kind: str, c: ConfigReader, region: str) -> AwsCredentials:
    if kind == "AwsStatic":
        return StaticCredentials(c.secret("accessKeyId"), c.secret("secretAccessKey"),
                                 c.secret("sessionToken", None))
    if kind in ("AwsEnvironmentVariable", "AwsSystemProperty"):
        missing = [v for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not os.environ.get(v)]
        if missing:
            raise SinkConfigError(c.path.rsplit(".", 1)[0] + ".type",
                                  f"{kind} needs the environment variables {', '.join(missing)}")
        return EnvironmentCredentials()
    if kind == "AwsProfile":
        file_type = c.choice("profileFileType", ("CREDENTIALS", "CONFIGURATION"), "CREDENTIALS")
        default_path = "~/.aws/config" if file_type == "CONFIGURATION" else "~/.aws/credentials"
        path = Path(c.string("profileFilePath", default_path)).expanduser()
        profile = ProfileCredentials(path, c.string("profileName", "default"), file_type == "CONFIGURATION")
        try:
            keys = profile.keys()
        except BotoCoreError as exc:
            raise c.error("profileFilePath", f"cannot read {path}: {exc}") from None
        if "aws_access_key_id" not in keys or "aws_secret_access_key" not in keys:
            raise c.error("profileName", f"profile {profile.profile!r} in {path} has no "
                                         "aws_access_key_id / aws_secret_access_key")
        return profile
    if kind == "AwsStsAssumeRoleSession":
        if c.has("serialNumber"):
            raise c.error("serialNumber", "MFA is not supported: the daemon cannot enter a token code")
        sts_region = read_region(c, "regionId", region)
        extra: dict[str, Any] = {}
        for key, arg in (("policy", "Policy"), ("externalId", "ExternalId")):
            if c.has(key):
                extra[arg] = c.string(key)
        if c.has("transitiveTagKey"):
            extra["TransitiveTagKeys"] = c.string_list("transitiveTagKey")
        if c.has("durationSeconds"):
            extra["DurationSeconds"] = c.integer("durationSeconds", minimum=900, maximum=43200)
        return AssumeRoleCredentials(
            role_arn=c.string("roleArn", allow_empty=False),
            session_name=c.string("roleSessionName", "observer", allow_empty=False),
            region=sts_region, endpoint=read_endpoint(c), source=read_credentials(c, sts_region), extra=extra,
        )
    # AwsWebIdentityTokenFile
    token_key = "webIdentityTokenFile"
    if c.has("tokenFile") and not c.has(token_key):
        token_key = "tokenFile"  # the reference's name
    token_file = Path(c.string(token_key, allow_empty=False)).expanduser()
    if not token_file.is_file():
        raise c.error(token_key, f"{token_file} is not a file")
    return WebIdentityCredentials(
        role_arn=c.string("roleArn", allow_empty=False),
        session_name=c.string("roleSessionName", "observer", allow_empty=False),
        token_file=token_file, region=read_region(c, "regionId", region), endpoint=read_endpoint(c),
    )


# ---- clients -------------------------------------------------------------------------------------------


class AwsClient:
    """One aiobotocore client, opened and closed with the sink's connection."""

    def __init__(self, service: str, region: str, endpoint: str | None, credentials: AwsCredentials | None,
                 max_pool_connections: int = 10) -> None:
        self.service = service
        self.region = region
        self.endpoint = endpoint
        self.credentials = credentials
        self.config = AioConfig(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=5,
                                read_timeout=30, max_pool_connections=max_pool_connections)
        self._stack: contextlib.AsyncExitStack | None = None
        self.client: Any = None

    async def open(self) -> None:
        session = AioSession()
        if self.credentials is not None:
            session.register_component("credential_provider", AioCredentialResolver([self.credentials]))
        stack = contextlib.AsyncExitStack()
        self.client = await stack.enter_async_context(session.create_client(
            self.service, region_name=self.region, endpoint_url=self.endpoint, config=self.config))
        self._stack = stack

    async def close(self) -> None:
        stack, self._stack, self.client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
