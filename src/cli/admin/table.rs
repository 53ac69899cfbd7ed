//! Plain-text output shared by the admin commands: aligned tables and short
//! ages ("3s", "2m05s", "1h02m", "3d04h").

/// Renders rows under a header, each column as wide as its widest cell,
/// separated by two spaces; the last column is not padded.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate().take(cols) {
            if i + 1 < cols {
                let pad = width[i] - cell.chars().count();
                l.push_str(cell);
                l.extend(std::iter::repeat_n(' ', pad + 2));
            } else {
                l.push_str(cell);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A duration in seconds as a person reads it; negative ages (clock skew)
/// show as 0s.
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Cuts a cell to `max` characters, marking the cut with "...".
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = render(
            &["ID", "STATUS", "AGE"],
            &[
                vec!["a".into(), "COMPLETED".into(), "3s".into()],
                vec!["bbbb".into(), "FAILED".into(), "1h02m".into()],
            ],
        );
        assert_eq!(
            t,
            "ID    STATUS     AGE\na     COMPLETED  3s\nbbbb  FAILED     1h02m\n"
        );
    }

    #[test]
    fn ages_read_short() {
        assert_eq!(human_age(-4), "0s");
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(125), "2m05s");
        assert_eq!(human_age(3720), "1h02m");
        assert_eq!(human_age(3 * 86_400 + 4 * 3600), "3d04h");
        assert_eq!(clip("abcdefgh", 6), "abc...");
        assert_eq!(clip("abc", 6), "abc");
    }
}
