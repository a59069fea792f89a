//! `GET /metrics`: the figures of `/stats` and the loop's own (`runtime::loop_metrics`) as
//! Prometheus families, and their sum over the workers of `serve --workers N`.
//!
//! A scrape builds the families from a `Snapshot` (plain numbers; this file knows no service),
//! each series holding integers in its own unit (bytes, microseconds, nanoseconds) and the
//! family a scale to the unit it is exposed in (seconds), so that every value is a `u64`. That
//! is what lets the workers share them: each worker flattens its families into words and writes
//! them into its slot of the shared stats memory (`stats::publish_metric_words`, about once a
//! second and before it answers `?all=1`); `?all=1` loads every live worker's words into the
//! same families (same binary and flags, so the same layout), sums them (or takes the largest,
//! for the longest queue and the uptime), and writes the sum with `worker="all"` followed by
//! each worker's series with `worker="N"`. A plain `/metrics` answered by a worker carries its
//! `worker` label too, so scrapes landing on different workers (SO_REUSEPORT) stay apart.

use super::stats::{self, Snapshot, WorkerWords};
use crate::codec::prometheus::{Exposition, Kind};
use crate::runtime::loop_metrics::{Log2Histogram, PollWait, CLOSE_REASONS, PHASES};

/// How the series of several workers combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    /// Added up (counters, and gauges of things each worker has its own of).
    Sum,
    /// The largest (the longest queue, the uptime).
    Max,
}

/// One series' value, in the family's own integer unit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Scalar(u64),
    /// Observations per bucket (not cumulative) and their sum.
    Histogram {
        buckets: Vec<u64>,
        sum: u64,
    },
}

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Debug, Clone)]
struct Series {
    labels: Labels,
    value: Value,
}

/// One metric family: name, help, type, and its series.
#[derive(Debug, Clone)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    /// Multiplies the stored integers (and bucket bounds) into the exposed unit.
    scale: f64,
    combine: Combine,
    /// Histograms: each bucket's inclusive upper bound in the stored unit (`None`: `+Inf`).
    bounds: Vec<Option<u64>>,
    series: Vec<Series>,
}

impl Family {
    fn flatten(&self, out: &mut Vec<u64>) {
        for s in &self.series {
            match &s.value {
                Value::Scalar(v) => out.push(*v),
                Value::Histogram { buckets, sum } => {
                    out.extend_from_slice(buckets);
                    out.push(*sum);
                }
            }
        }
    }

    fn load(&mut self, words: &mut impl Iterator<Item = u64>) {
        for s in &mut self.series {
            match &mut s.value {
                Value::Scalar(v) => *v = words.next().unwrap_or(0),
                Value::Histogram { buckets, sum } => {
                    for b in buckets.iter_mut() {
                        *b = words.next().unwrap_or(0);
                    }
                    *sum = words.next().unwrap_or(0);
                }
            }
        }
    }

    fn combine(&mut self, other: &Family) {
        let pick = |a: &mut u64, b: u64| match self.combine {
            Combine::Sum => *a = a.wrapping_add(b),
            Combine::Max => *a = (*a).max(b),
        };
        for (mine, theirs) in self.series.iter_mut().zip(&other.series) {
            match (&mut mine.value, &theirs.value) {
                (Value::Scalar(a), Value::Scalar(b)) => pick(a, *b),
                (
                    Value::Histogram { buckets, sum },
                    Value::Histogram {
                        buckets: theirs,
                        sum: their_sum,
                    },
                ) => {
                    for (a, b) in buckets.iter_mut().zip(theirs) {
                        pick(a, *b);
                    }
                    pick(sum, *their_sum);
                }
                _ => {}
            }
        }
    }

    fn zeroed(&self) -> Family {
        let mut f = self.clone();
        f.load(&mut std::iter::empty());
        f
    }
}

/// Builds the family list.
#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        series: Vec<(Labels, u64)>,
    ) -> &mut Family {
        self.0.push(Family {
            name,
            help,
            kind,
            scale: 1.0,
            combine: Combine::Sum,
            bounds: Vec::new(),
            series: series
                .into_iter()
                .map(|(labels, v)| Series {
                    labels,
                    value: Value::Scalar(v),
                })
                .collect(),
        });
        self.0.last_mut().expect("just pushed")
    }

    fn counter(&mut self, name: &'static str, help: &'static str, v: u64) -> &mut Family {
        self.add(name, help, Kind::Counter, vec![(Vec::new(), v)])
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, v: u64) -> &mut Family {
        self.add(name, help, Kind::Gauge, vec![(Vec::new(), v)])
    }

    /// A family with one label, one series per `(label value, value)`.
    fn labelled(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        label: &'static str,
        values: impl IntoIterator<Item = (&'static str, u64)>,
    ) -> &mut Family {
        let series = values
            .into_iter()
            .map(|(v, n)| (vec![(label, v)], n))
            .collect();
        self.add(name, help, kind, series)
    }

    fn histogram<const N: usize>(
        &mut self,
        name: &'static str,
        help: &'static str,
        scale: f64,
        h: &Log2Histogram<N>,
    ) {
        self.0.push(Family {
            name,
            help,
            kind: Kind::Histogram,
            scale,
            combine: Combine::Sum,
            bounds: (0..N).map(Log2Histogram::<N>::upper_bound).collect(),
            series: vec![Series {
                labels: Vec::new(),
                value: Value::Histogram {
                    buckets: h.buckets.to_vec(),
                    sum: h.sum,
                },
            }],
        });
    }
}

