//! The tenant portal in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (chromedriver on loopback, through fantoccini) against the local stack, with a real
//! receiver. A session link from `POST /v1/portal-sessions` signs the browser in; the page
//! creates a webhook through its form, shows a delivery and its attempt, retries it,
//! reveals and rotates the secret. A read-only session sees everything and the server
//! refuses its changes; expired, tampered, foreign and missing links show their clear page.
//! Each test saves screenshots under `target/portal-screenshots/`.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::receiver::{Answer, Receiver};
use crate::utils::{Client, Stack, id, remember_secret, target_file};

const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free loopback port, in its own process group so that it and the
/// browser it starts are stopped together.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver on a free port; again on another if the port was taken
    /// between choosing it and chromedriver binding it (chromedriver then exits).
    fn start() -> Driver {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let mut child = Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "chromedriver cannot start ({e}): `make test` installs Debian's chromium and chromium-driver (scripts/install-browser)"
                    )
                });
            let deadline = Instant::now() + WAIT;
            loop {
                if child.try_wait().unwrap().is_some() {
                    break; // exited: the port was taken
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Listening, and still ours: the connection reached chromedriver.
                    std::thread::sleep(Duration::from_millis(100));
                    if child.try_wait().unwrap().is_none() {
                        return Driver {
                            child,
                            url: format!("http://127.0.0.1:{port}"),
                        };
                    }
                    break;
                }
                assert!(Instant::now() < deadline, "chromedriver never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("chromedriver could not get a port in five tries");
    }

    /// A headless Chromium session, `width` pixels wide.
    async fn browser(&self, width: u32) -> Browser {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--window-size={width},1000"), "--lang=en-US", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--disable-default-apps",
            ]}),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("no browser session from chromedriver: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        std::thread::sleep(Duration::from_millis(200));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// The page under test: waits, reads and acts, with a screenshot when a wait fails.
struct Page {
    browser: Browser,
    name: &'static str,
}

impl Page {
    async fn screenshot(&self, file: &str) {
        let dir = target_file("portal-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        if let Ok(png) = self.browser.screenshot().await {
            std::fs::write(dir.join(format!("{}-{file}.png", self.name)), png).unwrap();
        }
    }

    async fn fail(&self, what: String) -> ! {
        self.screenshot("failure").await;
        let text = self.text("body").await.unwrap_or_default();
        panic!("{what}; the page reads:\n{text}");
    }

    async fn text(&self, css: &str) -> Option<String> {
        let el = self.browser.find(Locator::Css(css)).await.ok()?;
        el.text().await.ok()
    }

    /// The element `css`, once it is on the page.
    async fn find(&self, css: &str) -> Element {
        match self
            .browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => el,
            Err(e) => self.fail(format!("{css} never appeared: {e}")).await,
        }
    }

    /// Waits until the element `css` holds `needle` in its text; its text.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(css).await.unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline {
                self.fail(format!("{css} never read {needle:?} (last: {text:?})"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks `css`, found again if the screen redrew between finding and clicking.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let el = self.find(css).await;
            match el.click().await {
                Ok(()) => return,
                Err(e) if e.to_string().contains("stale") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => self.fail(format!("clicking {css}: {e}")).await,
            }
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Presses a key, wherever the focus is.
    async fn press(&self, key: Key) {
        let key = char::from(key);
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.browser.perform_actions(keys).await.unwrap();
    }

    /// The text of the element that has the focus.
    async fn focused(&self) -> String {
        let text = self
            .run("const e = document.activeElement; return e ? e.textContent.trim() : '';")
            .await;
        text.as_str().unwrap_or_default().to_string()
    }

    async fn enabled(&self, css: &str) -> bool {
        self.find(css).await.is_enabled().await.unwrap()
    }

    async fn run(&self, script: &str) -> Value {
        match self.browser.execute(script, vec![]).await {
            Ok(v) => v,
            Err(e) => self.fail(format!("script failed: {e}")).await,
        }
    }

    async fn run_async(&self, script: &str) -> Value {
        match self.browser.execute_async(script, vec![]).await {
            Ok(v) => v,
            Err(e) => self.fail(format!("script failed: {e}")).await,
        }
    }

    async fn address(&self) -> String {
        self.browser.current_url().await.unwrap().to_string()
    }

    async fn close(self) {
        let _ = self.browser.close().await;
    }
}

/// A session link for the tenant, its token remembered for the log check.
async fn session(tenant: &Client, body: Value) -> Value {
    let reply = tenant.post("/v1/portal-sessions", body).await;
    let session = reply.assert_status(201).clone();
    assert_eq!(reply.headers["cache-control"], "no-store");
    remember_secret(session["token"].as_str().unwrap());
    session
}

/// Every resource the page loaded came from the stack itself (no CDN, font or analytics).
async fn assert_no_other_host(page: &Page, stack: &Stack) {
    let loaded = page
        .run("return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);")
        .await;
    for url in loaded.as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/", stack.url)),
            "the page loaded {url}"
        );
    }
}

