//! What a run measured, and the two ways it is printed: a table for people and one JSON object
//! for scripts. Child processes (`--procs`) print the JSON with their latency histogram attached
//! as `[value, count]` pairs, and the parent merges those exactly (HDR buckets add up), so the
//! merged percentiles are those of all samples, not a max of per-child percentiles.

use super::json::{self, Json};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, with 3 significant digits
/// (0.1% resolution): ~30 KiB of counters per histogram.
const LATENCY_MAX_US: u64 = 60_000_000;

/// A fresh latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("static histogram bounds are valid")
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
    /// Successful connects (hello: every connect of every repetition).
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
    /// Verified messages received (echo replies, greetings, broadcast deliveries).
    pub msgs: u64,
    /// Messages sent.
    pub msgs_sent: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Bytes read.
    pub bytes_received: u64,
    /// Round-trip (or delivery) latencies in microseconds.
    pub latency: Histogram<u64>,
    /// Server RSS (bytes) before the first connect and when measuring ended (`--server-pid`).
    pub server_rss: Option<(u64, u64)>,
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
            msgs: 0,
            msgs_sent: 0,
            bytes_sent: 0,
            bytes_received: 0,
            latency: new_histogram(),
            server_rss: None,
        }
    }

    /// Counts one error of `kind`.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_insert(0) += 1;
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

    fn pct(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(q)
        }
    }

    /// Server bytes per open connection, when the server's RSS was sampled.
    pub fn server_bytes_per_conn(&self) -> Option<f64> {
        let (start, end) = self.server_rss?;
        (self.conns_open > 0).then(|| (end as f64 - start as f64) / self.conns_open as f64)
    }

    /// One JSON object on one line. `with_histogram` adds `latency_hist` (for `--procs`).
    pub fn to_json(&self, with_histogram: bool) -> String {
        let mut s = String::from("{\"mode\":");
        json::write_str(&mut s, &self.mode);
        s.push_str(",\"addr\":");
        json::write_str(&mut s, &self.addr);
        let _ = write!(
            s,
            ",\"conns\":{},\"procs\":{},\"elapsed_s\":{:.3},\"conns_ok\":{},\"conns_failed\":{},\
             \"conns_open\":{},\"conns_peak\":{},\"ramp_s\":{:.3},\"connect_per_s\":{:.1},\
             \"errors\":{},\"errors_by_kind\":{{",
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
            "}},\"msgs\":{},\"msgs_sent\":{},\"msgs_per_s\":{:.1},\"bytes_sent\":{},\
             \"bytes_received\":{},\"latency_us\":{{\"count\":{},\"p50\":{},\"p90\":{},\
             \"p99\":{},\"p999\":{},\"max\":{},\"mean\":{:.1}}}",
            self.msgs,
            self.msgs_sent,
            self.msgs_per_s(),
            self.bytes_sent,
            self.bytes_received,
            self.latency.len(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(0.999),
            self.latency.max(),
            self.latency.mean()
        );
        if let Some((start, end)) = self.server_rss {
            let _ = write!(
                s,
                ",\"server_rss_start\":{start},\"server_rss_end\":{end},\"server_bytes_per_conn\":{:.0}",
                self.server_bytes_per_conn().unwrap_or(0.0)
            );
        }
        if with_histogram {
            s.push_str(",\"latency_hist\":[");
            for (i, v) in self.latency.iter_recorded().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "[{},{}]", v.value_iterated_to(), v.count_at_value());
            }
            s.push(']');
        }
        s.push('}');
        s
    }

    /// Reads back what `to_json(true)` wrote.
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
        r.msgs = n("msgs");
        r.msgs_sent = n("msgs_sent");
        r.bytes_sent = n("bytes_sent");
        r.bytes_received = n("bytes_received");
        if let Some(Json::Obj(kinds)) = v.get("errors_by_kind") {
            for (kind, count) in kinds {
                if let Json::Num(c) = count {
                    r.errors.insert(kind.clone(), *c as u64);
                }
            }
        }
        if let Some(Json::Arr(pairs)) = v.get("latency_hist") {
            for pair in pairs {
                if let Json::Arr(p) = pair {
                    if let [Json::Num(value), Json::Num(count)] = p.as_slice() {
                        r.latency
                            .record_n(*value as u64, *count as u64)
                            .map_err(|e| format!("bad histogram entry: {e}"))?;
                    }
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
        self.msgs += other.msgs;
        self.msgs_sent += other.msgs_sent;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "readyloop load {} → {} ({} conns, {} proc{}, {:.1} s)",
            self.mode,
            self.addr,
            self.conns,
            self.procs,
            if self.procs == 1 { "" } else { "s" },
            self.elapsed_s
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
        if self.latency.is_empty() {
            row(&mut s, "latency", "no samples".into());
        } else {
            row(
                &mut s,
                "latency (µs)",
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                    self.pct(0.5),
                    self.pct(0.9),
                    self.pct(0.99),
                    self.pct(0.999),
                    self.latency.max(),
                    self.latency.len()
                ),
            );
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
        for v in [100, 200, 300] {
            a.latency.record(v).unwrap();
        }
        let mut b = a.clone();
        b.latency.record(5000).unwrap();
        let back = Report::from_json(&json::parse(&a.to_json(true)).unwrap()).unwrap();
        assert_eq!(back.conns_ok, 3);
        assert_eq!(back.latency.len(), 3);
        assert_eq!(back.errors["closed by server"], 1);
        let mut merged = back;
        merged.merge(&b);
        assert_eq!(merged.conns, 6);
        assert_eq!(merged.msgs, 20);
        assert_eq!(merged.error_count(), 2);
        assert_eq!(merged.latency.len(), 7);
        assert!(merged.latency.max() >= 5000);
    }
}
