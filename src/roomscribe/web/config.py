"""How `roomscribe serve` is configured, and the rule that it is never exposed by accident."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..diarization.extras import DiarizationUnavailableError, check_hints, require_packages
from ..engine import StreamConfig
from ..engine.clusters import SpeakerHints
from ..session.options import OptionsError, PolicyName, parse_language, parse_policy, parse_prompt, parse_task


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    certfile: str | None = None
    keyfile: str | None = None
    api_key: str | None = None  # required for every data route when set
    policy: PolicyName = "localagreement"
    language: str | None = None
    max_upload_mb: float = 200.0
    max_file_minutes: float = 180.0
    max_file_jobs: int = 1  # files transcribed at once (they share the model with live streams)
    max_queued_files: int = 8
    max_sessions: int = 64
    max_live_streams: int = 64  # speakers across the page and /asr
    diarizer: str = "campplus"  # the engine's diarization backend, checked before a stream opens
    # Meeting records: SQLite under data_dir (None: the user's data directory), or `database`
    # (a PostgreSQL URL); records=False keeps none (no /meetings).
    records: bool = True
    data_dir: str | None = None
    database: str | None = None
    keep_audio: bool = False  # store uploads' and URL jobs' audio with their meetings
    retention_days: float | None = None  # meetings older than this are deleted
    allow_fetch: tuple[str, ...] = ()  # private networks and hosts URL jobs may fetch from
    media_root: str | None = None  # local files jobs may read (none without it)

    def stream_config(
        self,
        language: str | None = None,
        policy: str | None = None,
        task: str | None = None,
        prompt: str | None = None,
        speakers: SpeakerHints | None = None,
    ) -> StreamConfig:
        """A live stream's options from a client's query, over the server's defaults
        (`OptionsError`, a ValueError, when they are bad). `speakers` diarizes the stream."""
        if speakers is not None:
            try:
                check_hints(self.diarizer, speakers)
                require_packages(self.diarizer)
            except (DiarizationUnavailableError, ValueError) as exc:
                raise OptionsError(str(exc)) from None
        return StreamConfig(
            policy=parse_policy(policy) if policy else self.policy,
            language=self.language if language is None else parse_language(language),
            task=parse_task(task),
            prompt=parse_prompt(prompt),
            diarize=speakers is not None,
            speakers=speakers or SpeakerHints(),
        )


class ConfigError(ValueError):
    """A server configuration that must not start (e.g. exposed without a key)."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: ServerConfig, allow_no_auth: bool = False, tenant_keys: bool = False) -> list[str]:
    """Refuse to expose the server without a key (the server's own, or tenants' keys in its
    store); returns warnings to print."""
    warnings = []
    if not is_loopback(config.host):
        if not config.api_key and not tenant_keys and not allow_no_auth:
            raise ConfigError(
                f"listening on {config.host} exposes the server beyond this machine: set "
                "ROOMSCRIBE_API_KEY (clients send it as 'Authorization: Bearer KEY') or create tenant keys "
                "(roomscribe keys create TENANT), or pass --no-auth to allow anyone on the network"
            )
        if not config.certfile:
            warnings.append(
                "no TLS: browsers only give the microphone to pages served over https "
                "(--certfile/--keyfile) or from localhost"
            )
    if bool(config.certfile) != bool(config.keyfile):
        raise ConfigError("--certfile and --keyfile go together")
    return warnings
