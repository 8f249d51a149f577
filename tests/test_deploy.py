"""Static checks of the container deployment: docker-compose.yml, Dockerfile, .dockerignore,
deploy/esg-leads.toml and deploy/prometheus/prometheus.yml, against each other and against the code
(topic registry, settings, CLI). Nothing here starts a container or touches the network.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from datetime import timedelta
from pathlib import Path, PurePosixPath

import pytest
import yaml

from esg_leads.cli.main import build_parser
from esg_leads.flows.config import ENV_PREFIX, load_settings
from esg_leads.schemas.keys import KEY_FORMAT
from esg_leads.schemas.settings import Settings
from esg_leads.schemas.topics import ALL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
APP_CONFIG = ROOT / "deploy" / "esg-leads.toml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"

KAFKA_TOPICS_SCRIPT = "kafka-topics.sh"


# ----------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(config_file=APP_CONFIG, environ={})


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        instruction, _, args = full.partition(" ")
        out.append((instruction.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, each starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for instruction, args in instructions:
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, args))
    return result


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def copy_args(args: str) -> tuple[dict[str, str], list[str], str]:
    """Flags, sources and destination of a COPY instruction."""
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words[:-1], words[-1]


def only(instructions: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in instructions if instruction == name]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def container_ports(service: dict) -> set[int]:
    """Container-side ports of a service's ``ports`` (short or long syntax)."""
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def published_ports(service: dict) -> dict[int, int]:
    """{container port: host port} for short-syntax ``HOST:CONTAINER`` entries."""
    out = {}
    for entry in service.get("ports", []):
        parts = str(entry).split("/")[0].split(":")
        if len(parts) >= 2:
            out[int(parts[-1])] = int(parts[-2])
    return out


def duration(text: str) -> timedelta:
    """A compose duration (``1m30s``, ``45s``, ``500ms``)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"bad duration {text!r}"
    return timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def volume_mounts(service: dict) -> dict[str, str]:
    """{container path: source} of a service's short-syntax volumes."""
    out = {}
    for entry in service.get("volumes", []):
        source, target = str(entry).split(":")[:2]
        out[target] = source
    return out


def shell_script(service: dict) -> str:
    """The script a ``bash -c`` service runs, with compose's ``$$`` escapes undone."""
    entrypoint = service["entrypoint"]
    command = service["command"]
    entrypoint = shlex.split(entrypoint) if isinstance(entrypoint, str) else entrypoint
    command = [command] if isinstance(command, str) else command
    assert entrypoint[0].endswith(("bash", "sh")) and entrypoint[-1] == "-c", entrypoint
    assert len(command) == 1, "expected the whole script as one command argument"
    return command[0]


def script_commands(raw_script: str) -> list[list[str]]:
    """argv of each simple command of a one-command-per-line script; ``$NAME`` expanded
    from earlier ``NAME="..."`` assignments with word splitting, as bash does unquoted."""
    script = raw_script.replace("$$", "$")
    variables: dict[str, str] = {}
    commands = []
    for line in script.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_]\w*)=(.*)", line)
        if assignment:
            (variables[assignment[1]],) = shlex.split(assignment[2])
            continue
        argv: list[str] = []
        for word in shlex.split(line):
            ref = re.fullmatch(r"\$(?:\{(\w+)\}|(\w+))", word)
            if ref:
                argv.extend(variables[ref[1] or ref[2]].split())
            else:
                assert "$" not in word, f"unsupported expansion in {line!r}"
                argv.append(word)
        commands.append(argv)
    return commands


def topic_creations(service: dict) -> list[argparse.Namespace]:
    """Each ``kafka-topics.sh --create`` of the topic creator, parsed strictly."""
    parser = argparse.ArgumentParser(exit_on_error=False, add_help=False)
    parser.add_argument("--bootstrap-server", required=True)
    parser.add_argument("--create", action="store_true")
    parser.add_argument("--if-not-exists", action="store_true")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--replication-factor", type=int, required=True)
    parser.add_argument("--config", action="append", default=[])
    created = []
    for argv in script_commands(shell_script(service)):
        if Path(argv[0]).name == KAFKA_TOPICS_SCRIPT and "--create" in argv:
            created.append(parser.parse_args(argv[1:]))
    return created


def in_network_bootstrap(kafka: dict) -> str:
    """host:port of the kafka listener that containers on the compose network use."""
    env = env_of(kafka)
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    internal = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    host, port = advertised[internal]
    return f"{host}:{port}"


