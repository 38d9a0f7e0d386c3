//! Command-line parts shared by every server: the flags, size parsing, and errors that fit on
//! one line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser};

/// The flags every echo server takes. Flatten it into a lab's own `Cli`.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// TCP address to listen on; port 0 picks a free port (the "listening" line says which).
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub addr: SocketAddr,

    /// Listen on a Unix-domain socket at PATH instead of TCP.
    #[arg(long, value_name = "PATH", conflicts_with = "addr")]
    pub unix: Option<PathBuf>,

    /// listen(2) backlog: how many finished handshakes may wait for accept(). The kernel caps it
    /// at net.core.somaxconn.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(i32).range(1..))]
    pub backlog: i32,

    /// Unsent bytes one connection may hold before the server stops reading from it until it
    /// drains (a client that sends and never reads cannot grow the server's memory).
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_max_pending)]
    pub max_pending: usize,
}

/// Parses the command line. `--help` and `--version` print as usual; any other error prints a
/// single line (`NAME: error: ...; see --help`) and exits with status 2.
pub fn parse_args<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let name = T::command().get_name().to_string();
            // clap's message is its lines up to the first blank one (a required argument's name
            // comes on the line after "were not provided:"); usage and tips follow, left out.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("{name}: error: {message}; see {name} --help");
            std::process::exit(2);
        }
    }
}

/// `--max-pending`: a size of at least one byte (at 0 a connection could never read anything).
fn parse_max_pending(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        0 => Err("must be at least 1 byte".into()),
        n => Ok(n),
    }
}

/// Parses a byte count: `4096`, `64k`, `64K`, `64KiB`, `1M`, `1MiB`, `2G`. The suffixes are
/// powers of 1024.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let number: usize = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (try 4096, 64k or 1MiB)"))?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "'{text}': unknown size suffix '{suffix}' (use k, M or G)"
            ))
        }
    };
    number
        .checked_mul(1usize << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Parses a duration: `500ms`, `10s`, `1.5s`, `2m`, `1h`, `250us`, or a bare number of
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 500ms, 10s or 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("'{text}' is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_size};
    use std::time::Duration;

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e99").is_err());
    }

    #[test]
    fn sizes_with_and_without_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(super::parse_max_pending("0").is_err());
        assert_eq!(super::parse_max_pending("1"), Ok(1));
    }
}
