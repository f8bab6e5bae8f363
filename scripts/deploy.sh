#!/usr/bin/env bash
# scripts/deploy.sh ENV REPOSITORY TAG [ANSIBLE_ARG...]: rolls the model service out to the
# environment ENV (inventories/ENV) with the image REPOSITORY:TAG, through the playbook's
# model_server step, whose gate rolls a failed revision back (docs/ansible.md):
#
#   ansible-playbook -i inventories/ENV site.yml --tags model_server
#
# The release workflow runs it for staging and production (.github/workflows/release.yml);
# credentials come from the environment, as GitHub environment secrets provide them:
#   BEYONDFIT_KUBECONFIG_DATA  the cluster's kubeconfig, written where the inventory reads it
#                              ($HOME/.kube/beyondfit-ENV) with mode 0600
#   ANSIBLE_VAULT_PASSWORD     the password of the inventory's vault (vault id ENV), in a
#                              0600 file that is removed when the script ends
# Either may be unset when the file already exists (a workstation with its own kubeconfig
# and `--vault-id` among ANSIBLE_ARGs). Extra arguments go to ansible-playbook.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

[ $# -ge 3 ] || die "usage: $0 ENV REPOSITORY TAG [ANSIBLE_ARG...]"
env_name=$1 repository=$2 tag=$3
shift 3
if ! [[ "$env_name" =~ ^[a-z0-9-]+$ ]] || [ ! -d "inventories/$env_name" ]; then
  die "no inventory inventories/$env_name"
fi
if [ -z "$repository" ] || [ -z "$tag" ]; then die "REPOSITORY and TAG must not be empty"; fi

secrets_dir="$(mktemp -d)"
trap 'rm -rf "$secrets_dir"' EXIT
args=()
if [ -n "${BEYONDFIT_KUBECONFIG_DATA:-}" ]; then
  install -d -m 0700 "$HOME/.kube"
  (umask 077 && printf '%s\n' "$BEYONDFIT_KUBECONFIG_DATA" >"$HOME/.kube/beyondfit-$env_name")
fi
if [ -n "${ANSIBLE_VAULT_PASSWORD:-}" ]; then
  (umask 077 && printf '%s\n' "$ANSIBLE_VAULT_PASSWORD" >"$secrets_dir/vault-password")
  args+=(--vault-id "$env_name@$secrets_dir/vault-password")
fi

log "deploying $repository:$tag to $env_name"
.venv/bin/ansible-playbook -i "inventories/$env_name" site.yml --tags model_server \
  -e "model_server_image_repository=$repository" -e "model_server_image_tag=$tag" \
  "${args[@]}" "$@"
