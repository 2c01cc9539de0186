//! Tenants make their own models with `flywheel serve` processes on one store, end to end:
//! upload a dataset, train (one family or autotune), read the report, deploy, classify, run a
//! batch and download its results; a second tenant can see or touch none of it; bad uploads
//! get clear 4xx JSON errors and leave nothing stored; a replica killed with SIGKILL while it
//! runs a training job or a batch leaves the job to be completed by another replica, with
//! every batch row and every usage event exactly once. Each test runs on SQLite and, when
//! `FLYWHEEL_TEST_POSTGRES_URL` is set, PostgreSQL.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use flywheel_store::{PlanQuotas, Store, UsageFilter};
use serde_json::Value;

/// `n` rows of three classes told apart by a cue word, as CSV.
fn dataset_csv(n: usize) -> String {
    let cues = [("neg", "awful"), ("neu", "okay"), ("pos", "great")];
    let mut csv = String::from("text,label\n");
    let mut x: u64 = 7;
    for i in 0..n {
        let (label, cue) = cues[i % 3];
        let mut words = Vec::new();
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            words.push(format!("w{}", x % 50));
        }
        words.insert((x % 8) as usize, cue.to_string());
        csv.push_str(&format!("{},{label}\n", words.join(" ")));
    }
    csv
}

/// Plan `p`, tenants `a` and `b` with a key each; returns the keys.
fn seed_tenants(url: &str, dir: &Path) -> (String, String) {
    flywheel(
        url,
        dir,
        &[
            "plans",
            "create",
            "p",
            "--requests-per-minute",
            "100000",
            "--texts-per-month",
            "100000000",
        ],
    );
    let mut keys = Vec::new();
    for t in ["a", "b"] {
        flywheel(url, dir, &["tenants", "create", t]);
        keys.push(
            flywheel(url, dir, &["keys", "create", "--tenant", t, "--plan", "p"])
                .trim()
                .to_string(),
        );
    }
    (keys[0].clone(), keys[1].clone())
}

fn json(r: &HttpResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {} {}", r.status, r.body))
}

/// The body of a response sent with `transfer-encoding: chunked`, joined.
fn dechunk(r: &HttpResponse) -> String {
    if !r
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        return r.body.clone();
    }
    let mut out = String::new();
    let mut rest = r.body.as_str();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn upload(port: u16, key: &str, query: &str, content_type: &str, body: &str) -> HttpResponse {
    let auth = format!("Bearer {key}");
    http_with(
        port,
        "POST",
        &format!("/v1/datasets?{query}"),
        &[("authorization", &auth), ("content-type", content_type)],
        body,
    )
    .expect("upload answered")
}

/// A CSV upload of raw bytes; the whole response as text.
fn raw_upload(port: u16, key: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /v1/datasets?name=x HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\
         authorization: Bearer {key}\r\ncontent-type: text/csv\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn get(port: u16, key: &str, path: &str) -> HttpResponse {
    http(port, "GET", path, Some(key), None, "").expect("answered")
}

fn post(port: u16, key: &str, path: &str, body: &str) -> HttpResponse {
    http(port, "POST", path, Some(key), None, body).expect("answered")
}

/// Polls a job until `done` says so; returns its last state.
fn wait_job(
    port: u16,
    key: &str,
    path: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let r = get(port, key, path);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = json(&r);
        if done(&v) {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "job did not get there in {limit:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn state_is(v: &Value, s: &str) -> bool {
    v["state"] == s
}

fn final_state(v: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or(""))
}

fn store_run<T>(url: &str, f: impl AsyncFnOnce(&Store) -> T) -> T {
    runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        let out = f(&store).await;
        store.close().await;
        out
    })
}

