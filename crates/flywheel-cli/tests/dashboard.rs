//! The dashboard on a real server. Over plain HTTP (SQLite and PostgreSQL): sign-in, pages
//! under 200 KB, what a tenant may and may not see or do, cross-site posts refused, keys shown
//! once and revocable, try-it metered, promote and rollback served at once, usage CSV. In a
//! browser (SQLite): `tests/browser/dashboard.mjs` drives Debian's headless Chromium through
//! every page with the mouse and keyboard. The browser test needs Node.js, /usr/bin/chromium
//! and `npm ci --prefix tests/browser`; without them it is skipped, unless
//! `FLYWHEEL_REQUIRE_BROWSER=1` (set by CI) makes that a failure.

mod common;
use common::*;

use std::path::Path;

const ADMIN: &str = "dashboard-admin-token-0123";
const ORIGIN: &str = "http://127.0.0.1";
const FORM: &str = "application/x-www-form-urlencoded";
/// The dashboard's page-weight budget (HTML, stylesheet and script together).
const MAX_PAGE_BYTES: usize = 200 * 1024;

/// English and Chinese sentences, positive and negative.
fn write_data(dir: &Path) {
    let pos = [
        "a wonderful happy day",
        "i love this great film",
        "what a lovely kind person",
        "今天天气很好",
        "我很开心",
        "这部电影很好看",
    ];
    let neg = [
        "a terrible sad day",
        "i hate this awful film",
        "what a rude nasty person",
        "今天天气很差",
        "我很难过",
        "这部电影很难看",
    ];
    let mut csv = String::from("text,label\n");
    for i in 0..20 {
        for (j, (p, n)) in pos.iter().zip(neg).enumerate() {
            let tail = ["", " indeed", " today", " again"][(i + j) % 4];
            csv.push_str(&format!("{p}{tail},pos\n{n}{tail},neg\n"));
        }
    }
    std::fs::write(dir.join("data.csv"), csv).unwrap();
}

