// Module HTTPService: the HTTP/1.1 layer on http_parser (message parser, server, minimal client,
// Server-Sent Events), and later the router, CGI and FastCGI gateways, static files and the admin
// API (DESIGN.md §8). Depends on Core, Registry and Supervisor.
