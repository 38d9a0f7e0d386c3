//! The plain HTML listing of a directory that has no `index.html`.

use std::os::fd::OwnedFd;

use nix::dir::{Dir, Type};

use crate::target::percent_encode;

/// At most this many entries are listed (a huge directory cannot make a huge response).
pub const MAX_ENTRIES: usize = 10_000;

/// A directory listing being generated: the names are read (`getdents64`) and sorted up front,
/// the HTML is made piece by piece as the socket takes it, so its length is not known when the
/// head goes out (hence `Transfer-Encoding: chunked`, or a body that ends at close).
pub struct Listing {
    title: String,
    up_link: bool,
    /// Sorted names still to list, and whether each is a directory.
    names: std::vec::IntoIter<(Vec<u8>, bool)>,
    started: bool,
    finished: bool,
}

impl Listing {
    /// Reads the directory open at `dir`. `display_path` is the decoded request path (`/sub/`).
    /// Names starting with a dot are left out unless `show_hidden`.
    pub fn read(dir: OwnedFd, display_path: &str, show_hidden: bool) -> nix::Result<Listing> {
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
        names.truncate(MAX_ENTRIES);
        Ok(Listing {
            title: escape_html(display_path),
            up_link: display_path != "/",
            names: names.into_iter(),
            started: false,
            finished: false,
        })
    }

    /// The next piece of HTML, about `budget` bytes (at least one entry), or `None` once the
    /// closing tags went out.
    pub fn next_piece(&mut self, budget: usize) -> Option<String> {
        if self.finished {
            return None;
        }
        let mut html = String::new();
        if !std::mem::replace(&mut self.started, true) {
            let title = &self.title;
            html.push_str(&format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
            ));
            if self.up_link {
                html.push_str("<li><a href=\"../\">../</a></li>\n");
            }
        }
        loop {
            let Some((name, is_dir)) = self.names.next() else {
                html.push_str("</ul>\n</body></html>\n");
                self.finished = true;
                return Some(html);
            };
            let slash = if is_dir { "/" } else { "" };
            let href = percent_encode(&name);
            let text = escape_html(&String::from_utf8_lossy(&name));
            html.push_str(&format!(
                "<li><a href=\"{href}{slash}\">{text}{slash}</a></li>\n"
            ));
            if html.len() >= budget {
                return Some(html);
            }
        }
    }
}

/// The whole listing at once (see [`Listing`]).
pub fn render(dir: OwnedFd, display_path: &str, show_hidden: bool) -> nix::Result<String> {
    let mut listing = Listing::read(dir, display_path, show_hidden)?;
    let mut html = String::new();
    while let Some(piece) = listing.next_piece(usize::MAX) {
        html.push_str(&piece);
    }
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
        // Piece by piece, it is the same HTML.
        let mut listing = Listing::read(open(), "/d/", false).unwrap();
        let mut pieces = Vec::new();
        while let Some(piece) = listing.next_piece(1) {
            pieces.push(piece);
        }
        assert_eq!(pieces.len(), 3, "{pieces:?}"); // head and first entry, second entry, end
        assert_eq!(pieces.concat(), html);
        let a = html.find("<a href=\"a%20dir/\">a dir/</a>").unwrap();
        let b = html
            .find("<a href=\"b%3Cx%3E.txt\">b&lt;x&gt;.txt</a>")
            .unwrap();
        assert!(a < b);
        assert!(html.contains("href=\"../\""));
    }
}
