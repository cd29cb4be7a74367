"""The cluster manifests, the launcher YAML and the suites agree on what a job needs.

Fast and offline: parses every YAML under cluster/ and the suites, no Ray, no Kubernetes. Each
check is a function returning problems, run on the real files and on a broken copy.
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pmpo_ray.config import load_config
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.jobs import SuiteConfig

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
SUITES = sorted((ROOT / "pipelines" / "suites").glob("*.yaml"))
LAUNCHERS = sorted((CLUSTER / "launcher").glob("*.yaml"))
IMAGE = "ghcr.io/your-org/pmpo-ray:0.1.0"
EXPOSED_SERVICE_TYPES = {"LoadBalancer", "NodePort"}
# The 27 BIG-Bench Hard tasks, as the hub dataset (lukaemon/bbh) names its configurations.
BBH_TASKS = set(
    """boolean_expressions causal_judgement date_understanding disambiguation_qa dyck_languages
    formal_fallacies geometric_shapes hyperbaton logical_deduction_five_objects
    logical_deduction_seven_objects logical_deduction_three_objects movie_recommendation
    multistep_arithmetic_two navigate object_counting penguins_in_a_table
    reasoning_about_colored_objects ruin_names salient_translation_error_detection snarks
    sports_understanding temporal_sequences tracking_shuffled_objects_five_objects
    tracking_shuffled_objects_seven_objects tracking_shuffled_objects_three_objects web_of_lies
    word_sorting""".split()
)


def cluster_yaml_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*.y*ml") if "locks" not in p.parts)


def kube_documents() -> list[dict]:
    docs = []
    for path in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def by_kind(kind: str) -> list[dict]:
    found = [d for d in kube_documents() if d["kind"] == kind]
    assert found, f"no {kind} under cluster/kuberay"
    return found


def ray_cluster_specs() -> list[dict]:
    specs = [d["spec"] for d in by_kind("RayCluster")]
    return specs + [d["spec"]["rayClusterSpec"] for d in by_kind("RayJob")]


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def gpu_limit(container: dict) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def suite(path: str | Path) -> SuiteConfig:
    return load_config(SuiteConfig, ROOT / path)


# --- checks: each returns the problems it finds -------------------------------------------


def head_problems(spec: dict) -> list[str]:
    head = spec["headGroupSpec"]
    problems = []
    if str(head.get("rayStartParams", {}).get("num-gpus")) != "0":
        problems.append("head rayStartParams num-gpus is not '0': replicas could land there")
    if any(gpu_limit(c) for c in containers(head)):
        problems.append("head container asks for nvidia.com/gpu")
    if head.get("serviceType", "ClusterIP") in EXPOSED_SERVICE_TYPES:
        problems.append(f"head serviceType {head['serviceType']} exposes the dashboard")
    return problems


def worker_problems(spec: dict) -> list[str]:
    problems = []
    for group in spec["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        shm = [v for v in pod.get("volumes", []) if v.get("emptyDir", {}).get("medium") == "Memory"]
        for container in containers(group):
            where = f"worker group {group['groupName']!r} container {container['name']!r}"
            resources = container.get("resources", {})
            if gpu_limit(container) < 1:
                problems.append(f"{where}: no nvidia.com/gpu limit")
            for side in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(side, {}))
                if missing:
                    problems.append(f"{where}: {side} lack {sorted(missing)}")
            mounts = {
                m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"
            }
            if not mounts & {v["name"] for v in shm}:
                problems.append(f"{where}: no in-memory /dev/shm for vLLM")
    return problems


def entrypoint_options(job_spec: dict) -> dict[str, str] | None:
    """`--flag value` pairs of a `python -m pipelines.optimize_suite` entrypoint, else None."""
    args = shlex.split(job_spec["entrypoint"])
    if args[:3] != ["python", "-m", "pipelines.optimize_suite"]:
        return None
    return dict(zip(args[3::2], args[4::2]))


def entrypoint_problems(job_spec: dict) -> list[str]:
    """The RayJob runs a suite that exists, onto the results claim mounted on the head."""
    options = entrypoint_options(job_spec)
    if options is None:
        return [f"entrypoint {job_spec['entrypoint']!r} does not run pipelines.optimize_suite"]
    problems = []
    config = options.get("--config", "")
    if not (ROOT / config).is_file():
        problems.append(f"--config {config!r} is not a file in the repository")
    head = job_spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    claims = {v["name"] for v in head.get("volumes", []) if "persistentVolumeClaim" in v}
    mounts = [
        m["mountPath"]
        for c in head["containers"]
        for m in c.get("volumeMounts", [])
        if m["name"] in claims
    ]
    out = options.get("--out", "")
    if not any(out.startswith(m.rstrip("/") + "/") for m in mounts):
        problems.append(f"--out {out!r} is not on a claim mounted on the head {mounts}")
    return problems


def replica_gpus(pool: PoolConfig) -> float:
    """GPUs one replica takes, as pmpo_ray.engines.replicas.actor_options asks Ray for them."""
    if pool.engine.gpus_per_engine() > 1:  # a tensor-parallel group
        return float(pool.engine.gpus_per_engine())
    return pool.replicas.num_gpus


def pools(config: SuiteConfig) -> list[PoolConfig]:
    return [config.scorer] + ([config.rewriter] if config.rewriter is not None else [])


def plan_problems(spec: dict, config: SuiteConfig) -> list[str]:
    """The worker pods hold every replica of the suite: GPUs, CPUs, and each TP group."""
    pods = []  # (GPUs, CPUs) of every worker pod the cluster can have
    for group in spec["workerGroupSpecs"]:
        count = group["maxReplicas"] if spec.get("enableInTreeAutoscaling") else group["replicas"]
        container = containers(group)[0]
        pods += [(gpu_limit(container), float(container["resources"]["limits"]["cpu"]))] * count
    have_gpus, have_cpus = sum(g for g, _ in pods), sum(c for _, c in pods)
    need_gpus = sum(p.replicas.num_replicas * replica_gpus(p) for p in pools(config))
    need_cpus = sum(p.replicas.num_replicas * p.replicas.num_cpus for p in pools(config))
    problems = []
    if have_gpus < need_gpus:
        problems.append(f"suite {config.name!r} needs {need_gpus:g} GPUs, workers {have_gpus}")
    if have_cpus < need_cpus:
        problems.append(f"suite {config.name!r} needs {need_cpus:g} CPUs, workers {have_cpus:g}")
    widest = max(replica_gpus(p) for p in pools(config))
    if pods and widest > max(g for g, _ in pods):
        problems.append(f"suite {config.name!r}: a {widest:g}-GPU replica fits on no single pod")
    return problems


# --- the real files -------------------------------------------------------------------------


def test_every_cluster_yaml_parses_and_has_a_known_kind():
    known = {("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob"), ("v1", "PersistentVolumeClaim")}
    files = cluster_yaml_files()
    assert {p.name for p in files} >= {"raycluster.yaml", "rayjob.yaml", "storage.yaml"}
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), path
    assert LAUNCHERS, "no cluster launcher YAML under cluster/launcher"
    for doc in kube_documents():
        assert (doc["apiVersion"], doc["kind"]) in known, doc.get("kind")
    for path in LAUNCHERS:
        assert yaml.safe_load(path.read_text())["cluster_name"], path


def test_head_has_no_gpu_and_the_dashboard_stays_inside():
    for spec in ray_cluster_specs():
        assert head_problems(spec) == []
    assert not [d for d in kube_documents() if d["kind"] == "Ingress"]
    services = [d for d in kube_documents() if d["kind"] == "Service"]
    assert all(s["spec"].get("type", "ClusterIP") not in EXPOSED_SERVICE_TYPES for s in services)

    broken = copy.deepcopy(ray_cluster_specs()[0])
    broken["headGroupSpec"]["serviceType"] = "LoadBalancer"
    broken["headGroupSpec"]["rayStartParams"].pop("num-gpus")
    containers(broken["headGroupSpec"])[0]["resources"]["limits"]["nvidia.com/gpu"] = 1
    assert len(head_problems(broken)) == 3


def test_workers_have_gpu_limits_resources_and_shared_memory():
    for spec in ray_cluster_specs():
        assert spec["workerGroupSpecs"]
        assert worker_problems(spec) == []

    broken = copy.deepcopy(ray_cluster_specs()[0])
    worker = containers(broken["workerGroupSpecs"][0])[0]
    del worker["resources"]["limits"]["nvidia.com/gpu"]
    del worker["resources"]["requests"]["memory"]
    worker["volumeMounts"] = [m for m in worker["volumeMounts"] if m["mountPath"] != "/dev/shm"]
    assert len(worker_problems(broken)) == 3


def test_one_image_everywhere_matching_the_dockerfile_and_readme():
    images = {
        c["image"]
        for spec in ray_cluster_specs()
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for c in containers(group)
    }
    assert images == {IMAGE}
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"-t {IMAGE} ." in dockerfile
    assert f"docker push {IMAGE}" in (CLUSTER / "README.md").read_text()
    # The launcher's nodes run the same Ray and CUDA base the image is built on.
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    for path in LAUNCHERS:
        assert yaml.safe_load(path.read_text())["docker"]["image"] == base, path
    # rayVersion, the base image and the CPU lock name one Ray release.
    locked = re.search(r"^ray==(\S+)$", (CLUSTER / "locks" / "cpu.txt").read_text(), re.M).group(1)
    assert f":{locked}-" in base
    assert {spec["rayVersion"] for spec in ray_cluster_specs()} == {locked}


def test_rayjob_runs_a_suite_onto_the_results_claim_and_shuts_down():
    claims = {d["metadata"]["name"] for d in by_kind("PersistentVolumeClaim")}
    for job in by_kind("RayJob"):
        spec = job["spec"]
        assert entrypoint_problems(spec) == []
        assert spec["shutdownAfterJobFinishes"] is True
        assert spec["submissionMode"] == "K8sJobMode"
        assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
        assert suite(entrypoint_options(spec)["--config"]).tasks
    for spec in ray_cluster_specs():
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        used = {
            v["persistentVolumeClaim"]["claimName"]
            for g in groups
            for v in g["template"]["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        assert used <= claims, f"claims without a PersistentVolumeClaim: {used - claims}"

    broken = copy.deepcopy(by_kind("RayJob")[0]["spec"])
    broken["entrypoint"] = (
        "python -m pipelines.optimize_suite --config pipelines/suites/nope.yaml --out /tmp/x"
    )
    assert len(entrypoint_problems(broken)) == 2
    broken["entrypoint"] = "python -m pipelines.something_else"
    assert len(entrypoint_problems(broken)) == 1


def test_rayjob_cluster_is_the_raycluster():
    """Users apply either file; a change to one that misses the other would split them."""
    assert by_kind("RayJob")[0]["spec"]["rayClusterSpec"] == by_kind("RayCluster")[0]["spec"]


def test_workers_cover_every_suites_replica_plan():
    job_suite = suite(entrypoint_options(by_kind("RayJob")[0]["spec"])["--config"])
    assert job_suite.rewriter is not None, "the job's suite should exercise both pools"
    for spec in ray_cluster_specs():
        assert plan_problems(spec, job_suite) == []
        for path in SUITES:
            assert plan_problems(spec, suite(path)) == [], path.name

    replicas = job_suite.scorer.replicas.model_copy(update={"num_replicas": 40})
    bigger = job_suite.model_copy(
        update={"scorer": job_suite.scorer.model_copy(update={"replicas": replicas})}
    )
    assert len(plan_problems(ray_cluster_specs()[0], bigger)) == 2  # GPUs and CPUs short


def test_replica_gpus_counts_tensor_parallel_groups():
    single = PoolConfig.model_validate({"replicas": {"num_gpus": 1}})
    sharded = PoolConfig.model_validate({"engine": {"tensor_parallel_size": 8}})
    assert replica_gpus(single) == 1 and replica_gpus(sharded) == 8
    config = suite("pipelines/suites/bbh.yaml").model_copy(update={"scorer": sharded})
    problems = plan_problems(ray_cluster_specs()[0], config)
    assert any("fits on no single pod" in p for p in problems)


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.name)
def test_launcher_has_a_cpu_head_and_gpu_workers_for_the_bbh_plan(path):
    launcher = yaml.safe_load(path.read_text())
    types = launcher["available_node_types"]
    assert types[launcher["head_node_type"]]["resources"].get("GPU") == 0
    workers = [t for name, t in types.items() if name != launcher["head_node_type"]]
    gpus = sum(t["resources"].get("GPU", 0) * t["max_workers"] for t in workers)
    assert gpus > 0 and launcher["max_workers"] >= sum(t["min_workers"] for t in workers)
    plan = suite("pipelines/suites/bbh.yaml")
    assert gpus >= sum(p.replicas.num_replicas * replica_gpus(p) for p in pools(plan))
    assert any("[gpu]" in command for command in launcher["setup_commands"])


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_every_suite_loads_with_unique_task_names(path):
    config = suite(path)
    names = [t.task.name for t in config.tasks]
    assert len(names) == len(set(names))


def test_a_suite_with_repeated_task_names_does_not_load(tmp_path):
    raw = yaml.safe_load((ROOT / "pipelines/suites/bbh.yaml").read_text())
    raw["tasks"].append(copy.deepcopy(raw["tasks"][0]))
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="repeated"):
        load_config(SuiteConfig, broken)


def test_cluster_suites_read_the_benchmarks_from_the_hub():
    from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_examples

    bbh = suite("pipelines/suites/bbh.yaml")
    assert len(BBH_TASKS) == 27 and {t.task.name for t in bbh.tasks} == BBH_TASKS
    for entry in bbh.tasks:
        task = entry.task
        assert (task.data, task.data_config, task.data_split) == (
            "hf:lukaemon/bbh",
            task.name,
            "test",
        )
        sample = SAMPLES_DIR / "bbh" / f"{task.name}.json"
        if sample.exists():  # the shipped samples show each chosen format parses the real rows
            assert load_examples(sample, task.format), task.name
    gsm8k = suite("pipelines/suites/gsm8k.yaml").tasks[0].task
    assert (gsm8k.data, gsm8k.data_config, gsm8k.layout, gsm8k.answer_match) == (
        "hf:openai/gsm8k",
        "main",
        "gsm8k",
        "number",
    )
    assert {t.task.format for t in suite("pipelines/suites/preference.yaml").tasks} == {
        "preference"
    }


def test_the_rayjob_retries_and_every_retry_resumes():
    """A retried RayJob (a fresh cluster on the same results volume) continues the run: the
    entrypoint parses with the suite's own options and says --resume auto."""
    from pmpo_ray.commands import suite as suite_command

    spec = by_kind("RayJob")[0]["spec"]
    assert spec["backoffLimit"] >= 1 and spec["submitterConfig"]["backoffLimit"] >= 1
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", required=True)
    suite_command.add_options(parser)
    args = parser.parse_args(shlex.split(spec["entrypoint"])[3:])
    assert args.resume == "auto" and not args.overwrite
