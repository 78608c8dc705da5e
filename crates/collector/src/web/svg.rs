//! Server-side SVG charts, inlined in the page (so each bar's `<title>` shows its value on
//! hover) and refreshed with the status region. Labels are escaped; values are numbers. No
//! `style` attributes: the CSP allows only the vendored stylesheet.
//!
//! The value axis scales to the data, not to the tenant's limit: 30 requests/h under a
//! 10,000/h limit was once an invisible line. A reference (our share, the hourly limit) far
//! above the data is named in a note above the plot instead of flattening it.

use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 28.0;

/// A record category's colour, the same on every source's chart (Okabe–Ito, readable with
/// the common colour-vision deficiencies). Unknown categories share a grey.
pub fn category_colour(category: &str) -> &'static str {
    match category {
        "inventory" => "#0072b2",
        "compliance" => "#009e73",
        "audit" => "#e69f00",
        "security" => "#d55e00",
        "apps" => "#cc79a7",
        "users" => "#56b4e9",
        "requests" => "#1f4e79",
        _ => "#7f7f7f",
    }
}

/// The legend order: categories as the streams declare them, then anything else by name.
pub fn category_rank(category: &str) -> usize {
    [
        "requests",
        "inventory",
        "compliance",
        "audit",
        "security",
        "apps",
        "users",
    ]
    .iter()
    .position(|c| *c == category)
    .unwrap_or(usize::MAX)
}

/// A horizontal reference on the value axis: our share, the hourly limit.
pub struct Reference {
    pub label: String,
    pub value: f64,
    pub colour: &'static str,
    /// Shade the band from zero up to this value (our share: the room we keep to).
    pub band: bool,
}

/// A reference is drawn on the plot when it is within this factor of the data's peak; further
/// up it is named in the note above the plot.
const ON_SCALE: f64 = 4.0;

/// The smallest "nice" number (1, 2, 2.5 or 5 × 10^k) at or above `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v - 1e-9 {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A count with thousands separators ("10,000"; fractions to one place).
pub fn group(v: f64) -> String {
    let whole = v.round() as i64;
    if (v - whole as f64).abs() > 0.05 {
        return format!("{v:.1}");
    }
    let digits = whole.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 {
        out.insert(0, '-');
    }
    out
}

fn hour_label(ms: i64) -> String {
    let h = ms.div_euclid(3_600_000).rem_euclid(24);
    format!("{h:02}:00")
}

