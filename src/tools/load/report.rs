//! What a run measured, and the two ways it is printed: a table for people and one JSON object
//! for scripts (the HTML page is `html.rs`). Child processes (`--procs`) print the JSON with
//! their histograms attached as `[value, count]` pairs and their per-second timeline, and the
//! parent merges those exactly (HDR buckets add up, seconds add up), so the merged percentiles
//! are those of all samples, not a max of per-child percentiles. The one exception is each
//! second's p99 in the timeline, which merges as the largest of the children's.
//!
//! Under `--rate` (the open model) there are two latency histograms: `latency` counts from
//! each send's *intended* time (corrected for coordinated omission, what `latency_us` and the
//! thresholds report; see `client::Sent` for the generator's own lateness, which it leaves out)
//! and `latency_uncorrected` from the moment it was really sent; and the sends' lateness
//! (`send_lag`, `sends_waited`) says whether the connections kept up with the schedule.

use super::json::{self, Json};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, with 3 significant digits
/// (0.1% resolution): ~30 KiB of counters per histogram.
const LATENCY_MAX_US: u64 = 60_000_000;

/// A send later than this behind its intended time counts as late: 1 ms. The pacer and one
/// loop iteration stay well under it (tens of µs); a send later than that waited for a
/// connection with a free `--pipeline` slot, so the connections did not keep up.
pub const LATE_AFTER_US: u64 = 1_000;

/// A fresh latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("static histogram bounds are valid")
}

/// `412 µs`, `1.23 ms`, `2.50 s`.
pub fn fmt_us(us: u64) -> String {
    match us {
        0..=9_999 => format!("{us} µs"),
        10_000..=999_999 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// How one `--threshold` fared (judged in `thresholds.rs`, printed with the report).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The threshold as written.
    pub expr: String,
    /// The figure it looked at, in its unit (µs for latencies).
    pub actual: f64,
    /// Whether it held.
    pub ok: bool,
    /// The figure, readable: `p99 was 7.31 ms`.
    pub shown: String,
}

/// One second of a run: what happened in it, and how things stood at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    /// Verified responses or messages received in this second.
    pub msgs: u64,
    /// Errors counted in this second.
    pub errors: u64,
    /// Requests or messages sent.
    pub sent: u64,
    /// Of those, sends that waited more than `LATE_AFTER_US` for a free connection.
    pub late: u64,
    /// Connections open at the end of the second.
    pub conns: u64,
    /// p99 of the (corrected) latencies recorded in this second, µs.
    pub p99_us: u64,
    /// The largest of them, µs.
    pub max_us: u64,
}

impl Second {
    fn to_array(self) -> [u64; 7] {
        [
            self.msgs,
            self.errors,
            self.sent,
            self.late,
            self.conns,
            self.p99_us,
            self.max_us,
        ]
    }

    fn from_array(a: &[u64]) -> Second {
        let at = |i: usize| a.get(i).copied().unwrap_or(0);
        Second {
            msgs: at(0),
            errors: at(1),
            sent: at(2),
            late: at(3),
            conns: at(4),
            p99_us: at(5),
            max_us: at(6),
        }
    }
}

