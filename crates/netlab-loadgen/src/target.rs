//! Where the load goes: `HOST:PORT` (TCP) or `unix:PATH` (a Unix-domain stream socket), and
//! the `http://HOST:PORT/path` URL of `loadgen http` ([`HttpUrl`]).

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

/// `http://HOST[:PORT]/path`, taken apart for `loadgen http`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub target: Target,
    /// The `Host` header: the URL's authority as written (`127.0.0.1:8080`).
    pub host: String,
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://127.0.0.1:8080/file`; the port defaults to 80 and the path to `/`.
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("'{url}': only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpUrl {
            target: Target::parse(&with_port)?,
            host: authority.to_string(),
            path: path.to_string(),
        })
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

    #[test]
    fn parses_http_urls() {
        let url = HttpUrl::parse("http://127.0.0.1:8080/a/b").unwrap();
        assert_eq!(url.target, Target::parse("127.0.0.1:8080").unwrap());
        assert_eq!(
            (url.host.as_str(), url.path.as_str()),
            ("127.0.0.1:8080", "/a/b")
        );
        let bare = HttpUrl::parse("http://[::1]").unwrap();
        assert_eq!(bare.target, Target::parse("[::1]:80").unwrap());
        assert_eq!(bare.path, "/");
        assert!(HttpUrl::parse("https://127.0.0.1/").is_err());
    }
}
