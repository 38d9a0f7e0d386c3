//! # Lab 07: a deleted file lives until its last close
//!
//! ```text
//! cargo run --release --bin unlinked   # 64 MiB in $TMPDIR (or /tmp)
//! cargo run --release --bin unlinked -- --dir /dev/shm --size 16MiB --hold 30
//! strace -e trace=openat,write,fsync,unlink,fstat,statfs,readlink,close ./target/release/unlinked
//! ```
//!
//! A name in a directory is only a link to an inode. `unlink` removes the name and lowers the
//! inode's link count (`st_nlink`); the kernel frees the inode and its blocks only when the link
//! count is 0 *and* no open file refers to it. So a process that holds the file open keeps the
//! data: `/proc/PID/fd/N` shows the old path with ` (deleted)`, and `df` does not get the space
//! back until the last `close`. This is the classic "disk full but du finds nothing" puzzle
//! (a log file deleted under a running daemon); `lsof -a +L1 -p PID` lists such files of one
//! process.
//!
//! The demo measures free space with `statfs` (free blocks times block size) around each step.
//! Other programs writing to the same filesystem move that number too, so only the short
//! windows around `unlink` and `close` are checked; the write step is reported as seen.
//! On tmpfs the "space" is memory, and the fact is the same.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use netlab_core::process;
use netlab_core::{parse_args, parse_size};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};
use nix::sys::statvfs::statvfs;

/// Holds a file open, deletes it, and shows its space stays in use until the last close.
#[derive(Parser)]
#[command(name = "unlinked", version)]
struct Cli {
    /// Directory to write the file in (a temporary name; removed by the demo itself).
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,

    /// How much to write: large enough to stand out from other writers on the same filesystem.
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = parse_size)]
    size: usize,

    /// Seconds to pause while the file is deleted but still open, to look with ls or lsof.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    hold: u64,
}

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let cli: Cli = parse_args();
    netlab_core::exit_on_error("unlinked", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.size < 1 << 20 {
        bail!(
            "--size {} is too small to see in the free-space figures; use at least 1MiB",
            cli.size
        );
    }
    let me = std::process::id();
    let path = cli.dir.join(format!("netlab-unlinked-{me}.dat"));
    println!(
        "unlinked: pid {me}, {} on {}",
        path.display(),
        filesystem(&cli.dir)?
    );
    println!();
    println!("{:<34} {:>12} {:>10}", "step", "free (MiB)", "change");
    let mut table = FreeSpace::new(&cli.dir)?;

    let mut file =
        File::create_new(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let written = write_and_sync(&mut file, cli.size);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e.context(format!("cannot write {}", path.display())));
    }
    table.step("written and fsync'd")?;

    std::fs::remove_file(&path).with_context(|| format!("unlink {}", path.display()))?;
    let after_unlink = table.step("unlinked, still open")?;

    let meta = file.metadata()?; // fstat on the open descriptor
    let fd = file.as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))?;
    println!();
    println!("the name exists:            {}", path.exists());
    println!("fstat st_nlink:             {}", meta.nlink());
    println!(
        "fstat st_blocks:            {} ({:.1} MiB still allocated)",
        meta.blocks(),
        meta.blocks() as f64 * 512.0 / MIB
    );
    println!("/proc/{me}/fd/{fd} -> {}", link.display());
    if cli.hold > 0 {
        // -a: files that are both deleted (+L1, link count below 1) and this pid's; without it
        // lsof ORs the two and lists every open file of the demo and every deleted file around.
        println!("see it yourself:            ls -l /proc/{me}/fd   or   lsof -a +L1 -p {me}");
        println!("(holding it open for {} s)", cli.hold);
        std::thread::sleep(Duration::from_secs(cli.hold));
        println!();
        // Others wrote to the filesystem during the hold: measure close against now.
        table.step("still open, after the hold")?;
    } else {
        // The pid is gone a moment after this line: a command naming it would find nothing.
        println!("see it yourself:            run with --hold 30, then ls or lsof it");
    }
    println!();

    drop(file); // close(2): the last reference; now the kernel frees the inode and its blocks
    let half = cli.size as i64 / 2;
    // Usually freed before close returns; allow a moment for filesystems that defer it.
    process::eventually(Duration::from_secs(2), || {
        table.measure().is_ok_and(|free| free - table.last >= half)
    });
    let after_close = table.step("closed")?;

    let mut problems = Vec::new();
    if meta.nlink() != 0 {
        problems.push(format!("st_nlink was {} after unlink, not 0", meta.nlink()));
    }
    if !link.to_string_lossy().ends_with(" (deleted)") {
        problems.push(format!(
            "/proc/self/fd/{fd} showed {} without (deleted)",
            link.display()
        ));
    }
    if after_unlink >= half {
        problems.push("the space came back at unlink, while the file was still open".into());
    }
    if after_close < half {
        problems.push("the space did not come back after close".into());
    }
    if !problems.is_empty() {
        bail!("not as expected: {}", problems.join("; "));
    }
    println!(
        "observed: unlink removed the name (st_nlink 0) but the {:.0} MiB stayed in use until close",
        cli.size as f64 / MIB
    );
    Ok(())
}

