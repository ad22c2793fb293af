//! HTTP and WebSocket adapter: the REST API (poem-openapi), the socket protocol and file routes.
