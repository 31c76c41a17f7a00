#!/bin/sh
# A JSON API function (protocol: json): the request arrives on stdin as one JSON envelope
# {method, path, query, headers, params, body}; the answer is a JSON {status, headers, body}.
# This one answers with the time and what it was sent. Try:
#   curl http://127.0.0.1:8080/api/echo?x=1
#   curl -d '{"n": 1}' -H 'Content-Type: application/json' http://127.0.0.1:8080/api/echo
#   roost call app:api '{"n": 1}'
envelope=$(cat)
printf '{"status": 200, "headers": {"Cache-Control": "no-store"}, "body": {"time": %s, "request": %s}}\n' "$(date +%s)" "$envelope"
