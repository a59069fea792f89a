//! The Prometheus text exposition format, version 0.0.4: a writer of `# HELP` and `# TYPE`
//! lines and samples, with label values and help text escaped as the format requires.
//!
//! It is a codec like the others: it knows nothing of what is measured, only how a family of
//! series is spelled (`name{label="value",...} number`, histograms as cumulative
//! `_bucket{le="..."}` series plus `_sum` and `_count`). The caller writes families one after
//! another, each family's samples together, which is all the format asks.
//! Reference: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use std::fmt::Write;

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts at zero when the process does); the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets of cumulative upper bounds, with their sum and count.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes one exposition into a `String`.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.name());
    }

    /// One sample: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        self.number(value);
        self.out.push('\n');
    }

    /// A whole histogram's series for one label set: `buckets` are (upper bound, observations
    /// in that bucket alone) in increasing order, the last bound `None` (`+Inf`); they are
    /// written cumulative, then `_sum` and `_count` (the total of the buckets).
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: impl IntoIterator<Item = (Option<f64>, u64)>,
        sum: f64,
    ) {
        let mut total = 0u64;
        let mut saw_inf = false;
        let mut le = String::new();
        for (bound, n) in buckets {
            total += n;
            le.clear();
            match bound {
                Some(b) => write_number(&mut le, b),
                None => {
                    le.push_str("+Inf");
                    saw_inf = true;
                }
            }
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {total}");
        }
        if !saw_inf {
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some("+Inf"));
            let _ = writeln!(self.out, " {total}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        self.out.push(' ');
        self.number(sum);
        let _ = write!(self.out, "\n{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {total}");
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
        for (k, v) in all {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn number(&mut self, v: f64) {
        write_number(&mut self.out, v);
    }
}

/// A sample value as the format spells it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
fn write_number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_and_a_gauge_with_labels() {
        let mut e = Exposition::new();
        e.family("x_total", "Things.\nCounted \\ here.", Kind::Counter);
        e.sample("x_total", &[("protocol", "ws"), ("odd", "a\"b\\c\nd")], 3.0);
        e.family("y", "A level.", Kind::Gauge);
        e.sample("y", &[], 0.25);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\\nCounted \\\\ here.\n# TYPE x_total counter\n\
             x_total{protocol=\"ws\",odd=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP y A level.\n# TYPE y gauge\ny 0.25\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut e = Exposition::new();
        e.family("h_seconds", "Time.", Kind::Histogram);
        e.histogram(
            "h_seconds",
            &[("worker", "1")],
            [(Some(0.5), 2), (Some(1.0), 0), (Some(2.0), 3)],
            4.5,
        );
        let text = e.finish();
        assert!(
            text.contains("h_seconds_bucket{worker=\"1\",le=\"0.5\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_bucket{worker=\"1\",le=\"1\"} 2\n"));
        assert!(text.contains("h_seconds_bucket{worker=\"1\",le=\"2\"} 5\n"));
        assert!(text.contains("h_seconds_bucket{worker=\"1\",le=\"+Inf\"} 5\n"));
        assert!(text.contains("h_seconds_sum{worker=\"1\"} 4.5\nh_seconds_count{worker=\"1\"} 5\n"));
    }

    #[test]
    fn numbers_are_spelled_as_the_format_wants() {
        let spelled = |v: f64| {
            let mut s = String::new();
            write_number(&mut s, v);
            s
        };
        assert_eq!(spelled(0.0), "0");
        assert_eq!(spelled(1e-6), "0.000001");
        assert_eq!(spelled(f64::INFINITY), "+Inf");
        assert_eq!(spelled(f64::NAN), "NaN");
        assert_eq!(spelled(12345678.0), "12345678");
    }
}
