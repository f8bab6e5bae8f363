"""proxy_request.py KUBECONFIG METHOD PATH [JSON_BODY]: one HTTP request through the
Kubernetes API server (e.g. a Service's proxy path), authenticated as the kubeconfig says
(certificates, tokens, exec plugins), with a JSON body and Content-Type; prints the answer's
body, exits 1 on an HTTP error. `kubectl create --raw` cannot set the Content-Type the
service's /predict requires."""

from __future__ import annotations

import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def main(argv: list[str]) -> int:
    kubeconfig, method, path = argv[1:4]
    body = json.loads(argv[4]) if len(argv) > 4 else None
    config.load_kube_config(config_file=kubeconfig)
    api = client.ApiClient()
    # kubernetes-client 33+: param_serialize adds the host and the kubeconfig's credentials
    method_, url, headers, body_, _ = api.param_serialize(
        method,
        path,
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response = api.call_api(
            method_, url, header_params=headers, body=body_, _request_timeout=60
        )
        response.read()
    except ApiException as e:
        print(f"HTTP {e.status}: {e.body}", file=sys.stderr)
        return 1
    if response.status >= 400:
        print(f"HTTP {response.status}: {response.data.decode()}", file=sys.stderr)
        return 1
    sys.stdout.write(response.data.decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