#[tokio::test]
async fn a_session_link_manages_webhooks_and_deliveries_in_a_real_browser() {
    let stack = Stack::start().await;
    let tenant = stack.tenant().await;
    tenant.event_types(&["user.created", "invoice.paid"]).await;
    let receiver = Receiver::start().await;
    receiver.default("/portal-hook", Answer::Status(200));

    let link = session(&tenant, json!({})).await;
    let url = link["url"].as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "{}/portal#session={}",
            stack.url,
            link["token"].as_str().unwrap()
        )
    );
    assert_eq!(link["read_only"], false);
    assert_eq!(
        link["scopes"],
        json!([
            "webhooks:read",
            "webhooks:write",
            "events:read",
            "events:write"
        ])
    );
    // The session token is a bearer for the API, with the session's scopes.
    let as_session = stack.client(&tenant.tenant, link["token"].as_str().map(String::from));
    let me = as_session.get("/v1/me").await;
    assert_eq!(
        me.assert_status(200)["scopes"],
        json!([
            "webhooks:read",
            "webhooks:write",
            "events:read",
            "events:write"
        ])
    );
    // ...which cannot open more sessions (a link could otherwise renew itself).
    as_session
        .post("/v1/portal-sessions", json!({}))
        .await
        .assert_error(403, "FORBIDDEN");

    let driver = Driver::start();
    let page = Page {
        browser: driver.browser(1280).await,
        name: "manage",
    };
    page.browser.goto(url).await.unwrap();
    page.wait_text("#tenant", &tenant.tenant).await;
    let address = page.address().await;
    assert!(
        !address.contains("session") && !address.contains('#'),
        "the token stayed in the address bar: {address}"
    );
    page.wait_text(".empty", "No webhooks yet").await;
    page.screenshot("empty").await;

    // By keyboard: the skip link first, then the sections; Enter opens one.
    page.press(Key::Tab).await;
    assert_eq!(page.focused().await, "Skip to content");
    page.press(Key::Tab).await;
    assert_eq!(page.focused().await, "Webhooks");
    page.press(Key::Tab).await;
    assert_eq!(page.focused().await, "Deliveries");
    page.press(Key::Enter).await;
    page.wait_text("h1", "Deliveries").await;
    page.wait_text(".empty", "No deliveries yet: send a test")
        .await;
    page.click("#nav a[href=webhooks]").await;
    page.wait_text(".empty", "No webhooks yet").await;
    let enter = char::from(Key::Enter).to_string();
    page.find("a.skip").await.send_keys(&enter).await.unwrap();
    assert_eq!(
        page.run("return document.activeElement.id;").await,
        "main",
        "the skip link moves the focus to the content"
    );
    assert!(page.address().await.ends_with("/portal/webhooks"));

    // A webhook through the form: the API's message shows next to the field at fault.
    page.click("[data-action=new-webhook]").await;
    page.fill("[data-field=name]", "Portal hook").await;
    page.fill("[data-field=url]", &receiver.url("/portal-hook"))
        .await;
    page.fill("[data-field=events]", "user.created, invoice.*")
        .await;
    page.fill("[data-field=headers]", r#"{"X-Team": "growth-squad"}"#)
        .await;
    page.fill("[data-field=rate_limit]", "50").await;
    page.fill(
        "[data-field=filter]",
        r#"{"data": {"plan": {"$bogus": 1}}}"#,
    )
    .await;
    page.click("[data-action=create-webhook]").await;
    let error = page
        .wait_text("[data-field=filter] ~ .field-error", "INVALID_FILTER")
        .await;
    assert!(error.contains("$bogus"), "{error}");
    assert_eq!(
        page.find("[data-field=filter]")
            .await
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    page.screenshot("field-error").await;
    assert!(
        tenant.get("/v1/webhooks").await.body["data"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a refused form stored something"
    );
    page.fill("[data-field=filter]", r#"{"data": {"plan": "pro"}}"#)
        .await;
    page.click("[data-action=create-webhook]").await;
    page.wait_text("h1", "Portal hook").await;
    page.wait_text("#flash", "Webhook created").await;
    let listed = tenant.get("/v1/webhooks").await;
    let webhook = listed.body["data"][0].clone();
    assert_eq!(webhook["url"], receiver.url("/portal-hook"));
    assert_eq!(webhook["events"], json!(["user.created", "invoice.*"]));
    assert_eq!(webhook["headers"], json!({"X-Team": "growth-squad"}));
    assert_eq!(webhook["rate_limit"], 50);
    assert_eq!(webhook["filter"], json!({"data": {"plan": "pro"}}));
    let webhook_id = id(&webhook);

    // Every control on the page has a label.
    let unlabelled = page
        .run("return [...document.querySelectorAll('input, select, textarea')].filter(e => !e.labels || !e.labels.length).map(e => e.outerHTML);")
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");

    // An event delivered: the delivery appears in the list, with its attempt.
    let event = tenant
        .publish("user.created", json!({"plan": "pro", "user": "ada"}))
        .await;
    receiver
        .wait_for("/portal-hook", 1, Duration::from_secs(10))
        .await;
    tenant
        .wait_for_deliveries(
            &format!("webhook_id={webhook_id}"),
            Duration::from_secs(10),
            |d| crate::utils::all_with_status(d, 1, "succeeded"),
        )
        .await;
    page.click("#nav a[href=deliveries]").await;
    page.wait_text("tr[data-delivery]", "succeeded").await;
    page.wait_text("tr[data-delivery]", "Portal hook").await;
    page.click("tr[data-delivery] a").await;
    page.wait_text("tr[data-attempt='1']", "200").await;
    page.wait_text("#delivery-attempts", "1").await;

    // Retry it: a second attempt reaches the receiver and the page.
    page.click("[data-action=retry]").await;
    page.wait_text("#flash", "Sent again").await;
    receiver
        .wait_for("/portal-hook", 2, Duration::from_secs(10))
        .await;
    let deadline = Instant::now() + WAIT;
    while page.text("#delivery-attempts").await.as_deref() != Some("2") {
        assert!(Instant::now() < deadline, "the retry never showed");
        tokio::time::sleep(Duration::from_millis(200)).await;
        page.click("[data-action=refresh]").await;
    }
    page.wait_text("tr[data-attempt='2']", "200").await;
    page.screenshot("delivery").await;

    // The event, with its delivery.
    page.click("#nav a[href=events]").await;
    page.wait_text("h1", "Events").await;
    page.click(&format!("a[href='events/{}']", id(&event)))
        .await;
    page.wait_text("tr[data-delivery]", "succeeded").await;
    page.wait_text(".facts", "1 succeeded").await;

    // The secret: revealed, then rotated.
    page.browser
        .goto(&format!("{}/portal/webhooks/{webhook_id}", stack.url))
        .await
        .unwrap();
    page.click("[data-action=reveal-secret]").await;
    page.wait_text("#secret-note", "Keep it secret").await;
    let secret = page.text("#secret-value").await.unwrap();
    let stored = tenant
        .get(&format!("/v1/webhooks/{webhook_id}/secret"))
        .await;
    assert_eq!(secret, stored.body["secret"].as_str().unwrap());
    page.click("[data-action=rotate-secret]").await;
    page.wait_text("#secret-note", "previous secret").await;
    let rotated = page.text("#secret-value").await.unwrap();
    assert_ne!(rotated, secret);
    let stored = tenant
        .get(&format!("/v1/webhooks/{webhook_id}/secret"))
        .await;
    assert_eq!(rotated, stored.body["secret"].as_str().unwrap());
    remember_secret(&rotated);

    // A test, its result shown; then pause from the page.
    page.click("[data-action=send-test]").await;
    page.wait_text("#test-result [data-success=true]", "200")
        .await;
    page.wait_text("#test-result", "200").await;
    // Times are local, UTC on hover.
    let title = page
        .find("time[datetime]")
        .await
        .attr("title")
        .await
        .unwrap();
    assert!(title.is_some_and(|t| t.ends_with("(UTC)")));
    page.screenshot("webhook").await;
    page.click("[data-action=pause]").await;
    page.wait_text("#webhook-status", "paused").await;
    let paused = tenant.get(&format!("/v1/webhooks/{webhook_id}")).await;
    assert_eq!(paused.body["status"], "paused");
    page.click("[data-action=unpause]").await;
    page.wait_text("#flash", "Unpaused: 0 buffered deliveries")
        .await;
    page.wait_text("#webhook-status", "active").await;

    // Settings saved from the form: the limit and the filter cleared; Basic credentials set.
    page.fill("[data-field=rate_limit]", "").await;
    page.fill("[data-field=filter]", "").await;
    page.fill("[data-field=name]", "Portal hook, renamed").await;
    page.click("[data-action=save-webhook]").await;
    page.wait_text("#flash", "Saved").await;
    let saved = tenant.get(&format!("/v1/webhooks/{webhook_id}")).await;
    assert_eq!(saved.body["rate_limit"], Value::Null, "{}", saved.body);
    assert_eq!(saved.body["filter"], Value::Null);
    assert_eq!(saved.body["name"], "Portal hook, renamed");
    assert_eq!(saved.body["headers"], json!({"X-Team": "growth-squad"}));
    page.fill("[data-field=username]", "portal-user").await;
    page.fill("[data-field=password]", "correct-horse-battery")
        .await;
    remember_secret("correct-horse-battery");
    page.click("[data-action=save-auth]").await;
    page.wait_text("#flash", "Basic authentication saved").await;
    let saved = tenant.get(&format!("/v1/webhooks/{webhook_id}")).await;
    assert_eq!(saved.body["auth"]["username"], "portal-user");

    // Recover failed deliveries since a day ago (there are none: the request is accepted).
    page.click("[data-action=recover]").await;
    page.wait_text("#flash", "Recovering failed deliveries since")
        .await;

    // Replay the event to this webhook: a second delivery of it.
    page.browser
        .goto(&format!("{}/portal/events/{}", stack.url, id(&event)))
        .await
        .unwrap();
    page.find("section[aria-labelledby=replay-h] select")
        .await
        .select_by_value(&webhook_id)
        .await
        .unwrap();
    page.click("[data-action=replay]").await;
    page.wait_text("#flash", "Replayed: 1 new delivery queued")
        .await;
    receiver
        .wait_for("/portal-hook", 3, Duration::from_secs(10))
        .await;

    // A list longer than a page pages with the API's cursors; filters stay in the address.
    for n in 0..20 {
        tenant.publish("invoice.paid", json!({"n": n})).await;
    }
    page.click("#nav a[href=events]").await;
    page.wait_text("h1", "Events").await;
    page.find("a[rel=next]").await;
    let first = page
        .browser
        .find_all(Locator::Css("tbody tr"))
        .await
        .unwrap();
    assert_eq!(first.len(), 20);
    page.click("a[rel=next]").await;
    page.wait_text("tbody", "user.created").await;
    let second = page
        .browser
        .find_all(Locator::Css("tbody tr"))
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "21 events: 20, then 1");
    page.find("a[rel=prev]").await;
    page.click("#nav a[href=deliveries]").await;
    page.find("select[name=status]")
        .await
        .select_by_value("succeeded")
        .await
        .unwrap();
    page.wait_text("h1", "Deliveries").await;
    let deadline = Instant::now() + WAIT;
    while !page
        .address()
        .await
        .ends_with("deliveries?status=succeeded")
    {
        assert!(
            Instant::now() < deadline,
            "the filter never reached the address"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page.find("tr[data-delivery]").await;

    page.click("#nav a[href=webhooks]").await;
    page.wait_text("td.rate", "100%").await;
    page.screenshot("webhooks").await;
    assert_no_other_host(&page, &stack).await;

    // Delete, after confirming.
    page.click(&format!("a[href='webhooks/{webhook_id}']"))
        .await;
    page.click("[data-action=delete]").await;
    page.click("[data-action=confirm-delete]").await;
    page.wait_text(".empty", "No webhooks yet").await;
    tenant
        .get(&format!("/v1/webhooks/{webhook_id}"))
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");
    page.close().await;
}

#[tokio::test]
async fn read_only_sessions_change_nothing_and_bad_links_show_a_clear_page() {
    let stack = Stack::start().await;
    let tenant = stack.tenant().await;
    tenant.event_types(&["user.created"]).await;
    let webhook = tenant
        .webhook("http://127.0.0.1:9/read-only", json!(["user.created"]))
        .await;
    let webhook_id = id(&webhook);

    let link = session(&tenant, json!({"read_only": true, "expires_in": 600})).await;
    let expires_at = chrono::DateTime::parse_from_rfc3339(link["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!((expires_at - chrono::Utc::now().timestamp() - 600).abs() <= 5);
    for (body, field) in [
        (json!({"expires_in": 59}), "expires_in"),
        (json!({"expires_in": 86_401}), "expires_in"),
        (json!({"expires_in": "soon"}), "expires_in"),
        (json!({"read_only": "yes"}), "read_only"),
        (json!({"tenant_id": "someone-else"}), "tenant_id"),
    ] {
        let refused = tenant.post("/v1/portal-sessions", body.clone()).await;
        refused.assert_error(400, "INVALID_REQUEST");
        assert_eq!(refused.field(), Some(field), "{body}");
    }
    assert_eq!(link["scopes"], json!(["webhooks:read", "events:read"]));
    // A session never holds more than its opener: a key that may change webhooks but not
    // send events opens a session that cannot send them either.
    let narrow = stack
        .key_for(
            &tenant.tenant,
            &[
                shared::domain::api_key::Scope::WebhooksRead,
                shared::domain::api_key::Scope::WebhooksWrite,
            ],
        )
        .await;
    let narrowed = session(&narrow, json!({})).await;
    assert_eq!(
        narrowed["scopes"],
        json!(["webhooks:read", "webhooks:write"])
    );
    stack
        .client(&tenant.tenant, narrowed["token"].as_str().map(String::from))
        .post("/v1/events", json!({"type": "user.created", "data": {}}))
        .await
        .assert_error(403, "FORBIDDEN");
    // A session opened with an access token ends when the token does, not a day later.
    let access =
        crate::oauth::access_token(&stack, &tenant.tenant, "webhooks:read,webhooks:write").await;
    let token_exp = crate::oauth::part_of(&access, 1)["exp"].as_i64().unwrap();
    let from_token = session(
        &stack.client(&tenant.tenant, Some(access)),
        json!({"expires_in": 86_400}),
    )
    .await;
    let session_exp = crate::oauth::part_of(from_token["token"].as_str().unwrap(), 1)["exp"]
        .as_i64()
        .unwrap();
    assert!(session_exp <= token_exp, "{session_exp} > {token_exp}");
    let token = link["token"].as_str().unwrap().to_string();
    let reader = stack.client(&tenant.tenant, Some(token.clone()));
    reader
        .get(&format!("/v1/webhooks/{webhook_id}"))
        .await
        .assert_status(200);
    for refused in [
        reader
            .patch(&format!("/v1/webhooks/{webhook_id}"), json!({"name": "x"}))
            .await,
        reader
            .post_empty(&format!("/v1/webhooks/{webhook_id}/pause"))
            .await,
        reader
            .get(&format!("/v1/webhooks/{webhook_id}/secret"))
            .await,
        reader
            .post("/v1/events", json!({"type": "user.created", "data": {}}))
            .await,
        reader.post("/v1/portal-sessions", json!({})).await,
    ] {
        refused.assert_error(403, "FORBIDDEN");
    }

    let driver = Driver::start();
    let page = Page {
        browser: driver.browser(390).await,
        name: "read-only",
    };
    page.browser
        .goto(link["url"].as_str().unwrap())
        .await
        .unwrap();
    page.wait_text("#banner", "Read-only session").await;
    page.wait_text("tbody", "read-only").await;
    assert!(
        page.browser
            .find(Locator::Css("[data-action=new-webhook]"))
            .await
            .is_err(),
        "a read-only session offers to create webhooks"
    );
    // Readable on a narrow screen: nothing wider than the window but the tables' own
    // scrolling boxes.
    let overflow = page
        .run("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(overflow.as_i64().unwrap() <= 0, "the page scrolls sideways");
    page.screenshot("narrow").await;

    page.click(&format!("a[href='webhooks/{webhook_id}']"))
        .await;
    page.find("[data-action=pause]").await;
    for control in [
        "[data-action=pause]",
        "[data-action=reveal-secret]",
        "[data-action=rotate-secret]",
        "[data-action=delete]",
        "[data-action=save-webhook]",
        "[data-field=url]",
    ] {
        assert!(!page.enabled(control).await, "{control} is enabled");
    }
    // The server refuses too, whatever the page shows: a change sent from the page's own
    // script with the session's token.
    let status = page
        .run_async(&format!(
            "const done = arguments[arguments.length - 1];
             fetch('/v1/webhooks/{webhook_id}', {{method: 'PATCH',
               headers: {{authorization: 'Bearer ' + sessionStorage.getItem('webhooks-portal-session'),
                         'content-type': 'application/json'}},
               body: JSON.stringify({{name: 'changed'}})}}).then(r => done(r.status));"
        ))
        .await;
    assert_eq!(status, 403);
    let unchanged = tenant.get(&format!("/v1/webhooks/{webhook_id}")).await;
    assert_eq!(unchanged.body["name"], webhook["name"]);
    page.screenshot("webhook").await;

    // Bad links: each shows its clear page, and nothing else.
    let now = chrono::Utc::now().timestamp();
    let links = [
        (
            "expired",
            crate::oauth::resigned(&stack, &token, "exp", json!(now - 5)).await,
        ),
        (
            "invalid",
            crate::oauth::tampered(&token, "tenant_id", json!("someone-else")),
        ),
        (
            "invalid",
            crate::oauth::resigned(&stack, &token, "iss", json!("urn:another-service")).await,
        ),
        ("invalid", "not-a-token".to_string()),
    ];
    for (gate, bad) in links {
        page.browser.goto("about:blank").await.unwrap();
        page.browser
            .goto(&format!("{}/portal#session={bad}", stack.url))
            .await
            .unwrap();
        page.find(&format!("[data-gate={gate}]")).await;
        assert!(
            page.find("#nav")
                .await
                .attr("hidden")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            page.browser.find(Locator::Css("table")).await.is_err(),
            "a bad link shows data"
        );
        assert!(!page.address().await.contains("session="));
    }
    page.wait_text("h1", "This link is not valid").await;
    page.screenshot("invalid-link").await;
    // The stored token went with the bad link: the bare address asks for a link.
    page.browser
        .goto(&format!("{}/portal/webhooks", stack.url))
        .await
        .unwrap();
    page.wait_text("[data-gate=missing]", "No portal session")
        .await;
    page.close().await;
}

#[tokio::test]
async fn the_portal_is_served_with_its_policy_and_no_secret_in_its_html() {
    let stack = Stack::start().await;
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/portal", "text/html"),
        ("/portal/", "text/html"),
        ("/portal/webhooks/wh_01J", "text/html"),
        ("/portal/assets/main.js", "text/javascript"),
        ("/portal/assets/dom.js", "text/javascript"),
        ("/portal/assets/app.css", "text/css"),
    ] {
        let response = http
            .get(format!("{}{path}", stack.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"));
        assert_eq!(headers["x-frame-options"], "DENY");
        let body = response.text().await.unwrap();
        if kind == "text/html" {
            assert!(body.contains(r#"<base href="/portal/">"#), "{body}");
        }
        let again = http
            .get(format!("{}{path}", stack.url))
            .header("if-none-match", headers["etag"].clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    // No authorizer in front (the page has no secret to guard), and no other method.
    let post = http
        .post(format!("{}/portal", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404);
}
