//! `--report FILE.html`: one self-contained page to look at after a run. Everything is inline
//! (CSS, SVG charts from `svg.rs`; no script at all), so it opens offline, from a CI artefact,
//! and nothing is fetched when it is viewed.
//!
//! What it shows: the verdict (thresholds, failed checks, whether the sends kept up with
//! `--rate`); the latency distribution by percentile on HdrHistogram's log scale, corrected and
//! uncorrected under `--rate`; responses, sends and errors per second; p99 and max latency per
//! second (a stall shows as a spike where throughput drops); connections over time for idle and
//! ramped runs; and the run's parameters and full figures.

use super::opts::{Mode, Opts};
use super::report::{fmt_us, Report, Verdict};
use super::svg::{escape, Axis, Chart, Series, Style};

use hdrhistogram::Histogram;
use std::io::Write;

/// Points per halving of the distance to 100% on the percentile plot: 5, HdrHistogram's own
/// default for its percentile output (~10 points per decade of `1 / (1 - q)`).
const TICKS_PER_HALF_DISTANCE: u32 = 5;

const STYLE: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:900px;\
color:#1d2433;padding:0 12px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}\
.sub{color:#5b6478;margin:0 0 16px}\
.cards{display:flex;flex-wrap:wrap;gap:10px}\
.card{border:1px solid #d7dce6;border-radius:8px;padding:8px 14px;min-width:120px}\
.card b{display:block;font-size:20px}.card span{color:#5b6478;font-size:13px}\
.ok{color:#137333}.bad{color:#b3261e}\
.banner{border-radius:8px;padding:10px 14px;margin:14px 0;background:#fdecea;color:#7a1d16}\
.banner.good{background:#e6f4ea;color:#0d5323}.banner.info{background:#f1f3f7;color:#3c4456}\
table{border-collapse:collapse;font-size:14px}td,th{text-align:left;padding:3px 14px 3px 0;\
vertical-align:top}th{color:#5b6478;font-weight:600}\
pre{background:#f5f7fa;border-radius:8px;padding:12px;white-space:pre-wrap;font-size:13px}\
svg.chart{display:block;max-width:100%;height:auto;background:#fff}\
.grid{stroke:#e3e7ee;stroke-width:1}.frame{fill:none;stroke:#9aa3b5}\
.tick,.legend{font-size:12px;fill:#4a5366}.label{font-size:13px;fill:#1d2433}\
.note{color:#5b6478;font-size:13px;margin:4px 0 0}";

/// Writes the page for `report` to `out`.
pub fn write(
    mut out: std::fs::File,
    report: &Report,
    opts: &Opts,
    verdicts: &[Verdict],
) -> std::io::Result<()> {
    out.write_all(page(report, opts, verdicts).as_bytes())?;
    out.flush()
}

fn page(r: &Report, opts: &Opts, verdicts: &[Verdict]) -> String {
    let mut s = String::new();
    let title = format!("readyloop load {} → {}", r.mode, r.addr);
    s.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    // Nothing may load from anywhere: no scripts, no fetches, styles inline only.
    s.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">",
    );
    s.push_str(&format!(
        "<title>{}</title><style>{STYLE}</style></head><body>",
        escape(&title)
    ));
    s.push_str(&format!("<h1>{}</h1>", escape(&title)));
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    s.push_str(&format!(
        "<p class=\"sub\">{} · {:.1} s · {} connections · {} · {}</p>",
        if r.rate.is_some() {
            "open model"
        } else {
            "closed model"
        },
        r.elapsed_s,
        r.conns,
        escape(&crate::codec::http::response::http_date(when)),
        concat!("readyloop ", env!("CARGO_PKG_VERSION")),
    ));
    summary(&mut s, r, verdicts);
    charts(&mut s, r, opts);
    parameters(&mut s, r, opts);
    s.push_str("</body></html>\n");
    s
}

fn card(s: &mut String, value: &str, what: &str, class: &str) {
    s.push_str(&format!(
        "<div class=\"card\"><b class=\"{class}\">{}</b><span>{}</span></div>",
        escape(value),
        escape(what)
    ));
}

fn summary(s: &mut String, r: &Report, verdicts: &[Verdict]) {
    let pct = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            "–".to_string()
        } else {
            fmt_us(h.value_at_quantile(q))
        }
    };
    s.push_str("<div class=\"cards\" id=\"summary\">");
    if r.mode == "idle" {
        card(
            s,
            &format!("{} / {}", r.conns_open, r.conns_peak),
            "connections open at end / peak",
            "",
        );
    }
    let what = if r.mode == "http" {
        "responses/s"
    } else {
        "messages/s"
    };
    card(s, &format!("{:.0}", r.msgs_per_s()), what, "");
    let corrected = if r.rate.is_some() { " (corrected)" } else { "" };
    card(s, &pct(&r.latency, 0.5), &format!("p50{corrected}"), "");
    card(s, &pct(&r.latency, 0.99), &format!("p99{corrected}"), "");
    card(s, &pct(&r.latency, 1.0), &format!("max{corrected}"), "");
    if r.rate.is_some() {
        card(
            s,
            &pct(&r.latency_uncorrected, 0.99),
            "p99 (uncorrected)",
            "",
        );
    }
    let errors = r.error_count();
    card(
        s,
        &errors.to_string(),
        "errors",
        if errors > 0 { "bad" } else { "ok" },
    );
    card(
        s,
        &format!("{} / {}", r.conns_ok, r.conns_failed),
        "connects ok / failed",
        "",
    );
    if r.mode == "http" {
        let codes: Vec<String> = r.status.iter().map(|(c, n)| format!("{c}×{n}")).collect();
        card(s, &codes.join(" "), "status codes", "");
    }
    s.push_str("</div>");
    if let Some(behind) = r.behind_schedule() {
        s.push_str(&format!(
            "<div class=\"banner\" id=\"behind\">Behind schedule: {}</div>",
            escape(&behind)
        ));
    }
    if let Some(own) = r.own_lateness() {
        s.push_str(&format!(
            "<div class=\"banner info\">Note: {}</div>",
            escape(&own)
        ));
    }
    if r.checks_failed > 0 {
        s.push_str(&format!(
            "<div class=\"banner\">{} answers failed their check (see the errors below).</div>",
            r.checks_failed
        ));
    }
    if !verdicts.is_empty() {
        let missed = verdicts.iter().filter(|v| !v.ok).count();
        s.push_str(&format!(
            "<div class=\"banner{}\" id=\"thresholds\">Thresholds: {}</div>",
            if missed == 0 { " good" } else { "" },
            verdicts
                .iter()
                .map(|v| format!(
                    "{} {} ({})",
                    if v.ok { "✔" } else { "✘" },
                    escape(&v.expr),
                    escape(&v.shown)
                ))
                .collect::<Vec<_>>()
                .join(" · ")
        ));
    }
}

/// `x = 1 / (1 - q)` points of a histogram's percentile distribution, HdrHistogram's way.
fn percentile_points(h: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            x_max
        } else {
            (1.0 / (1.0 - q)).min(x_max)
        };
        points.push((x, v.value_iterated_to().max(1) as f64));
    }
    points
}

fn percent_label(x: f64) -> String {
    let q = (1.0 - 1.0 / x) * 100.0;
    let digits = (x.log10().round() as usize).saturating_sub(2);
    format!("{q:.digits$}%")
}

/// A decade's label: `10 µs`, `1 ms`, `100 ms`, `10 s`.
fn decade_label(us: f64) -> String {
    match us {
        u if u < 1e3 => format!("{u:.0} µs"),
        u if u < 1e6 => format!("{:.0} ms", u / 1e3),
        u => format!("{:.0} s", u / 1e6),
    }
}

fn latency_axis(label: &str, lo: f64, hi: f64) -> Axis {
    Axis::log(label, lo.max(1.0), hi.max(10.0), decade_label)
}

fn charts(s: &mut String, r: &Report, opts: &Opts) {
    // Idle connections that got nothing: only the connections are worth a chart.
    let quiet = opts.mode == Mode::Idle && r.msgs == 0 && r.error_count() == 0;
    if !quiet {
        latency_percentiles(s, r);
    }
    // 2-4, from the timeline.
    let secs: Vec<(f64, super::report::Second)> = r
        .timeline
        .iter()
        .enumerate()
        .map(|(i, sec)| ((i + 1) as f64, *sec))
        .collect();
    if secs.is_empty() {
        s.push_str("<p class=\"note\">The run was shorter than one second: no timeline.</p>");
        return;
    }
    if !quiet {
        throughput(s, r, &secs);
    }
    latency_over_time(s, r, &secs);
    connections(s, opts, &secs);
}

/// 1. The latency distribution by percentile.
fn latency_percentiles(s: &mut String, r: &Report) {
    s.push_str("<h2>Latency by percentile</h2>");
    if r.latency.is_empty() {
        s.push_str("<p class=\"note\">No latency samples.</p>");
    } else {
        let n = r.latency.len().max(10) as f64;
        let x_max = 10f64.powf(n.log10().ceil());
        let mut series = vec![Series {
            name: if r.rate.is_some() {
                "corrected (from intended send time)".into()
            } else {
                "latency".into()
            },
            color: "#1a5fd1",
            style: Style::Line,
            points: percentile_points(&r.latency, x_max),
        }];
        let mut lo = r.latency.min() as f64;
        let mut hi = r.latency.max() as f64;
        if r.rate.is_some() && !r.latency_uncorrected.is_empty() {
            series.push(Series {
                name: "uncorrected (from actual send)".into(),
                color: "#e0710b",
                style: Style::Dashed,
                points: percentile_points(&r.latency_uncorrected, x_max),
            });
            lo = lo.min(r.latency_uncorrected.min() as f64);
            hi = hi.max(r.latency_uncorrected.max() as f64);
        }
        let chart = Chart {
            id: "latency-percentiles".into(),
            title: "Latency by percentile".into(),
            x: Axis::log("percentile", 1.0, x_max, percent_label),
            y: latency_axis("latency", lo, hi),
            series,
        };
        s.push_str(&chart.render());
        s.push_str(
            "<p class=\"note\">Log scales: each step right is ten times closer to 100%. Under \
             <code>--rate</code> the corrected line counts each request from when the schedule \
             meant to send it, so time spent waiting behind a stalled server shows.</p>",
        );
    }
}

type Timeline = [(f64, super::report::Second)];

fn seconds_axis(secs: &Timeline) -> Axis {
    Axis::linear("seconds", secs.len() as f64, |v| format!("{v:.0}"))
}

fn per_s(secs: &Timeline, f: fn(&super::report::Second) -> u64) -> Vec<(f64, f64)> {
    secs.iter().map(|(t, sec)| (*t, f(sec) as f64)).collect()
}

/// 2. Throughput and errors per second.
fn throughput(s: &mut String, r: &Report, secs: &Timeline) {
    s.push_str("<h2>Throughput and errors per second</h2>");
    let top = secs
        .iter()
        .map(|(_, sec)| sec.msgs.max(sec.sent).max(sec.errors))
        .max()
        .unwrap_or(0) as f64;
    let mut series = vec![Series {
        name: "errors/s".into(),
        color: "#c5221f",
        style: Style::Bars,
        points: per_s(secs, |sec| sec.errors),
    }];
    if r.rate.is_some() || r.mode != "ws-broadcast" {
        series.push(Series {
            name: "sent/s".into(),
            color: "#7a8599",
            style: Style::Dashed,
            points: per_s(secs, |sec| sec.sent),
        });
    }
    series.push(Series {
        name: if r.mode == "http" {
            "responses/s".into()
        } else {
            "received/s".into()
        },
        color: "#1a5fd1",
        style: Style::Line,
        points: per_s(secs, |sec| sec.msgs),
    });
    let chart = Chart {
        id: "throughput".into(),
        title: "Throughput and errors per second".into(),
        x: seconds_axis(secs),
        y: Axis::linear("per second", top, |v| format!("{v:.0}")),
        series,
    };
    s.push_str(&chart.render());
}

/// 3. Latency per second.
fn latency_over_time(s: &mut String, r: &Report, secs: &Timeline) {
    let with_samples: Vec<&(f64, super::report::Second)> =
        secs.iter().filter(|(_, sec)| sec.max_us > 0).collect();
    if !with_samples.is_empty() {
        s.push_str("<h2>Latency per second</h2>");
        let lo = with_samples
            .iter()
            .map(|(_, x)| x.p99_us)
            .min()
            .unwrap_or(1) as f64;
        let hi = with_samples
            .iter()
            .map(|(_, x)| x.max_us)
            .max()
            .unwrap_or(10) as f64;
        let chart = Chart {
            id: "latency-over-time".into(),
            title: "p99 and max latency per second".into(),
            x: seconds_axis(secs),
            y: latency_axis("latency", lo, hi),
            series: vec![
                Series {
                    name: "max".into(),
                    color: "#e0710b",
                    style: Style::Dashed,
                    points: with_samples
                        .iter()
                        .map(|(t, x)| (*t, x.max_us as f64))
                        .collect(),
                },
                Series {
                    name: "p99".into(),
                    color: "#1a5fd1",
                    style: Style::Line,
                    points: with_samples
                        .iter()
                        .map(|(t, x)| (*t, x.p99_us.max(1) as f64))
                        .collect(),
                },
            ],
        };
        s.push_str(&chart.render());
        if r.procs > 1 {
            s.push_str(
                "<p class=\"note\">With several processes, each second shows the largest of \
                 their p99s.</p>",
            );
        }
    }
}

/// 4. Connections over time, where they are the point (idle, ramps) or they changed.
fn connections(s: &mut String, opts: &Opts, secs: &Timeline) {
    let conns: Vec<u64> = secs.iter().map(|(_, sec)| sec.conns).collect();
    let varied = conns.iter().min() != conns.iter().max();
    if opts.mode == Mode::Idle || opts.ramp.is_some() || varied {
        s.push_str("<h2>Connections open</h2>");
        let top = conns
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(opts.conns as u64) as f64;
        let chart = Chart {
            id: "connections".into(),
            title: "Connections open, at the end of each second".into(),
            x: seconds_axis(secs),
            y: Axis::linear("connections", top, |v| format!("{v:.0}")),
            series: vec![Series {
                name: "open".into(),
                color: "#137333",
                style: Style::Line,
                // None were open when the run began.
                points: std::iter::once((0.0, 0.0))
                    .chain(per_s(secs, |sec| sec.conns))
                    .collect(),
            }],
        };
        s.push_str(&chart.render());
    }
}

fn parameters(s: &mut String, r: &Report, opts: &Opts) {
    s.push_str("<h2>Parameters</h2><table id=\"parameters\">");
    let mut row = |k: &str, v: String| {
        s.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(&v)
        ));
    };
    row("command", opts.command_line.clone());
    row("mode", r.mode.clone());
    row("target", format!("{} (Host {})", r.addr, opts.http.host));
    row(
        "connections",
        format!("{} in {} process(es)", r.conns, r.procs),
    );
    row("duration", format!("{:.1} s", opts.duration.as_secs_f64()));
    match (opts.rate, opts.ramp) {
        (Some(rate), ramp) => row(
            "rate",
            format!(
                "{rate}/s, open model{}",
                ramp.map_or(String::new(), |r| format!(
                    ", ramped over {:.1} s",
                    r.as_secs_f64()
                ))
            ),
        ),
        (None, Some(ramp)) => row(
            "ramp",
            format!("connections over {:.1} s", ramp.as_secs_f64()),
        ),
        (None, None) => row(
            "connect rate",
            format!("{}/s (closed model)", opts.connect_rate),
        ),
    }
    if opts.mode.has_open_model() {
        row("pipeline", opts.pipeline.to_string());
    }
    if opts.mode == Mode::Http {
        let h = &opts.http;
        row("request", format!("{} {}", h.method, h.path));
        for (k, v) in &h.headers {
            row("header", format!("{k}: {v}"));
        }
        if !h.body.is_empty() {
            row("body", format!("{} bytes", h.body.len()));
        }
        if h.close {
            row("connections", "a new one per request (--close)".into());
        }
    } else if matches!(opts.mode, Mode::Echo | Mode::WsEcho | Mode::WsBroadcast) {
        row("message size", format!("{} bytes", opts.size));
    }
    s.push_str("</table><h2>Figures</h2><pre id=\"figures\">");
    s.push_str(&escape(&r.to_table()));
    s.push_str("</pre>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_labels_follow_the_decades() {
        assert_eq!(percent_label(1.0), "0%");
        assert_eq!(percent_label(10.0), "90%");
        assert_eq!(percent_label(100.0), "99%");
        assert_eq!(percent_label(1000.0), "99.9%");
        assert_eq!(percent_label(100000.0), "99.999%");
    }

    #[test]
    fn decade_labels_are_short() {
        let labels: Vec<String> = [1.0, 10.0, 1e3, 1e5, 1e6, 1e7].map(decade_label).into();
        assert_eq!(labels, ["1 µs", "10 µs", "1 ms", "100 ms", "1 s", "10 s"]);
    }

    #[test]
    fn percentile_points_rise_to_the_max() {
        let mut h = super::super::report::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let pts = percentile_points(&h, 1e4);
        assert!(pts.len() > 20, "{}", pts.len());
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let last = pts.last().unwrap();
        assert_eq!(last.0, 1e4);
        assert!(last.1 >= 9_990.0);
    }
}
