/* The CGI program of bench/http-cgi.sh: the same static binary runs behind every server, so
 * the comparison is of the servers' cost per request (accept, parse, spawn, relay). It answers a
 * small text body that names the request method and query, read from RFC 3875's variables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    const char *method = getenv("REQUEST_METHOD");
    const char *query = getenv("QUERY_STRING");
    char body[256];
    int length = snprintf(body, sizeof body, "hello from cgi: %s ?%s\n", method ? method : "-", query ? query : "");
    char out[512];
    int total = snprintf(out, sizeof out, "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", length, body);
    /* One write: a program that answers in one piece, as most small CGI programs do. */
    return write(1, out, (size_t)total) == total ? 0 : 1;
}
