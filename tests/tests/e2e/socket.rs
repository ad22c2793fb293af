//! e2e: socket.
