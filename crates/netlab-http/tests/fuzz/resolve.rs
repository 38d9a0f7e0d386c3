//! `Root::open` and `Root::open_dir` (openat2 with RESOLVE_BENEATH), given generated paths
//! straight, without `parse_target` in front: the kernel's fence alone must hold. The tree
//! beside the root holds a secret; inside the root, symlinks point at it in every way (absolute,
//! relative, through a directory link, a chain, a loop, /proc magic links). Whatever the path,
//! what opens is one of the root's own files or directories, never anything outside.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use netlab_http::{Opened, Root};
use nix::sys::stat::fstat;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::common::config;

struct Tree {
    _dir: tempfile::TempDir,
    root: Root,
    /// (dev, inode) of every file and directory inside the root.
    inside: HashSet<(u64, u64)>,
}

/// tmp/root (served) and tmp/outside (the secret), with links from the one to the other.
fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    for d in [
        &root,
        &root.join("a"),
        &root.join("a/b"),
        &outside,
        &outside.join("sub"),
    ] {
        fs::create_dir(d).unwrap();
    }
    fs::write(outside.join("secret"), "SECRET").unwrap();
    fs::write(outside.join("sub/more"), "SECRET").unwrap();
    for (name, text) in [("f.txt", "f"), ("a/g.txt", "g"), ("a/b/h.txt", "h")] {
        fs::write(root.join(name), text).unwrap();
    }
    let secret = outside.join("secret");
    let links: [(&str, &Path); 14] = [
        ("link_in", Path::new("a/g.txt")),
        ("a/up_in", Path::new("../f.txt")),
        ("dirlink", Path::new("a")),
        ("abs_out", &secret),
        ("abs_in", &root.join("f.txt")),
        ("rel_out", Path::new("../outside/secret")),
        ("a/deep_out", Path::new("../../outside/secret")),
        ("a/b/dir_out", Path::new("../../../outside")),
        ("chain", Path::new("a/b/dir_out")),
        ("loop", Path::new("loop")),
        ("proc_root", Path::new("/proc/self/root")),
        ("proc_fd", Path::new("/proc/self/fd/0")),
        ("a/far_up", Path::new("../../../../../../../../..")),
        ("dot_dot_in", Path::new("a/b/../../f.txt")),
    ];
    for (name, points_to) in links {
        symlink(points_to, root.join(name)).unwrap();
    }
    let inside = ["", "a", "a/b", "f.txt", "a/g.txt", "a/b/h.txt"]
        .iter()
        .map(|p| {
            let m = fs::metadata(root.join(p)).unwrap();
            (m.dev(), m.ino())
        })
        .collect();
    Tree {
        root: Root::new(&root).unwrap(),
        _dir: dir,
        inside,
    }
}

const NAMES: &[&str] = &[
    "a",
    "b",
    "f.txt",
    "g.txt",
    "h.txt",
    "link_in",
    "up_in",
    "dirlink",
    "abs_out",
    "abs_in",
    "rel_out",
    "deep_out",
    "dir_out",
    "chain",
    "loop",
    "proc_root",
    "proc_fd",
    "far_up",
    "dot_dot_in",
    "outside",
    "secret",
    "sub",
    "more",
    "root",
    "..",
    ".",
    "",
    "nope",
];

/// Names that lead somewhere inside, drawn more often so that many paths do open.
const INSIDE: &[&str] = &[
    "a", "b", "f.txt", "g.txt", "h.txt", "dirlink", "link_in", "up_in",
];

fn path() -> impl Strategy<Value = PathBuf> {
    let name = prop_oneof![
        2 => prop::sample::select(INSIDE),
        1 => prop::sample::select(NAMES),
    ];
    let named = (prop::bool::weighted(0.1), prop::collection::vec(name, 0..6)).prop_map(
        |(absolute, names)| {
            let joined = names.join("/");
            PathBuf::from(if absolute {
                format!("/{joined}")
            } else {
                joined
            })
        },
    );
    let bytes = prop::collection::vec(any::<u8>(), 0..30)
        .prop_map(|b| PathBuf::from(OsString::from_vec(b)));
    prop_oneof![4 => named, 1 => bytes]
}

/// One path: whatever opens must be inside. Returns whether something opened.
fn check(tree: &Tree, path: &Path) -> Result<bool, TestCaseError> {
    let mut opened = false;
    match tree.root.open(path) {
        Ok(Opened::File(mut file, stat)) => {
            prop_assert!(
                tree.inside.contains(&(stat.st_dev, stat.st_ino)),
                "{:?}",
                path
            );
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            prop_assert!(!text.contains("SECRET"), "{:?}", path);
            opened = true;
        }
        Ok(Opened::Dir) => {
            // Opened as a directory to read: the same path must name one of ours.
            let fd = tree.root.open_dir(path);
            prop_assert!(fd.is_ok(), "{:?} was a directory, then not: {:?}", path, fd);
            let stat = fstat(fd.unwrap()).unwrap();
            prop_assert!(
                tree.inside.contains(&(stat.st_dev, stat.st_ino)),
                "{:?}",
                path
            );
            opened = true;
        }
        Err(_) => {}
    }
    if let Ok(fd) = tree.root.open_dir(path) {
        let stat = fstat(&fd).unwrap();
        prop_assert!(
            tree.inside.contains(&(stat.st_dev, stat.st_ino)),
            "{:?}",
            path
        );
    }
    Ok(opened)
}

#[test]
fn root_never_opens_anything_outside() {
    let tree = tree();
    // The fence must not also refuse the way in: these are inside, through links that stay in.
    for good in [
        "f.txt",
        "link_in",
        "a/up_in",
        "dirlink/g.txt",
        "a/b/h.txt",
        ".",
        "a/b/..",
    ] {
        assert!(check(&tree, Path::new(good)).unwrap(), "{good} should open");
    }
    let mut config = config();
    config.source_file = Some(file!());
    let mut runner = TestRunner::new(config);
    let (cases, opened) = (Cell::new(0u64), Cell::new(0u64));
    let result = runner.run(&path(), |path| {
        cases.set(cases.get() + 1);
        opened.set(opened.get() + u64::from(check(&tree, &path)?));
        Ok(())
    });
    let (cases, opened) = (cases.get(), opened.get());
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // Not a vacuous pass: some generated paths did open (about one in twenty).
    assert!(cases < 100 || opened > 0, "{opened} of {cases} opened");
    eprintln!("fuzz: Root::open generated paths: {cases} cases ({opened} opened, inside)");
}
