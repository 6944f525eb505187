#!/bin/sh
# Creates the columns and alternate keys ehrbridge needs in a Dataverse
# environment (Dynamics 365 with Microsoft Cloud for Healthcare), from
# schema.json, through the Web API's metadata endpoints. Run it once per
# environment, as a user with the System Customizer role:
#
#   export DATAVERSE_URL=https://contoso.crm.dynamics.com
#   export DATAVERSE_TOKEN=$(az account get-access-token --resource "$DATAVERSE_URL" --query accessToken -o tsv)
#   export DATAVERSE_SOLUTION=ehrbridge      # optional: the unmanaged solution to add them to
#   sh deploy/dataverse/create.sh
#
# A column or key that exists already is reported and skipped. Keys are
# built in the background: wait until each shows Active (Tables > Keys)
# before starting ehrbridge. Needs curl and jq.
set -eu
: "${DATAVERSE_URL:?set DATAVERSE_URL}" "${DATAVERSE_TOKEN:?set DATAVERSE_TOKEN}"
dir=$(dirname "$0")
api="${DATAVERSE_URL%/}/api/data/v9.2"
solution=${DATAVERSE_SOLUTION:-}

post() { # path body
  code=$(curl -sS -o /tmp/ehrbridge-dv.out -w '%{http_code}' -X POST "$api/$1" \
    -H "Authorization: Bearer $DATAVERSE_TOKEN" -H 'Content-Type: application/json; charset=utf-8' \
    -H 'OData-MaxVersion: 4.0' -H 'OData-Version: 4.0' \
    ${solution:+-H "MSCRM.SolutionUniqueName: $solution"} --data-binary "$2")
  case $code in
    2??) echo "created  $3" ;;
    *) if grep -q -e 'already exists' -e '0x80044363' -e '0x80048403' /tmp/ehrbridge-dv.out; then echo "exists   $3"
       else echo "FAILED   $3 (HTTP $code): $(cat /tmp/ehrbridge-dv.out)" >&2; exit 1; fi ;;
  esac
}

jq -c '.columns[]' "$dir/schema.json" | while read -r c; do
  table=$(printf '%s' "$c" | jq -r .table)
  body=$(printf '%s' "$c" | jq -c .column)
  name=$(printf '%s' "$body" | jq -r .SchemaName | tr 'A-Z' 'a-z')
  post "EntityDefinitions(LogicalName='$table')/Attributes" "$body" "column $table.$name"
done
jq -c '.keys[]' "$dir/schema.json" | while read -r k; do
  table=$(printf '%s' "$k" | jq -r .table)
  body=$(printf '%s' "$k" | jq -c .key)
  post "EntityDefinitions(LogicalName='$table')/Keys" "$body" "key $table $(printf '%s' "$body" | jq -r '.KeyAttributes|join(",")')"
done
