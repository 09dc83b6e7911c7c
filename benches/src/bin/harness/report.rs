//! The report: a markdown table of every scenario with ratios and targets,
//! and a hand-written SVG bar chart of the ratios (log scale).

use std::fmt::Write as _;

/// How a ratio is judged against its threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cmp {
    /// Met when the value is at most the threshold.
    AtMost,
    /// Met when the value is at least the threshold.
    AtLeast,
}

/// A target: `value` compared with `threshold`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// What is compared, e.g. "netref/raw".
    pub(crate) what: String,
    pub(crate) value: f64,
    pub(crate) cmp: Cmp,
    pub(crate) threshold: f64,
    /// Unit of threshold and value ("x" for ratios).
    pub(crate) unit: &'static str,
}

impl Target {
    pub(crate) fn met(&self) -> bool {
        match self.cmp {
            Cmp::AtMost => self.value <= self.threshold,
            Cmp::AtLeast => self.value >= self.threshold,
        }
    }

    fn describe(&self) -> String {
        let op = if self.cmp == Cmp::AtMost { "≤" } else { "≥" };
        format!("{} {op} {}{}", self.what, fmt_num(self.threshold), self.unit)
    }
}

/// One line of the table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) unit: &'static str,
    pub(crate) netref: Option<f64>,
    pub(crate) raw: Option<f64>,
    pub(crate) rpyc: Option<f64>,
    pub(crate) rpyc_attr: Option<f64>,
    pub(crate) tarpc: Option<f64>,
    pub(crate) capnp: Option<f64>,
    /// netref ÷ each baseline present, e.g. ("raw", 1.1).
    pub(crate) ratios: Vec<(String, f64)>,
    pub(crate) target: Option<Target>,
    pub(crate) note: Option<String>,
}

impl Row {
    /// A row with netref and its baselines; fills in the ratios.
    pub(crate) fn new(scenario: impl Into<String>, unit: &'static str) -> Row {
        Row { scenario: scenario.into(), unit, ..Row::default() }
    }

    /// Computes netref ÷ baseline for every baseline present.
    pub(crate) fn with_ratios(mut self) -> Row {
        if let Some(t) = self.netref {
            for (name, b) in [
                ("raw", self.raw),
                ("RPyC", self.rpyc),
                ("RPyC root.add", self.rpyc_attr),
                ("tarpc", self.tarpc),
                ("capnp-rpc", self.capnp),
            ] {
                if let Some(b) = b.filter(|b| *b > 0.0) {
                    self.ratios.push((name.to_string(), t / b));
                }
            }
        }
        self
    }

    /// The ratio netref ÷ `baseline`, if measured.
    pub(crate) fn ratio(&self, baseline: &str) -> Option<f64> {
        self.ratios.iter().find(|(n, _)| n == baseline).map(|(_, r)| *r)
    }
}

/// Numbers as people read them: 3 significant digits, thousands apart.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a >= 10_000.0 {
        let s = format!("{:.0}", v);
        let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", &s));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn cell(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "–".into())
}

