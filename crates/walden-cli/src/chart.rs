//! A grouped bar chart as a standalone SVG file: `walden bench --chart`.
//!
//! Hand-written SVG (a few dozen elements, no fonts or system libraries to
//! link): one panel per fsync mode, one group of bars per workload, one bar
//! per engine. Rates span four orders of magnitude (fdatasync-bound SQLite
//! to pipelined walden), so the value axis is logarithmic, with a grid line
//! at every power of ten, and every bar carries its number.

use std::fmt::Write as _;

/// One bar: which series (engine) it belongs to and its value (ops/s).
pub struct Bar {
    pub series: usize,
    pub value: f64,
}

/// Bars measured on one workload, drawn side by side.
pub struct BarGroup {
    pub label: String,
    pub bars: Vec<Bar>,
}

pub struct Panel {
    pub title: String,
    pub groups: Vec<BarGroup>,
}

/// The chart: `series` names the bars' engines (their colours, in order).
pub struct Chart<'a> {
    pub title: &'a str,
    pub subtitle: &'a str,
    pub series: &'a [&'a str],
    pub panels: Vec<Panel>,
}

const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#7f7f7f", "#2ca02c"];
const WIDTH: f64 = 1000.0;
const PANEL_HEIGHT: f64 = 260.0;
const TOP: f64 = 70.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const PLOT_TOP: f64 = 30.0;
const PLOT_BOTTOM: f64 = 50.0;

impl Chart<'_> {
    pub fn to_svg(&self) -> String {
        let height = TOP + PANEL_HEIGHT * self.panels.len() as f64 + 10.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ =
            writeln!(svg, r#"<text x="{LEFT}" y="24" font-size="18" font-weight="bold">{}</text>"#, esc(self.title));
        let _ = writeln!(svg, r##"<text x="{LEFT}" y="44" font-size="12" fill="#444">{}</text>"##, esc(self.subtitle));
        let mut x = LEFT;
        for (i, name) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let _ = writeln!(svg, r#"<rect x="{x}" y="54" width="12" height="12" fill="{colour}"/>"#);
            let _ = writeln!(svg, r#"<text x="{}" y="65" font-size="12">{}</text>"#, x + 16.0, esc(name));
            x += 24.0 + 7.5 * name.len() as f64;
        }
        for (i, panel) in self.panels.iter().enumerate() {
            self.panel(&mut svg, panel, TOP + PANEL_HEIGHT * i as f64);
        }
        svg.push_str("</svg>\n");
        svg
    }

    fn panel(&self, svg: &mut String, panel: &Panel, top: f64) {
        let values = panel.groups.iter().flat_map(|g| &g.bars).map(|b| b.value).filter(|v| *v > 0.0);
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo > hi {
            return;
        }
        // The axis starts a little below the smallest bar, so no bar is drawn
        // with no height.
        let decade_lo = (lo.log10() - 1e-9).floor() as i32;
        let decade_hi = (hi.log10().ceil() as i32).max(decade_lo + 1);
        let (y0, y1) = (top + PANEL_HEIGHT - PLOT_BOTTOM, top + PLOT_TOP);
        let y_of = |v: f64| {
            let t = (v.log10() - f64::from(decade_lo)) / f64::from(decade_hi - decade_lo);
            y0 - t * (y0 - y1)
        };
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
            top + 18.0,
            esc(&panel.title)
        );
        for decade in decade_lo..=decade_hi {
            let y = y_of(10f64.powi(decade));
            let _ =
                writeln!(svg, r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##, WIDTH - RIGHT);
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                short(10f64.powi(decade))
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="16" y="{:.1}" font-size="11" transform="rotate(-90 16 {:.1})" text-anchor="middle">ops/s (log)</text>"#,
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0
        );
        let slot = (WIDTH - LEFT - RIGHT) / panel.groups.len().max(1) as f64;
        for (g, group) in panel.groups.iter().enumerate() {
            let bar_width = (slot * 0.8 / group.bars.len().max(1) as f64).min(48.0);
            let start = LEFT + slot * g as f64 + (slot - bar_width * group.bars.len() as f64) / 2.0;
            for (b, bar) in group.bars.iter().enumerate() {
                if bar.value <= 0.0 || !bar.value.is_finite() {
                    continue;
                }
                let x = start + bar_width * b as f64;
                let y = y_of(bar.value);
                let colour = COLOURS[bar.series % COLOURS.len()];
                let name = self.series.get(bar.series).copied().unwrap_or("?");
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}: {} ops/s</title></rect>"#,
                    bar_width - 2.0,
                    y0 - y,
                    esc(name),
                    short(bar.value)
                );
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
                    x + bar_width / 2.0 - 1.0,
                    y - 3.0,
                    short(bar.value)
                );
            }
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                LEFT + slot * (g as f64 + 0.5),
                y0 + 16.0,
                esc(&group.label)
            );
        }
        let _ =
            writeln!(svg, r##"<line x1="{LEFT}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#333"/>"##, WIDTH - RIGHT);
    }
}

/// 1234 as "1.2k", 3_400_000 as "3.4M".
fn short(v: f64) -> String {
    let (scaled, suffix) = match v {
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 => (v / 1e3, "k"),
        v => (v, ""),
    };
    if scaled >= 100.0 || scaled.fract() == 0.0 {
        format!("{scaled:.0}{suffix}")
    } else {
        format!("{scaled:.1}{suffix}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart<'static> {
        Chart {
            title: "t <1>",
            subtitle: "s",
            series: &["walden", "sqlite", "raw"],
            panels: vec![Panel {
                title: "always".into(),
                groups: vec![
                    BarGroup {
                        label: "1 x 128 B".into(),
                        bars: vec![Bar { series: 0, value: 8_800.0 }, Bar { series: 1, value: 5_900.0 }],
                    },
                    BarGroup { label: "16 x 128 B".into(), bars: vec![Bar { series: 2, value: 3_300_000.0 }] },
                ],
            }],
        }
    }

    #[test]
    fn draws_one_labelled_bar_per_value_on_a_log_axis() {
        let svg = chart().to_svg();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 3, "{svg}");
        assert!(svg.contains("walden: 8.8k ops/s") && svg.contains("raw: 3.3M ops/s"));
        assert!(svg.contains("t &lt;1&gt;"), "titles are escaped");
        // Grid lines at 1k, 10k, 100k, 1M and 10M: the data spans 5.9k..3.3M.
        for label in [">1k<", ">10k<", ">100k<", ">1M<", ">10M<"] {
            assert!(svg.contains(label), "missing grid label {label}");
        }
    }

    #[test]
    fn a_bar_ten_times_higher_is_one_decade_taller() {
        let mut c = chart();
        c.panels[0].groups = vec![BarGroup {
            label: "x".into(),
            bars: vec![Bar { series: 0, value: 1_000.0 }, Bar { series: 1, value: 10_000.0 }],
        }];
        let svg = c.to_svg();
        let heights: Vec<f64> = svg
            .lines()
            .filter(|l| l.contains("<title>"))
            .map(|l| l.split("height=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(heights.len(), 2);
        // The axis runs from 100 to 10k: two decades, and 1k is half-way up.
        let decade = (PANEL_HEIGHT - PLOT_TOP - PLOT_BOTTOM) / 2.0;
        assert!((heights[0] - decade).abs() < 0.5, "{heights:?}");
        assert!((heights[1] - 2.0 * decade).abs() < 0.5, "{heights:?}");
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(8_844.0), "8.8k");
        assert_eq!(short(3_250_000.0), "3.2M");
        assert_eq!(short(133_000.0), "133k");
        assert_eq!(short(950.0), "950");
    }
}
