#!/bin/sh
# A CGI function (RFC 3875): the request arrives in the environment, the response goes to stdout,
# headers first. PATH_PARAMS holds the route's parameters as JSON; the host decodes them, and
# SCRIPT_NAME is the decoded path, so the name is taken from there.
name=${SCRIPT_NAME##*/}
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
printf 'Hello, %s! (%s %s, request %s)\n' "${name:-world}" "$REQUEST_METHOD" "$REQUEST_PATH" "$HTTP_X_REQUEST_ID"
