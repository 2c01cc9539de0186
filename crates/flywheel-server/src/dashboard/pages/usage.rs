//! The usage page (`GET /usage`): a chart, plans and this month's use, the rows; and its CSV
//! export (`GET /usage.csv`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use flywheel_store::{UsageFilter, UsageRow};
use maud::html;
use serde::Deserialize;

use super::{ok, store_of, PageResult};
use crate::access::now_unix;
use crate::dashboard::view::{self, layout, Tab};
use crate::dashboard::{url_encode, PageError, Viewer};
use crate::state::AppState;
use flywheel_report::svg as charts;

/// Query of the usage page and its CSV export.
#[derive(Debug, Deserialize)]
pub(crate) struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    tenant: Option<String>,
    metric: Option<String>,
    by: Option<String>,
}

/// `YYYY-MM-DD` of a Unix time.
fn day_of(unix: i64) -> String {
    flywheel_model::artifact::rfc3339(unix)
        .get(..10)
        .unwrap_or("")
        .to_string()
}

/// The filter a usage query asks for (default: the last 30 days), checked against the viewer.
fn usage_filter(
    viewer: &Viewer,
    q: &UsageQuery,
) -> Result<(UsageFilter, String, String), PageError> {
    let today = now_unix();
    let from = q
        .from
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| day_of(today - 29 * 86_400));
    let to =
        q.to.clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| day_of(today));
    let (start, end) = flywheel_store::day_range(Some(&from), Some(&to))
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let tenant = match (
        viewer.tenant(),
        q.tenant.as_deref().filter(|t| !t.is_empty()),
    ) {
        (Some(own), Some(asked)) if asked != own => {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "a tenant's key may read only its own tenant's usage",
            ))
        }
        (Some(own), _) => Some(own.to_string()),
        (None, asked) => asked.map(str::to_string),
    };
    Ok((
        UsageFilter {
            tenant,
            from: start,
            to: end,
        },
        from,
        to,
    ))
}

