//! The tenant portal's files (SPEC §10), served by the `portal` function on `GET /portal`
//! and `GET /portal/{proxy+}`.
//!
//! The portal is a page and a small script in the browser that calls the API with the
//! session's token; this function only hands out its files (the page, its style and its
//! script's ES modules), compiled into the binary from `portal/`. It reads no storage and holds no permission. Every answer
//! carries a content security policy that allows scripts, styles and API calls from this
//! origin only: no inline script, no other host, no framing.

use std::borrow::Cow;
use std::sync::OnceLock;

use lambda_http::http::HeaderValue;
use lambda_http::{Body, Request, RequestExt, Response};
use sha2::{Digest, Sha256};

/// Scripts, styles, images and API calls from this origin only; nothing inline, no frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'self'; \
     form-action 'none'; frame-ancestors 'none'";

struct Asset {
    /// The path under `/portal/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    path: "",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../portal/index.html"),
};

/// One of the script's ES modules: `portal/<name>`, served as `assets/<name>`.
macro_rules! module {
    ($name:literal) => {
        Asset {
            path: concat!("assets/", $name),
            content_type: "text/javascript; charset=utf-8",
            body: include_str!(concat!("../../portal/", $name)),
        }
    };
}

/// The page's files: its style and its script's modules (`main.js` first, the one the
/// page loads; each imports the ones below it).
const ASSETS: &[Asset] = &[
    module!("main.js"),
    module!("router.js"),
    module!("webhooks.js"),
    module!("webhook.js"),
    module!("forms.js"),
    module!("deliveries.js"),
    module!("events.js"),
    module!("nav.js"),
    module!("api.js"),
    module!("session.js"),
    module!("dom.js"),
    Asset {
        path: "assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../portal/app.css"),
    },
];

/// Where index.html names its base address, filled in per request.
const BASE_MARKER: &str = "__PORTAL_BASE__";

/// `GET /portal/...`: a file by its path, else the page itself (the portal's own
/// addresses, such as `/portal/webhooks/wh_1`, are drawn by its script).
pub fn serve(req: &Request) -> Response<Body> {
    let rest = req
        .path_parameters_ref()
        .and_then(|p| p.first("proxy"))
        .unwrap_or("")
        .trim_start_matches('/');
    let found = ASSETS.iter().position(|a| a.path == rest);
    let ready = match found {
        Some(i) => Cow::Borrowed(&assets()[i]),
        None => page(stage(req)),
    };
    let etag = &ready.etag;
    let not_modified = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag.as_str()));
    let builder = Response::builder()
        .header("content-security-policy", CONTENT_SECURITY_POLICY)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("x-frame-options", "DENY")
        // Revalidated on every load, so a new deployment is picked up at once.
        .header("cache-control", "no-cache")
        .header("etag", etag.as_str());
    let response = if not_modified {
        builder.status(304).body(Body::Empty)
    } else {
        builder
            .status(200)
            .header(
                "content-type",
                HeaderValue::from_static(
                    found.map_or(INDEX.content_type, |i| ASSETS[i].content_type),
                ),
            )
            .body(Body::Text(ready.body.clone()))
    };
    response.expect("static headers and a computed tag are valid")
}

/// The API Gateway stage the request came through, unless it is `$default`.
pub fn stage(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx
            .stage
            .clone()
            .filter(|s| s != "$default" && !s.is_empty()),
        _ => None,
    }
}

/// The portal's base address: `/portal/`, or `/<stage>/portal/` on a named stage (whose
/// name API Gateway puts at the start of every path).
pub fn base_path(stage: Option<String>) -> String {
    match stage {
        Some(stage) => format!("/{stage}/portal/"),
        None => "/portal/".to_string(),
    }
}

/// Text safe inside a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A file ready to send: its body and its strong validator (the first 16 bytes of the
/// body's SHA-256), made once per process rather than per request.
#[derive(Clone)]
struct Ready {
    body: String,
    etag: String,
}

impl Ready {
    fn of(body: String) -> Self {
        let etag = format!(
            "\"{}\"",
            hex::encode(&Sha256::digest(body.as_bytes())[..16])
        );
        Ready { body, etag }
    }
}

/// The script and style, in the order of [`ASSETS`].
fn assets() -> &'static [Ready] {
    static READY: OnceLock<Vec<Ready>> = OnceLock::new();
    READY.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| Ready::of(a.body.to_string()))
            .collect()
    })
}

