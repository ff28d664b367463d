#!/usr/bin/env bash
# tools/package/publish.sh — `make publish APP=<function app> [RG=<resource group>]`.
#
# With Azure Functions Core Tools: builds the package and runs
# `func azure functionapp publish APP` in a copy of dist/enviromon/ (so func uploads the
# portable handler, marks it executable and applies its per-plan logic, Flex Consumption
# included). The copy adds a local.settings.json holding only FUNCTIONS_WORKER_RUNTIME=custom:
# func takes the local worker runtime from there and refuses to publish when it differs from
# the app's; func never uploads that file, and no local secret goes near it.
# Else with the Azure CLI: builds the package and runs
# `az functionapp deployment source config-zip` with dist/enviromon.zip (the resource group is
# looked up when RG is not given). With neither it says what to install, before building.
# FUNC and AZ name the commands (default func and az); PUBLISH_ARGS are passed to func.
set -euo pipefail
cd "$(dirname "$0")/../.."

app=${1:-}
FUNC=${FUNC:-func}
AZ=${AZ:-az}
die() { echo "make publish: $*" >&2; exit 1; }

[ -n "$app" ] || die "usage: make publish APP=<function app name> [RG=<resource group>]
(the app must exist: Linux, runtime 'custom'; see docs/deploy.md)"

if command -v "$FUNC" >/dev/null 2>&1; then
  ./tools/package/package.sh
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  cp -a dist/enviromon/. "$stage/"
  printf '{ "IsEncrypted": false, "Values": { "FUNCTIONS_WORKER_RUNTIME": "custom" } }\n' >"$stage/local.settings.json"
  echo "make publish: $FUNC azure functionapp publish $app ${PUBLISH_ARGS:-} (dist/enviromon)" >&2
  # shellcheck disable=SC2086
  (cd "$stage" && "$FUNC" azure functionapp publish "$app" ${PUBLISH_ARGS:-})
  exit
fi

if command -v "$AZ" >/dev/null 2>&1; then
  rg=${RG:-}
  if [ -z "$rg" ]; then
    rg=$("$AZ" functionapp list --query "[?name=='$app'].resourceGroup | [0]" -o tsv) ||
      die "'$AZ functionapp list' failed: sign in with '$AZ login', or give RG=<resource group>"
    [ -n "$rg" ] || die "no function app named '$app' in the current subscription ('$AZ account show'); create it first (docs/deploy.md) or give RG=<resource group>"
  fi
  ./tools/package/package.sh
  echo "make publish: $AZ functionapp deployment source config-zip --resource-group $rg --name $app --src dist/enviromon.zip" >&2
  exec "$AZ" functionapp deployment source config-zip --resource-group "$rg" --name "$app" \
    --src "$PWD/dist/enviromon.zip"
fi

die "neither Azure Functions Core Tools ('$FUNC') nor the Azure CLI ('$AZ') is installed.
Install one of them, sign in, and run make publish again:
  - Azure Functions Core Tools v4 (preferred: the tool Microsoft deploys custom handlers to Flex Consumption with):
      https://learn.microsoft.com/azure/azure-functions/functions-run-local#install-the-azure-functions-core-tools
    then sign in with the Azure CLI (az login) or Azure PowerShell, which func uses;
  - or the Azure CLI: https://learn.microsoft.com/cli/azure/install-azure-cli , then az login.
'make package' alone builds dist/enviromon.zip without either."
