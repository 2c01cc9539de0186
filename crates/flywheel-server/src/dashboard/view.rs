//! The page frame and small pieces shared by every page.

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use super::Viewer;

/// The navigation tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tab {
    Models,
    Try,
    Review,
    Usage,
    Keys,
    New,
    None,
}

/// A whole page: header with navigation and the viewer, then `content`.
pub(super) fn layout(title: &str, tab: Tab, viewer: Option<&Viewer>, content: Markup) -> Markup {
    let tabs = [
        (Tab::Models, "/", "Models"),
        (Tab::Try, "/try", "Try it"),
        (Tab::Review, "/review", "Review"),
        (Tab::Usage, "/usage", "Usage"),
        (Tab::Keys, "/keys", "Keys"),
        (Tab::New, "/new", "New model"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · flywheel" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "flywheel" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            ul {
                                @for (t, href, name) in tabs {
                                    li {
                                        a href=(href) aria-current=[(t == tab).then_some("page")] { (name) }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (viewer.describe()) }
                            @if !matches!(viewer, Viewer::Open) {
                                form method="post" action="/logout" {
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// An error page.
pub(super) fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(
        title,
        Tab::None,
        None,
        html! {
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the dashboard" } }
        },
    )
}

/// A notice after an action (`role=status`, read out by screen readers).
pub(super) fn notice(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            p.notice role="status" { (m) }
        }
    }
}

/// An error shown on the page it concerns.
pub(super) fn alert(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            p.error role="alert" { (m) }
        }
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC`.
pub(super) fn time(unix: i64) -> String {
    let s = flywheel_model::artifact::rfc3339(unix);
    match (s.get(..10), s.get(11..16)) {
        (Some(day), Some(hm)) => format!("{day} {hm} UTC"),
        _ => s,
    }
}

/// An RFC 3339 timestamp as `YYYY-MM-DD HH:MM UTC`.
pub(super) fn rfc_time(s: &str) -> String {
    match (s.get(..10), s.get(11..16)) {
        (Some(day), Some(hm)) => format!("{day} {hm} UTC"),
        _ => s.to_string(),
    }
}

/// A score with four decimals, or a dash.
pub(super) fn score(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into())
}

/// A count with thousands separators.
pub(super) use flywheel_report::svg::count;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(-1234567), "-1,234,567");
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(rfc_time("2026-12-03T13:45:10Z"), "2026-12-03 13:45 UTC");
        assert_eq!(score(None), "–");
        assert_eq!(score(Some(0.5)), "0.5000");
    }

    #[test]
    fn text_is_escaped() {
        let page = error_page(StatusCode::NOT_FOUND, "<script>alert(1)</script>").into_string();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;"));
    }
}