/// Writes `size` bytes and `fsync`s, so the blocks are allocated now rather than at some later
/// writeback. The bytes are pseudo-random: zeros could become a sparse hole, and a repeating
/// pattern would shrink on a compressing filesystem (btrfs `compress`).
fn write_and_sync(file: &mut File, size: usize) -> anyhow::Result<()> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15; // xorshift64: cheap, and incompressible enough
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n;
    }
    file.sync_all()?;
    Ok(())
}

/// The free-space column: `statvfs` before and after each step.
struct FreeSpace<'a> {
    dir: &'a Path,
    last: i64,
}

impl<'a> FreeSpace<'a> {
    fn new(dir: &'a Path) -> anyhow::Result<FreeSpace<'a>> {
        let mut table = FreeSpace { dir, last: 0 };
        table.last = table.measure()?;
        println!(
            "{:<34} {:>12.1} {:>10}",
            "before",
            table.last as f64 / MIB,
            ""
        );
        Ok(table)
    }

    /// Free bytes now: free blocks times the fragment size.
    fn measure(&self) -> anyhow::Result<i64> {
        let vfs = statvfs(self.dir).with_context(|| format!("statvfs {}", self.dir.display()))?;
        Ok(vfs.blocks_free() as i64 * vfs.fragment_size() as i64)
    }

    /// Prints a row and returns how much free space this step gave back (negative: used).
    fn step(&mut self, what: &str) -> anyhow::Result<i64> {
        let free = self.measure()?;
        let change = free - self.last;
        println!(
            "{what:<34} {:>12.1} {:>+10.1}",
            free as f64 / MIB,
            change as f64 / MIB
        );
        self.last = free;
        Ok(change)
    }
}

/// "ext4 (on disk)", "tmpfs (in memory)", ... from statfs's f_type.
fn filesystem(dir: &Path) -> anyhow::Result<String> {
    let fs = statfs(dir).with_context(|| format!("statfs {}", dir.display()))?;
    let kind = fs.filesystem_type();
    Ok(if kind == TMPFS_MAGIC {
        "tmpfs (in memory: its space is RAM)".to_string()
    } else if kind == nix::sys::statfs::EXT4_SUPER_MAGIC {
        "ext2/3/4 (on disk)".to_string()
    } else if kind == nix::sys::statfs::BTRFS_SUPER_MAGIC {
        "btrfs (on disk)".to_string()
    } else if kind == nix::sys::statfs::XFS_SUPER_MAGIC {
        "xfs (on disk)".to_string()
    } else if kind == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC {
        "overlayfs (space belongs to the layer below)".to_string()
    } else {
        format!("a filesystem of type {:#x}", kind.0)
    })
}
