"""The service configuration (TOML): typed, frozen, validated, printable.

Every table maps onto a frozen dataclass; units are in the names (``*_ms``, ``*_s``).
The whole file is checked and every problem reported, one line each, in one
:class:`~edgefusion.errors.ConfigError`: unknown keys (with a "did you mean"), wrong types
(the key path and the expected type), values out of range, numbers that are not finite.
What needs the machine (packages, backends, files, addresses) is checked by
:func:`edgefusion.serve.check.check_config`. :func:`dump_toml` prints the resolved
configuration with defaults; :func:`redacted` hides its secrets first.

Example:
    >>> cfg = loads('[model]\\npackage = "driving"\\n[sources.camera]\\nuri = "0"')
    >>> cfg.model.package, cfg.http.port
    ('driving', 8321)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefusion.errors import ConfigError
from edgefusion.pipeline import PipelineConfig
from edgefusion.postprocess import PostConfig
from edgefusion.sources.speech_asr import SpeechConfig
from edgefusion.stages import StageSpec, stage_tables
from edgefusion.sync import MissingPolicy, SyncConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

__all__ = ["ServiceConfig", "dump_toml", "load", "loads", "parse", "pipeline_config", "problems_error", "read",
           "redacted", "speech_config"]

MS = 1_000_000


@dataclass(frozen=True)
class ModelSection:
    package: str = "smart_home"
    backend: str = "onnxruntime"
    variant: str = "fp32"
    threads: int | str = 2  # or "auto": the ONNX Runtime backends measure and choose, as --threads auto
    warmup_steps: int = 5


@dataclass(frozen=True)
class CameraSection:
    uri: str = ""  # device index, file, URL, GStreamer pipeline, or "synth:SCENARIO"
    pace: bool = True
    loop: bool = False
    required: bool = True
    max_age_ms: int = 1000


@dataclass(frozen=True)
class AudioSection:
    uri: str = "none"  # "default", "device:N", file(s) separated by commas, or "none"
    loop: bool = False
    required: bool = False
    max_age_ms: int = 1000


@dataclass(frozen=True)
class TextSection:
    uri: str = "none"  # "stdin", "tcp://127.0.0.1:PORT", "unix:///PATH", "none"


@dataclass(frozen=True)
class SpeechSection:
    """Spoken commands heard in the audio stream (needs the 'speech' extra); see SpeechConfig."""

    enabled: bool = False
    vad_mode: int = SpeechConfig.vad_mode  # the runtime's defaults, so the two cannot drift apart
    window_ms: int = SpeechConfig.window_ms
    min_speech_ms: int = SpeechConfig.min_speech_ms
    max_utterance_s: float = SpeechConfig.max_utterance_s
    min_confidence: float = SpeechConfig.min_confidence
    intent_classifier: bool = SpeechConfig.intent_classifier


@dataclass(frozen=True)
class SourcesSection:
    camera: CameraSection = field(default_factory=CameraSection)
    audio: AudioSection = field(default_factory=AudioSection)
    text: TextSection = field(default_factory=TextSection)
    speech: SpeechSection = field(default_factory=SpeechSection)
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0


@dataclass(frozen=True)
class SyncSection:
    audio_max_skew_ms: int = 150
    audio_policy: str = "mask"
    command_horizon_ms: int = 3000
    audio_offset_ms: int = 0


@dataclass(frozen=True)
class PostSection:
    on: float = PostConfig.on  # the runtime's defaults, so the two cannot drift apart
    off: float = PostConfig.off
    event_min_steps: int = PostConfig.event_min_steps
    action_min_steps: int = PostConfig.action_min_steps


@dataclass(frozen=True)
class QueuesSection:
    """The pipeline's queues (live runs: latest-wins; the freshness budget drops stale frames)."""

    frame_capacity: int = PipelineConfig.frame_capacity  # the runtime's defaults, so the two cannot drift apart
    audio_capacity: int = PipelineConfig.audio_capacity
    text_capacity: int = PipelineConfig.text_capacity
    sink_capacity: int = PipelineConfig.sink_capacity
    frame_max_age_ms: int = (PipelineConfig.frame_max_age_ns or 0) // MS  # 0: no freshness budget
    deadline_ms: int = (PipelineConfig.deadline_ns or 0) // MS  # 0: no deadline (else misses are counted)