impl Family {
    fn scaled(&mut self, scale: f64) -> &mut Family {
        self.scale = scale;
        self
    }

    fn largest(&mut self) -> &mut Family {
        self.combine = Combine::Max;
        self
    }
}

/// Every family of this process' snapshot, in the order `/metrics` writes them.
pub fn families(s: &Snapshot) -> Vec<Family> {
    let mut f = Families::default();
    let c = s.connections;
    let m = &s.loop_metrics;
    let census = &s.census;
    f.labelled(
        "readyloop_connections",
        "Open connections accepted on our listeners, per protocol (an upgraded HTTP connection counts as ws).",
        Kind::Gauge,
        "protocol",
        [
            ("http", c.http as u64),
            ("ws", c.ws as u64),
            ("line", c.line as u64),
            ("hello", c.hello as u64),
        ],
    );
    f.gauge(
        "readyloop_outgoing_connections",
        "Open connections we made (the Redis links).",
        s.open_outgoing,
    );
    f.counter(
        "readyloop_accepts_total",
        "Sockets accept() returned (/stats accepted_total).",
        s.accepted_total,
    );
    f.counter(
        "readyloop_handled_total",
        "Accepted sockets that became connections (fewer than accepts when the handler refuses or registration fails).",
        m.handled_total,
    );
    f.counter(
        "readyloop_accepts_refused_total",
        "Accepted sockets the handler refused and closed at once.",
        m.refused_total,
    );
    f.counter(
        "readyloop_accept_paused_total",
        "Times accepting paused for want of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM).",
        m.accept_paused_total,
    );
    f.counter(
        "readyloop_accept_errors_total",
        "accept() failures of any other kind.",
        m.accept_errors_total,
    );
    f.labelled(
        "readyloop_closed_total",
        "Connections closed, by the reason the loop gave the handler (CloseReason).",
        Kind::Counter,
        "reason",
        CLOSE_REASONS.iter().copied().zip(m.closed),
    );
    f.labelled(
        "readyloop_slow_consumers_total",
        "Connections cut off for not reading their output: by the loop (over --max-pending) or by the /ws broadcast (close 1008).",
        Kind::Counter,
        "cut_by",
        [
            ("loop", m.closed[4]),
            ("ws", s.ws_slow_consumers),
        ],
    );
    f.counter(
        "readyloop_read_bytes_total",
        "Bytes read from sockets (/stats bytes_read).",
        s.bytes_read,
    );
    f.counter(
        "readyloop_written_bytes_total",
        "Bytes written to sockets (/stats bytes_written).",
        s.bytes_written,
    );
    f.counter(
        "readyloop_partial_writes_total",
        "Writes the socket took only part of, or none of (WouldBlock): each arms or keeps WRITABLE.",
        m.partial_writes_total,
    );
    f.counter(
        "readyloop_interest_changes_total",
        "reregister calls: a connection's interest changed (R, W, R|W).",
        m.interest_changes_total,
    );
    f.counter(
        "readyloop_loop_iterations_total",
        "Iterations of the event loop (/stats loop_iterations).",
        s.loop_iterations,
    );
    f.labelled(
        "readyloop_polls_total",
        "Polls, by what bounded their timeout: deferred work (zero), a deadline (timer, accept retry, shutdown), the host's max wait, or nothing (forever).",
        Kind::Counter,
        "wait",
        PollWait::ALL.iter().map(|w| w.name()).zip(m.polls),
    );
    f.histogram(
        "readyloop_events_per_poll",
        "Readiness events each poll returned.",
        1.0,
        &m.events_per_poll,
    );
    f.histogram(
        "readyloop_poll_timeout_seconds",
        "The finite timeouts poll was given (polls that could wait forever are only in readyloop_polls_total).",
        1e-6,
        &m.poll_timeout_us,
    );
    f.histogram(
        "readyloop_iteration_busy_seconds",
        "Time each loop iteration spent after poll returned: dispatch, deferred reads, timers, flush, reap.",
        1e-9,
        &m.iteration_busy_ns,
    );
    f.labelled(
        "readyloop_connections_by_phase",
        "Connections per phase of the loop's connection state machine.",
        Kind::Gauge,
        "phase",
        PHASES.iter().copied().zip(census.phases),
    );
    f.gauge(
        "readyloop_write_interest_armed",
        "Connections with WRITABLE armed (a write came up short and output waits).",
        census.write_armed,
    );
    f.gauge(
        "readyloop_read_paused",
        "Connections not being read (backpressure: their output is over the high watermark, or the handler paused them).",
        census.read_paused,
    );
    f.gauge(
        "readyloop_output_queued_bytes",
        "Bytes queued for output on every connection now.",
        census.queued_bytes,
    );
    f.gauge(
        "readyloop_output_largest_queue_bytes",
        "The longest output queue of one connection now (redis: client_longest_output_list).",
        census.largest_queue,
    )
    .largest();
    f.gauge(
        "readyloop_input_buffered_bytes",
        "Bytes of unfinished input held now, against --max-buffered (/stats input_buffered).",
        s.input_buffered,
    );
    f.counter(
        "readyloop_closed_over_budget_total",
        "Connections closed to keep the input budget (/stats closed_over_budget).",
        s.closed_over_budget,
    );
    f.gauge(
        "readyloop_timers_armed",
        "Deadlines armed in the loop's timer wheel.",
        census.timers,
    );
    f.counter(
        "readyloop_upload_tasks_accepted_total",
        "Upload tasks accepted (/stats tasks_queued).",
        s.tasks_queued,
    );
    f.labelled(
        "readyloop_upload_tasks_finished_total",
        "Upload tasks finished, by result (/stats tasks_done, tasks_failed).",
        Kind::Counter,
        "result",
        [("done", s.tasks_done), ("failed", s.tasks_failed)],
    );
    f.gauge(
        "readyloop_upload_tasks_in_flight",
        "Upload tasks accepted and not finished (/stats tasks_in_flight).",
        s.tasks_in_flight,
    );
    f.labelled(
        "readyloop_upload_tasks",
        "Upload tasks not finished, by state: queued for a task thread, running (being written), sealed (fsynced, being stored).",
        Kind::Gauge,
        "state",
        [
            ("queued", s.tasks_unfinished[0]),
            ("running", s.tasks_unfinished[1]),
            ("sealed", s.tasks_unfinished[2]),
        ],
    );
    f.counter(
        "readyloop_log_dropped_total",
        "Log records dropped because the log output could not keep up (/stats log_dropped).",
        s.log_dropped,
    );
    f.gauge(
        "readyloop_uptime_seconds",
        "Seconds since the loop started (/stats uptime_s).",
        (s.uptime_s * 1000.0) as u64,
    )
    .scaled(1e-3)
    .largest();
    #[cfg(feature = "redis")]
    if let Some(r) = &s.relay {
        use super::redis_relay::{LINKS, LINK_STATES};
        f.gauge(
            "readyloop_redis_connected",
            "1 while both Redis links are up (/stats redis_connected).",
            u64::from(r.connected),
        );
        let mut series = Vec::new();
        for (link, &state) in LINKS.iter().zip(&r.links) {
            for (i, name) in LINK_STATES.iter().enumerate() {
                series.push((
                    vec![("link", *link), ("state", *name)],
                    u64::from(i == state),
                ));
            }
        }
        f.add(
            "readyloop_redis_link_state",
            "1 for the state each Redis link is in.",
            Kind::Gauge,
            series,
        );
        f.counter(
            "readyloop_redis_published_total",
            "Messages handed to Redis and answered by it (/stats redis_published).",
            r.published,
        );
        f.counter(
            "readyloop_redis_received_total",
            "Messages from other processes delivered here (/stats redis_received).",
            r.received,
        );
        f.counter(
            "readyloop_redis_unrelayed_total",
            "Messages that could not be relayed (/stats redis_unrelayed).",
            r.unrelayed,
        );
        f.gauge(
            "readyloop_redis_publish_in_flight",
            "PUBLISH commands sent and not yet answered.",
            r.in_flight,
        );
    }
    f.0
}

