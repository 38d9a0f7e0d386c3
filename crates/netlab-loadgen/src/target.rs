//! Where the load goes: `HOST:PORT` (TCP) or `unix:PATH` (a Unix-domain stream socket).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Target {
    /// Parses `127.0.0.1:7000`, `localhost:7000`, `[::1]:7000` or `unix:/tmp/echo.sock`.
    pub fn parse(text: &str) -> Result<Target, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, e.g. unix:/tmp/echo.sock".into());
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Target::Tcp(addr));
        }
        let mut addrs = text
            .to_socket_addrs()
            .map_err(|e| format!("'{text}' is not HOST:PORT or unix:PATH ({e})"))?;
        addrs
            .next()
            .map(Target::Tcp)
            .ok_or_else(|| format!("'{text}' resolves to no address"))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "{addr}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_unix() {
        assert_eq!(
            Target::parse("127.0.0.1:7000"),
            Ok(Target::Tcp("127.0.0.1:7000".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("unix:/tmp/x.sock"),
            Ok(Target::Unix("/tmp/x.sock".into()))
        );
        assert!(Target::parse("unix:").is_err());
        assert!(Target::parse("nonsense").is_err());
        assert_eq!(Target::parse("unix:/a").unwrap().to_string(), "unix:/a");
    }
}