/// `GET /usage`: requests or texts per day as a stacked chart, plans and limits, the rows.
pub(crate) async fn usage(
    State(state): State<Arc<AppState>>,
    Query(q): Query<UsageQuery>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = state.viewer(&headers, "/usage").await?;
    let Some(store) = &state.store else {
        let content = html! { p { "Usage is metered only on a store: start the server with " code { "--database-url" } "." } };
        return ok(layout("Usage", Tab::Usage, Some(&viewer), content));
    };
    let (filter, from, to) = usage_filter(&viewer, &q)?;
    let rows = store
        .usage_report(&filter)
        .await
        .map_err(|e| PageError::store(&e))?;
    let requests = q.metric.as_deref() == Some("requests");
    let tenants = if viewer.is_admin() {
        store
            .list_tenants()
            .await
            .map_err(|e| PageError::store(&e))?
    } else {
        Vec::new()
    };
    // Days of the period, and one series per tenant (admin) or model (tenant).
    let (start, end) = (filter.from.unwrap_or(0), filter.to.unwrap_or(0));
    let days: Vec<String> = (0..((end - start) / 86_400).clamp(0, 400))
        .map(|i| day_of(start + i * 86_400))
        .collect();
    // Bars split by tenant, key or model (default: tenant for all tenants, else model).
    let by = match q.by.as_deref() {
        Some(b @ ("tenant" | "key" | "model")) => b,
        _ if filter.tenant.is_none() => "tenant",
        _ => "model",
    };
    let group_of = |r: &UsageRow| match by {
        "tenant" => r.tenant.clone(),
        "key" => format!("{} {}", r.tenant, r.key_prefix),
        _ => r.model.clone(),
    };
    let groups: Vec<String> = rows
        .iter()
        .map(group_of)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut values = vec![vec![0i64; days.len()]; groups.len()];
    let day_index: HashMap<&str, usize> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), i))
        .collect();
    for r in &rows {
        if let (Ok(g), Some(&d)) = (
            groups.binary_search(&group_of(r)),
            day_index.get(r.day.as_str()),
        ) {
            values[g][d] += if requests { r.requests } else { r.texts };
        }
    }
    let plans = store.list_plans().await.map_err(|e| PageError::store(&e))?;
    let month_start = format!("{}-01", day_of(now_unix()).get(..7).unwrap_or("1970-01"));
    let (month_from, _) = flywheel_store::day_range(Some(&month_start), None)
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let month = store
        .usage_report(&UsageFilter {
            tenant: filter.tenant.clone(),
            from: month_from,
            to: None,
        })
        .await
        .map_err(|e| PageError::store(&e))?;
    let mut month_texts: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in &month {
        *month_texts
            .entry((r.tenant.clone(), r.key_prefix.clone()))
            .or_default() += r.texts;
    }
    let shown_plans: Vec<&flywheel_store::Plan> = match &viewer {
        Viewer::Tenant(k) => plans.iter().filter(|p| p.name == k.plan).collect(),
        _ => plans.iter().collect(),
    };
    let total = |f: fn(&UsageRow) -> i64| rows.iter().map(f).sum::<i64>();
    let csv = format!(
        "/usage.csv?from={}&to={}{}",
        url_encode(&from),
        url_encode(&to),
        filter
            .tenant
            .as_deref()
            .map(|t| format!("&tenant={}", url_encode(t)))
            .unwrap_or_default()
    );
    let metric_name = if requests { "Requests" } else { "Texts" };
    let content = html! {
        form.filters method="get" action="/usage" {
            div { label for="from" { "From" } input #from type="date" name="from" value=(from); }
            div { label for="to" { "To" } input #to type="date" name="to" value=(to); }
            @if viewer.is_admin() {
                div {
                    label for="tenant" { "Tenant" }
                    select #tenant name="tenant" {
                        option value="" { "all tenants" }
                        @for t in &tenants {
                            option value=(t.name) selected[filter.tenant.as_deref() == Some(t.name.as_str())] { (t.name) }
                        }
                    }
                }
            }
            div {
                label for="metric" { "Chart" }
                select #metric name="metric" {
                    option value="texts" selected[!requests] { "texts per day" }
                    option value="requests" selected[requests] { "requests per day" }
                }
            }
            div {
                label for="by" { "By" }
                select #by name="by" {
                    @for b in ["tenant", "key", "model"] {
                        option value=(b) selected[b == by] { (b) }
                    }
                }
            }
            button type="submit" { "Show" }
            a.button #export href=(csv) download=(format!("usage-{from}-{to}.csv")) { "Export CSV" }
        }
        p.stats-line {
            strong { (view::count(total(|r| r.requests))) } " requests · "
            strong { (view::count(total(|r| r.texts))) } " texts · "
            strong { (view::count(total(|r| r.characters))) } " characters · "
            strong { (view::count(total(|r| r.training_seconds))) } " training seconds from " (from) " to " (to)
        }
        (charts::stacked_bars(
            &format!("{metric_name} per day by {by}"),
            &days, &groups, &values))
        section aria-labelledby="plans" {
            h2 #plans { "Plans and this month's use" }
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "Plan" }
                            th scope="col" class="num" { "Requests / minute" }
                            th scope="col" class="num" { "Texts / month" }
                        }
                    }
                    tbody {
                        @for p in &shown_plans {
                            tr {
                                th scope="row" { (p.name) }
                                td.num { (view::count(p.requests_per_minute)) }
                                td.num { (view::count(p.texts_per_month)) }
                            }
                        }
                    }
                }
                @if !month_texts.is_empty() {
                    table {
                        caption { "Texts since " (month_start) " per key (the monthly quota is per key)" }
                        thead { tr { th scope="col" { "Tenant" } th scope="col" { "Key" } th scope="col" class="num" { "Texts" } } }
                        tbody {
                            @for ((t, k), n) in &month_texts {
                                tr { td { (t) } td { code { (k) } } td.num { (view::count(*n)) } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="rows" {
            h2 #rows { "By tenant, key, model and day" }
            @if rows.is_empty() {
                p.muted { "No usage in this period." }
            } @else {
                div.scroll {
                    table #usage-rows {
                        thead {
                            tr {
                                th scope="col" { "Day" }
                                th scope="col" { "Tenant" }
                                th scope="col" { "Key" }
                                th scope="col" { "Model" }
                                th scope="col" class="num" { "Requests" }
                                th scope="col" class="num" { "Texts" }
                                th scope="col" class="num" { "Characters" }
                                th scope="col" class="num" { "Training s" }
                            }
                        }
                        tbody {
                            @for r in &rows {
                                tr {
                                    td { (r.day) }
                                    td { (r.tenant) }
                                    td { code { (r.key_prefix) } }
                                    td { (r.model) }
                                    td.num { (view::count(r.requests)) }
                                    td.num { (view::count(r.texts)) }
                                    td.num { (view::count(r.characters)) }
                                    td.num { (view::count(r.training_seconds)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(layout("Usage", Tab::Usage, Some(&viewer), content))
}

/// `GET /usage.csv`: the same rows as `flywheel usage report --format csv`.
pub(crate) async fn usage_csv(
    State(state): State<Arc<AppState>>,
    Query(q): Query<UsageQuery>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = state.viewer(&headers, "/usage").await?;
    let store = store_of(&state)?;
    let (filter, from, to) = usage_filter(&viewer, &q)?;
    let rows = store
        .usage_report(&filter)
        .await
        .map_err(|e| PageError::store(&e))?;
    let csv = flywheel_store::write_csv(
        Vec::new(),
        &UsageRow::COLUMNS,
        rows.iter().map(UsageRow::cells),
    )
    .map_err(|e| {
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing the CSV: {e}"),
        )
    })?;
    let mut response = (StatusCode::OK, csv).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"usage-{from}-{to}.csv\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
