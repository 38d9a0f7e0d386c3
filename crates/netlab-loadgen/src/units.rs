//! Numbers on the command line, the way wrk and tcpkali write them: counts with `k`/`M`
//! suffixes (powers of 1000), durations like `500ms`, `10s`, `2m`.

/// Parses a count: `50`, `10k` (10,000), `1.5k`, `2M`. Suffixes are powers of 1000.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let value = parse_number(text)?;
    if value.fract() != 0.0 {
        return Err(format!("'{text}' is not a whole number"));
    }
    Ok(value as u64)
}

/// Parses a rate or other real number with an optional `k`/`M`/`G` suffix: `20k` is 20,000.
pub fn parse_number(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (digits, scale) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1e3),
        Some((i, 'M')) => (&text[..i], 1e6),
        Some((i, 'G')) => (&text[..i], 1e9),
        _ => (text, 1.0),
    };
    let value: f64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a number (try 50, 10k or 1.5M)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("'{text}' must be a non-negative number"));
    }
    Ok(value * scale)
}

/// Durations are parsed as everywhere in netlab (`500ms`, `10s`, `2m`).
pub use netlab_core::parse_duration;

/// Parses a comma-separated list of counts: `0,100,1k,10k`.
pub fn parse_count_list(text: &str) -> Result<Vec<u64>, String> {
    text.split(',').map(parse_count).collect()
}

/// Parses a comma-separated list of sizes: `64,512,4k` (sizes use powers of 1024).
pub fn parse_size_list(text: &str) -> Result<Vec<u64>, String> {
    text.split(',')
        .map(|s| netlab_core::parse_size(s).map(|n| n as u64))
        .collect()
}

/// A process id: a whole number above 0 (`--server-pid -1` would name no process, or all).
pub fn parse_pid(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(format!(
            "'{text}' is not a process id (a whole number above 0)"
        )),
    }
}

/// `on` / `off` (also `true`/`false`, `1`/`0`).
pub fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(format!("'{text}': use on or off")),
    }
}

/// A count for a table: `1234567` -> `1.23M`, `45200` -> `45.2k`.
pub fn human(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if abs >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if abs >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if abs >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_durations_and_lists() {
        assert_eq!(parse_count("50"), Ok(50));
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("1.5k"), Ok(1_500));
        assert_eq!(parse_count("2M"), Ok(2_000_000));
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("x").is_err());
        assert!(parse_count("-1").is_err());
        assert_eq!(parse_pid("4242"), Ok(4242));
        assert!(parse_pid("-1").is_err() && parse_pid("0").is_err());
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("3 days").is_err());
        assert_eq!(
            parse_count_list("0,100,1k,10k"),
            Ok(vec![0, 100, 1000, 10_000])
        );
        assert_eq!(parse_size_list("64,4k"), Ok(vec![64, 4096]));
        assert_eq!(parse_on_off("off"), Ok(false));
        assert_eq!(human(45_200.0), "45.2k");
    }
}
