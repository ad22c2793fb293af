//! A real Caddy in front of a split `TestApp`, run from the committed bootstrap/deploy/Caddyfile
//! with the apps' ports filled in through its environment placeholders.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::TestApp;

/// How long Caddy gets to start answering.
const START_WAIT: Duration = Duration::from_secs(20);

/// `CHAT_TEST_CADDY`, else `caddy` on the PATH (scripts/test.sh installs Debian's package).
fn caddy() -> String {
    std::env::var("CHAT_TEST_CADDY").unwrap_or_else(|_| "caddy".to_owned())
}

pub fn caddyfile() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("bootstrap").join("deploy").join("Caddyfile")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// The proxy's one origin. Caddy is killed when this is dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    child: Child,
    _home: tempfile::TempDir,
}

impl Proxy {
    /// Starts Caddy in front of `app`'s api, file and socket apps and waits until it proxies.
    pub async fn front(app: &TestApp) -> Self {
        Self::front_at(app, free_port()).await
    }

    /// As `front`, on `port`, chosen before the app so its settings can name the origin.
    pub async fn front_at(app: &TestApp, port: u16) -> Self {
        let home = tempfile::tempdir().expect("a home for Caddy's state");
        let sockets: Vec<String> = app.socket_addrs.iter().map(ToString::to_string).collect();
        let child = Command::new(caddy())
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(caddyfile())
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path())
            .env("CHAT_PROXY_ADMIN", "off")
            .env("CHAT_SITE_ADDRESS", format!("http://127.0.0.1:{port}"))
            .env("CHAT_API_UPSTREAM", app.addr.to_string())
            .env("CHAT_FILE_UPSTREAM", app.files_addr.to_string())
            .env("CHAT_SOCKET_UPSTREAMS", sockets.join(" "))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (scripts/test.sh installs it): {e}", caddy()));
        let proxy = Self { addr: SocketAddr::from(([127, 0, 0, 1], port)), child, _home: home };
        proxy.wait_until_ready(app).await;
        proxy
    }

    async fn wait_until_ready(&self, app: &TestApp) {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let ready = app.http.get(self.url("/health/ready")).send().await.is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "Caddy did not proxy within {START_WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The public origin, as a browser would send it in `Origin`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