/// Every series' values, in order (what a worker shares).
pub fn flatten(families: &[Family]) -> Vec<u64> {
    let mut out = Vec::new();
    for f in families {
        f.flatten(&mut out);
    }
    out
}

/// Writes families: for each family its header, then each group's series, labelled with
/// `worker="NAME"` when the group is named.
fn write(out: &mut Exposition, groups: &[(Option<String>, Vec<Family>)]) {
    let Some((_, first)) = groups.first() else {
        return;
    };
    for (k, family) in first.iter().enumerate() {
        out.family(family.name, family.help, family.kind);
        for (worker, families) in groups {
            let Some(f) = families.get(k) else {
                continue;
            };
            for s in &f.series {
                let mut labels: Vec<(&str, &str)> = Vec::with_capacity(s.labels.len() + 1);
                if let Some(w) = worker {
                    labels.push(("worker", w));
                }
                labels.extend(s.labels.iter().copied());
                match &s.value {
                    Value::Scalar(v) => out.sample(f.name, &labels, *v as f64 * f.scale),
                    Value::Histogram { buckets, sum } => {
                        let scale = f.scale;
                        let le = f.bounds.iter().map(|b| b.map(|b| b as f64 * scale));
                        out.histogram(
                            f.name,
                            &labels,
                            le.zip(buckets.iter().copied()),
                            *sum as f64 * scale,
                        );
                    }
                }
            }
        }
    }
}

