//! Opening a client-named file so that nothing outside the root is ever opened.
//!
//! Checking a path and then opening it is a race (a symlink can be swapped in between), and
//! string checks miss spellings. Instead the kernel resolves the path: `openat2(2)` with
//! `RESOLVE_BENEATH` fails with `EXDEV` if any step (a `..`, an absolute path, a symlink, even
//! one created a microsecond ago) would leave the directory the root fd names.
//! `RESOLVE_NO_MAGICLINKS` also refuses `/proc/self/fd/N`-style links.
//!
//! Two opens per file, on purpose:
//!
//! 1. `openat2(root, path, O_PATH)` and `fstat`: an `O_PATH` open touches no driver and never
//!    blocks, so a FIFO or a device is looked at without being opened;
//! 2. only a regular file is then opened for reading, `O_RDONLY|O_NONBLOCK|O_NOCTTY` (a FIFO
//!    swapped in between would still not block the loop), and its inode compared with step 1.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, FileStat, SFlag};

/// The served directory, held open as an `O_PATH` fd: paths are resolved from it, so renaming
/// or replacing the directory's path later does not change what is served.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    pub path: PathBuf,
}

/// What a path named.
#[derive(Debug)]
pub enum Opened {
    /// A regular file, open for reading, and its `fstat`.
    File(File, FileStat),
    /// A directory (not opened for reading yet).
    Dir,
}

/// Why a path is not served.
#[derive(Debug)]
pub enum Refusal {
    /// ENOENT, ENOTDIR: 404.
    NotFound,
    /// EXDEV (would leave the root), ELOOP, EACCES, or not a regular file or directory: 403.
    Forbidden,
    /// ENAMETOOLONG: 414.
    TooLong,
    /// EMFILE and other trouble on the server's side: 503 or 500.
    Io(io::Error),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotFound => 404,
            Refusal::Forbidden => 403,
            Refusal::TooLong => 414,
            Refusal::Io(e) if netlab_core::is_fd_exhausted(e) => 503,
            Refusal::Io(_) => 500,
        }
    }
}

impl From<Errno> for Refusal {
    fn from(errno: Errno) -> Refusal {
        match errno {
            Errno::ENOENT | Errno::ENOTDIR => Refusal::NotFound,
            Errno::EXDEV | Errno::ELOOP | Errno::EACCES | Errno::EPERM => Refusal::Forbidden,
            Errno::ENAMETOOLONG => Refusal::TooLong,
            other => Refusal::Io(other.into()),
        }
    }
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// `openat2`, retried on EAGAIN: with RESOLVE_BENEATH the kernel returns EAGAIN when a rename
/// ran during the lookup and it cannot prove the result is beneath the root.
fn open_beneath(dir: &OwnedFd, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match openat2(dir.as_fd(), path, how(flags)) {
            Err(Errno::EAGAIN) if tries < 3 => tries += 1,
            other => return other,
        }
    }
}

impl Root {
    /// Opens the root directory (`open(O_PATH|O_DIRECTORY)`) and checks that this kernel has
    /// `openat2` (Linux 5.6 or later): without it nothing could be served safely.
    pub fn new(path: &Path) -> io::Result<Root> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())?;
        match open_beneath(&dir, Path::new("."), OFlag::O_PATH) {
            Ok(_) => {}
            Err(Errno::ENOSYS) => {
                return Err(io::Error::other(
                    "this kernel has no openat2(2) (Linux 5.6+), which the server needs to stay inside the root",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Root { dir, path })
    }

    /// Opens `relative` (from [`crate::Target::relative_path`]) beneath the root.
    pub fn open(&self, relative: &Path) -> Result<Opened, Refusal> {
        let probe = open_beneath(&self.dir, relative, OFlag::O_PATH)?;
        let seen = fstat(&probe)?;
        match SFlag::from_bits_truncate(seen.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => Ok(Opened::Dir),
            SFlag::S_IFREG => {
                let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
                let fd = open_beneath(&self.dir, relative, flags)?;
                let stat = fstat(&fd)?;
                if (stat.st_dev, stat.st_ino) != (seen.st_dev, seen.st_ino) {
                    // Replaced between the two opens: the name no longer means what we saw.
                    return Err(Refusal::NotFound);
                }
                Ok(Opened::File(File::from(fd), stat))
            }
            // FIFOs, sockets, character and block devices: never opened for reading.
            _ => Err(Refusal::Forbidden),
        }
    }

    /// Opens a directory beneath the root for reading its entries.
    pub fn open_dir(&self, relative: &Path) -> Result<OwnedFd, Refusal> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NONBLOCK;
        Ok(open_beneath(&self.dir, relative, flags)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn stays_beneath_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f.txt"), "hello").unwrap();
        symlink("sub/f.txt", dir.path().join("inside")).unwrap();
        symlink(outside.path().join("secret"), dir.path().join("abs")).unwrap();
        symlink("../../../../../../../../etc/passwd", dir.path().join("rel")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let root = Root::new(dir.path()).unwrap();

        assert!(
            matches!(root.open(Path::new("sub/f.txt")), Ok(Opened::File(_, s)) if s.st_size == 5)
        );
        assert!(matches!(
            root.open(Path::new("inside")),
            Ok(Opened::File(..))
        ));
        assert!(matches!(root.open(Path::new("sub")), Ok(Opened::Dir)));
        assert!(matches!(root.open(Path::new(".")), Ok(Opened::Dir)));
        assert!(matches!(
            root.open(Path::new("abs")),
            Err(Refusal::Forbidden)
        ));
        assert!(matches!(
            root.open(Path::new("rel")),
            Err(Refusal::Forbidden)
        ));
        assert!(matches!(
            root.open(Path::new("sub/../..")),
            Err(Refusal::Forbidden)
        ));
        assert!(matches!(
            root.open(Path::new("/etc/passwd")),
            Err(Refusal::Forbidden)
        ));
        assert!(matches!(
            root.open(Path::new("fifo")),
            Err(Refusal::Forbidden)
        ));
        assert!(matches!(
            root.open(Path::new("nope")),
            Err(Refusal::NotFound)
        ));
        assert!(matches!(
            root.open(Path::new("sub/f.txt/x")),
            Err(Refusal::NotFound)
        ));
    }
}
