//! Command-line parts shared by every server: the flags, size parsing, and errors that fit on
//! one line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser};

/// The flags every echo server takes. Flatten it into a lab's own `Cli`.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// TCP address to listen on, `IP:PORT` or `HOST:PORT` (`localhost:7000`; a name that
    /// resolves to several addresses listens on its loopback one); port 0 picks a free port
    /// (the "listening" line says which).
    #[arg(long, default_value = "127.0.0.1:7000", value_parser = parse_listen_addr)]
    pub addr: SocketAddr,

    /// Listen on a Unix-domain socket at PATH instead of TCP.
    #[arg(long, value_name = "PATH", conflicts_with = "addr")]
    pub unix: Option<PathBuf>,

    /// listen(2) backlog: how many finished handshakes may wait for accept(). The kernel caps it
    /// at net.core.somaxconn.
    // allow_hyphen_values: so that `--backlog -1` reaches parse_backlog and gets its message,
    // instead of clap taking `-1` for an unknown flag.
    #[arg(long, default_value_t = 16384, allow_hyphen_values = true, value_parser = parse_backlog)]
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

/// `--addr`: `IP:PORT` as it is, or `HOST:PORT` resolved (getaddrinfo, which reads /etc/hosts).
/// Of the addresses a name resolves to, a server binds one: the first loopback address, IPv4
/// before IPv6 (`localhost` is often both 127.0.0.1 and ::1, and clients try 127.0.0.1 first),
/// else the first address given.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let resolved: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("'{text}' is not IP:PORT or HOST:PORT ({e})"))?
        .collect();
    let loopback = |v4: bool| {
        resolved
            .iter()
            .find(|a| a.ip().is_loopback() && a.is_ipv4() == v4)
    };
    loopback(true)
        .or_else(|| loopback(false))
        .or(resolved.first())
        .copied()
        .ok_or_else(|| format!("'{text}' resolves to no address"))
}

/// `--backlog`: a listen(2) backlog of at least 1. (Linux would take 0 or a negative number
/// too, and silently use 0 or somaxconn: an explicit error says more.)
fn parse_backlog(text: &str) -> Result<i32, String> {
    let backlog: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number"))?;
    if backlog < 1 {
        return Err(format!("{backlog} is less than 1"));
    }
    i32::try_from(backlog).map_err(|_| format!("{backlog} is too large (at most {})", i32::MAX))
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
    use super::{parse_duration, parse_size, ServerArgs};
    use clap::Parser;
    use std::net::SocketAddr;
    use std::time::Duration;

    /// A server's command line: just the shared flags.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn parse(args: &[&str]) -> Result<ServerArgs, String> {
        let argv = std::iter::once("echo-test").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .map(|cli| cli.server)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn addr_takes_an_ip_or_a_host_name() {
        let addr = |text: &str| parse(&["--addr", text]).map(|s| s.addr);
        let expect = |text: &str| Ok(text.parse::<SocketAddr>().unwrap());
        assert_eq!(addr("127.0.0.1:17600"), expect("127.0.0.1:17600"));
        assert_eq!(addr("[::1]:0"), expect("[::1]:0"));
        assert_eq!(addr("0.0.0.0:0"), expect("0.0.0.0:0"));
        // localhost is in /etc/hosts on any Linux; whatever else it maps to, loopback wins.
        assert_eq!(addr("localhost:17601"), expect("127.0.0.1:17601"));
        assert_eq!(parse(&[]).unwrap().addr, "127.0.0.1:7000".parse().unwrap());
        let no_port = addr("localhost").unwrap_err();
        assert!(
            no_port.contains("'localhost' is not IP:PORT or HOST:PORT"),
            "{no_port}"
        );
        assert!(addr("127.0.0.1:99999").is_err());
    }

    #[test]
    fn backlog_must_be_a_positive_number_and_says_so() {
        let backlog = |text: &str| parse(&["--backlog", text]).map(|s| s.backlog);
        assert_eq!(backlog("1"), Ok(1));
        assert_eq!(backlog("4096"), Ok(4096));
        assert_eq!(parse(&[]).unwrap().backlog, 16384);
        for (bad, why) in [
            ("-1", "-1 is less than 1"),
            ("0", "0 is less than 1"),
            ("ten", "'ten' is not a whole number"),
            ("99999999999", "99999999999 is too large"),
        ] {
            let message = backlog(bad).unwrap_err();
            assert!(message.contains("--backlog"), "{bad}: {message}");
            assert!(message.contains(why), "{bad}: {message}");
            assert!(!message.contains("unexpected argument"), "{bad}: {message}");
        }
        // A flag after --backlog is still a missing value, not a backlog of "--addr".
        assert!(parse(&["--backlog", "--addr", "127.0.0.1:0"]).is_err());
    }

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
