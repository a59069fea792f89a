//! `--threshold EXPR`: pass/fail conditions on a run's figures, so a load run can gate CI (as
//! k6's thresholds do). `METRIC OP VALUE` with `OP` one of `<`, `<=`, `>`, `>=`:
//!
//! - `p50`, `p90`, `p99`, `p999`, `max`: latency (the corrected one under `--rate`), with a unit,
//!   `us`, `ms` or `s` (`p99<5ms`). A bare number is refused: `p99<5` is too easy to misread.
//! - `errors`: errors of every kind (`errors<1`, `errors<=10`).
//! - `rate`: verified responses or messages per second (`rate>=900`, `/s` allowed).
//!
//! A run that misses any exits 1, naming each one and what the figure was.

use super::report::{fmt_us, Report, Verdict};

/// The figure a threshold looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    /// A latency quantile (0.5 … 0.999), in µs.
    Quantile(f64),
    /// The largest latency, in µs.
    Max,
    /// Errors of every kind.
    Errors,
    /// Verified responses or messages per second.
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// One parsed `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written, for messages and the report.
    pub expr: String,
    metric: Metric,
    op: Op,
    /// In the metric's unit (µs for latencies).
    limit: f64,
}

impl Threshold {
    /// Parses `p99<5ms`, `errors<1`, `rate>=900`.
    pub fn parse(expr: &str) -> Result<Threshold, String> {
        let bad = |why: String| format!("--threshold: {expr:?} {why}");
        let s: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        let at = s
            .find(['<', '>'])
            .ok_or_else(|| bad("is not METRIC<VALUE or METRIC>VALUE".into()))?;
        let (name, rest) = s.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::LessOrEqual, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::GreaterOrEqual, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Less, v)
        } else {
            (Op::Greater, &rest[1..])
        };
        let metric = match name {
            "p50" => Metric::Quantile(0.5),
            "p90" => Metric::Quantile(0.9),
            "p99" => Metric::Quantile(0.99),
            "p999" => Metric::Quantile(0.999),
            "max" => Metric::Max,
            "errors" => Metric::Errors,
            "rate" => Metric::Rate,
            other => {
                return Err(bad(format!(
                    "has an unknown metric {other:?} (p50, p90, p99, p999, max, errors, rate)"
                )))
            }
        };
        let number = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or_else(|| bad(format!("has {v:?} where a number belongs")))
        };
        let limit = match metric {
            Metric::Quantile(_) | Metric::Max => {
                let (digits, scale) = if let Some(d) = value.strip_suffix("us") {
                    (d, 1.0)
                } else if let Some(d) = value.strip_suffix("µs") {
                    (d, 1.0)
                } else if let Some(d) = value.strip_suffix("ms") {
                    (d, 1e3)
                } else if let Some(d) = value.strip_suffix('s') {
                    (d, 1e6)
                } else {
                    return Err(bad("needs a unit (us, ms or s) after the number".into()));
                };
                number(digits)? * scale
            }
            Metric::Errors => number(value)?,
            Metric::Rate => number(value.strip_suffix("/s").unwrap_or(value))?,
        };
        Ok(Threshold {
            expr: expr.to_string(),
            metric,
            op,
            limit,
        })
    }

    /// Judges `report` against this threshold.
    pub fn check(&self, report: &Report) -> Verdict {
        let lat = &report.latency;
        let actual = match self.metric {
            Metric::Quantile(_) | Metric::Max if lat.is_empty() => f64::NAN,
            Metric::Quantile(q) => lat.value_at_quantile(q) as f64,
            Metric::Max => lat.max() as f64,
            Metric::Errors => report.error_count() as f64,
            Metric::Rate => report.msgs_per_s(),
        };
        // No latency sample at all cannot meet a latency threshold.
        let ok = !actual.is_nan()
            && match self.op {
                Op::Less => actual < self.limit,
                Op::LessOrEqual => actual <= self.limit,
                Op::Greater => actual > self.limit,
                Op::GreaterOrEqual => actual >= self.limit,
            };
        let name = self.expr.split(['<', '>']).next().unwrap_or("").trim();
        let shown = match self.metric {
            _ if actual.is_nan() => format!("{name}: no latency samples"),
            Metric::Quantile(_) | Metric::Max => {
                format!("{name} was {}", fmt_us(actual as u64))
            }
            Metric::Errors => format!("{name} was {actual}"),
            Metric::Rate => format!("{name} was {actual:.1}/s"),
        };
        Verdict {
            expr: self.expr.clone(),
            actual,
            ok,
            shown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_operators() {
        let t = Threshold::parse("p99 < 5ms").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit),
            (Metric::Quantile(0.99), Op::Less, 5000.0)
        );
        let t = Threshold::parse("max<=1.5s").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit),
            (Metric::Max, Op::LessOrEqual, 1.5e6)
        );
        let t = Threshold::parse("p50<200us").unwrap();
        assert_eq!(t.limit, 200.0);
        let t = Threshold::parse("rate>=900/s").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit),
            (Metric::Rate, Op::GreaterOrEqual, 900.0)
        );
        let t = Threshold::parse("errors>0").unwrap();
        assert_eq!((t.metric, t.op), (Metric::Errors, Op::Greater));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "p99",
            "p98<5ms",
            "p99<5",
            "p99<ms",
            "errors<-1",
            "rate>x",
            "p99=5ms",
        ] {
            let e = Threshold::parse(bad).unwrap_err();
            assert!(e.starts_with("--threshold: "), "{e}");
        }
    }

    #[test]
    fn judges_a_report() {
        let mut r = Report::new("http", "127.0.0.1:1", 1);
        for v in 1..=1000 {
            r.latency.record(v).unwrap();
        }
        r.msgs = 1000;
        r.elapsed_s = 1.0;
        let check = |e: &str| Threshold::parse(e).unwrap().check(&r);
        assert!(check("p50<1ms").ok);
        assert!(!check("p99<900us").ok);
        assert_eq!(check("p99<900us").shown, "p99 was 990 µs");
        assert!(check("max<=1ms").ok);
        assert!(check("errors<1").ok);
        assert!(check("rate>=1000").ok);
        assert!(!check("rate>1000").ok);
        r.error("x");
        assert!(!Threshold::parse("errors<1").unwrap().check(&r).ok);
        let empty = Report::new("http", "127.0.0.1:1", 1);
        assert!(!Threshold::parse("p99<1s").unwrap().check(&empty).ok);
    }
}