/// The figures of one run (one process, or the merge of several).
#[derive(Debug, Clone)]
pub struct Report {
    /// The load mode's name.
    pub mode: String,
    /// The server's address.
    pub addr: String,
    /// Connections asked for (`--conns`).
    pub conns: u64,
    /// Processes the load ran in.
    pub procs: u64,
    /// Seconds from the start to the end of measuring (the close-down is not counted).
    pub elapsed_s: f64,
    /// Successful connects (hello, http --close: every connect of every repetition).
    pub conns_ok: u64,
    /// Connect attempts that failed.
    pub conns_failed: u64,
    /// Connections open (connected, upgraded where asked) when measuring ended.
    pub conns_open: u64,
    /// Most connections open at once.
    pub conns_peak: u64,
    /// Seconds from the first connect attempt to the last successful connect of the ramp.
    pub ramp_s: f64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Of the errors, those where an answer came and was wrong: a payload that does not match,
    /// a malformed HTTP response, a status outside 2xx/3xx, a broadcast lost or duplicated.
    /// Any makes the exit status 1; lost connections alone do not.
    pub checks_failed: u64,
    /// Verified messages received (echo replies, greetings, broadcast deliveries, responses).
    pub msgs: u64,
    /// Messages sent.
    pub msgs_sent: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Bytes read.
    pub bytes_received: u64,
    /// HTTP responses by status code.
    pub status: BTreeMap<u16, u64>,
    /// Round-trip (or delivery) latencies in microseconds; under `--rate`, from each send's
    /// intended time.
    pub latency: Histogram<u64>,
    /// `--rate` only: the open model's rate, sends per second (of this process, or in total).
    pub rate: Option<f64>,
    /// `--rate` only: latencies from the moment each request was really sent.
    pub latency_uncorrected: Histogram<u64>,
    /// `--rate` only: how late each send went out after its intended time, µs.
    pub send_lag: Histogram<u64>,
    /// `--rate` only: sends the schedule asked for by the end of measuring.
    pub sends_due: u64,
    /// `--rate` only: sends that went out more than `LATE_AFTER_US` late, for any reason.
    pub sends_late: u64,
    /// `--rate` only: sends that waited more than `LATE_AFTER_US` for a free connection (the
    /// connections did not keep up; this wait counts in the corrected latency).
    pub sends_waited: u64,
    /// `--rate` only: sends the generator itself made more than `LATE_AFTER_US` after a
    /// connection was free for them (its timer or CPU; not counted in the latencies).
    pub sends_own_late: u64,
    /// `--rate` only: the longest such lateness, µs.
    pub own_lag_max_us: u64,
    /// One entry per second of measuring.
    pub timeline: Vec<Second>,
    /// Server RSS (bytes) before the first connect and when measuring ended (`--server-pid`).
    pub server_rss: Option<(u64, u64)>,
}

/// `"name":{"count":..,"p50":..,"p90":..,"p99":..,"p999":..,"max":..,"mean":..}`.
fn write_summary(s: &mut String, name: &str, h: &Histogram<u64>) {
    let q = |q: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    let _ = write!(
        s,
        ",\"{name}\":{{\"count\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},\"mean\":{:.1}}}",
        h.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        h.max(),
        h.mean()
    );
}

/// `"name":[[value,count],...]`, exact enough to merge (values at bucket resolution).
fn write_hist(s: &mut String, name: &str, h: &Histogram<u64>) {
    let _ = write!(s, ",\"{name}\":[");
    for (i, v) in h.iter_recorded().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "[{},{}]", v.value_iterated_to(), v.count_at_value());
    }
    s.push(']');
}

fn read_hist(v: &Json, name: &str, into: &mut Histogram<u64>) -> Result<(), String> {
    if let Some(Json::Arr(pairs)) = v.get(name) {
        for pair in pairs {
            if let Json::Arr(p) = pair {
                if let [Json::Num(value), Json::Num(count)] = p.as_slice() {
                    into.record_n(*value as u64, *count as u64)
                        .map_err(|e| format!("bad {name} entry: {e}"))?;
                }
            }
        }
    }
    Ok(())
}

impl Report {
    /// An empty report for `conns` connections of `mode` against `addr`.
    pub fn new(mode: &str, addr: &str, conns: u64) -> Report {
        Report {
            mode: mode.to_string(),
            addr: addr.to_string(),
            conns,
            procs: 1,
            elapsed_s: 0.0,
            conns_ok: 0,
            conns_failed: 0,
            conns_open: 0,
            conns_peak: 0,
            ramp_s: 0.0,
            errors: BTreeMap::new(),
            checks_failed: 0,
            msgs: 0,
            msgs_sent: 0,
            bytes_sent: 0,
            bytes_received: 0,
            status: BTreeMap::new(),
            latency: new_histogram(),
            rate: None,
            latency_uncorrected: new_histogram(),
            send_lag: new_histogram(),
            sends_due: 0,
            sends_late: 0,
            sends_waited: 0,
            sends_own_late: 0,
            own_lag_max_us: 0,
            timeline: Vec::new(),
            server_rss: None,
        }
    }

