//! The plain HTML listing of a directory that has no `index.html`.

use std::os::fd::OwnedFd;

use nix::dir::{Dir, Type};

use crate::target::percent_encode;

/// At most this many entries are listed (a huge directory cannot make a huge response).
pub const MAX_ENTRIES: usize = 10_000;

/// Lists the directory open at `dir` (`getdents64`), sorted, directories with a trailing `/`.
/// `display_path` is the decoded request path (`/sub/`). Names starting with a dot are left out
/// unless `show_hidden`.
pub fn render(dir: OwnedFd, display_path: &str, show_hidden: bool) -> nix::Result<String> {
    let mut dir = Dir::from_fd(dir)?;
    let mut names: Vec<(Vec<u8>, bool)> = Vec::new();
    for entry in dir.iter().take(MAX_ENTRIES + 2) {
        let entry = entry?;
        let name = entry.file_name().to_bytes().to_vec();
        if name == b"." || name == b".." || (!show_hidden && name.starts_with(b".")) {
            continue;
        }
        names.push((name, entry.file_type() == Some(Type::Directory)));
    }
    names.sort();
    let title = escape_html(display_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if display_path != "/" {
        html.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir) in names.iter().take(MAX_ENTRIES) {
        let slash = if *is_dir { "/" } else { "" };
        let href = percent_encode(name);
        let text = escape_html(&String::from_utf8_lossy(name));
        html.push_str(&format!(
            "<li><a href=\"{href}{slash}\">{text}{slash}</a></li>\n"
        ));
    }
    html.push_str("</ul>\n</body></html>\n");
    Ok(html)
}

/// `&`, `<`, `>`, `"`, `'` as entities.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sorted_and_escaped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b<x>.txt"), "").unwrap();
        std::fs::create_dir(dir.path().join("a dir")).unwrap();
        std::fs::write(dir.path().join(".env"), "").unwrap();
        let open = || {
            nix::fcntl::open(
                dir.path(),
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
                nix::sys::stat::Mode::empty(),
            )
            .unwrap()
        };
        let html = render(open(), "/d/", false).unwrap();
        assert!(!html.contains(".env"), "{html}");
        assert!(render(open(), "/d/", true).unwrap().contains(">.env</a>"));
        let a = html.find("<a href=\"a%20dir/\">a dir/</a>").unwrap();
        let b = html
            .find("<a href=\"b%3Cx%3E.txt\">b&lt;x&gt;.txt</a>")
            .unwrap();
        assert!(a < b);
        assert!(html.contains("href=\"../\""));
    }
}