/// In a worker: writes this worker's series to its shared slot (with its `/stats` words).
pub fn publish(s: &Snapshot) {
    stats::publish(s);
    stats::publish_metric_words(&flatten(&families(s)));
}

/// The `GET /metrics` body: this process' families, or with `all` (in a worker) every live
/// worker's summed (`worker="all"`) and each worker's own.
pub fn text(s: &Snapshot, all: bool) -> String {
    let mine = families(s);
    let mut out = Exposition::new();
    let Some(me) = stats::worker_index() else {
        write(&mut out, &[(None, mine)]);
        return out.finish();
    };
    publish(s);
    let workers = match (all, stats::workers_metric_words()) {
        (true, Some((_, slots, live))) => Some((slots, live)),
        _ => None,
    };
    let Some((slots, live)) = workers else {
        write(&mut out, &[(Some(me.to_string()), mine)]);
        return out.finish();
    };
    let mut summed: Vec<Family> = mine.iter().map(Family::zeroed).collect();
    let mut groups = vec![(Some("all".to_string()), Vec::new())];
    for WorkerWords { index, words, .. } in &live {
        let mut theirs: Vec<Family> = mine.clone();
        let mut words = words.iter().copied();
        for f in &mut theirs {
            f.load(&mut words);
        }
        for (a, b) in summed.iter_mut().zip(&theirs) {
            a.combine(b);
        }
        groups.push((Some(index.to_string()), theirs));
    }
    groups[0].1 = summed;
    write(&mut out, &groups);
    out.family(
        "readyloop_workers",
        "Worker processes of serve --workers N.",
        Kind::Gauge,
    );
    out.sample("readyloop_workers", &[], slots as f64);
    out.family(
        "readyloop_workers_live",
        "Workers running now (their slots published).",
        Kind::Gauge,
    );
    out.sample("readyloop_workers_live", &[], live.len() as f64);
    out.family(
        "readyloop_worker_restarts_total",
        "Times the supervisor restarted each worker.",
        Kind::Counter,
    );
    for w in &live {
        let index = w.index.to_string();
        out.sample(
            "readyloop_worker_restarts_total",
            &[("worker", &index)],
            w.restarts as f64,
        );
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_s_families_fit_a_worker_slot() {
        let mut s = Snapshot {
            relay: Some(stats::RelayFigures::default()),
            ..Snapshot::default()
        };
        s.loop_metrics.closed[1] = 3;
        let words = flatten(&families(&s));
        assert!(
            words.len() <= stats::METRIC_WORDS,
            "{} words, {} per slot",
            words.len(),
            stats::METRIC_WORDS
        );
    }

    #[test]
    fn workers_words_load_back_and_sum() {
        let mut s = Snapshot {
            accepted_total: 5,
            ..Snapshot::default()
        };
        s.census.largest_queue = 10;
        s.loop_metrics.events_per_poll.record(3);
        let mine = families(&s);
        let words = flatten(&mine);
        let mut other = mine.clone();
        let mut shared = words.iter().copied();
        other.iter_mut().for_each(|f| f.load(&mut shared));
        assert_eq!(flatten(&other), words);
        let mut summed: Vec<Family> = mine.iter().map(Family::zeroed).collect();
        for theirs in [&mine, &other] {
            for (a, b) in summed.iter_mut().zip(theirs.iter()) {
                a.combine(b);
            }
        }
        let mut out = Exposition::new();
        write(&mut out, &[(Some("all".into()), summed)]);
        let text = out.finish();
        assert!(
            text.contains("readyloop_accepts_total{worker=\"all\"} 10\n"),
            "{text}"
        );
        // The longest queue is the largest of the workers', not their sum.
        assert!(text.contains("readyloop_output_largest_queue_bytes{worker=\"all\"} 10\n"));
        assert!(text.contains("readyloop_events_per_poll_bucket{worker=\"all\",le=\"4\"} 2\n"));
        assert!(text.contains("readyloop_events_per_poll_count{worker=\"all\"} 2\n"));
    }

    #[test]
    fn a_plain_scrape_has_help_and_type_for_every_family() {
        let text = text(&Snapshot::default(), false);
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        assert_eq!(types, families(&Snapshot::default()).len());
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
    }
}