    /// Counts one error of `kind`.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_insert(0) += 1;
    }

    /// Counts one failed check (an error too) of `kind`.
    pub fn check_failed(&mut self, kind: &str) {
        self.checks_failed += 1;
        self.error(kind);
    }

    /// Errors of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Verified messages per second of measuring.
    pub fn msgs_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.msgs as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Successful connects per second over the ramp (0 when nothing connected).
    pub fn connect_rate(&self) -> f64 {
        if self.ramp_s > 0.0 {
            self.conns_ok.min(self.conns) as f64 / self.ramp_s
        } else {
            0.0
        }
    }

    /// HTTP responses whose status is not 2xx or 3xx.
    pub fn non_2xx_3xx(&self) -> u64 {
        self.status
            .iter()
            .filter(|(s, _)| !(200..400).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    fn pct(h: &Histogram<u64>, q: f64) -> u64 {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    }

    /// Server bytes per open connection, when the server's RSS was sampled.
    pub fn server_bytes_per_conn(&self) -> Option<f64> {
        let (start, end) = self.server_rss?;
        (self.conns_open > 0).then(|| (end as f64 - start as f64) / self.conns_open as f64)
    }

    /// Under `--rate`, whether the connections kept up with the schedule: `None` when they did,
    /// else a sentence saying how far behind it the sends were.
    pub fn behind_schedule(&self) -> Option<String> {
        let rate = self.rate?;
        let backlog = self.sends_due.saturating_sub(self.msgs_sent);
        // Fewer than 1 in 1,000 sends waiting, and a backlog of less than 10 ms of sends (one in
        // the making as measuring ends), is the noise of a busy machine, not a verdict.
        if self.sends_waited * 1000 <= self.msgs_sent && backlog <= (rate * 0.01).max(1.0) as u64 {
            return None;
        }
        let sent = self.msgs_sent.max(1);
        Some(format!(
            "the connections did not keep up with --rate {rate}: {} of {} sends ({:.1}%) waited \
             more than {} for a free connection, the latest {} late (p99 {}); {backlog} \
             scheduled sends were never made; sent {:.0}/s (the server answered too slowly \
             for them; more --conns or --pipeline help if it is not at its limit)",
            self.sends_waited,
            self.msgs_sent,
            self.sends_waited as f64 * 100.0 / sent as f64,
            fmt_us(LATE_AFTER_US),
            fmt_us(self.send_lag.max()),
            fmt_us(Self::pct(&self.send_lag, 0.99)),
            if self.elapsed_s > 0.0 {
                self.msgs_sent as f64 / self.elapsed_s
            } else {
                0.0
            },
        ))
    }

    /// Under `--rate`, when the generator itself sent late with a connection free (no CPU in
    /// time): a sentence saying so. Such lateness is not in the latencies.
    pub fn own_lateness(&self) -> Option<String> {
        self.rate?;
        // As for `behind_schedule`: under 1 in 1,000 is the noise of a shared machine.
        if self.sends_own_late * 1000 <= self.msgs_sent {
            return None;
        }
        Some(format!(
            "readyloop load itself sent {} of {} sends more than {} late with a connection \
             free, up to {} (its own timer or CPU: a busy machine); this lateness is not \
             counted in the latencies",
            self.sends_own_late,
            self.msgs_sent,
            fmt_us(LATE_AFTER_US),
            fmt_us(self.own_lag_max_us)
        ))
    }

    /// One JSON object on one line. `internal` adds what a parent needs to merge children
    /// exactly: the histograms as `[value, count]` pairs and the timeline.
    pub fn to_json(&self, internal: bool, thresholds: &[Verdict]) -> String {
        let mut s = String::from("{\"mode\":");
        json::write_str(&mut s, &self.mode);
        s.push_str(",\"addr\":");
        json::write_str(&mut s, &self.addr);
        let _ = write!(
            s,
            ",\"model\":\"{}\",\"conns\":{},\"procs\":{},\"elapsed_s\":{:.3},\"conns_ok\":{},\
             \"conns_failed\":{},\"conns_open\":{},\"conns_peak\":{},\"ramp_s\":{:.3},\
             \"connect_per_s\":{:.1},\"errors\":{},\"errors_by_kind\":{{",
            if self.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            self.conns,
            self.procs,
            self.elapsed_s,
            self.conns_ok,
            self.conns_failed,
            self.conns_open,
            self.conns_peak,
            self.ramp_s,
            self.connect_rate(),
            self.error_count()
        );
        for (i, (kind, n)) in self.errors.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json::write_str(&mut s, kind);
            let _ = write!(s, ":{n}");
        }
        let _ = write!(
            s,
            "}},\"checks_failed\":{},\"msgs\":{},\"msgs_sent\":{},\"msgs_per_s\":{:.1},\
             \"bytes_sent\":{},\"bytes_received\":{}",
            self.checks_failed,
            self.msgs,
            self.msgs_sent,
            self.msgs_per_s(),
            self.bytes_sent,
            self.bytes_received,
        );
        write_summary(&mut s, "latency_us", &self.latency);
        if let Some(rate) = self.rate {
            write_summary(&mut s, "latency_uncorrected_us", &self.latency_uncorrected);
            let _ = write!(
                s,
                ",\"rate\":{rate},\"sends_due\":{},\"sends_late\":{},\"sends_waited\":{},\
                 \"sends_own_late\":{},\"own_lag_max_us\":{}",
                self.sends_due,
                self.sends_late,
                self.sends_waited,
                self.sends_own_late,
                self.own_lag_max_us
            );
            write_summary(&mut s, "send_lag_us", &self.send_lag);
        }
        if self.mode == "http" {
            s.push_str(",\"status\":{");
            for (i, (code, n)) in self.status.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "\"{code}\":{n}");
            }
            let _ = write!(s, "}},\"non_2xx_3xx\":{}", self.non_2xx_3xx());
        }
        if let Some((start, end)) = self.server_rss {
            let _ = write!(
                s,
                ",\"server_rss_start\":{start},\"server_rss_end\":{end},\"server_bytes_per_conn\":{:.0}",
                self.server_bytes_per_conn().unwrap_or(0.0)
            );
        }
        if !thresholds.is_empty() {
            s.push_str(",\"thresholds\":[");
            for (i, v) in thresholds.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str("{\"expr\":");
                json::write_str(&mut s, &v.expr);
                let actual = if v.actual.is_finite() {
                    format!("{}", v.actual)
                } else {
                    "null".into()
                };
                let _ = write!(s, ",\"actual\":{actual},\"ok\":{}}}", v.ok);
            }
            s.push(']');
        }
        if internal {
            write_hist(&mut s, "latency_hist", &self.latency);
            if self.rate.is_some() {
                write_hist(
                    &mut s,
                    "latency_uncorrected_hist",
                    &self.latency_uncorrected,
                );
                write_hist(&mut s, "send_lag_hist", &self.send_lag);
            }
            s.push_str(",\"timeline\":[");
            for (i, sec) in self.timeline.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let a = sec.to_array();
                let _ = write!(s, "[{}]", a.map(|n| n.to_string()).join(","));
            }
            s.push(']');
        }
        s.push('}');
        s
    }

    /// Reads back what `to_json(true, ..)` wrote.
    pub fn from_json(v: &Json) -> Result<Report, String> {
        let text = |k: &str| match v.get(k) {
            Some(Json::Str(s)) => Ok(s.clone()),
            _ => Err(format!("report without {k:?}")),
        };
        let n = |k: &str| v.num(k).max(0.0) as u64;
        let mut r = Report::new(&text("mode")?, &text("addr")?, n("conns"));
        r.elapsed_s = v.num("elapsed_s");
        r.conns_ok = n("conns_ok");
        r.conns_failed = n("conns_failed");
        r.conns_open = n("conns_open");
        r.conns_peak = n("conns_peak");
        r.ramp_s = v.num("ramp_s");
        r.checks_failed = n("checks_failed");
        r.msgs = n("msgs");
        r.msgs_sent = n("msgs_sent");
        r.bytes_sent = n("bytes_sent");
        r.bytes_received = n("bytes_received");
        if let Some(Json::Num(rate)) = v.get("rate") {
            r.rate = Some(*rate);
            r.sends_due = n("sends_due");
            r.sends_late = n("sends_late");
            r.sends_waited = n("sends_waited");
            r.sends_own_late = n("sends_own_late");
            r.own_lag_max_us = n("own_lag_max_us");
        }
        if let Some(Json::Obj(kinds)) = v.get("errors_by_kind") {
            for (kind, count) in kinds {
                if let Json::Num(c) = count {
                    r.errors.insert(kind.clone(), *c as u64);
                }
            }
        }
        if let Some(Json::Obj(codes)) = v.get("status") {
            for (code, count) in codes {
                if let (Ok(code), Json::Num(c)) = (code.parse(), count) {
                    r.status.insert(code, *c as u64);
                }
            }
        }
        read_hist(v, "latency_hist", &mut r.latency)?;
        read_hist(v, "latency_uncorrected_hist", &mut r.latency_uncorrected)?;
        read_hist(v, "send_lag_hist", &mut r.send_lag)?;
        if let Some(Json::Arr(seconds)) = v.get("timeline") {
            for sec in seconds {
                if let Json::Arr(a) = sec {
                    let nums: Vec<u64> = a
                        .iter()
                        .map(|x| match x {
                            Json::Num(f) => *f as u64,
                            _ => 0,
                        })
                        .collect();
                    r.timeline.push(Second::from_array(&nums));
                }
            }
        }
        Ok(r)
    }

    /// Adds another process's figures: counts add up, histograms merge, times take the max.
    pub fn merge(&mut self, other: &Report) {
        self.conns += other.conns;
        self.elapsed_s = self.elapsed_s.max(other.elapsed_s);
        self.ramp_s = self.ramp_s.max(other.ramp_s);
        self.conns_ok += other.conns_ok;
        self.conns_failed += other.conns_failed;
        self.conns_open += other.conns_open;
        // Children run at the same time, so their peaks (nearly) coincide.
        self.conns_peak += other.conns_peak;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_insert(0) += n;
        }
        self.checks_failed += other.checks_failed;
        self.msgs += other.msgs;
        self.msgs_sent += other.msgs_sent;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        for (code, n) in &other.status {
            *self.status.entry(*code).or_insert(0) += n;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        if let Some(rate) = other.rate {
            self.rate = Some(self.rate.unwrap_or(0.0) + rate);
            let _ = self.latency_uncorrected.add(&other.latency_uncorrected);
            let _ = self.send_lag.add(&other.send_lag);
            self.sends_due += other.sends_due;
            self.sends_late += other.sends_late;
            self.sends_waited += other.sends_waited;
            self.sends_own_late += other.sends_own_late;
            self.own_lag_max_us = self.own_lag_max_us.max(other.own_lag_max_us);
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline
                .resize(other.timeline.len(), Second::default());
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            mine.msgs += theirs.msgs;
            mine.errors += theirs.errors;
            mine.sent += theirs.sent;
            mine.late += theirs.late;
            mine.conns += theirs.conns;
            mine.p99_us = mine.p99_us.max(theirs.p99_us);
            mine.max_us = mine.max_us.max(theirs.max_us);
        }
    }

    fn latency_row(s: &mut String, name: &str, h: &Histogram<u64>) {
        let v = if h.is_empty() {
            "no samples".to_string()
        } else {
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                fmt_us(Self::pct(h, 0.5)),
                fmt_us(Self::pct(h, 0.9)),
                fmt_us(Self::pct(h, 0.99)),
                fmt_us(Self::pct(h, 0.999)),
                fmt_us(h.max()),
                h.len()
            )
        };
        let _ = writeln!(s, "  {name:<22} {v}");
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "readyloop load {} → {} ({} conns, {} proc{}, {:.1} s{})",
            self.mode,
            self.addr,
            self.conns,
            self.procs,
            if self.procs == 1 { "" } else { "s" },
            self.elapsed_s,
            match self.rate {
                Some(r) => format!(", open model at {r}/s"),
                None => String::new(),
            }
        );
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "  {k:<22} {v}");
        };
        row(
            &mut s,
            "connected",
            format!("{} ok, {} failed", self.conns_ok, self.conns_failed),
        );
        row(
            &mut s,
            "open at end / peak",
            format!("{} / {}", self.conns_open, self.conns_peak),
        );
        row(
            &mut s,
            "connect rate",
            format!(
                "{:.0} conns/s over {:.2} s",
                self.connect_rate(),
                self.ramp_s
            ),
        );
        row(&mut s, "errors", self.error_count().to_string());
        for (kind, n) in &self.errors {
            row(&mut s, &format!("  {kind}"), n.to_string());
        }
        row(
            &mut s,
            "messages",
            format!(
                "{} received ({:.0}/s), {} sent",
                self.msgs,
                self.msgs_per_s(),
                self.msgs_sent
            ),
        );
        if self.mode == "http" {
            let codes: Vec<String> = self
                .status
                .iter()
                .map(|(c, n)| format!("{c}: {n}"))
                .collect();
            row(
                &mut s,
                "status",
                if codes.is_empty() {
                    "no responses".into()
                } else {
                    format!("{} (not 2xx/3xx: {})", codes.join(", "), self.non_2xx_3xx())
                },
            );
        }
        row(
            &mut s,
            "bytes",
            format!(
                "{} sent, {} received ({:.1} MB/s in)",
                self.bytes_sent,
                self.bytes_received,
                if self.elapsed_s > 0.0 {
                    self.bytes_received as f64 / self.elapsed_s / 1e6
                } else {
                    0.0
                }
            ),
        );
        if self.rate.is_some() {
            Self::latency_row(&mut s, "latency (corrected)", &self.latency);
            Self::latency_row(&mut s, "latency (uncorrected)", &self.latency_uncorrected);
            row(
                &mut s,
                "send lag",
                format!(
                    "p50 {}  p99 {}  max {}; {} of {} sends late (> {}), {} of them waiting \
                     for a connection; {} due",
                    fmt_us(Self::pct(&self.send_lag, 0.5)),
                    fmt_us(Self::pct(&self.send_lag, 0.99)),
                    fmt_us(self.send_lag.max()),
                    self.sends_late,
                    self.msgs_sent,
                    fmt_us(LATE_AFTER_US),
                    self.sends_waited,
                    self.sends_due
                ),
            );
            if let Some(behind) = self.behind_schedule() {
                let _ = writeln!(s, "  BEHIND SCHEDULE: {behind}");
            }
            if let Some(own) = self.own_lateness() {
                let _ = writeln!(s, "  note: {own}");
            }
        } else {
            Self::latency_row(&mut s, "latency", &self.latency);
        }
        if let Some((start, end)) = self.server_rss {
            row(
                &mut s,
                "server RSS",
                format!(
                    "{:.1} MiB → {:.1} MiB, {:.0} bytes per open connection",
                    start as f64 / 1048576.0,
                    end as f64 / 1048576.0,
                    self.server_bytes_per_conn().unwrap_or(0.0)
                ),
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_merge_add_up() {
        let mut a = Report::new("echo", "127.0.0.1:1", 3);
        a.conns_ok = 3;
        a.msgs = 10;
        a.error("closed by server");
        a.check_failed("echo: payload mismatch");
        a.timeline = vec![
            Second {
                msgs: 4,
                p99_us: 10,
                ..Second::default()
            },
            Second {
                msgs: 6,
                conns: 3,
                ..Second::default()
            },
        ];
        for v in [100, 200, 300] {
            a.latency.record(v).unwrap();
        }
        let mut b = a.clone();
        b.latency.record(5000).unwrap();
        b.timeline.truncate(1);
        b.timeline[0].p99_us = 99;
        let back = Report::from_json(&json::parse(&a.to_json(true, &[])).unwrap()).unwrap();
        assert_eq!(back.conns_ok, 3);
        assert_eq!(back.latency.len(), 3);
        assert_eq!(back.errors["closed by server"], 1);
        assert_eq!((back.checks_failed, back.error_count()), (1, 2));
        assert_eq!(back.timeline, a.timeline);
        let mut merged = back;
        merged.merge(&b);
        assert_eq!(merged.conns, 6);
        assert_eq!(merged.msgs, 20);
        assert_eq!(merged.error_count(), 4);
        assert_eq!(merged.checks_failed, 2);
        assert_eq!(merged.latency.len(), 7);
        assert!(merged.latency.max() >= 5000);
        assert_eq!(merged.timeline.len(), 2);
        assert_eq!(
            (merged.timeline[0].msgs, merged.timeline[0].p99_us),
            (8, 99)
        );
    }

    #[test]
    fn open_model_figures_round_trip() {
        let mut a = Report::new("http", "127.0.0.1:1", 2);
        a.rate = Some(100.0);
        a.sends_due = 1000;
        a.msgs_sent = 990;
        a.sends_late = 7;
        a.sends_waited = 7;
        a.status.insert(200, 980);
        a.status.insert(503, 10);
        a.latency.record(1_000_000).unwrap();
        a.latency_uncorrected.record(50).unwrap();
        a.send_lag.record(999_000).unwrap();
        let j = a.to_json(true, &[]);
        assert!(j.contains("\"model\":\"open\""), "{j}");
        assert!(
            j.contains("\"status\":{\"200\":980,\"503\":10},\"non_2xx_3xx\":10"),
            "{j}"
        );
        // The contract's keys come first: `latency_us` before the uncorrected twin.
        assert!(j.find("\"latency_us\"") < j.find("\"latency_uncorrected_us\""));
        let back = Report::from_json(&json::parse(&j).unwrap()).unwrap();
        assert_eq!(back.rate, Some(100.0));
        assert_eq!((back.sends_due, back.sends_late), (1000, 7));
        assert_eq!(back.status, a.status);
        assert_eq!(back.latency_uncorrected.len(), 1);
        assert!(back.send_lag.max() >= 998_000);
        let behind = back.behind_schedule().expect("late sends are reported");
        assert!(behind.contains("7 of 990 sends"), "{behind}");
        assert_eq!(back.sends_waited, 7);
        let mut merged = back.clone();
        merged.merge(&back);
        assert_eq!(merged.rate, Some(200.0));
        assert_eq!(merged.status[&503], 20);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_us(412), "412 µs");
        assert_eq!(fmt_us(12_345), "12.35 ms");
        assert_eq!(fmt_us(2_500_000), "2.50 s");
    }
}
