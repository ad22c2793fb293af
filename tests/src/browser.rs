//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`), for the
//! web client's tests.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a browser test waits for something the page should come to show.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

/// Browser tests take a lock, so at most one runs at a time beside the rest of the suite: two
/// Chromiums per test are already a lot for two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `chromedriver` of our own on a free port, stopped with its browsers when dropped, also when a
/// test fails before closing its pages.
pub struct Driver {
    child: Child,
    url: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Driver {
    /// Starts `chromedriver` (`CHROMEDRIVER`, else from `PATH`) once the other browser tests are done.
    pub async fn start() -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            // Its own process group, which the browsers it starts join: one signal ends them all.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (Debian's chromium-driver; scripts/test.sh installs it): {e}")
            });
        let driver = Self { child, url: format!("http://127.0.0.1:{port}"), _turn: turn };
        let status = format!("{}/status", driver.url);
        let http = reqwest::Client::new();
        eventually("chromedriver answers", || async {
            http.get(&status).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        driver
    }

    /// A new browser window of its own (its own profile, so its own storage) at `url`.
    pub async fn open(&self, url: &str) -> Page {
        let mut caps = serde_json::Map::new();
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=420,860", "--disable-extensions", "--no-first-run"],
        });
        if let Ok(binary) = std::env::var("CHROMIUM") {
            options["binary"] = json!(binary);
        }
        caps.insert("goog:chromeOptions".to_owned(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session (Debian's chromium package)");
        client.goto(url).await.expect("the page loads");
        Page { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` until it holds, and fails the test after [`PAGE_WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PAGE_WAIT;
    while !ready().await {
        assert!(Instant::now() < deadline, "waited {PAGE_WAIT:?} for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One browser window showing the client.
pub struct Page {
    pub client: Client,
}

impl Page {
    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
    }

    /// Types `text` into the element `css`, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.wait().at_most(PAGE_WAIT).for_element(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Types into the element `css` without clearing it, as a person typing would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.client.wait().at_most(PAGE_WAIT).for_element(Locator::Css(css)).await.expect(css);
        field.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        let target = self.client.wait().at_most(PAGE_WAIT).for_element(Locator::Css(css)).await.expect(css);
        target.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The text of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let found = self
            .run("return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", vec![json!(css)])
            .await;
        found.as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    }

    /// Waits until some element matching `css` contains `text`.
    pub async fn shows(&self, css: &str, text: &str) {
        eventually(&format!("{css} to show {text:?}"), || async {
            self.texts(css).await.iter().any(|t| t.contains(text))
        })
        .await;
    }

    /// Waits until the script `condition` is true.
    pub async fn until(&self, what: &str, condition: &str) {
        eventually(what, || async { self.run(condition, vec![]).await == Value::Bool(true) }).await;
    }

    /// Clicks the first element matching `css` whose text contains `text`.
    pub async fn click_text(&self, css: &str, text: &str) {
        self.shows(css, text).await;
        self.run(
            "[...document.querySelectorAll(arguments[0])].find(e => e.textContent.includes(arguments[1])).click()",
            vec![json!(css), json!(text)],
        )
        .await;
    }

    /// What the page reported as broken: script errors, `console.error`, blocked by the policy.
    pub async fn errors(&self) -> Vec<String> {
        let errors = self.run("return window.pageErrors || ['the error watch did not load']", vec![]).await;
        serde_json::from_value(errors).expect("a list of strings")
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