/// Bars per hour, stacked by series, over `hours` (hour starts in ms, oldest first), with
/// reference lines. `series` are (category, value per hour).
pub fn hourly_bars(
    title: &str,
    unit: &str,
    hours: &[i64],
    series: &[(String, Vec<f64>)],
    refs: &[Reference],
) -> String {
    let value = |vals: &[f64], i: usize| vals.get(i).copied().unwrap_or(0.0).max(0.0);
    let totals: Vec<f64> = (0..hours.len())
        .map(|i| series.iter().map(|(_, v)| value(v, i)).sum())
        .collect();
    let peak = totals.iter().copied().fold(0.0_f64, f64::max);
    let (on, off): (Vec<&Reference>, Vec<&Reference>) = refs
        .iter()
        .filter(|r| r.value > 0.0)
        .partition(|r| peak > 0.0 && r.value <= peak * ON_SCALE);
    let top = nice_ceiling(
        on.iter()
            .map(|r| r.value)
            .fold(peak, f64::max)
            .max(if peak > 0.0 { peak } else { 10.0 }),
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h - (v / top).min(1.0) * plot_h;
    let n = hours.len().max(1) as f64;
    let bw = plot_w / n;
    let sum: f64 = totals.iter().sum();
    let desc = format!(
        "{title}: {} {unit} in the last {} hours, at most {} in one hour",
        group(sum),
        hours.len(),
        group(peak)
    );
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{d}" class="chart"><title>{d}</title><rect width="{W}" height="{H}" fill="#fff"/>"##,
        d = esc(&desc)
    );
    // Bands under the bars, gridlines and value ticks.
    for r in on.iter().filter(|r| r.band) {
        let yy = y(r.value);
        let _ = write!(
            s,
            r#"<rect x="{LEFT}" y="{yy:.1}" width="{plot_w:.1}" height="{:.1}" fill="{}" fill-opacity="0.08"><title>{}: up to {} {unit}/h</title></rect>"#,
            TOP + plot_h - yy,
            r.colour,
            esc(&r.label),
            group(r.value)
        );
    }
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#374151">{}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            yy + 3.5,
            group(v)
        );
    }
    // Bars, each segment with its value on hover.
    for (i, h) in hours.iter().enumerate() {
        let mut acc = 0.0;
        let when = format!("{}–{} UTC", hour_label(*h), hour_label(h + 3_600_000));
        for (cat, vals) in series {
            let v = value(vals, i);
            if v <= 0.0 {
                continue;
            }
            let (t, b) = (y(acc + v), y(acc));
            let what = if cat == unit {
                unit.to_string()
            } else {
                format!("{cat} {unit}")
            };
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{t:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{when}: {} {}</title></rect>"#,
                LEFT + i as f64 * bw + 1.0,
                (bw - 2.0).max(1.0),
                (b - t).max(0.5),
                category_colour(cat),
                group(v),
                esc(&what)
            );
            acc += v;
        }
    }
    // Reference lines on the scale, labelled at their right end.
    for r in &on {
        let yy = y(r.value);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="{c}" stroke-width="1.5" stroke-dasharray="5 3"><title>{l}: {v} {unit}/h</title></line><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="{c}">{l} {v}/h</text>"##,
            W - RIGHT,
            W - RIGHT - 2.0,
            yy - 3.0,
            c = r.colour,
            l = esc(&r.label),
            v = group(r.value)
        );
    }
    // Axes and hour ticks (every hour; labelled every three, and the last).
    let base = TOP + plot_h;
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{base:.1}" stroke="#6b7280"/><line x1="{LEFT}" x2="{:.1}" y1="{base:.1}" y2="{base:.1}" stroke="#6b7280"/>"##,
        W - RIGHT
    );
    for (i, h) in hours.iter().enumerate() {
        let x = LEFT + i as f64 * bw;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{base:.1}" y2="{:.1}" stroke="#6b7280"/>"##,
            base + 3.0
        );
        if i.is_multiple_of(3) {
            let _ = write!(
                s,
                r##"<text x="{x:.1}" y="{:.1}" font-size="10" fill="#374151">{}</text>"##,
                base + 14.0,
                hour_label(*h)
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#374151">UTC</text>"##,
        W - RIGHT,
        base + 24.0
    );
    // Legend, then the references too far up to draw.
    let mut x = LEFT;
    for (cat, _) in series {
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="8" width="10" height="10" fill="{}"/><text x="{:.1}" y="17" font-size="11" fill="#111827">{}</text>"##,
            category_colour(cat),
            x + 14.0,
            esc(cat)
        );
        x += 24.0 + 7.0 * cat.chars().count() as f64;
    }
    if series.is_empty() || peak == 0.0 {
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="17" font-size="11" fill="#374151">nothing in the last {} hours</text>"##,
            hours.len()
        );
    }
    if !off.is_empty() {
        let note = off
            .iter()
            .map(|r| format!("{} {}/h", r.label, group(r.value)))
            .collect::<Vec<_>>()
            .join(" · ");
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="32" font-size="10" text-anchor="end" fill="#374151">above the scale: {}</text>"##,
            W - RIGHT,
            esc(&note)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(n: i64) -> Vec<i64> {
        (0..n).map(|i| i * 3_600_000).collect()
    }

    #[test]
    fn labels_are_escaped() {
        let s = hourly_bars(
            "<x>",
            "records",
            &[0, 1],
            &[("<script>".into(), vec![1.0, 2.0])],
            &[],
        );
        assert!(!s.contains("<script>"));
        assert!(s.contains("&lt;script&gt;"));
    }

    #[test]
    fn the_axis_scales_to_the_data_and_far_references_are_named() {
        let refs = [
            Reference {
                label: "our share".into(),
                value: 150.0,
                colour: "#b45309",
                band: true,
            },
            Reference {
                label: "hourly limit".into(),
                value: 10_000.0,
                colour: "#b91c1c",
                band: false,
            },
        ];
        let s = hourly_bars(
            "API requests per hour",
            "requests",
            &hours(24),
            &[("requests".into(), vec![40.0; 24])],
            &refs,
        );
        // 150 (the share) sets the top; the limit is far above it.
        assert!(s.contains(">150<"), "{s}");
        assert!(!s.contains(">10,000<"), "the limit is not a tick: {s}");
        assert!(s.contains("above the scale: hourly limit 10,000/h"), "{s}");
        assert!(s.contains("our share 150/h"), "{s}");
        // Every bar says its value on hover, with its hour.
        assert_eq!(s.matches("<title>").count(), 1 + 1 + 24 + 1, "{s}");
        assert!(s.contains("<title>00:00–01:00 UTC: 40 requests</title>"));
        // Hour ticks: labelled every three hours.
        assert!(s.contains(">03:00<") && s.contains(">21:00<"));
    }

    #[test]
    fn category_colours_do_not_depend_on_which_categories_a_source_has() {
        let a = hourly_bars(
            "r",
            "records",
            &hours(2),
            &[("audit".into(), vec![1.0, 1.0])],
            &[],
        );
        let b = hourly_bars(
            "r",
            "records",
            &hours(2),
            &[
                ("apps".into(), vec![1.0, 1.0]),
                ("audit".into(), vec![1.0, 1.0]),
            ],
            &[],
        );
        let audit = category_colour("audit");
        assert!(a.contains(audit) && b.contains(audit));
        assert_ne!(category_colour("apps"), audit);
    }

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(140.0), 200.0);
        assert_eq!(nice_ceiling(200.0), 200.0);
        assert_eq!(nice_ceiling(2_100.0), 2_500.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(group(10_000.0), "10,000");
        assert_eq!(group(999.0), "999");
        assert_eq!(group(1_234_567.0), "1,234,567");
    }
}