def upsert_by_key_outputs() -> set[str]:
    """Outputs whose consumers keep the latest record per investor: keyed by tenant and
    investor id. (``ops.alerts`` is keyed by tenant and ``leads.dlq`` by the rejected
    message's key: every record of those matters, not only the last per key.)"""
    return {name for name, topic in OUTPUT_TOPICS.items() if topic.key_field == KEY_FORMAT}


# -------------------------------------------------------------- compose: structure


def test_compose_has_the_five_services(compose: dict) -> None:
    assert set(compose["services"]) == {"kafka", "topics", "app", "prometheus", "grafana"}
    assert "version" not in compose  # the compose spec ignores it; compose v2 warns


def test_start_order_kafka_healthy_then_topics_then_app(services: dict) -> None:
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully")
    test = services["kafka"]["healthcheck"]["test"]
    test = " ".join(test) if isinstance(test, list) else test
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh", test), test
    assert in_network_bootstrap(services["kafka"]) in test
    # a one-shot job: restarting it would keep the app (waiting for its completion) down
    assert str(services["topics"].get("restart", "no")) == "no"
    assert services["topics"]["image"] == services["kafka"]["image"]


def test_services_use_pinned_images(services: dict) -> None:
    for name in ("kafka", "topics", "prometheus", "grafana"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")


def test_app_is_built_from_the_dockerfile(services: dict) -> None:
    app = services["app"]
    build = app["build"]
    build = {"context": build} if isinstance(build, str) else build
    context = (ROOT / build["context"]).resolve()
    assert context == ROOT
    assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert app["restart"] == "unless-stopped"


def test_bind_mounted_files_exist(services: dict) -> None:
    for name, service in services.items():
        for target, source in volume_mounts(service).items():
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} -> {target} is missing"


