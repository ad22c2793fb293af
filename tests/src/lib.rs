//! Test harness: boots the apps in-process on port 0 and talks to them over real sockets.
