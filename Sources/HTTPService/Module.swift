// Module HTTPService: the HTTP/1.1 server on http_parser, the router, CGI and FastCGI gateways,
// static files and the admin API (DESIGN.md §8). Depends on Core, Registry and Supervisor. It
// holds no code yet: the HTTP issue builds it.