def test_named_volumes_are_declared(compose: dict, services: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source in volume_mounts(service).values():
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


# ----------------------------------------------------------------- compose: topics


def test_topics_service_creates_every_topic_and_no_other(services: dict) -> None:
    created = [c.topic for c in topic_creations(services["topics"])]
    assert len(created) == len(set(created)), f"created twice: {created}"
    assert set(created) == set(ALL_TOPICS)
    assert set(INPUT_TOPICS) | set(OUTPUT_TOPICS) == set(ALL_TOPICS)


def test_topic_creation_is_idempotent_and_single_replica(services: dict) -> None:
    bootstrap = in_network_bootstrap(services["kafka"])
    for creation in topic_creations(services["topics"]):
        assert creation.create and creation.if_not_exists, creation.topic
        assert creation.bootstrap_server == bootstrap, creation.topic
        assert creation.replication_factor == 1, creation.topic  # a single broker
        assert creation.partitions >= 1, creation.topic


def test_input_topics_share_one_partition_count(services: dict) -> None:
    # the merged source replays inputs in event-time order across topics; a uniform
    # partitioning keeps the key -> partition mapping the same on every input
    counts = {c.partitions for c in topic_creations(services["topics"]) if c.topic in INPUT_TOPICS}
    assert len(counts) == 1, counts


def test_compacted_topics_are_exactly_the_upsert_by_key_outputs(services: dict) -> None:
    configs = {c.topic: dict(kv.split("=", 1) for kv in c.config)
               for c in topic_creations(services["topics"])}
    compacted = {t for t, cfg in configs.items() if "compact" in cfg.get("cleanup.policy", "")}
    assert upsert_by_key_outputs() == {"crm.handoff", "leads.scored", "leads.review",
                                       "leads.shadow"}
    assert compacted == upsert_by_key_outputs()
    for topic, cfg in configs.items():
        assert set(cfg) <= {"cleanup.policy"}, f"{topic}: unexpected topic config {cfg}"


def test_topic_script_fails_fast_and_escapes_dollars(services: dict) -> None:
    script = shell_script(services["topics"])
    # compose interpolates a single `$`: the script's own variables must be written `$$`
    assert "$" not in script.replace("$$", ""), "unescaped $ would be interpolated by compose"
    first = next(line.strip() for line in script.splitlines() if line.strip())
    assert re.fullmatch(r"set -[a-z]*e[a-z]*( -o pipefail)?", first), (
        "the script must stop at the first failed creation, so the app does not start")


def test_auto_topic_creation_is_off(services: dict) -> None:
    assert env_of(services["kafka"])["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


# ------------------------------------------------------------------ compose: kafka


def test_kafka_kraft_single_node(services: dict) -> None:
    env = env_of(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    bound = listeners(env["KAFKA_LISTENERS"])
    host, port = voter.rsplit(":", 1)
    assert host == "kafka" and bound[controller][1] == int(port)
    assert controller not in listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[key] == "1", key  # the default (3) cannot be met by one broker
    # a KRaft cluster id is a base64url-encoded 16-byte UUID
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_kafka_listeners_in_network_and_host(services: dict) -> None:
    kafka = services["kafka"]
    env = env_of(kafka)
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) == set(protocols)
    for name, (_host, port) in advertised.items():
        assert bound[name][1] == port, f"{name} advertises a port it does not listen on"
    # in-network: the service's DNS name; on the host: localhost through a published port
    internal_host, _ = advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert internal_host in {"kafka", kafka.get("hostname")}
    host_side = [(h, p) for n, (h, p) in advertised.items() if h in {"localhost", "127.0.0.1"}]
    assert host_side, "no listener for clients on the host"
    for _host, port in host_side:
        assert published_ports(kafka).get(port) == port, f"publish {port}:{port}"


def test_app_bootstrap_is_the_in_network_listener(services: dict, settings: Settings) -> None:
    bootstrap = in_network_bootstrap(services["kafka"])
    app_env = env_of(services["app"])
    assert app_env[f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS"] == bootstrap
    assert settings.kafka.bootstrap_servers == bootstrap
    # what the container actually runs with: its environment under the config file
    effective = load_settings(config_file=APP_CONFIG, environ=app_env)
    assert effective.kafka.bootstrap_servers == bootstrap


def test_compose_settings_env_vars_are_valid_setting_paths(services: dict) -> None:
    found = 0
    for name, service in services.items():
        for key, value in env_of(service).items():
            if key.startswith(ENV_PREFIX):
                found += 1
                load_settings(environ={key: value})  # ConfigError on unknown paths or values
                load_settings(config_file=APP_CONFIG, environ={key: value})
    assert found


def test_env_var_check_rejects_a_misspelt_path() -> None:
    from esg_leads.flows.config import ConfigError

    with pytest.raises(ConfigError):
        load_settings(environ={f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVER": "kafka:9092"})


# ------------------------------------------------------------------- app settings


def test_deploy_config_validates(settings: Settings) -> None:
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.metrics.host == "0.0.0.0"  # reachable from Prometheus' container
    assert settings.metrics.port == 9464
    assert settings.recovery.directory == "/data/recovery"
    assert settings.audit.directory == "/data/audit"
    assert list(settings.tenants) == list(Settings().tenants) == [
        "acme-capital", "borealis-re", "cityline-im"]


def test_app_data_is_on_the_volume(services: dict, settings: Settings, dockerfile) -> None:
    volumes = {v for args in only(stages(dockerfile)[-1], "VOLUME")
               for v in (exec_form(args) if args.startswith("[") else args.split())}
    mounts = volume_mounts(services["app"])
    for directory in (settings.recovery.directory, settings.audit.directory):
        path = PurePosixPath(directory)
        assert any(path.is_relative_to(v) for v in volumes), f"{directory} not on a VOLUME"
        assert any(path.is_relative_to(m) and not src.startswith((".", "/"))
                   for m, src in mounts.items()), f"{directory} not on a named volume"


def test_stop_grace_period_covers_a_snapshot(services: dict, settings: Settings) -> None:
    # flows/run.py: on SIGTERM with recovery the process exits by 3 x epoch + 10 s
    deadline = 3 * settings.recovery.snapshot_interval + timedelta(seconds=10)
    assert settings.recovery.directory is not None
    assert duration(services["app"]["stop_grace_period"]) > deadline


# ---------------------------------------------------------------- metrics / scrape


def test_prometheus_scrapes_the_app_metrics_port(services: dict, settings: Settings,
                                                 dockerfile) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = [(job, target) for job in config["scrape_configs"]
               for static in job.get("static_configs", []) for target in static["targets"]]
    assert len(targets) == 1, targets
    job, target = targets[0]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    host, port = target.rsplit(":", 1)
    assert host == "app" and host in services
    exposed = {int(p.split("/")[0]) for args in only(dockerfile, "EXPOSE") for p in args.split()}
    assert int(port) == settings.metrics.port
    assert exposed == {settings.metrics.port}
    assert settings.metrics.port in container_ports(services["app"])


def test_prometheus_service_mounts_the_config(services: dict) -> None:
    prometheus = services["prometheus"]
    mounts = volume_mounts(prometheus)
    assert (ROOT / mounts["/etc/prometheus/prometheus.yml"]).resolve() == PROMETHEUS
    assert 9090 in container_ports(prometheus)


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("REQUIRE_TEST_TOOLS") == "1":
            pytest.fail("promtool is required here (REQUIRE_TEST_TOOLS=1) but not installed")
        pytest.skip("promtool is not installed")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_healthcheck_reads_metrics_with_python(dockerfile, settings: Settings) -> None:
    (check,) = only(stages(dockerfile)[-1], "HEALTHCHECK")
    assert "curl" not in check and "wget" not in check  # neither is in python:slim
    command = exec_form(check[check.index("CMD") + 3:].strip())
    assert command[0] in {"python", "python3"}
    url = re.search(r"http://([\w.]+):(\d+)(/\S*?)['\"]", command[-1])
    assert url and url[1] in {"127.0.0.1", "localhost"}
    assert int(url[2]) == settings.metrics.port and url[3] == "/metrics"


# ---------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_user_workdir(dockerfile) -> None:
    froms = only(dockerfile, "FROM")
    names = {args.split()[-1] for args in froms if " AS " in args.upper()}
    for args in froms:
        image = args.split()[0]
        assert image == "python:3.11-slim" or image in names, image
    final = stages(dockerfile)[-1]
    user = only(final, "USER")
    assert user and user[-1].split(":")[0] not in {"root", "0"}, "run as a non-root user"
    assert only(final, "WORKDIR")[-1] == "/app"


def test_entrypoint_and_cmd(dockerfile) -> None:
    final = stages(dockerfile)[-1]
    entrypoint = exec_form(only(final, "ENTRYPOINT")[-1])
    cmd = exec_form(only(final, "CMD")[-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["esg-leads"] and "esg-leads" in scripts
    assert cmd[:2] == ["run", "--config"]
    args = build_parser().parse_args(cmd)  # the CLI accepts the default command
    assert args.command == "run"


def test_cmd_config_path_exists_in_repo_and_is_copied(dockerfile, services: dict) -> None:
    final = stages(dockerfile)[-1]
    config = PurePosixPath(exec_form(only(final, "CMD")[-1])[2])
    workdir = PurePosixPath(only(final, "WORKDIR")[-1])
    assert config.is_relative_to(workdir)
    in_repo = ROOT / config.relative_to(workdir)
    assert in_repo.resolve() == APP_CONFIG and APP_CONFIG.is_file()
    copied = False
    for args in only(final, "COPY"):
        flags, sources, destination = copy_args(args)
        if "from" in flags:
            continue
        dest = PurePosixPath(destination if destination.startswith("/")
                             else workdir / destination)
        for source in sources:
            if destination.endswith("/"):
                copied |= dest / PurePosixPath(source).name == config
            else:
                copied |= dest == config and (ROOT / source).resolve() == in_repo.resolve()
    assert copied, f"{config} is not COPYed into the image"
    # the compose bind mount, if any, puts the same file at the same place
    source = volume_mounts(services["app"]).get(str(config))
    if source is not None:
        assert (ROOT / source).resolve() == APP_CONFIG


def test_build_copies_every_package_and_installs_no_extras(dockerfile) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # the folders the wheel maps into the esg_leads namespace (package-dir)
    packages = set(project["tool"]["setuptools"]["package-dir"].values())
    builders = [stage for stage in stages(dockerfile)
                if any(re.search(r"pip (wheel|install)\b.*\s\.(\s|$)", args)
                       for args in only(stage, "RUN"))]
    assert len(builders) == 1, "expected one stage that builds the package from the context"
    copied = set()
    for args in only(builders[0], "COPY"):
        _flags, sources, _destination = copy_args(args)
        copied |= {s.strip("./").rstrip("/") for s in sources}
    readme = project["project"]["readme"]
    missing = (packages | {"pyproject.toml", readme}) - copied
    assert not missing, f"setuptools needs these in the build stage: {sorted(missing)}"
    for package in packages:
        assert (ROOT / package / "__init__.py").is_file(), package
    for args in only(dockerfile, "RUN"):
        if "pip" in args:
            assert "[test]" not in args and ".[" not in args, f"extras installed: {args}"


# -------------------------------------------------------------------- .dockerignore


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes *path* (or a parent folder of it); last match wins."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, v) or (pattern.startswith("**/") and
               fnmatch.fnmatchcase(PurePosixPath(c).name, v)) for c in candidates for v in variants):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_lean_but_complete(dockerfile) -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for junk in (".venv", ".git", ".demo", ".pytest_cache", ".hypothesis", "out",
                 "esg_leads.egg-info", "schemas/__pycache__", "flows/x.pyc"):
        assert _ignored(junk, patterns), f"{junk} is sent to the build context"
    for args in only(dockerfile, "COPY"):
        flags, sources, _destination = copy_args(args)
        if "from" in flags:
            continue
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not _ignored(source.strip("./") or ".", patterns), (
                f"COPY {source}: excluded by .dockerignore")