/// Everything the pages need: model `m` with two versions (v1 champion, both with validation
/// scores), plans, tenants `acme` and `globex` with a key each, logged predictions and usage.
/// Returns the server and acme's and globex's keys.
fn setup(url: &str, dir: &Path) -> (Replica, String, String) {
    write_data(dir);
    for (file, seed, epochs) in [("v1.fw", "1", "5"), ("v2.fw", "2", "30")] {
        flywheel(
            url,
            dir,
            &[
                "train",
                "data.csv",
                "-o",
                file,
                "--model",
                "fasttext",
                "--dim",
                "16",
                "--epochs",
                epochs,
                "--lr",
                "0.5",
                "--validation-split",
                "0.2",
                "--threads",
                "1",
                "--seed",
                seed,
            ],
        );
    }
    flywheel(
        url,
        dir,
        &[
            "models", "push", "v1.fw", "--name", "m", "--data", "data.csv",
        ],
    );
    flywheel(url, dir, &["models", "push", "v2.fw", "--name", "m"]);
    flywheel(url, dir, &["models", "promote", "m", "1"]);
    flywheel(url, dir, &["models", "public", "m"]);
    for plan in ["starter", "pro"] {
        flywheel(
            url,
            dir,
            &[
                "plans",
                "create",
                plan,
                "--requests-per-minute",
                "100000",
                "--texts-per-month",
                "1000000",
            ],
        );
    }
    let mut keys = Vec::new();
    for tenant in ["acme", "globex"] {
        flywheel(url, dir, &["tenants", "create", tenant]);
        let key = flywheel(
            url,
            dir,
            &["keys", "create", "--tenant", tenant, "--plan", "starter"],
        );
        keys.push(key.trim().to_string());
    }
    let port = free_port();
    let server = Replica::start_with(url, dir, port, &["--admin-token", ADMIN]);
    server.wait_ready();
    let texts = [
        "a happy lovely film",
        "a sad awful film",
        "我很开心 today",
        "这部电影很差",
        "what a day",
        "kind person",
    ];
    for (i, key) in keys.iter().enumerate() {
        let inputs: Vec<String> = texts.iter().map(|t| format!("{t} {i}")).collect();
        let body = serde_json::json!({"model": "m", "inputs": inputs, "log": true}).to_string();
        let r = http(port, "POST", "/v1/classify", Some(key), None, &body).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (acme, globex) = (keys[0].clone(), keys[1].clone());
    (server, acme, globex)
}

/// Signs in through the form; returns the `cookie` header value of the session.
fn sign_in(port: u16, token: &str) -> String {
    let body = format!("token={}&next=%2Fusage", form_encode(token));
    let r = http_with(
        port,
        "POST",
        "/login",
        &[("content-type", FORM), ("origin", ORIGIN)],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/usage"));
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_string()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get(port: u16, path: &str, cookie: &str) -> HttpResponse {
    http_with(port, "GET", path, &[("cookie", cookie)], "").unwrap()
}

fn post(port: u16, path: &str, cookie: &str, body: &str) -> HttpResponse {
    http_with(
        port,
        "POST",
        path,
        &[
            ("cookie", cookie),
            ("content-type", FORM),
            ("origin", ORIGIN),
        ],
        body,
    )
    .unwrap()
}

/// The `data-id`s of the review queue's items on a review page.
fn queue_ids(html: &str) -> Vec<i64> {
    html.split("data-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

/// Texts summed over the rows of a usage CSV.
fn csv_texts(csv: &str) -> (Vec<String>, i64) {
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("tenant,key_prefix,model,day,requests,texts,characters,training_seconds")
    );
    let mut tenants = Vec::new();
    let mut texts = 0;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        tenants.push(cells[0].to_string());
        texts += cells[5].parse::<i64>().unwrap();
    }
    (tenants, texts)
}

fn pages_over_http(url: &str, dir: &Path) {
    let (server, acme, globex) = setup(url, dir);
    let port = server.port;

    // Signed out: every page sends to the sign-in page; a wrong token is refused; a form
    // posted from another site is refused before anything else.
    let r = http_with(port, "GET", "/review?model=m", &[], "").unwrap();
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login?next=/review"));
    let login = http_with(port, "GET", "/login", &[], "").unwrap();
    assert_eq!(login.status, 200);
    assert!(login.body.contains("name=\"token\""));
    let bad = http_with(
        port,
        "POST",
        "/login",
        &[("content-type", FORM), ("origin", ORIGIN)],
        "token=fw_not_a_key",
    )
    .unwrap();
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    let forged = http_with(
        port,
        "POST",
        "/login",
        &[("content-type", FORM), ("origin", "http://evil.example")],
        &format!("token={ADMIN}"),
    )
    .unwrap();
    assert_eq!(forged.status, 403);
    assert_eq!(
        get(port, "/", "fw_session=00").status,
        303,
        "a cookie that is not a credential"
    );

    let admin = sign_in(port, ADMIN);
    // Every page renders and, with its stylesheet and script, stays under the budget.
    let css = get(port, "/assets/app.css", &admin);
    let js = get(port, "/assets/app.js", &admin);
    assert_eq!((css.status, js.status), (200, 200));
    for path in [
        "/",
        "/models/m",
        "/try",
        "/review?model=m",
        "/usage",
        "/keys",
    ] {
        let r = get(port, path, &admin);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(r.header("content-security-policy").is_some());
        let weight = r.body.len() + css.body.len() + js.body.len();
        assert!(weight < MAX_PAGE_BYTES, "{path} weighs {weight} bytes");
    }
    let models = get(port, "/", &admin).body;
    assert!(models.contains("href=\"/models/m\""));
    let model = get(port, "/models/m", &admin).body;
    assert!(model.contains("<polyline"), "learning curves");
    assert!(model.contains("Confusion matrix"));
    assert!(model.contains("aria-label=\"Promote version 2\""));
    // The served version's drift monitor (12 texts so far: no check yet), and the operator's
    // audit of the champion's base data, whose suspects go to the review queue.
    assert!(model.contains("id=\"drift-state\""), "the drift section");
    assert!(model.contains("12 texts observed"), "{model}");
    assert!(model.contains("Audit the base data"));
    let audited = post(port, "/models/m/audit", &admin, "");
    assert_eq!(audited.status, 200, "{}", audited.body);
    assert!(audited.body.contains("Estimated label noise per class"));
    assert!(
        audited.body.contains("240 rows, 2 labels"),
        "{}",
        audited.body
    );
    let sent = post(port, "/models/m/audit/review", &admin, "");
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(sent.header("location"), Some("/review?model=m"));
    let acme_session = sign_in(port, &acme);
    assert_eq!(post(port, "/models/m/audit", &acme_session, "").status, 403);
    assert!(!get(port, "/models/m", &acme_session)
        .body
        .contains("Audit the base data"));

    // Promote and roll back: the served version follows at once.
    let r = post(port, "/models/m/promote", &admin, "version=2");
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/models/m?done=promote&v=2"));
    let ready = http(port, "GET", "/readyz", None, None, "").unwrap().body;
    assert!(ready.contains("\"version\":\"2\""), "{ready}");
    assert!(get(port, "/models/m?done=promote&v=2", &admin)
        .body
        .contains("Version 2 is now the champion"));
    let r = post(port, "/models/m/rollback", &admin, "");
    assert_eq!(r.header("location"), Some("/models/m?done=rollback&v=1"));
    let ready = http(port, "GET", "/readyz", None, None, "").unwrap().body;
    assert!(ready.contains("\"version\":\"1\""), "{ready}");
    let r = post(port, "/models/m/rollback", &admin, "");
    assert_eq!(r.header("location"), Some("/models/m?error=rollback"));

    // Review: the admin sees both tenants' logged predictions; a cross-site post labels
    // nothing; a same-site one labels the item, which leaves the queue.
    let queue = get(port, "/review?model=m", &admin).body;
    let ids = queue_ids(&queue);
    assert_eq!(ids.len(), 12, "{queue}");
    let forged = http_with(
        port,
        "POST",
        &format!("/review/{}", ids[0]),
        &[
            ("cookie", &admin),
            ("content-type", FORM),
            ("sec-fetch-site", "cross-site"),
        ],
        "label=pos",
    )
    .unwrap();
    assert_eq!(forged.status, 403);
    assert_eq!(
        queue_ids(&get(port, "/review?model=m", &admin).body).len(),
        12
    );
    let r = http_with(
        port,
        "POST",
        &format!("/review/{}", ids[0]),
        &[
            ("cookie", &admin),
            ("content-type", FORM),
            ("origin", ORIGIN),
            ("x-requested-with", "fetch"),
        ],
        "model=m&label=pos",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["waiting"],
        11
    );
    let r = post(port, &format!("/review/{}", ids[1]), &admin, "label=nope");
    assert_eq!(r.status, 422, "an unknown label");
    let r = post(port, &format!("/review/{}", ids[1]), &admin, "label=neg");
    assert_eq!(r.status, 303);
    let left = queue_ids(&get(port, "/review?model=m", &admin).body);
    assert_eq!(left.len(), 10);
    assert!(!left.contains(&ids[0]) && !left.contains(&ids[1]));

    // Keys: shown once, then only by prefix; revoking one locks it out of the API.
    let r = post(port, "/keys", &admin, "tenant=acme&plan=pro");
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r
        .body
        .split("id=\"new-key\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_string();
    assert!(key.starts_with("fw_"), "{key}");
    assert_eq!(
        http(port, "GET", "/v1/models", Some(&key), None, "")
            .unwrap()
            .status,
        200
    );
    let listed = get(port, "/keys", &admin).body;
    let prefix = &key[..11];
    assert!(listed.contains(prefix) && !listed.contains(&key));
    let r = post(
        port,
        "/keys/revoke",
        &admin,
        &format!("tenant=acme&prefix={prefix}"),
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        http(port, "GET", "/v1/models", Some(&key), None, "")
            .unwrap()
            .status,
        401
    );
    assert_eq!(post(port, "/tenants", &admin, "name=initech").status, 303);
    assert_eq!(post(port, "/tenants", &admin, "name=initech").status, 409);

    // A tenant sees only its own tenant and may not change the registry or other tenants.
    let tenant = sign_in(port, &acme);
    let keys_page = get(port, "/keys", &tenant).body;
    assert!(keys_page.contains("Tenant acme") && !keys_page.contains("globex"));
    assert!(!keys_page.contains("Create a tenant"));
    assert_eq!(
        post(port, "/models/m/promote", &tenant, "version=2").status,
        403
    );
    assert_eq!(post(port, "/models/m/rollback", &tenant, "").status, 403);
    assert_eq!(post(port, "/tenants", &tenant, "name=mine").status, 403);
    let globex_prefix = &globex[..11];
    let r = post(
        port,
        "/keys/revoke",
        &tenant,
        &format!("tenant=globex&prefix={globex_prefix}"),
    );
    assert_eq!(r.status, 404, "another tenant's key is not found");
    assert_eq!(
        http(port, "GET", "/v1/models", Some(&globex), None, "")
            .unwrap()
            .status,
        200
    );
    assert_eq!(get(port, "/usage?tenant=globex", &tenant).status, 403);
    let review = get(port, "/review?model=m", &tenant).body;
    let texts: Vec<&str> = review
        .split("<p class=\"text\">")
        .skip(1)
        .filter_map(|s| s.split("</p>").next())
        .collect();
    assert_eq!(texts.len(), queue_ids(&review).len());
    assert!(texts.len() >= 4, "{review}");
    assert!(
        texts.iter().all(|t| t.ends_with(" 0")),
        "acme's own items only: {texts:?}"
    );

    // Try it: the label, the highlighted tokens, and a metered text on the tenant's key.
    let (tenants, before) = csv_texts(&get(port, "/usage.csv", &tenant).body);
    assert!(tenants.iter().all(|t| t == "acme"));
    let r = post(port, "/try", &tenant, "model=m&text=a+wonderful+happy+day");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"label\">pos<"), "{}", r.body);
    assert!(r.body.matches("<mark class=\"for\"").count() >= 1);
    let r = post(
        port,
        "/try",
        &tenant,
        &format!("model=m&text={}", form_encode("我很开心")),
    );
    assert_eq!(r.status, 200);
    assert!(r.body.matches("<mark").count() >= 4, "{}", r.body);
    let (_, after) = csv_texts(&get(port, "/usage.csv", &tenant).body);
    assert_eq!(after, before + 2, "try-it is metered like the API");
    let r = post(port, "/try", &tenant, "model=nope&text=hello");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no model named"));
    let admin_csv = get(port, "/usage.csv", &admin);
    assert!(admin_csv
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment")));
    let (tenants, _) = csv_texts(&admin_csv.body);
    assert!(tenants.contains(&"acme".to_string()) && tenants.contains(&"globex".to_string()));

    // Signing out clears the cookie; a revoked key's session ends at once.
    let r = post(port, "/logout", &tenant, "");
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let acme_prefix = &acme[..11];
    post(
        port,
        "/keys/revoke",
        &admin,
        &format!("tenant=acme&prefix={acme_prefix}"),
    );
    assert_eq!(get(port, "/", &tenant).status, 303);
}

#[test]
fn the_dashboard_over_http() {
    on_both(pages_over_http);
}

#[test]
fn the_dashboard_in_a_browser() {
    let Some(script_dir) = browser_scripts() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flywheel.db").display());
    let (server, acme, _) = setup(&url, dir.path());
    let base = format!("http://127.0.0.1:{}", server.port);
    run_browser_script(
        &script_dir,
        "dashboard.mjs",
        &[
            ("BASE_URL", &base),
            ("ADMIN_TOKEN", ADMIN),
            ("TENANT_KEY", &acme),
            ("TENANT", "acme"),
            ("OTHER_TENANT", "globex"),
            ("PLAN", "pro"),
            ("MODEL", "m"),
        ],
        "dashboard: all checks passed",
    );
}