@dataclass(frozen=True)
class MqttSection:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "edgefusion/device"
    client_id: str = ""
    qos: int = 1
    buffer: int = 10000
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    device_name: str = "EdgeFusion"
    commands: bool = True
    keepalive_s: int = 30
    reconnect_max_s: float = 5.0
    required: bool = True  # readiness needs the broker (else results only wait in the buffer)


@dataclass(frozen=True)
class SinksSection:
    jsonl: str = ""  # "" (none), "-" (stdout) or a path
    jsonl_only_actions: bool = False
    mqtt: MqttSection = field(default_factory=MqttSection)


@dataclass(frozen=True)
class RecordingSection:
    path: str = ""  # "" = no recording
    image_format: str = "jpeg"


@dataclass(frozen=True)
class HttpSection:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8321
    max_connections: int = 64  # open at once; beyond it the oldest idle one is closed
    timeout_s: float = 5.0  # to send a request, and to take the answer


@dataclass(frozen=True)
class LoggingSection:
    level: str = "info"
    json: bool = False


@dataclass(frozen=True)
class ServiceConfig:
    """The whole service configuration."""

    model: ModelSection = field(default_factory=ModelSection)
    sources: SourcesSection = field(default_factory=SourcesSection)
    sync: SyncSection = field(default_factory=SyncSection)
    post: PostSection = field(default_factory=PostSection)
    queues: QueuesSection = field(default_factory=QueuesSection)
    sinks: SinksSection = field(default_factory=SinksSection)
    recording: RecordingSection = field(default_factory=RecordingSection)
    http: HttpSection = field(default_factory=HttpSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    watchdog_s: float = 0.0  # ping period; 0: half of systemd's WATCHDOG_USEC when set
    stall_s: float = 10.0  # input waiting this long without pipeline progress: stalled (pings stop, /healthz 503)
    #: models that run before the main one on each window ([[stages]] tables; see edgefusion.stages)
    stages: tuple[StageSpec, ...] = ()


CHOICES = {
    "sync.audio_policy": ("mask", "skip"),
    "recording.image_format": ("raw", "jpeg"),
    "logging.level": ("debug", "info", "warning", "error"),
    "sinks.mqtt.qos": (0, 1, 2),
    "sources.speech.vad_mode": (0, 1, 2, 3),
}

#: (lowest, highest, lowest allowed itself?) of numeric keys; every other number must not be negative
RANGES: dict[str, tuple[float, float | None, bool]] = {
    **{f"queues.{name}_capacity": (1, None, True) for name in ("frame", "audio", "text", "sink")},
    "model.threads": (1, 1024, True),
    "sources.camera.max_age_ms": (1, None, True),
    "sources.audio.max_age_ms": (1, None, True),
    "sources.retry_initial_s": (0, 3600, False),
    "sources.retry_max_s": (0, 3600, False),
    "sources.speech.window_ms": (90, 3000, True),
    "sources.speech.min_speech_ms": (0, 10000, True),
    "sources.speech.max_utterance_s": (0.5, 60, True),
    "sources.speech.min_confidence": (0, 1, True),
    "post.on": (0, 1, True),
    "post.off": (0, 1, True),
    "post.event_min_steps": (1, None, True),
    "post.action_min_steps": (1, None, True),
    "sinks.mqtt.port": (1, 65535, True),
    "sinks.mqtt.buffer": (1, None, True),
    "sinks.mqtt.keepalive_s": (0, 65535, True),
    "sinks.mqtt.reconnect_max_s": (0, 3600, False),
    "http.port": (0, 65535, True),
    "http.max_connections": (1, 10000, True),
    "http.timeout_s": (0, 3600, False),
    "watchdog_s": (0, 86400, True),
    "stall_s": (0, 86400, False),
}


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


def _build(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    """The dataclass from ``data``; each problem is appended (the default stays in its place)."""
    if not isinstance(data, dict):
        problems.append(f"{path or 'config'}: expected a table, got {type(data).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(fields))}"
            problems.append(f"{where}: unknown key{hint}")
            continue
        t = hints[key]
        if cls is ServiceConfig and key == "stages":
            kwargs[key] = stage_tables(value, where, problems)
            continue
        if dataclasses.is_dataclass(t):
            kwargs[key] = _build(t, value, where, problems)  # type: ignore[arg-type]
            continue
        if where == "model.threads":  # a count, or "auto" as on the command line
            if value == "auto":
                kwargs[key] = value
                continue
            if not isinstance(value, int):
                problems.append(f"{where}: expected a number of threads or 'auto', got {value!r}")
                continue
            t = int
        problem = _check(where, t, value)
        if problem:
            problems.append(problem)
        else:
            kwargs[key] = float(value) if t is float else value
    return cls(**kwargs)


def _check(where: str, t: Any, value: Any) -> str | None:
    """The problem with ``value`` for key ``where`` of type ``t``, or None."""
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, t) and not (t in (int, float) and isinstance(value, bool))
    if not ok:
        return f"{where}: expected {_type_name(t)}, got {type(value).__name__} {value!r}"
    if where in CHOICES and value not in CHOICES[where]:
        return f"{where}: expected one of {list(CHOICES[where])}, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: must be a finite number, got {value}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi, inclusive = RANGES.get(where, (0, None, True))
        if (value < lo if inclusive else value <= lo) or (hi is not None and value > hi):
            if hi is not None:
                return f"{where}: must be {'from' if inclusive else 'above'} {lo:g} {'to' if inclusive else 'up to'} " \
                       f"{hi:g}, got {value}"
            if lo == 0 and inclusive:
                return f"{where}: must not be negative, got {value}"
            return f"{where}: must be at least {lo:g}, got {value}" if inclusive else \
                f"{where}: must be above {lo:g}, got {value}"
    if isinstance(value, str) and "\0" in value:
        return f"{where}: contains a NUL character"
    return None


#: a service config is a few kB; anything near this is not one
MAX_CONFIG_BYTES = 1 << 20


def _cross_checks(cfg: ServiceConfig) -> list[str]:
    """Problems that involve two keys."""
    out = []
    if not cfg.sources.camera.uri:
        out.append("sources.camera.uri is required (a device index, file, URL, GStreamer pipeline or synth:SCENARIO)")
    if cfg.post.off > cfg.post.on:
        out.append(f"post.off ({cfg.post.off}) must not be above post.on ({cfg.post.on}): events would flicker")
    if cfg.sources.speech.enabled and cfg.sources.audio.uri == "none":
        out.append("sources.speech.enabled: spoken commands are heard in the audio stream, and sources.audio.uri is "
                   "'none'; set it to default (the microphone), device:N or audio files")
    if cfg.sources.retry_max_s < cfg.sources.retry_initial_s:
        out.append(f"sources.retry_max_s ({cfg.sources.retry_max_s}) must not be below sources.retry_initial_s "
                   f"({cfg.sources.retry_initial_s})")
    return out


def problems_error(source: str, problems: list[str]) -> ConfigError:
    """One error for all ``problems`` of ``source``: one line each.

    Example:
        >>> print(problems_error("a.toml", ["x: bad", "y: worse"]))
        a.toml: 2 problems:
          x: bad
          y: worse
    """
    if len(problems) == 1:
        return ConfigError(f"{source}: {problems[0]}")
    return ConfigError(f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems))


def parse(text: str, source: str = "config") -> tuple[ServiceConfig, list[str]]:
    """The config (defaults in place of bad values) and its problems, one line each.

    Raises:
        ConfigError: the text is not TOML at all.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{source}: not a usable config: arrays or tables nested too deeply") from exc
    problems: list[str] = []
    cfg = _build(ServiceConfig, data, "", problems)
    return cfg, problems + _cross_checks(cfg)


def loads(text: str, source: str = "config") -> ServiceConfig:
    """Parse and check a config; every problem is reported at once.

    Raises:
        ConfigError: one line per problem.
    """
    cfg, problems = parse(text, source)
    if problems:
        raise problems_error(source, problems)
    return cfg


def read(path: str | Path) -> str:
    """The text of a config file (:class:`ConfigError` when it cannot be read, is huge, binary or not UTF-8)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: over {MAX_CONFIG_BYTES >> 20} MiB: not a config file")
    if b"\0" in raw:
        raise ConfigError(f"{p}: a binary file (a NUL byte at {raw.index(0)}), not a TOML config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}); a config is TOML in UTF-8") from exc


def load(path: str | Path) -> ServiceConfig:
    """Read and check a config file (see :func:`loads`)."""
    return loads(read(path), str(path))


def pipeline_config(cfg: ServiceConfig) -> PipelineConfig:
    """The pipeline settings of a service config: sync, post-processing and queues (live, not lossless).

    Example:
        >>> pc = pipeline_config(loads('[sources.camera]\\nuri = "0"\\n[queues]\\ndeadline_ms = 40'))
        >>> pc.deadline_ns, pc.frame_max_age_ns, pc.frame_capacity
        (40000000, 250000000, 2)
    """
    s, p, q = cfg.sync, cfg.post, cfg.queues
    return PipelineConfig(
        frame_capacity=q.frame_capacity, audio_capacity=q.audio_capacity, text_capacity=q.text_capacity,
        sink_capacity=q.sink_capacity, frame_max_age_ns=q.frame_max_age_ms * MS or None,
        deadline_ns=q.deadline_ms * MS or None,
        sync=SyncConfig(audio_max_skew_ns=s.audio_max_skew_ms * MS, audio_policy=MissingPolicy(s.audio_policy),
                        command_horizon_ns=s.command_horizon_ms * MS, offsets_ns={"audio": s.audio_offset_ms * MS}),
        post=PostConfig(on=p.on, off=p.off, event_min_steps=p.event_min_steps, action_min_steps=p.action_min_steps))


def redacted(cfg: ServiceConfig) -> ServiceConfig:
    """The config with its secrets hidden: the MQTT password, and passwords inside source URIs.

    Example:
        >>> cfg = loads('[sources.camera]\\nuri = "rtsp://u:pw@cam/1"\\n[sinks.mqtt]\\npassword = "pw"')
        >>> r = redacted(cfg)
        >>> r.sinks.mqtt.password, r.sources.camera.uri
        ('***', 'rtsp://u:***@cam/1')
    """
    from edgefusion.sources.camera import redact_uri

    s, m = cfg.sources, cfg.sinks.mqtt
    sources = dataclasses.replace(s, camera=dataclasses.replace(s.camera, uri=redact_uri(s.camera.uri)),
                                  audio=dataclasses.replace(s.audio, uri=redact_uri(s.audio.uri)))
    mqtt = dataclasses.replace(m, password="***" if m.password else "")
    return dataclasses.replace(cfg, sources=sources, sinks=dataclasses.replace(cfg.sinks, mqtt=mqtt))


def dump_toml(cfg: Any, prefix: str = "") -> str:
    """The resolved configuration as TOML (scalars first, then sub-tables)."""
    lines: list[str] = []
    subs, tables = [], []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, tuple):
            tables += [t.to_toml() for t in v]
        elif dataclasses.is_dataclass(v):
            subs.append((f.name, v))
        else:
            lines.append(f"{f.name} = {_toml_value(v)}")
    out = (f"[{prefix}]\n" if prefix and lines else "") + "\n".join(lines) + ("\n" if lines else "")
    for name, v in subs:
        out += "\n" + dump_toml(v, f"{prefix}.{name}" if prefix else name)
    return out + "".join("\n" + t for t in tables)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def speech_config(cfg: ServiceConfig) -> SpeechConfig:
    """The speech source's settings from ``[sources.speech]``.

    Example:
        >>> speech_config(loads('[sources.camera]\\nuri = "0"\\n[sources.speech]\\nwindow_ms = 450')).window_ms
        450
    """
    sp = cfg.sources.speech
    return SpeechConfig(vad_mode=sp.vad_mode, window_ms=sp.window_ms, min_speech_ms=sp.min_speech_ms,
                        max_utterance_s=sp.max_utterance_s, min_confidence=sp.min_confidence,
                        intent_classifier=sp.intent_classifier)
