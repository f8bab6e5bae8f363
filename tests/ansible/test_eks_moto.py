"""The EKS path of the cluster role against a real local AWS API emulator (moto_server on a
loopback port, cluster_aws_endpoint_url): create the VPC, subnets, security group, IAM
roles, cluster and node group; a second run changes nothing; the teardown removes them in
reverse order and leaves nothing behind. Inventory: staging (cluster_provider eks)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import VENV_BIN, playbook
from tests.support.procs import free_port, stop_process, wait_http

CLUSTER = "beyondfit-staging"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server with AWS's managed IAM policies loaded (the roles attach them); its fake
    credentials are moto's test values, not secrets."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true"),
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/moto-api/", 60, proc=proc)
        yield url
    finally:
        stop_process(proc)


def client(moto: str, service: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=moto, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


@pytest.fixture(scope="module")
def extra_vars(moto: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eks") / "moto-vars.json"
    path.write_text(json.dumps({
        "cluster_aws_endpoint_url": moto,
        "cluster_aws_access_key": "testing",
        "cluster_aws_secret_key": "testing",
        # the emulated API server cannot be reached: no namespaces step
        "cluster_verify_api": False,
        # moto 5.2 tags clusters only (ListTagsForResource on a node group: not found)
        "cluster_eks_tag_nodegroup": False,
        "cluster_kubeconfig": str(path.parent / "kubeconfig"),
    }))  # fmt: skip
    return path


def state(moto: str) -> dict[str, Any]:
    ec2, eks, iam = client(moto, "ec2"), client(moto, "eks"), client(moto, "iam")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [CLUSTER]}])["Vpcs"]
    vpc_ids = [v["VpcId"] for v in vpcs]
    subnets = (
        ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["Subnets"]
        if vpc_ids
        else []
    )
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{CLUSTER}-control-plane"]}]
    )["SecurityGroups"]
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(CLUSTER)]
    clusters = eks.list_clusters()["clusters"]
    nodegroups = (
        eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] if CLUSTER in clusters else []
    )
    return {"vpcs": vpcs, "subnets": subnets, "groups": groups, "roles": sorted(roles),
            "clusters": clusters, "nodegroups": nodegroups}  # fmt: skip


def test_create_then_nothing_changes_then_teardown_in_order(moto: str, extra_vars: Path) -> None:
    ev = f"@{extra_vars}"
    created = playbook("staging", "playbooks/cluster.yml", "-e", ev, timeout=600)
    assert created.rc == 0, str(created)
    s = state(moto)
    assert len(s["vpcs"]) == 1
    assert s["vpcs"][0]["CidrBlock"] == "10.40.0.0/16"
    assert sorted(n["CidrBlock"] for n in s["subnets"]) == ["10.40.0.0/19", "10.40.32.0/19"]
    assert sorted(n["AvailabilityZone"] for n in s["subnets"]) == ["eu-west-1a", "eu-west-1b"]
    assert len(s["groups"]) == 1
    assert s["roles"] == [f"{CLUSTER}-cluster", f"{CLUSTER}-nodes"]
    eks, iam = client(moto, "eks"), client(moto, "iam")
    cluster = eks.describe_cluster(name=CLUSTER)["cluster"]
    assert cluster["version"] == "1.32"
    assert cluster["status"] == "ACTIVE"
    assert sorted(cluster["resourcesVpcConfig"]["subnetIds"]) == sorted(
        n["SubnetId"] for n in s["subnets"]
    )
    assert cluster["roleArn"].endswith(f"role/{CLUSTER}-cluster")
    attached = iam.list_attached_role_policies(RoleName=f"{CLUSTER}-nodes")["AttachedPolicies"]
    assert {p["PolicyName"] for p in attached} == {
        "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"
    }  # fmt: skip
    (ng_name,) = s["nodegroups"]
    ng = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName=ng_name)["nodegroup"]
    assert ng["scalingConfig"] == {"minSize": 2, "maxSize": 6, "desiredSize": 2}
    assert ng["instanceTypes"] == ["m6i.large"]
    kubeconfig = (extra_vars.parent / "kubeconfig").read_text()
    assert cluster["endpoint"] in kubeconfig
    assert "get-token" in kubeconfig
    assert created.changed_tasks()[:3] == [
        "cluster : Create the VPC",
        "cluster : Create one subnet per availability zone",
        "cluster : Create the control plane's security group",
    ]

    # Real EKS reports every node group's updateConfig (maxUnavailable 1 by default), and
    # community.aws.eks_nodegroup compares it; moto 5.2 drops it at creation. Set it as
    # EKS has it, so the second run compares like against like.
    eks.update_nodegroup_config(clusterName=CLUSTER, nodegroupName=ng_name,
                                updateConfig={"maxUnavailable": 1})  # fmt: skip
    again = playbook("staging", "playbooks/cluster.yml", "-e", ev, timeout=600)
    assert again.rc == 0, str(again)
    assert again.recap["changed"] == 0, again.changed_tasks()

    removed = playbook(
        "staging", "playbooks/cluster.yml", "-e", ev, "-e", "cluster_state=absent", timeout=600
    )
    assert removed.rc == 0, str(removed)
    assert removed.changed_tasks() == [
        "cluster : Remove the managed node group",
        "cluster : Remove the EKS cluster",
        "cluster : Remove the IAM roles",
        "cluster : Remove the control plane's security group",
        "cluster : Remove the subnets",
        "cluster : Remove the VPC",
    ]
    s = state(moto)
    assert s == {
        "vpcs": [],
        "subnets": [],
        "groups": [],
        "roles": [],
        "clusters": [],
        "nodegroups": [],
    }
    # removing what is gone changes nothing
    gone = playbook(
        "staging", "playbooks/cluster.yml", "-e", ev, "-e", "cluster_state=absent", timeout=600
    )
    assert gone.rc == 0, str(gone)
    assert gone.recap["changed"] == 0, str(gone)
