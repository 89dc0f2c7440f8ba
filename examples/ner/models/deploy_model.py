"""Registers the NER image as the next version of model `ner` and deploys it to group `ner`.

Run it from the project root once the image exists:

    chalk image build models -t ner-model:latest
    python models/deploy_model.py

The first run creates the scaling group; each later run registers a new version and rolls the
group onto it (a new replica serves before an old one leaves). It returns once the version
serves. It is a script, not feature code: `.chalkignore` lists `models/`, so `chalk apply`
never imports it. On Kubernetes, set MODEL_IMAGE to the name you pushed to your registry.
"""

from __future__ import annotations

import os

import pyarrow as pa

from chalk.client import ChalkClient
from chalk.scaling import AutoScalingSpec, ScalingGroupResourceRequest

MODEL_NAME = "ner"
MODEL_IMAGE = os.environ.get("MODEL_IMAGE", "ner-model:latest")
SCALING_GROUP = "ner"


def main() -> None:
    client = ChalkClient()
    registered = client.register_model_version(
        name=MODEL_NAME,
        input_schema={"text": pa.large_string()},
        output_schema={"entities": pa.large_string()},
        model_image=MODEL_IMAGE,
    )
    print(
        f"registered model {registered.model_name} version {registered.model_version} "
        f"(image {registered.image})"
    )
    print(f"deploying it to scaling group {SCALING_GROUP!r} and waiting until it serves ...")
    group = client.deploy_model_version_to_scaling_group(
        name=SCALING_GROUP,
        model_name=registered.model_name,
        model_version=registered.model_version,
        scaling=AutoScalingSpec(
            min_replicas=1,
            max_replicas=2,
            target_cpu_utilization_percentage=70,
        ),
        resources=ScalingGroupResourceRequest(cpu="1", memory="1Gi"),
        wait=True,
    )
    print(
        f"scaling group {group.name!r} serves {MODEL_NAME} version {registered.model_version}: "
        f"{group.ready_replicas} replica(s) ready (min 1, max 2), URL {group.url}; features "
        f'call it with F.catalog_call("model.{SCALING_GROUP}", ...)'
    )


if __name__ == "__main__":
    main()
