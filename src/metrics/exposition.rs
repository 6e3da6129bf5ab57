//! The Prometheus text exposition format (version 0.0.4), written by hand: `# HELP` and
//! `# TYPE` once per family, then its samples, label values escaped.

use std::fmt::Write;

use super::histogram::HistogramView;

#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// Label names and values of one series. Every series of a family carries the same names; a
/// label that does not apply is empty (to Prometheus the same as absent).
pub type Labels<'a> = [(&'a str, &'a str)];

impl Exposition {
    /// Starts a family: `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &Labels<'_>, value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        self.number(value);
        self.out.push('\n');
    }

    /// A histogram's series: cumulative `_bucket`s with `le` (the last `+Inf`), `_sum`, `_count`.
    pub fn histogram(&mut self, name: &str, labels: &Labels<'_>, h: &HistogramView) {
        let bucket = format!("{name}_bucket");
        for (bound, n) in h.bounds.iter().zip(&h.cumulative) {
            self.out.push_str(&bucket);
            self.labels(labels, Some(&bound.to_string()));
            let _ = writeln!(self.out, " {n}");
        }
        self.out.push_str(&bucket);
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &Labels<'_>, le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label_value(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn number(&mut self, v: f64) {
        if v.is_nan() {
            self.out.push_str("NaN");
        } else if v.is_infinite() {
            self.out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        } else if v.fract() == 0.0 && v.abs() < 1e15 {
            let _ = write!(self.out, "{}", v as i64);
        } else {
            let _ = write!(self.out, "{v}");
        }
    }
}

/// In label values: backslash, double quote and line feed are escaped.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// In help text: backslash and line feed.
fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.sample("m", &[("a", "x\"y\\z\nw")], 1.5);
        assert_eq!(e.finish(), "m{a=\"x\\\"y\\\\z\\nw\"} 1.5\n");
    }

    #[test]
    fn numbers() {
        let mut e = Exposition::default();
        for v in [3.0, 0.25, f64::INFINITY, f64::NAN, 1e-7] {
            e.sample("m", &[], v);
        }
        assert_eq!(e.finish(), "m 3\nm 0.25\nm +Inf\nm NaN\nm 0.0000001\n");
    }
}
