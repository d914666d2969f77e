"""``edgefusion serve`` and ``edgefusion config check|show``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgefusion.cli._common import add_command, foxglove_option

SERVE_EPILOG = """examples:
  edgefusion config check examples/smart_home.toml
  edgefusion serve --config examples/smart_home.toml
  curl -s 127.0.0.1:8321/readyz; curl -s 127.0.0.1:8321/metrics | grep edgefusion_stage
  kill -HUP $(pidof edgefusion)        # reload the model named in the config, without a gap

/healthz fails (503) when the pipeline stalls; /readyz (503 with "reasons") when the model
is loading, a required stream is reconnecting or stale, or the MQTT broker is unreachable.
Exit status: 0 after SIGTERM/SIGINT, 1 when the camera source ends for good or the pipeline
fails, 2 for a config with problems.

As a systemd service: deploy/edgefusion.service (Type=notify, watchdog fed by pipeline
progress, restart on failure, hardened; results under its StateDirectory).
"""


def cmd_serve(a: argparse.Namespace) -> None:
    from edgefusion.serve import Service

    sys.exit(Service(a.config, foxglove=a.foxglove).run())


def cmd_config_check(a: argparse.Namespace) -> None:
    from edgefusion.config import redacted
    from edgefusion.package import load_package
    from edgefusion.serve.check import load_checked

    cfg = redacted(load_checked(a.file))
    pkg = load_package(cfg.model.package)
    if cfg.model.backend != "tensorrt" and cfg.model.variant.endswith("_trt"):
        print(f"note: model.variant {cfg.model.variant!r} is built for TensorRT; on {cfg.model.backend!r} it runs on "
              "the CPU, for checks only", file=sys.stderr)
    print(f"{a.file}: OK (model {pkg.name}, backend {cfg.model.backend}:{cfg.model.variant}, camera "
          f"{cfg.sources.camera.uri!r}, audio {cfg.sources.audio.uri!r}, text {cfg.sources.text.uri!r}, "
          f"speech {'on' if cfg.sources.speech.enabled else 'off'}, mqtt {'on' if cfg.sinks.mqtt.enabled else 'off'}, "
          f"http {cfg.http.host}:{cfg.http.port}, stages {', '.join(st.name for st in cfg.stages) or 'none'})")


def cmd_config_show(a: argparse.Namespace) -> None:
    from edgefusion.config import dump_toml, load, redacted

    print(f"# resolved from {a.file}, defaults included; secrets shown as ***")
    print(dump_toml(redacted(load(a.file))))


def register(sub: Any) -> None:
    sp = add_command(sub, "serve", "Run as a long-lived service from a TOML config: health and Prometheus metrics "
                                   "over HTTP, MQTT, recording, SIGHUP model reload, systemd notify and watchdog "
                                   "(needs the 'serve' extra).", cmd_serve)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = SERVE_EPILOG
    sp.add_argument("--config", required=True, help="the service's TOML file (see examples/)")
    foxglove_option(sp)

    cp = add_command(sub, "config", "Check or print a service config.", lambda a: cp.print_help())
    csub = cp.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    sp = add_command(csub, "check", "Check a config as 'serve' would: keys, types, ranges, finite numbers, "
                                    "source addresses, backend, package, variant and scenario names, input and TLS "
                                    "files, output folders. Every problem is printed, one line each (exit 2).",
                     cmd_config_check)
    sp.add_argument("file", help="the service's TOML file (relative paths in it start in the current directory)")
    sp = add_command(csub, "show", "Print the resolved config, defaults included, as TOML (passwords redacted).",
                     cmd_config_show)
    sp.add_argument("file", help="the service's TOML file")