/// The markdown table.
pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str(
        "| scenario | unit | netref | raw | RPyC (cached) | RPyC `root.add` | tarpc | capnp-rpc | ratios (netref ÷ baseline) | target | met? |\n",
    );
    s.push_str("|---|---|--:|--:|--:|--:|--:|--:|---|---|---|\n");
    for r in rows {
        let ratios: Vec<String> = r.ratios.iter().map(|(n, v)| format!("{}x {n}", fmt_num(*v))).collect();
        let (target, met) = match &r.target {
            Some(t) => (t.describe(), if t.met() { "✅ met" } else { "❌ missed" }.to_string()),
            None => ("–".into(), "".into()),
        };
        let scenario = match &r.note {
            Some(n) => format!("{} ({n})", r.scenario),
            None => r.scenario.clone(),
        };
        let _ = writeln!(
            s,
            "| {scenario} | {} | {} | {} | {} | {} | {} | {} | {} | {target} | {met} |",
            r.unit,
            cell(r.netref),
            cell(r.raw),
            cell(r.rpyc),
            cell(r.rpyc_attr),
            cell(r.tarpc),
            cell(r.capnp),
            ratios.join(", "),
        );
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A horizontal bar chart of each row's ratio against its target's
/// baseline (or its first baseline), on a log scale around 1x. Green: target
/// met; red: missed; blue: no target. A black tick marks each threshold.
pub(crate) fn svg(rows: &[Row], title: &str) -> String {
    struct Bar {
        label: String,
        value: f64,
        threshold: Option<f64>,
        color: &'static str,
        text: String,
    }
    let mut bars = Vec::new();
    for r in rows {
        let (value, threshold, color, text) = match &r.target {
            Some(t) if t.unit == "x" => (
                t.value,
                Some(t.threshold),
                if t.met() { "#2e9d4a" } else { "#d0423b" },
                format!("{}x {}", fmt_num(t.value), t.what.trim_start_matches("netref/")),
            ),
            Some(t) => {
                // An absolute target (KiB per connection): chart value/threshold.
                (
                    t.value / t.threshold,
                    Some(1.0),
                    if t.met() { "#2e9d4a" } else { "#d0423b" },
                    format!("{} {} (of {})", fmt_num(t.value), t.unit, fmt_num(t.threshold)),
                )
            }
            None => match r.ratios.first() {
                Some((n, v)) => (*v, None, "#4a78c2", format!("{}x {n}", fmt_num(*v))),
                None => continue,
            },
        };
        if value.is_finite() && value > 0.0 {
            bars.push(Bar { label: r.scenario.clone(), value, threshold, color, text });
        }
    }
    let (mut lo, mut hi) = (0.5f64, 2.0f64);
    for b in &bars {
        lo = lo.min(b.value).min(b.threshold.unwrap_or(1.0));
        hi = hi.max(b.value).max(b.threshold.unwrap_or(1.0));
    }
    let (llo, lhi) = ((lo.log10() - 0.1).floor(), (hi.log10() + 0.1).ceil());
    let (left, plot_w, row_h, top) = (420.0, 520.0, 20.0, 50.0);
    let width = left + plot_w + 150.0;
    let height = top + bars.len() as f64 * row_h + 40.0;
    let x = |v: f64| left + (v.log10() - llo) / (lhi - llo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#, esc(title));
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" fill="#555">netref ÷ baseline, log scale (latency and KiB: lower is better; throughput: higher). Green met, red missed, blue no target; black tick = target.</text>"##
    );
    let mut decade = llo;
    while decade <= lhi + 1e-9 {
        let v = 10f64.powf(decade);
        let xv = x(v);
        let _ = writeln!(
            s,
            r##"<line x1="{xv:.1}" y1="{top}" x2="{xv:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xv:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}x</text>"##,
            height - 30.0,
            height - 15.0,
            fmt_num(v)
        );
        decade += 1.0;
    }
    let one = x(1.0);
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let (x0, x1) = if b.value >= 1.0 { (one, x(b.value)) } else { (x(b.value), one) };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + 14.0,
            esc(&b.label)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
            y + 3.0,
            (x1 - x0).max(1.0),
            row_h - 6.0,
            b.color
        );
        if let Some(t) = b.threshold {
            let xt = x(t);
            let _ = writeln!(
                s,
                r#"<line x1="{xt:.1}" y1="{:.1}" x2="{xt:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
                y + 1.0,
                y + row_h - 1.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x0.max(x1).max(one).max(b.threshold.map_or(0.0, x)) + 5.0,
            y + 14.0,
            esc(&b.text)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{one:.1}" y1="{top}" x2="{one:.1}" y2="{:.1}" stroke="#333"/>"##,
        height - 30.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        let mut r = Row::new("sync latency p50, TCP, pinned", "µs");
        r.netref = Some(13.0);
        r.raw = Some(10.0);
        r.tarpc = Some(20.0);
        let mut r = r.with_ratios();
        r.target = Some(Target {
            what: "netref/raw".into(),
            value: r.ratio("raw").unwrap(),
            cmp: Cmp::AtMost,
            threshold: 1.3,
            unit: "x",
        });
        r
    }

    #[test]
    fn ratios_and_targets() {
        let r = row();
        assert!((r.ratio("raw").unwrap() - 1.3).abs() < 1e-9);
        assert!((r.ratio("tarpc").unwrap() - 0.65).abs() < 1e-9);
        assert!(r.ratio("RPyC").is_none());
        assert!(r.target.as_ref().unwrap().met());
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1234567.0), "1,234,567");
        assert_eq!(fmt_num(12345.0), "12,345");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.1234), "0.123");
    }

    #[test]
    fn table_and_chart() {
        let rows = vec![row()];
        let md = markdown(&rows);
        assert!(md.contains("| sync latency p50, TCP, pinned | µs | 13.0 | 10.0 |"));
        assert!(md.contains("✅ met"));
        let svg = svg(&rows, "t");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("#2e9d4a"));
    }
}
