//! The report folder: made before the first run (never one that holds files, never one another
//! run is using), and results.json and results.csv written into it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::render;
use crate::report::RunReport;
use crate::BadArgument;

/// `results.json` and `results.csv` in `dir`.
pub(crate) fn write_results(dir: &Path, reports: &[RunReport]) -> anyhow::Result<Vec<PathBuf>> {
    let json = dir.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(reports)? + "\n")
        .with_context(|| format!("cannot write {}", json.display()))?;
    let csv = dir.join("results.csv");
    std::fs::write(&csv, render::render(reports, render::Format::Csv)?)
        .with_context(|| format!("cannot write {}", csv.display()))?;
    Ok(vec![json, csv])
}

/// The output folder, made before the first run: `out` if it is new or empty (a folder that
/// holds anything is refused, not overwritten), or a new `./PREFIX-YYYYmmdd-HHMMSS/` (UTC).
pub(crate) fn output_dir(out: Option<&Path>, prefix: &str) -> anyhow::Result<PathBuf> {
    match out {
        Some(dir) => {
            if let Ok(mut entries) = std::fs::read_dir(dir) {
                if entries.next().is_some() {
                    return Err(BadArgument(format!(
                        "--out {}: that folder is not empty; give a new or empty one (nothing was written)",
                        dir.display()
                    ))
                    .into());
                }
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output folder {}", dir.display()))?;
            Ok(dir.to_path_buf())
        }
        None => new_dir(Path::new("."), &format!("{prefix}-{}", timestamp())),
    }
}

/// Makes `base/name`, or `base/name-2`, `-3`, ... if it exists: `create_dir` fails when the
/// folder exists, so two runs started in the same second never share one.
fn new_dir(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    for n in 1..1000 {
        let dir = if n == 1 {
            base.join(name)
        } else {
            base.join(format!("{name}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir.strip_prefix(".").map(Path::to_path_buf).unwrap_or(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create output folder {}", dir.display()))
            }
        }
    }
    anyhow::bail!(
        "cannot find a free output folder name {name}-N in {}",
        base.display()
    )
}

/// `YYYYmmdd-HHMMSS` in UTC.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(timestamp().len(), 15);
    }

    #[test]
    fn two_runs_in_the_same_second_get_two_folders() {
        let base = tempfile::tempdir().unwrap();
        let a = new_dir(base.path(), "netlab-report-20260101-000000").unwrap();
        let b = new_dir(base.path(), "netlab-report-20260101-000000").unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        assert!(b.to_string_lossy().ends_with("-000000-2"));
    }

    #[test]
    fn a_folder_with_files_is_not_overwritten() {
        let base = tempfile::tempdir().unwrap();
        assert!(output_dir(Some(base.path()), "x").is_ok(), "empty is fine");
        std::fs::write(base.path().join("results.json"), "[]").unwrap();
        let e = output_dir(Some(base.path()), "x").unwrap_err();
        assert!(e.downcast_ref::<BadArgument>().is_some(), "{e}");
        assert_eq!(
            std::fs::read_to_string(base.path().join("results.json")).unwrap(),
            "[]"
        );
    }
}
