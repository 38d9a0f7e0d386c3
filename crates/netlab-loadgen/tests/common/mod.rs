//! What the test binaries share: the project's echo servers, built once per test binary, and
//! small std servers in threads (an echo, an HTTP one, any `serve` function) on free ports.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use netlab_loadgen::servers;

/// Builds the echo servers once per test binary and returns their directory.
pub fn server_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile = servers::own_profile_dir().expect("test binary location");
        let root = servers::workspace_root().expect("tests run from the workspace");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(&root)
            .args(["build", "--quiet", "--bins", "-p", "netlab"])
            .env("CARGO_TARGET_DIR", profile.parent().unwrap());
        if profile.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .expect("run cargo build for the echo servers");
        assert!(status.success(), "building the echo servers failed");
        profile
    })
}

/// A TCP server on a free port of 127.0.0.1 running `serve` for each connection, one thread
/// each: the misbehaving servers of the tests are a `serve` function of a few lines.
pub fn tcp_server(serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// Echoes every byte back.
pub fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A keep-alive HTTP server on a free port answering every request head with `reply`.
pub fn http_server(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_every_request(stream, reply));
        }
    });
    addr
}

fn answer_every_request(mut stream: TcpStream, reply: &[u8]) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..pos + 4);
            if stream.write_all(reply).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