/// The page for a stage: kept for the first stage asked (a deployed function serves one),
/// made again for any other.
fn page(stage: Option<String>) -> Cow<'static, Ready> {
    static FIRST: OnceLock<(Option<String>, Ready)> = OnceLock::new();
    let render = |stage: Option<String>| {
        let base = html_attribute(&base_path(stage));
        Ready::of(INDEX.body.replace(BASE_MARKER, &base))
    };
    let (kept, ready) = FIRST.get_or_init(|| (stage.clone(), render(stage.clone())));
    if *kept == stage {
        Cow::Borrowed(ready)
    } else {
        Cow::Owned(render(stage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(path: &str, proxy: Option<&str>, if_none_match: Option<&str>) -> Response<Body> {
        let mut headers = json!({});
        if let Some(tag) = if_none_match {
            headers["if-none-match"] = json!(tag);
        }
        let event = json!({
            "version": "2.0",
            "routeKey": "GET /portal/{proxy+}",
            "rawPath": path,
            "rawQueryString": "",
            "headers": headers,
            "pathParameters": proxy.map(|p| json!({"proxy": p})),
            "requestContext": {
                "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                "requestId": "r", "routeKey": "GET /portal/{proxy+}", "stage": "$default",
                "accountId": "a", "apiId": "b", "domainName": "c", "domainPrefix": "d",
                "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        serve(&lambda_http::request::from_str(&event.to_string()).unwrap())
    }

    fn text(response: &Response<Body>) -> String {
        String::from_utf8(response.body().as_ref().to_vec()).unwrap()
    }

    #[test]
    fn the_page_and_its_files_are_served_with_the_policy() {
        let page = get("/portal", None, None);
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(
            page.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY
        );
        assert!(text(&page).contains(r#"<base href="/portal/">"#));
        let script = get("/portal/assets/main.js", Some("assets/main.js"), None);
        assert_eq!(
            script.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(text(&script), ASSETS[0].body);
        let style = get("/portal/assets/app.css", Some("assets/app.css"), None);
        assert_eq!(style.headers()["content-type"], "text/css; charset=utf-8");
        // The portal's own addresses get the page, with the same base.
        let deep = get("/portal/webhooks/wh_1", Some("webhooks/wh_1"), None);
        assert!(text(&deep).contains(r#"<base href="/portal/">"#));
    }

    #[test]
    fn the_page_names_no_other_host_and_runs_no_inline_code() {
        for asset in std::iter::once(&INDEX).chain(ASSETS) {
            // The one address allowed is the form's example (a placeholder, never loaded).
            let body = asset.body.replace("'https://example.com/webhooks'", "");
            for banned in ["http://", "https://", "javascript:", "url("] {
                assert!(!body.contains(banned), "{} has {banned:?}", asset.path);
            }
        }
        for banned in ["<script>", " style=", " onclick=", " onload=", " onsubmit="] {
            assert!(!INDEX.body.contains(banned), "index.html has {banned:?}");
        }
        // Text from the API is set as text, never parsed as HTML.
        for asset in ASSETS {
            assert!(!asset.body.contains("innerHTML"), "{}", asset.path);
            assert!(!asset.body.contains("insertAdjacentHTML"), "{}", asset.path);
        }
    }

    #[test]
    fn every_module_a_module_imports_is_served() {
        for asset in ASSETS {
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let (_, from) = line.rsplit_once("'./").expect("a relative import");
                let name = from.trim_end_matches("';");
                let path = format!("assets/{name}");
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{} imports {name}, which is not served",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn a_named_stage_keeps_its_prefix_and_odd_names_cannot_break_out() {
        assert_eq!(base_path(Some("prod".into())), "/prod/portal/");
        assert_eq!(base_path(None), "/portal/");
        assert_eq!(
            html_attribute(r#"/a"><script>/portal/"#),
            "/a&quot;&gt;&lt;script&gt;/portal/"
        );
    }

    #[test]
    fn an_unchanged_file_is_not_sent_again() {
        let first = get("/portal/assets/app.css", Some("assets/app.css"), None);
        let tag = first.headers()["etag"].to_str().unwrap().to_string();
        let again = get("/portal/assets/app.css", Some("assets/app.css"), Some(&tag));
        assert_eq!(again.status(), 304);
        assert!(again.body().is_empty());
        let changed = get(
            "/portal/assets/app.css",
            Some("assets/app.css"),
            Some("\"old\""),
        );
        assert_eq!(changed.status(), 200);
    }
}
