//! The label-error audit as HTML: a self-contained page (`flywheel audit DATA --html FILE`)
//! and the section the dashboard shows for a model's base data.

use flywheel_model::Audit;
use maud::{html, Markup, DOCTYPE};

/// The audit's findings: per-class noise, suspect rows (at most `top`, most suspect first) and
/// conflicting duplicates.
pub fn audit_section(audit: &Audit, top: usize) -> Markup {
    let flagged = audit.suspects.len();
    html! {
        p.meta {
            (audit.rows) " rows, " (audit.labels.len()) " labels; out-of-fold probabilities from "
            (audit.folds) " " (audit.family) " models (accuracy "
            (format!("{:.3}", audit.out_of_fold_accuracy)) "); " strong { (flagged) } " suspect label(s), "
            (audit.conflicts.len()) " conflicting duplicate group(s); " (format!("{:.1}", audit.seconds)) " s."
        }
        h2 { "Estimated label noise per class" }
        table.num {
            tr { th { "label" } th { "rows" } th { "threshold" } th { "estimated errors" } th { "noise rate" } }
            @for c in &audit.classes {
                tr {
                    td { (c.label) } td { (c.rows) } td { (format!("{:.3}", c.threshold)) }
                    td { (c.estimated_errors) } td { (format!("{:.1} %", c.noise_rate * 100.0)) }
                }
            }
        }
        table.num.joint {
            tr {
                th { "given ↓ / estimated true →" }
                @for l in &audit.labels { th { (l) } }
            }
            @for (i, row) in audit.joint.iter().enumerate() {
                tr {
                    td { (audit.labels[i]) }
                    @for v in row { td { (v) } }
                }
            }
        }
        h2 { "Suspect labels" }
        @if audit.suspects.is_empty() {
            p.note { "No row's label looks wrong to the out-of-fold models." }
        } @else {
            @if flagged > top { p.note { "The " (top) " most suspect of " (flagged) "." } }
            table.suspects {
                tr { th { "line" } th { "text" } th { "given" } th { "suggested" } th { "p(given)" } th { "p(suggested)" } }
                @for s in audit.suspects.iter().take(top) {
                    tr {
                        td { (s.line) } td.text { (s.text) } td { (s.given) } td { strong { (s.suggested) } }
                        td { (format!("{:.3}", s.given_probability)) } td { (format!("{:.3}", s.suggested_probability)) }
                    }
                }
            }
        }
        h2 { "Duplicates with conflicting labels" }
        @if audit.conflicts.is_empty() {
            p.note { "No text appears twice with different labels." }
        } @else {
            table.suspects {
                tr { th { "text" } th { "lines and labels" } }
                @for c in audit.conflicts.iter().take(top) {
                    tr {
                        td.text { (c.text) }
                        td { @for (i, r) in c.rows.iter().enumerate() { @if i > 0 { ", " } (r.line) ": " (r.label) } }
                    }
                }
            }
        }
    }
}

/// The whole page: heading, [`audit_section`] with every suspect, inline CSS.
pub fn render_audit(audit: &Audit) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Label audit of " (audit.source) }
                style { (maud::PreEscaped(crate::report::CSS)) "table.suspects{display:table;width:100%}" }
            }
            body {
                h1 { "Label audit of " (audit.source) }
                (audit_section(audit, usize::MAX))
                footer { "Confident learning (per-class thresholds, calibrated confident joint, pruning by noise rate) over out-of-fold probabilities." }
            }
        }
    }
    .into_string()
}
