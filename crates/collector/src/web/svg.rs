//! Server-side SVG charts (no JavaScript). Labels are escaped; values are numbers.

use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const W: f64 = 720.0;
const H: f64 = 200.0;
const PAD: f64 = 36.0;
const COLORS: [&str; 6] = [
    "#3366cc", "#dc3912", "#109618", "#ff9900", "#990099", "#0099c6",
];

/// Bars per hour over 24 hours, stacked by series, with optional horizontal reference lines.
/// `hours` are the 24 hour starts (ms), oldest first; `series` are (label, values per hour).
pub fn hourly_bars(
    title: &str,
    hours: &[i64],
    series: &[(String, Vec<f64>)],
    lines: &[(String, f64)],
) -> String {
    let totals: Vec<f64> = (0..hours.len())
        .map(|i| {
            series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let max = totals
        .iter()
        .copied()
        .chain(lines.iter().map(|(_, v)| *v))
        .fold(1.0_f64, f64::max);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><title>{t}</title><rect width="{W}" height="{H}" fill="#fff"/>"##,
        t = esc(title)
    );
    let plot_h = H - 2.0 * PAD;
    let n = hours.len().max(1) as f64;
    let bw = (W - 2.0 * PAD) / n;
    let y = |v: f64| H - PAD - v / max * plot_h;
    for i in 0..hours.len() {
        let mut acc = 0.0;
        for (k, (_, vals)) in series.iter().enumerate() {
            let v = vals.get(i).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let (top, bottom) = (y(acc + v), y(acc));
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
                PAD + i as f64 * bw + 1.0,
                top,
                (bw - 2.0).max(1.0),
                (bottom - top).max(0.5),
                COLORS[k % COLORS.len()]
            );
            acc += v;
        }
    }
    for (k, (label, v)) in lines.iter().enumerate() {
        let yy = y(*v);
        let _ = write!(
            s,
            r##"<line x1="{PAD}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#333">{} {:.0}</text>"##,
            W - PAD,
            if k == 0 { "#c00" } else { "#e80" },
            W - PAD,
            yy - 3.0,
            esc(label),
            v
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{PAD}" x2="{PAD}" y1="{PAD}" y2="{:.1}" stroke="#999"/><line x1="{PAD}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#999"/><text x="4" y="{:.1}" font-size="10">{:.0}</text><text x="4" y="{:.1}" font-size="10">0</text><text x="{PAD}" y="{:.1}" font-size="10">-24 h</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">now</text>"##,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD,
        PAD + 4.0,
        max,
        H - PAD,
        H - PAD + 14.0,
        W - PAD,
        H - PAD + 14.0
    );
    for (k, (label, _)) in series.iter().enumerate() {
        let x = PAD + k as f64 * 120.0;
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="8" width="10" height="10" fill="{}"/><text x="{:.1}" y="17" font-size="11">{}</text>"#,
            COLORS[k % COLORS.len()],
            x + 14.0,
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_escaped() {
        let s = super::hourly_bars("<x>", &[0, 1], &[("<script>".into(), vec![1.0, 2.0])], &[]);
        assert!(!s.contains("<script>"));
        assert!(s.contains("&lt;script&gt;"));
    }
}
