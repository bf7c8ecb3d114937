#!/bin/sh
# Prints facts about this node as one JSON object; the facts machine keeps
# each key as machine data.
set -eu

# json_string VALUE: VALUE as a JSON string (backslashes, quotes and
# control characters removed or escaped).
json_string() {
	printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/[\\"]/\\&/g')"
}

os=unknown
if [ -r /etc/os-release ]; then
	os=$(. /etc/os-release && printf '%s' "${ID:-unknown}")
fi

printf '{"hostname":%s,"kernel":%s,"arch":%s,"os":%s,"gathered_at":%s}\n' \
	"$(json_string "$(uname -n)")" \
	"$(json_string "$(uname -r)")" \
	"$(json_string "$(uname -m)")" \
	"$(json_string "$os")" \
	"$(json_string "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
