"""`edgefusion serve` as a real subprocess: readiness, metrics, SIGHUP reloads, SIGTERM, sd_notify."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_kit import NotifySocket, free_port, get

from edgefusion.config import dump_toml, loads, pipeline_config
from edgefusion.errors import ConfigError
from edgefusion.package import BUILTIN_DIR
from edgefusion.pipeline import PipelineConfig

prom_parser = pytest.importorskip("prometheus_client.parser")


_free_port, _get = free_port, get


def _config(package: str, port: int, results: Path) -> str:
    return f"""
watchdog_s = 0.2
[model]
package = "{package}"
threads = 1
[sources.camera]
uri = "synth:smart_home"
loop = true
[sinks]
jsonl = "{results}"
[http]
port = {port}
[logging]
json = true
"""


@pytest.mark.slow
def test_serve_end_to_end(tmp_path):
    port = _free_port()
    results = tmp_path / "results.jsonl"
    cfg = tmp_path / "service.toml"
    cfg.write_text(_config("smart_home", port, results))
    new_pkg, broken = tmp_path / "v2", tmp_path / "broken"
    shutil.copytree(BUILTIN_DIR / "smart_home", new_pkg)
    manifest = json.loads((new_pkg / "manifest.json").read_text())
    manifest["name"] = "smart_home-v2"
    (new_pkg / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(BUILTIN_DIR / "smart_home", broken)
    (broken / "model.fp32.onnx").write_bytes(b"not a model")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
    proc = subprocess.Popen([sys.executable, "-m", "edgefusion", "serve", "--config", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(port, "/readyz")
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, proc.stderr.read() if proc.poll() is not None else "never ready"
        assert _get(port, "/healthz") == (200, "ok\n")
        ready = json.loads(body)
        assert ready["ready"] and ready["streams"]["camera"]["fresh"] and ready["model"] == "smart_home-attention"

        time.sleep(1.0)
        code, text = _get(port, "/metrics")
        assert code == 200
        families = {f.name: f for f in prom_parser.text_string_to_metric_families(text)}
        hist = families["edgefusion_stage_latency_seconds"]
        assert hist.type == "histogram"
        stages = {s.labels["stage"] for s in hist.samples if s.name.endswith("_count")}
        assert {"inference", "end_to_end", "queue_wait"} <= stages
        assert any(s.value > 0 for s in families["edgefusion_results"].samples)
        info = families.get("edgefusion_model") or families["edgefusion_model_info"]
        assert info.samples[0].labels["name"] == "smart_home-attention"

        # reload to a new model: swapped between steps
        cfg.write_text(_config(str(new_pkg), port, results))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while json.loads(_get(port, "/readyz")[1])["last_reload"].get("ok") is not True:
            assert time.monotonic() < deadline, "reload did not happen"
            time.sleep(0.1)
        time.sleep(0.5)
        # reload to a broken model: the old one keeps serving, the failure is reported
        cfg.write_text(_config(str(broken), port, results))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while json.loads(_get(port, "/readyz")[1])["last_reload"].get("ok") is not False:
            assert time.monotonic() < deadline, "broken reload not reported"
            time.sleep(0.1)
        rz = json.loads(_get(port, "/readyz")[1])
        assert rz["ready"] and rz["model"] == "smart_home-v2" and "sha256" in rz["last_reload"]["error"]
        n_before = len(results.read_text().splitlines())
        time.sleep(0.5)
        assert len(results.read_text().splitlines()) > n_before  # still serving

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    err = proc.stderr.read()
    assert rc == 0, err
    assert took < 5.0
    lines = results.read_text().splitlines()
    rows = [json.loads(x) for x in lines]  # every line complete: the sink was flushed
    assert [r["seq"] for r in rows] == list(range(len(rows)))  # contiguous across both reloads
    models = [r["model"] for r in rows]
    first_v2 = models.index("smart_home-v2")
    assert set(models[:first_v2]) == {"smart_home-attention"} and set(models[first_v2:]) == {"smart_home-v2"}
    assert "reload failed, the running model stays" in err
    assert all(json.loads(x)["run_id"] == rz["run_id"] for x in err.splitlines() if x.startswith("{"))

    sd = notify.lines()
    assert sd.count("READY=1") >= 1 and "STOPPING=1" in sd
    assert sd.index("READY=1") < sd.index("STOPPING=1")
    pings = [t for t, m in notify.messages if m == "WATCHDOG=1"]
    assert len(pings) >= 5
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    assert 0.15 <= gaps[len(gaps) // 2] <= 0.3  # at the configured 0.2 s


def test_config_errors_name_the_key_and_suggest():
    with pytest.raises(ConfigError, match=r"model.pakage: unknown key; did you mean 'package'\?"):
        loads('[model]\npakage = "x"\n[sources.camera]\nuri = "0"')
    with pytest.raises(ConfigError, match=r"http.port: expected int, got str '80'"):
        loads('[sources.camera]\nuri = "0"\n[http]\nport = "80"')
    with pytest.raises(ConfigError, match=r"sync.audio_policy: expected one of \['mask', 'skip'\], got 'drop'"):
        loads('[sources.camera]\nuri = "0"\n[sync]\naudio_policy = "drop"')
    with pytest.raises(ConfigError, match=r"sources\.camera\.uri is required"):
        loads("[model]\nthreads = 1")
    # threads as on the command line: a count or "auto"
    assert loads('[model]\nthreads = "auto"\n[sources.camera]\nuri = "0"').model.threads == "auto"
    with pytest.raises(ConfigError, match=r"model.threads: expected a number of threads or 'auto', got 'many'"):
        loads('[model]\nthreads = "many"\n[sources.camera]\nuri = "0"')
    with pytest.raises(ConfigError, match=r"model.threads: must be from 1 to 1024, got 0"):
        loads('[model]\nthreads = 0\n[sources.camera]\nuri = "0"')
    with pytest.raises(ConfigError, match="not valid TOML"):
        loads("[model\n")


def test_config_show_round_trips_and_examples_check():
    cfg = loads('[sources.camera]\nuri = "0"\n[sinks.mqtt]\nenabled = true\nport = 1884')
    again = loads(dump_toml(cfg))
    assert again == cfg and again.sinks.mqtt.port == 1884 and again.http.port == 8321
    repo = Path(__file__).resolve().parents[1]
    for example in sorted((repo / "examples").glob("*.toml")):
        p = subprocess.run([sys.executable, "-m", "edgefusion", "config", "check", str(example)], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and ": OK (model" in p.stdout, p.stderr


def test_queues_are_set_from_toml_and_default_to_the_runtime():
    cam = '[sources.camera]\nuri = "0"\n'
    defaults, pc = PipelineConfig(), pipeline_config(loads(cam))
    names = ("frame_capacity", "audio_capacity", "text_capacity", "sink_capacity", "frame_max_age_ns", "deadline_ns")
    assert [getattr(pc, n) for n in names] == [getattr(defaults, n) for n in names]
    assert not pc.lossless

    cfg = loads(cam + "[queues]\nframe_capacity = 4\nsink_capacity = 32\nframe_max_age_ms = 0\ndeadline_ms = 40")
    pc = pipeline_config(cfg)
    assert (pc.frame_capacity, pc.sink_capacity, pc.audio_capacity) == (4, 32, defaults.audio_capacity)
    assert pc.frame_max_age_ns is None and pc.deadline_ns == 40_000_000  # 0 ms: no freshness budget
    assert loads(dump_toml(cfg)) == cfg

    with pytest.raises(ConfigError, match=r"queues.frame_max_age: unknown key; did you mean 'frame_max_age_ms'\?"):
        loads(cam + "[queues]\nframe_max_age = 100")
    with pytest.raises(ConfigError, match=r"queues.sink_capacity: must be at least 1, got 0"):
        loads(cam + "[queues]\nsink_capacity = 0")
    with pytest.raises(ConfigError, match=r"queues.deadline_ms: must not be negative, got -1"):
        loads(cam + "[queues]\ndeadline_ms = -1")


def test_config_show_prints_the_queues(tmp_path):
    cfg = tmp_path / "q.toml"
    cfg.write_text('[sources.camera]\nuri = "0"\n[queues]\ndeadline_ms = 40\n')
    p = subprocess.run([sys.executable, "-m", "edgefusion", "config", "show", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "[queues]\nframe_capacity = 2\naudio_capacity = 256\ntext_capacity = 64\nsink_capacity = 256\n" \
           "frame_max_age_ms = 250\ndeadline_ms = 40\n" in p.stdout


#: the configs the issue found passing `config check` while crashing or failing silently: (TOML, the problem)
BAD = [
    ("[sinks.mqtt]\nenabled = true\nbuffer = 0", "sinks.mqtt.buffer: must be at least 1, got 0"),
    ("[sinks.mqtt]\nenabled = true\nport = 99999", "sinks.mqtt.port: must be from 1 to 65535, got 99999"),
    ("[post]\non = nan", "post.on: must be a finite number, got nan"),
    ("watchdog_s = inf", "watchdog_s: must be a finite number, got inf"),
    ("[sources]\nretry_initial_s = nan", "sources.retry_initial_s: must be a finite number, got nan"),
    ('[model]\nbackend = "onnx"', "model.backend: unknown backend 'onnx'; did you mean 'onnxruntime'?"),
    ('[model]\nvariant = "fp8"', "model.variant: unknown variant of package 'smart_home-attention' 'fp8'"),
    ("", "sources.camera.uri: unknown scenario 'smart_hom'; did you mean 'smart_home'?"),
    ('[sources.text]\nuri = "tcp://127.0.0.1"', "sources.text.uri: expected tcp://HOST:PORT with a port from 0 to "
                                                 "65535"),
    ('[sources.text]\nuri = "udp://x:1"', "sources.text.uri: unknown address 'udp://x:1'"),
    ('[sinks.mqtt]\nenabled = true\ntls = true\nca_file = "/nonexistent/ca.pem"',
     "sinks.mqtt.ca_file: file /nonexistent/ca.pem does not exist"),
    ('[sinks]\njsonl = "/nonexistent/dir/results.jsonl"', "sinks.jsonl: folder /nonexistent/dir does not exist"),
    ("[post]\non = 0.3\noff = 0.6", "post.off (0.6) must not be above post.on (0.3)"),
]


def _bad_config(extra: str, camera: str) -> str:
    return f'{extra}\n[sources.camera]\nuri = "{camera}"\n'  # top-level keys before any table


@pytest.mark.parametrize(("extra", "problem"), BAD, ids=[p.split(":")[0] for _, p in BAD])
def test_config_check_finds_each_problem(tmp_path, extra, problem):
    from edgefusion.serve.check import load_checked

    camera = "synth:smart_hom" if "scenario" in problem else "synth:smart_home"
    cfg = tmp_path / "bad.toml"
    cfg.write_text(_bad_config(extra, camera))
    with pytest.raises(ConfigError) as err:
        load_checked(cfg)
    assert str(err.value) .startswith(f"{cfg}: {problem}"), str(err.value)  # one problem: one line
    assert "\n" not in str(err.value)


ALL_AT_ONCE = """watchdog_s = inf
[model]
backend = "onnx"
variant = "fp8"
[sources]
retry_initial_s = nan
[sources.camera]
uri = "synth:smart_hom"
[sources.text]
uri = "tcp://127.0.0.1"
[post]
on = nan
[sinks]
jsonl = "/nonexistent/dir/results.jsonl"
[sinks.mqtt]
enabled = true
port = 99999
buffer = 0
tls = true
ca_file = "/nonexistent/ca.pem"
"""


def test_config_check_and_serve_print_every_problem_one_line_each(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(ALL_AT_ONCE)
    expected = [p for e, p in BAD if "udp://" not in e and "post.off" not in p]
    for cmd in (["config", "check", str(cfg)], ["serve", "--config", str(cfg)]):
        p = subprocess.run([sys.executable, "-m", "edgefusion", *cmd], capture_output=True, text=True, timeout=60)
        lines = p.stderr.splitlines()
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert lines[0] == f"error: {cfg}: {len(expected)} problems:", p.stderr
        assert len(lines) == 1 + len(expected) and all(x.startswith("  ") for x in lines[1:]), p.stderr
        for problem in expected:
            assert sum(problem in x for x in lines) == 1, problem


def test_config_show_redacts_secrets(tmp_path):
    cfg = tmp_path / "secret.toml"
    cfg.write_text('[sources.camera]\nuri = "rtsp://admin:s3cret@10.0.0.5/live"\n'
                   '[sinks.mqtt]\nusername = "ef"\npassword = "hunter2"\n')
    p = subprocess.run([sys.executable, "-m", "edgefusion", "config", "show", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "hunter2" not in p.stdout and "s3cret" not in p.stdout
    assert 'password = "***"' in p.stdout and 'uri = "rtsp://admin:***@10.0.0.5/live"' in p.stdout
    assert 'username = "ef"' in p.stdout


UNIT = Path(__file__).resolve().parents[1] / "deploy" / "edgefusion.service"


def test_systemd_unit_has_the_hardening_and_notify_settings():
    unit = UNIT.read_text()
    settings = {x.split("=", 1)[0] for x in unit.splitlines() if "=" in x and not x.startswith("#")}
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=edgefusion", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=edgefusion",
                 "WorkingDirectory=/var/lib/edgefusion", "CapabilityBoundingSet=\n", "UMask=0027",
                 "SystemCallFilter=@system-service", "RestrictNamespaces=yes", "ProtectKernelLogs=yes"):
        assert line in unit, line
    # the GPU, cameras and CUDA keep working: no device sandbox, no W^X, nothing that implies a device list
    for setting in ("PrivateDevices", "MemoryDenyWriteExecute", "DevicePolicy", "DeviceAllow", "ProtectClock",
                    "PrivateUsers"):
        assert setting not in settings, setting


def test_systemd_analyze_scores_the_unit_at_most_3():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    p = subprocess.run([analyze, "security", "--offline=true", str(UNIT)], capture_output=True, text=True,
                       timeout=60)
    line = next(x for x in p.stdout.splitlines() if "Overall exposure level" in x)
    score = float(line.split(":")[1].split()[0])
    assert score <= 3.0, p.stdout


def test_config_check_says_what_serve_would_stop_on(tmp_path, capsys):
    """config check said OK for backend 'tensorrt' where TensorRT is missing; serve then failed at start-up."""
    from importlib.util import find_spec

    from edgefusion.cli import main

    cfg = tmp_path / "trt.toml"
    cfg.write_text('[model]\nbackend = "tensorrt"\n[sources.camera]\nuri = "synth:smart_home"\n')
    rc = main(["config", "check", str(cfg)])
    err = capsys.readouterr().err
    if find_spec("tensorrt") is None:
        assert rc == 2 and "model.backend: 'tensorrt' needs the Python module 'tensorrt'" in err, err
    cfg.write_text('[model]\npackage = "driving"\n[sources.camera]\nuri = "synth:smart_home"\n')
    assert main(["config", "check", str(cfg)]) == 2  # a driving model on synthesized smart_home scenes
    assert ("sources.camera.uri: synth:smart_home synthesizes scenario 'smart_home', and driving-attention runs "
            "task 'driving'") in capsys.readouterr().err
    cfg.write_text('[model]\nvariant = "int8_trt"\n[sources.camera]\nuri = "synth:smart_home"\n')
    assert main(["config", "check", str(cfg)]) == 0
    out = capsys.readouterr()
    assert "built for TensorRT; on 'onnxruntime' it runs on the CPU, for checks only" in out.err and "OK" in out.out
