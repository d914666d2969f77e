"""What ``serve`` would find wrong with a config on this machine, checked before it starts.

:func:`edgefusion.config.loads` checks a config by itself (keys, types, ranges). This
checks it against the machine, as ``serve`` would meet it: the backend, package and
variant names, the scenario of a ``synth:`` camera, the form of every source address,
that files named as inputs exist, that the folders of output files exist, and the TLS
material of MQTT. ``edgefusion config check``, the service at start and every SIGHUP
reload run the same checks; all problems come back at once, one line each.

Example:
    >>> from edgefusion.config import loads
    >>> for line in check_config(loads('[model]\\nbackend = "onnx"\\n[sources.camera]\\nuri = "synth:smart_hom"')):
    ...     print(line.split(" (known:")[0])  # each line goes on to list the known names
    model.backend: unknown backend 'onnx'; did you mean 'onnxruntime'?
    sources.camera.uri: unknown scenario 'smart_hom'; did you mean 'smart_home'?
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from edgefusion.config import ServiceConfig, parse, problems_error, read
from edgefusion.errors import EdgeFusionError

if TYPE_CHECKING:
    from edgefusion.package import ModelPackage

__all__ = ["URL_SCHEMES", "check_config", "load_checked"]

#: network stream schemes OpenCV's FFmpeg backend reads
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")


def _camera(uri: str) -> list[str]:
    from edgefusion.sources.camera import _kind, redact_uri

    where = "sources.camera.uri"
    if uri.startswith("synth:"):
        from edgefusion.scenarios import get_scenario

        try:
            get_scenario(uri.split(":", 1)[1])
        except EdgeFusionError as exc:
            return [f"{where}: {exc}"]
        return []
    kind = _kind(uri)
    if kind == "gstreamer":
        return [] if re.search(r"\bappsink\b[^!]*$", uri) else [f"{where}: a GStreamer pipeline must end in appsink"]
    if kind == "url":
        return _url(where, uri, URL_SCHEMES, redact_uri(uri))
    if kind == "file" and not Path(uri).is_file():
        return [f"{where}: video file {uri} does not exist (a device is a number or /dev/videoN; a stream is "
                f"{'|'.join(URL_SCHEMES[:3])}://...; a synthesized scene is synth:SCENARIO)"]
    return []


def _url(where: str, uri: str, schemes: tuple[str, ...], shown: str) -> list[str]:
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        return [f"{where}: malformed address {shown!r}: {exc}"]
    if parts.scheme not in schemes:
        return [f"{where}: unknown scheme in {shown!r}; expected one of {', '.join(schemes)}"]
    if not parts.hostname:
        return [f"{where}: no host in {shown!r}"]
    if port is not None and not 0 < port < 65536:
        return [f"{where}: port {port} in {shown!r} is not from 1 to 65535"]
    return []


def _audio(uri: str) -> list[str]:
    where = "sources.audio.uri"
    if uri in ("none", "default"):
        return []
    if uri.startswith("device:"):
        return [] if uri[len("device:"):] else [f"{where}: 'device:' needs a device number or name"]
    if "://" in uri:
        return [f"{where}: {uri!r} is not an audio source; expected default, device:N, files or none"]
    return [f"{where}: audio file {p} does not exist" for p in uri.split(",") if p and not Path(p).is_file()]


def _text(uri: str) -> list[str]:
    where = "sources.text.uri"
    if uri in ("none", "stdin", "-"):
        return []
    if uri.startswith("tcp://"):
        host, _, port = uri[len("tcp://"):].rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            return [f"{where}: expected tcp://HOST:PORT with a port from 0 to 65535, got {uri!r}"]
        return []
    if uri.startswith("unix://"):
        path = Path(uri[len("unix://"):])
        if not path.is_absolute():
            return [f"{where}: expected unix:///ABSOLUTE/PATH, got {uri!r}"]
        return [] if path.parent.is_dir() else [f"{where}: folder {path.parent} does not exist"]
    return [f"{where}: unknown address {uri!r}; expected stdin, tcp://HOST:PORT, unix:///PATH or none"]


def _model(cfg: ServiceConfig) -> list[str]:
    from edgefusion.backends import BACKENDS
    from edgefusion.errors import unknown_name
    from edgefusion.package import load_package
    from edgefusion.policy import task_of
    from edgefusion.scenarios import SCENARIOS

    m = cfg.model
    out = []
    if m.backend not in BACKENDS:
        out.append(f"model.backend: {unknown_name('backend', m.backend, BACKENDS)}")
    try:
        pkg = load_package(m.package)
    except EdgeFusionError as exc:
        return [*out, f"model.package: {exc}"]
    if m.backend == "tensorrt":
        variants: list[str] = ["fp32", "fp16", "int8"]
        if importlib.util.find_spec("tensorrt") is None:  # serve would stop at start-up on it
            out.append("model.backend: 'tensorrt' needs the Python module 'tensorrt', which is not installed "
                       "(pip install 'edgefusion[tensorrt]' on x86-64; on Jetson it comes with JetPack)")
    else:
        variants = list(pkg.variants)
    if m.variant not in variants:
        out.append(f"model.variant: {unknown_name(f'variant of package {pkg.name!r}', m.variant, variants)}")
    uri, scenario = cfg.sources.camera.uri, cfg.sources.camera.uri.removeprefix("synth:")
    task = task_of(pkg)
    # (an unknown scenario is the camera check's to report)
    if uri.startswith("synth:") and scenario in SCENARIOS and task is not None and scenario != task.name:
        out.append(f"sources.camera.uri: {uri} synthesizes scenario '{scenario}', and "
                   f"{pkg.name} runs task '{task.name}': use synth:{task.name} or another package")
    return out


def _stages(cfg: ServiceConfig) -> list[str]:
    """Each stage's backend, package and variant (the gate's label is checked when the stage opens)."""
    from edgefusion.backends import BACKENDS
    from edgefusion.errors import unknown_name
    from edgefusion.package import load_package

    out = []
    for s in cfg.stages:
        where = f"stages.{s.name}"
        if s.backend not in BACKENDS:
            out.append(f"{where}.backend: {unknown_name('backend', s.backend, BACKENDS)}")
        try:
            pkg = load_package(s.package)
        except EdgeFusionError as exc:
            out.append(f"{where}.package: {exc}")
            continue
        if s.backend != "tensorrt" and s.variant not in pkg.variants:
            out.append(f"{where}.variant: {unknown_name(f'variant of package {pkg.name!r}', s.variant, pkg.variants)}")
        if s.confirm is not None:
            out += _confirm_problems(where, s.confirm, pkg, cfg.model.package)
            hears = any(i.modality == "audio" for i in pkg.inputs)
            if hears and cfg.sources.audio.uri == "none" and not cfg.sources.camera.uri.startswith("synth:"):
                out.append(f"{where}.confirm: the stage hears audio and sources.audio.uri is 'none', so "
                           f"{s.confirm!r} would never be confirmed; set sources.audio.uri (default, device:N or "
                           "audio files)")
    return out


def _confirm_problems(where: str, label: str, stage_pkg: ModelPackage, model: str) -> list[str]:
    """A confirmed label must be an event of both the stage and the main model (else serve refuses to start)."""
    from edgefusion.engine import event_labels
    from edgefusion.package import load_package

    out = []
    try:
        main = load_package(model)
    except EdgeFusionError:
        main = None  # the model's own check says why
    for who, pkg in (("the stage", stage_pkg), ("the model", main)):
        if pkg is None:
            continue
        labels = event_labels(pkg)
        if label not in labels:
            out.append(f"{where}.confirm: {label!r} is not an event label of {who}, {pkg.name} "
                       f"({', '.join(labels) or 'none'})")
    return out


def _outputs(cfg: ServiceConfig) -> list[str]:
    out = []
    for where, path in (("sinks.jsonl", cfg.sinks.jsonl), ("recording.path", cfg.recording.path)):
        if path and path != "-" and not Path(path).resolve().parent.is_dir():
            out.append(f"{where}: folder {Path(path).resolve().parent} does not exist (relative paths start in the "
                       "service's working directory; the systemd unit's is its StateDirectory)")
    return out


def _mqtt(cfg: ServiceConfig) -> list[str]:
    m = cfg.sinks.mqtt
    out = []
    for key in ("topic_prefix", "discovery_prefix"):
        topic = getattr(m, key)
        if not topic or "+" in topic or "#" in topic or topic.startswith("/") or topic.endswith("/"):
            out.append(f"sinks.mqtt.{key}: {topic!r} is not a topic prefix (no wildcards + #, no leading or "
                       "trailing /, not empty)")
    files = {"ca_file": m.ca_file, "cert_file": m.cert_file, "key_file": m.key_file}
    for key, path in files.items():
        if path and not m.tls:
            out.append(f"sinks.mqtt.{key} is set but tls = false: it would be ignored")
        elif path and not Path(path).is_file():
            out.append(f"sinks.mqtt.{key}: file {path} does not exist")
    if m.key_file and not m.cert_file:
        out.append("sinks.mqtt.key_file needs cert_file (the client certificate)")
    return out


def _speech(cfg: ServiceConfig) -> list[str]:
    from edgefusion.package import load_package
    from edgefusion.sources.speech import check_speech_available, speech_task

    out = []
    try:
        check_speech_available()
    except EdgeFusionError as exc:
        out.append(f"sources.speech.enabled: {exc}")
    try:
        pkg = load_package(cfg.model.package)
    except EdgeFusionError:
        return out  # model.package reports it
    try:
        speech_task(pkg)
    except EdgeFusionError as exc:
        out.append(f"sources.speech.enabled: {exc}")
    return out


def check_config(cfg: ServiceConfig) -> list[str]:
    """Every problem ``serve`` would meet with ``cfg`` on this machine, one line each ([] when none)."""
    s = cfg.sources
    return [*_model(cfg), *_stages(cfg), *(_camera(s.camera.uri) if s.camera.uri else []), *_audio(s.audio.uri),
            *_text(s.text.uri), *(_speech(cfg) if s.speech.enabled else []), *_outputs(cfg),
            *(_mqtt(cfg) if cfg.sinks.mqtt.enabled else [])]


def load_checked(path: str | Path) -> ServiceConfig:
    """Load ``path`` and check it, by itself and against the machine.

    Raises:
        ConfigError: one line per problem, those of the file and those of the machine together.
    """
    cfg, problems = parse(read(path), str(path))
    problems += check_config(cfg)
    if problems:
        raise problems_error(str(path), problems)
    return cfg