#[test]
fn a_tenant_trains_deploys_classifies_and_batches_and_another_sees_none_of_it() {
    on_both(|url, dir| {
        let (key_a, key_b) = seed_tenants(url, dir);
        let replica = Replica::start_with(url, dir, free_port(), &["--job-lease-s", "3"]);
        replica.wait_ready();
        let port = replica.port;

        let r = upload(port, &key_a, "name=reviews", "text/csv", &dataset_csv(300));
        assert_eq!(r.status, 201, "{}", r.body);
        let ds = json(&r);
        let id = ds["id"].as_i64().unwrap();
        assert_eq!(ds["rows"], 300);
        assert_eq!(ds["version"], 1);
        assert_eq!(ds["preview"]["task"], "multiclass");
        assert_eq!(ds["preview"]["label_counts"]["pos"], 100);
        assert_eq!(ds["preview"]["language"], "space-delimited");
        assert_eq!(ds["preview"]["sample"].as_array().unwrap().len(), 5);
        // The same name again is its next version.
        let again = json(&upload(
            port,
            &key_a,
            "name=reviews",
            "text/csv",
            &dataset_csv(30),
        ));
        assert_eq!(again["version"], 2);

        let body = format!(r#"{{"dataset": {id}, "model": "linear", "name": "a-reviews"}}"#);
        let r = post(port, &key_a, "/v1/training-jobs", &body);
        assert_eq!(r.status, 202, "{}", r.body);
        let job = json(&r);
        let job_id = job["id"].as_str().unwrap().to_string();
        assert_eq!(job["state"], "queued");
        let path = format!("/v1/training-jobs/{job_id}");
        let done = wait_job(port, &key_a, &path, Duration::from_secs(120), final_state);
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(done["result"]["version"], 1);
        assert_eq!(done["result"]["eval_rows"], 60);
        let macro_f1 = done["result"]["metrics"]["macro_f1"].as_f64().unwrap();
        assert!(macro_f1 > 0.9, "{done}");
        let report = get(port, &key_a, &format!("{path}/report"));
        assert_eq!(report.status, 200);
        assert!(report.body.contains("<svg") && report.body.contains("a-reviews"));
        let events = dechunk(&get(port, &key_a, &format!("{path}/events")));
        assert!(events.contains("\"state\":\"queued\""), "{events}");
        assert!(events.contains("\"state\":\"succeeded\""), "{events}");
        assert!(
            events.trim_end().ends_with("event: end\ndata: {}"),
            "{events}"
        );

        // Not served until deployed; deployed, it answers the tenant.
        let classify = r#"{"model": "a-reviews", "inputs": ["w1 great w2", "awful w3"]}"#;
        assert_eq!(post(port, &key_a, "/v1/classify", classify).status, 404);
        let r = post(
            port,
            &key_a,
            "/v1/models/a-reviews/deploy",
            r#"{"version": 1}"#,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let r = post(port, &key_a, "/v1/classify", classify);
        assert_eq!(r.status, 200, "{}", r.body);
        let labels: Vec<String> = json(&r)["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["label"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(labels, ["pos", "neg"]);

        // A batch over texts uploaded without labels.
        let texts = "text\nw1 great\nawful w9 mail jane.doe@example.com\nw4 okay w5\n";
        let r = upload(port, &key_a, "name=inbox&labelled=false", "text/csv", texts);
        assert_eq!(r.status, 201, "{}", r.body);
        let inbox = json(&r);
        let texts_id = inbox["id"].as_i64().unwrap();
        // Stored redacted, as feedback is.
        assert_eq!(
            inbox["preview"]["sample"][1]["text"], "awful w9 mail [EMAIL]",
            "{inbox}"
        );
        assert_eq!(inbox["preview"]["labelled"], false);
        let r = post(
            port,
            &key_a,
            "/v1/batches",
            &format!(r#"{{"model": "a-reviews", "dataset": {texts_id}}}"#),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let batch_id = json(&r)["id"].as_str().unwrap().to_string();
        let bpath = format!("/v1/batches/{batch_id}");
        let b = wait_job(port, &key_a, &bpath, Duration::from_secs(60), final_state);
        assert_eq!(b["state"], "succeeded", "{b}");
        let lines = dechunk(&get(port, &key_a, &format!("{bpath}/results")));
        let labels: Vec<String> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["label"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(labels, ["pos", "neg", "neu"]);
        let csv = dechunk(&get(port, &key_a, &format!("{bpath}/results?format=csv")));
        assert!(
            csv.starts_with("index,label,score,version\n0,pos,"),
            "{csv}"
        );
        // Training a dataset of texts without labels is refused.
        let r = post(
            port,
            &key_a,
            "/v1/training-jobs",
            &format!(r#"{{"dataset": {texts_id}, "model": "linear"}}"#),
        );
        assert_eq!(r.status, 422, "{}", r.body);

        // Tenant b sees and touches none of a's things.
        assert_eq!(
            json(&get(port, &key_b, "/v1/datasets"))["datasets"],
            serde_json::json!([])
        );
        assert_eq!(
            json(&get(port, &key_b, "/v1/training-jobs"))["training_jobs"],
            serde_json::json!([])
        );
        assert_eq!(
            json(&get(port, &key_b, "/v1/batches"))["batches"],
            serde_json::json!([])
        );
        for p in [
            format!("/v1/datasets/{id}"),
            path.clone(),
            format!("{path}/report"),
            format!("{path}/events"),
            bpath.clone(),
            format!("{bpath}/results"),
        ] {
            assert_eq!(get(port, &key_b, &p).status, 404, "{p}");
        }
        for (p, body) in [
            (format!("{path}/cancel"), String::new()),
            (format!("{bpath}/cancel"), String::new()),
            (
                "/v1/models/a-reviews/deploy".to_string(),
                r#"{"version": 1}"#.to_string(),
            ),
            (
                "/v1/training-jobs".to_string(),
                format!(r#"{{"dataset": {id}, "model": "linear"}}"#),
            ),
            (
                "/v1/batches".to_string(),
                format!(r#"{{"model": "a-reviews", "dataset": {texts_id}}}"#),
            ),
        ] {
            let r = post(port, &key_b, &p, &body);
            assert!(
                [403, 404].contains(&r.status),
                "{p}: {} {}",
                r.status,
                r.body
            );
        }
        let r = http(
            port,
            "DELETE",
            &format!("/v1/datasets/{id}"),
            Some(&key_b),
            None,
            "",
        )
        .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(post(port, &key_b, "/v1/classify", classify).status, 403);
        // b may not take a's model name either.
        let b_data = json(&upload(
            port,
            &key_b,
            "name=mine",
            "text/csv",
            &dataset_csv(60),
        ));
        let r = post(
            port,
            &key_b,
            "/v1/training-jobs",
            &format!(
                r#"{{"dataset": {}, "model": "linear", "name": "a-reviews"}}"#,
                b_data["id"]
            ),
        );
        assert_eq!(r.status, 409, "{}", r.body);

        // Cancelling a running search frees the worker for the next job.
        let r = post(
            port,
            &key_a,
            "/v1/training-jobs",
            &format!(r#"{{"dataset": {id}, "model": "autotune", "budget": 60, "name": "a-slow"}}"#),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let slow = format!("/v1/training-jobs/{}", json(&r)["id"].as_str().unwrap());
        wait_job(port, &key_a, &slow, Duration::from_secs(30), |v| {
            state_is(v, "running")
        });
        // The plan allows one job at a time.
        let r = post(
            port,
            &key_a,
            "/v1/training-jobs",
            &format!(r#"{{"dataset": {id}, "model": "linear"}}"#),
        );
        assert_eq!(r.status, 429, "{}", r.body);
        let r = post(port, &key_a, &format!("{slow}/cancel"), "");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(json(&r)["state"], "cancelled");
        let r = post(
            port,
            &key_a,
            "/v1/training-jobs",
            &format!(r#"{{"dataset": {id}, "model": "linear", "name": "a-reviews"}}"#),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let next = format!("/v1/training-jobs/{}", json(&r)["id"].as_str().unwrap());
        let v = wait_job(port, &key_a, &next, Duration::from_secs(60), final_state);
        assert_eq!(v["state"], "succeeded", "{v}");
        assert_eq!(v["result"]["version"], 2);

        // Training time and batch texts are metered to the tenant.
        let events = store_run(url, async |s: &Store| {
            s.usage_events(&UsageFilter::default()).await.unwrap()
        });
        let trained: Vec<_> = events.iter().filter(|e| e.training_seconds > 0).collect();
        assert_eq!(trained.len(), 2, "{events:?}");
        assert!(trained
            .iter()
            .all(|e| e.tenant == "a" && e.model == "a-reviews"));
        let batch_texts: i64 = events
            .iter()
            .filter(|e| e.id.starts_with(&batch_id))
            .map(|e| e.texts)
            .sum();
        assert_eq!(batch_texts, 3);
    });
}

#[test]
fn bad_uploads_get_clear_errors_and_leave_nothing() {
    on_both(|url, dir| {
        let (key, _) = seed_tenants(url, dir);
        store_run(url, async |s: &Store| {
            let mut q = s.plan_quotas("p").await.unwrap();
            q.max_upload_bytes = 1 << 20;
            s.set_plan_quotas("p", &PlanQuotas { ..q }).await.unwrap();
        });
        let replica = Replica::start(url, dir, free_port());
        replica.wait_ready();
        let port = replica.port;
        let check = |query: &str, ctype: &str, body: &str, status: u16, kind: &str| -> Value {
            let r = upload(port, &key, query, ctype, body);
            assert_eq!(r.status, status, "{query}: {}", r.body);
            let v = json(&r);
            assert_eq!(v["error"]["type"], kind, "{v}");
            v
        };
        let ragged = "text,label\nfine,pos\nalso fine,neg\nbroken,neg,extra\n";
        let v = check("name=x", "text/csv", ragged, 422, "invalid_data");
        assert_eq!(v["error"]["line"], 4, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("line 4"));
        let v = check(
            "name=x",
            "text/csv",
            "text,category\nhi,pos\n",
            422,
            "missing_column",
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains("label"),
            "{v}"
        );
        // Latin-1 bytes are not UTF-8.
        let r = raw_upload(port, &key, b"text,label\nfine,pos\ncaf\xe9,pos\n");
        assert!(r.starts_with("HTTP/1.1 422"), "{r}");
        assert!(
            r.contains("\"invalid_encoding\"") && r.contains("line 3"),
            "{r}"
        );
        check("name=x", "text/csv", "", 422, "empty");
        check("name=x", "text/csv", "text,label\n", 422, "empty");
        check(
            "name=x",
            "application/x-ndjson",
            "{\"text\": \"a\"}\n",
            422,
            "missing_column",
        );
        check(
            "name=x",
            "application/pdf",
            "text,label\na,b\n",
            415,
            "unknown_format",
        );
        check(
            "name=bad/name",
            "text/csv",
            "text,label\na,b\n",
            400,
            "invalid_request",
        );
        // Over the plan's size: refused from the declared length, and a client that writes the
        // whole body before reading still gets the answer.
        let big = dataset_csv(60_000);
        assert!(big.len() > 2 << 20);
        check("name=x", "text/csv", &big, 413, "payload_too_large");
        // A bad row at the end of a large (allowed) file: the whole body is read, the error
        // names the line.
        let mut late = dataset_csv(20_000);
        late.push_str("oops,pos,extra\n");
        assert!(late.len() < 1 << 20);
        let v = check("name=x", "text/csv", &late, 422, "invalid_data");
        assert_eq!(v["error"]["line"], 20_002);
        // Nothing of any of them was kept.
        assert_eq!(
            json(&get(port, &key, "/v1/datasets"))["datasets"],
            serde_json::json!([])
        );
        let staging = store_run(url, async |s: &Store| {
            s.sweep_uploads(i64::MAX).await.unwrap()
        });
        assert_eq!(staging, 0);
        // A good one still works afterwards.
        let r = upload(
            port,
            &key,
            "filename=train.jsonl",
            "application/octet-stream",
            "{\"text\": \"a b\", \"label\": \"x\"}\n{\"text\": \"c\", \"label\": \"y\"}\n",
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(json(&r)["name"], "train");
        assert_eq!(json(&r)["format"], "jsonl");
    });
}

#[test]
fn jobs_of_a_killed_replica_complete_elsewhere_exactly_once() {
    on_both(|url, dir| {
        let (key, _) = seed_tenants(url, dir);
        store_run(url, async |s: &Store| {
            let mut q = s.plan_quotas("p").await.unwrap();
            q.max_active_jobs = 2;
            s.set_plan_quotas("p", &q).await.unwrap();
        });
        let lease = ["--job-lease-s", "2", "--batch-chunk", "20"];
        let mut first = Replica::start_with(url, dir, free_port(), &lease);
        first.wait_ready();
        let port = first.port;
        let data = json(&upload(
            port,
            &key,
            "name=reviews",
            "text/csv",
            &dataset_csv(600),
        ));
        let r = post(
            port,
            &key,
            "/v1/training-jobs",
            &format!(
                r#"{{"dataset": {}, "model": "autotune", "budget": 12, "name": "kept"}}"#,
                data["id"]
            ),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let job = format!("/v1/training-jobs/{}", json(&r)["id"].as_str().unwrap());
        wait_job(port, &key, &job, Duration::from_secs(30), |v| {
            state_is(v, "running") && v["progress"]["elapsed_seconds"].as_f64().unwrap_or(0.0) > 2.0
        });
        first.kill();

        let second = Replica::start_with(url, dir, free_port(), &lease);
        second.wait_ready();
        let port = second.port;
        let v = wait_job(port, &key, &job, Duration::from_secs(90), final_state);
        assert_eq!(v["state"], "succeeded", "{v}");
        assert_eq!(v["attempts"], 2, "{v}");
        assert_eq!(
            v["result"]["version"], 1,
            "one version, from the second attempt: {v}"
        );
        let r = post(port, &key, "/v1/models/kept/deploy", r#"{"version": 1}"#);
        assert_eq!(r.status, 200, "{}", r.body);

        // A batch killed half-way resumes after its last committed chunk.
        let n = 20_000;
        let mut texts = String::from("text\n");
        for i in 0..n {
            texts.push_str(&format!("w{} great w{}\n", i % 50, i % 7));
        }
        let up = json(&upload(
            port,
            &key,
            "name=inbox&labelled=false",
            "text/csv",
            &texts,
        ));
        let r = post(
            port,
            &key,
            "/v1/batches",
            &format!(r#"{{"model": "kept", "dataset": {}}}"#, up["id"]),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let batch_id = json(&r)["id"].as_str().unwrap().to_string();
        let batch = format!("/v1/batches/{batch_id}");
        drop(second);
        // `second` is gone (dropped: killed); a third replica picks the batch up where the
        // killed one's last chunk ended, and the test kills it too once it has made progress.
        let mut third = Replica::start_with(url, dir, free_port(), &lease);
        third.wait_ready();
        let seen = wait_job(third.port, &key, &batch, Duration::from_secs(60), |v| {
            final_state(v) || v["progress"]["done"].as_i64().unwrap_or(0) > 0
        });
        assert!(
            !final_state(&seen),
            "the batch ended before the kill: {seen}"
        );
        third.kill();
        let fourth = Replica::start_with(url, dir, free_port(), &lease);
        fourth.wait_ready();
        let v = wait_job(
            fourth.port,
            &key,
            &batch,
            Duration::from_secs(90),
            final_state,
        );
        assert_eq!(v["state"], "succeeded", "{v}");
        assert!(v["attempts"].as_i64().unwrap() >= 2, "{v}");
        let lines = dechunk(&get(fourth.port, &key, &format!("{batch}/results")));
        let indexes: Vec<i64> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["index"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(indexes, (0..n).collect::<Vec<i64>>());

        let events = store_run(url, async |s: &Store| {
            s.usage_events(&UsageFilter::default()).await.unwrap()
        });
        let batch_events: Vec<_> = events
            .iter()
            .filter(|e| e.id.starts_with(&batch_id))
            .collect();
        let ids: BTreeSet<&str> = batch_events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), batch_events.len());
        assert_eq!(batch_events.iter().map(|e| e.texts).sum::<i64>(), n);
        let trained: Vec<_> = events.iter().filter(|e| e.training_seconds > 0).collect();
        assert_eq!(trained.len(), 1, "{trained:?}");
        if url.starts_with("sqlite") {
            let ok = store_run(url, async |s: &Store| match s {
                Store::Sqlite(s) => sqlx::query_scalar::<_, String>("PRAGMA integrity_check")
                    .fetch_one(s.pool())
                    .await
                    .unwrap(),
                Store::Postgres(_) => "ok".to_string(),
            });
            assert_eq!(ok, "ok");
        }
    });
}

#[test]
fn a_tenant_makes_a_model_in_the_browser() {
    let Some(script_dir) = browser_scripts() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flywheel.db").display());
    let (key, _) = seed_tenants(&url, dir.path());
    let csv = dir.path().join("reviews.csv");
    std::fs::write(&csv, dataset_csv(600)).unwrap();
    let replica = Replica::start(&url, dir.path(), free_port());
    replica.wait_ready();
    let base = format!("http://127.0.0.1:{}", replica.port);
    run_browser_script(
        &script_dir,
        "new-model.mjs",
        &[
            ("BASE_URL", &base),
            ("TENANT_KEY", &key),
            ("TENANT", "a"),
            ("CSV", csv.to_str().unwrap()),
            ("BUDGET", "10"),
        ],
        "new model: all checks passed",
    );
}
