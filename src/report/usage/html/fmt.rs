//! Text and numbers as the HTML page shows them: every string from the
//! files escaped, numbers for people (thousands separators, dollars with
//! enough digits for tiny costs), and never `NaN` or `inf` on the page.

/// Escapes text for HTML and for attribute values alike, so a model named
/// `"><svg onload=...>` stays text wherever it lands.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // A control character is a parse error in HTML; show a mark instead.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            // A bidi override or isolate would reorder the figures shown
            // after the name ("$0.009" read as "900.0$"): a mark as well.
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Escaped, with a line break allowed after each `/` (model names and
/// paths in a narrow table column).
pub(super) fn esc_path(s: &str) -> String {
    esc(s).replace('/', "/<wbr>")
}

/// At most `max` characters, with an ellipsis when cut (legends and axis
/// labels; tables show the whole text).
pub(super) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A finite number for drawing and for `data-value`: what is not finite
/// (a server's nonsense, a division by zero) counts as nothing.
pub(super) fn fin(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// `1,234,567`.
pub(super) fn count(n: u64) -> String {
    group_digits(&n.to_string())
}

/// `1 request`, `2 requests`.
pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// Dollars: cents from $1 up, three significant digits below a dollar so a
/// run of tiny requests does not read as $0.00, exponents past a trillion.
pub(super) fn usd(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    if x < 0.0 {
        return format!("-{}", usd(-x));
    }
    if x == 0.0 {
        "$0".into()
    } else if x >= 1e12 {
        format!("${x:.2e}")
    } else if x >= 1.0 {
        format!("${}", group_digits(&format!("{x:.2}")))
    } else if x >= 1e-6 {
        let decimals = (2 - x.log10().floor() as i32).clamp(2, 12) as usize;
        format!("${}", trim_zeros(&format!("{x:.decimals$}"), 2))
    } else {
        format!("${x:.2e}")
    }
}

/// Milliseconds: one decimal under 100 ms, whole and grouped above.
pub(super) fn ms(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x.abs() < 100.0 {
        format!("{x:.1}")
    } else if x.abs() < 1e15 {
        group_digits(&format!("{:.0}", x))
    } else {
        format!("{x:.2e}")
    }
}

/// An axis label: `950`, `1.2k`, `3.4M`; three significant digits at most.
pub(super) fn compact(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let a = x.abs();
    let (v, unit) = if a >= 1e15 {
        return format!("{x:.1e}");
    } else if a >= 1e12 {
        (x / 1e12, "T")
    } else if a >= 1e9 {
        (x / 1e9, "B")
    } else if a >= 1e6 {
        (x / 1e6, "M")
    } else if a >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let decimals = if v.abs() >= 100.0 || v == 0.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else if v.abs() >= 0.01 {
        2
    } else {
        return format!("{x:.1e}");
    };
    format!("{}{unit}", trim_zeros(&format!("{v:.decimals$}"), 0))
}

/// A dollar axis label: `$0.0005`, `$1.5`, `$12k`.
pub(super) fn usd_axis(x: f64) -> String {
    if x.is_finite() && x.abs() >= 1.0 {
        format!("${}", compact(x))
    } else {
        usd(x)
    }
}

/// A duration for people: `42.0 s`, `12 min 5 s`, `3 h 12 min`, `2 d 4 h`.
pub(super) fn span(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "—".into();
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = s.round().min(u64::MAX as f64) as u64;
    let (d, h, m, sec) = (
        whole / 86_400,
        whole / 3600 % 24,
        whole / 60 % 60,
        whole % 60,
    );
    if d > 0 {
        format!("{} d {h} h", count(d))
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {sec} s")
    }
}

/// Inserts `,` every three digits of the integer part of a plain number.
fn group_digits(s: &str) -> String {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s),
    };
    let (int, frac) = match rest.find('.') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let mut out = String::with_capacity(s.len() + int.len() / 3);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(frac);
    out
}

/// Drops trailing zeros of a decimal, keeping at least `keep` decimals.
fn trim_zeros(s: &str, keep: usize) -> String {
    let Some(dot) = s.find('.') else {
        return s.to_string();
    };
    let mut end = s.len();
    while end > dot + 1 + keep && s.as_bytes()[end - 1] == b'0' {
        end -= 1;
    }
    if end == dot + 1 {
        end = dot;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_files_stays_text() {
        assert_eq!(
            esc("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            esc("\"><svg onload='x'>&"),
            "&quot;&gt;&lt;svg onload=&#39;x&#39;&gt;&amp;"
        );
        assert_eq!(esc("a\u{0}b"), "a\u{FFFD}b");
    }

    #[test]
    fn dollars_read_at_every_scale() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(0.000382), "$0.000382");
        assert_eq!(usd(0.001), "$0.001");
        assert_eq!(usd(0.01), "$0.01");
        assert_eq!(usd(0.6761), "$0.676");
        assert_eq!(usd(0.999), "$0.999");
        assert_eq!(usd(0.0000012345), "$0.00000123");
        assert_eq!(usd(0.1234), "$0.123");
        assert_eq!(usd(0.5), "$0.50");
        assert_eq!(usd(1234567.891), "$1,234,567.89");
        assert_eq!(usd(3e-9), "$3.00e-9");
        assert_eq!(usd(f64::MAX), "$1.80e308");
        assert_eq!(usd(-0.25), "-$0.25");
        assert_eq!(usd(f64::NAN), "—");
        assert_eq!(usd_axis(1500.0), "$1.5k");
        assert_eq!(usd_axis(0.0005), "$0.0005");
    }

    #[test]
    fn counts_and_durations_read_for_people() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(plural(1, "row", "rows"), "1 row");
        assert_eq!(plural(2, "row", "rows"), "2 rows");
        assert_eq!(ms(37.25), "37.2");
        assert_eq!(ms(1234.6), "1,235");
        assert_eq!(ms(f64::INFINITY), "—");
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(1200.0), "1.2k");
        assert_eq!(compact(2_500_000.0), "2.5M");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(span(42.04), "42.0 s");
        assert_eq!(span(725.0), "12 min 5 s");
        assert_eq!(span(3.0 * 3600.0 + 720.0), "3 h 12 min");
        assert_eq!(span(2.0 * 86_400.0 + 4.0 * 3600.0), "2 d 4 h");
        assert_eq!(span(f64::NAN), "—");
    }

    #[test]
    fn long_names_are_cut_on_a_character() {
        assert_eq!(clip("gemma", 10), "gemma");
        assert_eq!(clip("ééééé", 3), "éé…");
    }
}
