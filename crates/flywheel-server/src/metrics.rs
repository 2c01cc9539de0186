//! Prometheus metrics, kept by hand (a few counters and histograms) and rendered in the text
//! exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};

/// Upper bounds (seconds) of the request latency histogram.
const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the batch size histogram (texts per inference batch).
const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Upper bounds (seconds) of the inference time histogram.
const INFERENCE_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batch_size: BTreeMap<String, Histogram>,
    inference: BTreeMap<String, Histogram>,
    texts: BTreeMap<String, u64>,
    explain: BTreeMap<String, Histogram>,
    explained: BTreeMap<String, u64>,
    reloads: BTreeMap<(String, &'static str), u64>,
    feedback: BTreeMap<String, u64>,
    retrains: BTreeMap<(String, &'static str), u64>,
}

/// What is counted: requests, latencies, batches, reloads.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// A model's state at scrape time.
#[derive(Debug, Clone)]
pub struct ModelGauge {
    /// The model's name.
    pub name: String,
    /// The version serving now.
    pub version: String,
    /// When that version was created.
    pub created_at: String,
    /// Requests waiting in its queue.
    pub queue_depth: usize,
    /// Its drift monitor's state, when monitored.
    pub drift: Option<crate::drift::DriftStatus>,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters inconsistent in a way that
        // matters, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one finished request.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut m = self.lock();
        *m.requests
            .entry((route.to_string(), method.to_string(), status))
            .or_insert(0) += 1;
        m.latency
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
            .observe(seconds);
    }

    /// Records one inference batch of `texts` texts that took `seconds`.
    pub fn batch(&self, model: &str, texts: usize, seconds: f64) {
        let mut m = self.lock();
        m.batch_size
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(BATCH_BOUNDS))
            .observe(texts as f64);
        m.inference
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(INFERENCE_BOUNDS))
            .observe(seconds);
        *m.texts.entry(model.to_string()).or_insert(0) += texts as u64;
    }

    /// Records the explanation of `texts` texts (one request) that took `seconds`.
    pub fn explained(&self, model: &str, texts: usize, seconds: f64) {
        let mut m = self.lock();
        m.explain
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
            .observe(seconds);
        *m.explained.entry(model.to_string()).or_insert(0) += texts as u64;
    }

    /// Records a reload attempt (`result` is `ok` or `error`).
    pub fn reload(&self, model: &str, result: &'static str) {
        *self
            .lock()
            .reloads
            .entry((model.to_string(), result))
            .or_insert(0) += 1;
    }

    /// Records one stored correction.
    pub fn feedback(&self, model: &str) {
        *self.lock().feedback.entry(model.to_string()).or_insert(0) += 1;
    }

    /// Records a background retrain (`outcome` is `promoted`, `rejected` or `failed`).
    pub fn retrain(&self, model: &str, outcome: &'static str) {
        *self
            .lock()
            .retrains
            .entry((model.to_string(), outcome))
            .or_insert(0) += 1;
    }

    /// The Prometheus text exposition of everything, plus the given gauges.
    pub fn render(
        &self,
        models: &[ModelGauge],
        in_flight: usize,
        meter: Option<&flywheel_store::MeterStats>,
    ) -> String {
        let m = self.lock();
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP flywheel_http_requests_total HTTP requests by route, method and status.\n# TYPE flywheel_http_requests_total counter\n");
        for ((route, method, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "flywheel_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        out.push_str("# HELP flywheel_http_request_duration_seconds Time from request to response.\n# TYPE flywheel_http_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            let labels = format!("route=\"{}\"", escape(route));
            h.render(&mut out, "flywheel_http_request_duration_seconds", &labels);
        }
        out.push_str("# HELP flywheel_batch_size Texts per inference batch.\n# TYPE flywheel_batch_size histogram\n");
        for (model, h) in &m.batch_size {
            let labels = format!("model=\"{}\"", escape(model));
            h.render(&mut out, "flywheel_batch_size", &labels);
        }
        out.push_str("# HELP flywheel_inference_duration_seconds Time to run one batch through the model.\n# TYPE flywheel_inference_duration_seconds histogram\n");
        for (model, h) in &m.inference {
            let labels = format!("model=\"{}\"", escape(model));
            h.render(&mut out, "flywheel_inference_duration_seconds", &labels);
        }
        out.push_str(
            "# HELP flywheel_texts_total Texts classified.\n# TYPE flywheel_texts_total counter\n",
        );
        for (model, n) in &m.texts {
            let _ = writeln!(
                out,
                "flywheel_texts_total{{model=\"{}\"}} {n}",
                escape(model)
            );
        }
        out.push_str("# HELP flywheel_explain_duration_seconds Time to explain the texts of one request.\n# TYPE flywheel_explain_duration_seconds histogram\n");
        for (model, h) in &m.explain {
            let labels = format!("model=\"{}\"", escape(model));
            h.render(&mut out, "flywheel_explain_duration_seconds", &labels);
        }
        out.push_str("# HELP flywheel_explained_texts_total Texts explained (POST /v1/explain and \"explain\": true).\n# TYPE flywheel_explained_texts_total counter\n");
        for (model, n) in &m.explained {
            let _ = writeln!(
                out,
                "flywheel_explained_texts_total{{model=\"{}\"}} {n}",
                escape(model)
            );
        }
        out.push_str("# HELP flywheel_feedback_total Corrections stored.\n# TYPE flywheel_feedback_total counter\n");
        for (model, n) in &m.feedback {
            let _ = writeln!(
                out,
                "flywheel_feedback_total{{model=\"{}\"}} {n}",
                escape(model)
            );
        }
        out.push_str("# HELP flywheel_retrains_total Background retrains by outcome.\n# TYPE flywheel_retrains_total counter\n");
        for ((model, outcome), n) in &m.retrains {
            let _ = writeln!(
                out,
                "flywheel_retrains_total{{model=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(model)
            );
        }
        out.push_str("# HELP flywheel_model_reloads_total Model reload attempts by result.\n# TYPE flywheel_model_reloads_total counter\n");
        for ((model, result), n) in &m.reloads {
            let _ = writeln!(
                out,
                "flywheel_model_reloads_total{{model=\"{}\",result=\"{result}\"}} {n}",
                escape(model)
            );
        }
        drop(m);
        out.push_str("# HELP flywheel_queue_depth Requests waiting for a batch, per model.\n# TYPE flywheel_queue_depth gauge\n");
        for g in models {
            let _ = writeln!(
                out,
                "flywheel_queue_depth{{model=\"{}\"}} {}",
                escape(&g.name),
                g.queue_depth
            );
        }
        out.push_str("# HELP flywheel_drift_alarm Whether the model's drift monitor alarms (1) or not (0).\n# TYPE flywheel_drift_alarm gauge\n");
        for g in models {
            if let Some(d) = &g.drift {
                let _ = writeln!(
                    out,
                    "flywheel_drift_alarm{{model=\"{}\"}} {}",
                    escape(&g.name),
                    u8::from(d.alarm)
                );
            }
        }
        out.push_str("# HELP flywheel_drift_statistic Each drift test's value at the last check (label_psi, length_psi, oov_share, domain_auc).\n# TYPE flywheel_drift_statistic gauge\n");
        out.push_str("# HELP flywheel_drift_threshold Each drift test's alarm line at the last check.\n# TYPE flywheel_drift_threshold gauge\n");
        for g in models {
            if let Some(last) = g.drift.as_ref().and_then(|d| d.last.as_ref()) {
                for t in &last.report.tests {
                    let _ = writeln!(
                        out,
                        "flywheel_drift_statistic{{model=\"{}\",test=\"{}\"}} {}\nflywheel_drift_threshold{{model=\"{}\",test=\"{}\"}} {}",
                        escape(&g.name),
                        t.name,
                        t.value,
                        escape(&g.name),
                        t.name,
                        t.threshold
                    );
                }
            }
        }
        out.push_str("# HELP flywheel_drift_observed_texts Texts the drift monitor has seen since the version loaded.\n# TYPE flywheel_drift_observed_texts gauge\n");
        for g in models {
            if let Some(d) = &g.drift {
                let _ = writeln!(
                    out,
                    "flywheel_drift_observed_texts{{model=\"{}\"}} {}",
                    escape(&g.name),
                    d.observed
                );
            }
        }
        out.push_str("# HELP flywheel_model_info The version each model is serving (value 1).\n# TYPE flywheel_model_info gauge\n");
        for g in models {
            let _ = writeln!(
                out,
                "flywheel_model_info{{model=\"{}\",version=\"{}\",created_at=\"{}\"}} 1",
                escape(&g.name),
                escape(&g.version),
                escape(&g.created_at)
            );
        }
        out.push_str("# HELP flywheel_in_flight_requests Requests holding a concurrency slot.\n# TYPE flywheel_in_flight_requests gauge\n");
        let _ = writeln!(out, "flywheel_in_flight_requests {in_flight}");
        if let Some(m) = meter {
            let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            let _ = write!(
                out,
                "# HELP flywheel_meter_commits_total Group commits of usage events.\n# TYPE flywheel_meter_commits_total counter\nflywheel_meter_commits_total {}\n\
                 # HELP flywheel_metered_requests_total Requests metered (their usage events committed or refused).\n# TYPE flywheel_metered_requests_total counter\nflywheel_metered_requests_total {}\n\
                 # HELP flywheel_metered_one_by_one_total Metered requests whose batch went one by one (a retry, a limit reached, a minute or month boundary, a plan change).\n# TYPE flywheel_metered_one_by_one_total counter\nflywheel_metered_one_by_one_total {}\n",
                n(&m.batches),
                n(&m.requests),
                n(&m.one_by_one)
            );
        }
        out
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.request("POST", "/v1/classify", 200, 0.0007);
        m.request("POST", "/v1/classify", 200, 0.003);
        m.request("POST", "/v1/classify", 503, 20.0);
        let text = m.render(&[], 0, None);
        assert!(text.contains(
            "flywheel_http_requests_total{route=\"/v1/classify\",method=\"POST\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "flywheel_http_request_duration_seconds_bucket{route=\"/v1/classify\",le=\"0.001\"} 1"
        ));
        assert!(text.contains(
            "flywheel_http_request_duration_seconds_bucket{route=\"/v1/classify\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "flywheel_http_request_duration_seconds_bucket{route=\"/v1/classify\",le=\"+Inf\"} 3"
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
