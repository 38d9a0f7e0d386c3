//! The report page: `index.html` in every report folder, one self-contained page with the
//! workload, the environment, the table, the charts (the SVG files inlined) and the notes. It
//! opens from `file://` with no network: no script, no external style, font or image. The
//! figures on it are rendered from the same reports as results.json and results.csv, which
//! stay their source.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::render::{self, TABLE_HEADER};
use crate::report::RunReport;

/// What goes on the page besides the reports.
pub struct Page<'a> {
    /// `netlab compare` or `netlab sweep (idle)`.
    pub title: &'a str,
    /// The workload in words, with the transport.
    pub workload: &'a str,
    /// The SVG charts, in the order they are shown.
    pub charts: &'a [PathBuf],
    /// Extra text shown as is (a sweep's summary matrices).
    pub preformatted: Option<&'a str>,
}

/// `<`, `>`, `&` and quotes as entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 110em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
p.meta { margin: 0.2em 0; color: #444; }
div.table { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.8em; margin: 1em 0; }
th, td { padding: 0.25em 0.35em; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { background: #f2f2f2; text-align: right; white-space: normal; vertical-align: bottom; }
span.spread { color: #555; font-size: 0.9em; }
td { text-align: right; vertical-align: top; font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; font-weight: bold; }
tr.skipped td, tr.unavailable td { color: #888; }
tr.errors td { background: #fde8e8; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.chart { flex: 1 1 560px; max-width: calc(50% - 0.5em); margin: 0; }
@media (max-width: 1200px) { .chart { max-width: none; } }
.chart svg { width: 100%; height: auto; border: 1px solid #eee; }
ul.notes li { margin: 0.3em 0; }
li.warn { color: #8a4b00; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
";

/// The kind of a note, for its colour: warnings stand out.
fn is_warning(note: &str) -> bool {
    !note.starts_with("median of")
        && [
            "unstable",
            "client-bound",
            "machine busy",
            "error",
            "skipped",
            "not distinguishable",
        ]
        .iter()
        .any(|w| note.contains(w))
}

/// A table cell as HTML: a median's ` [min..max]` spread goes on a line of its own, so that
/// the table's twenty columns fit a screen (the text table keeps it on one line).
fn cell_html(cell: &str) -> String {
    match cell.split_once(" [") {
        Some((value, spread)) => format!(
            "{}<br><span class=\"spread\">[{}</span>",
            escape(value),
            escape(spread)
        ),
        None => escape(cell),
    }
}

/// An SVG file's text without an XML prolog, ready to inline.
fn inline_svg(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let start = text.find("<svg").unwrap_or(0);
    Ok(text[start..].to_string())
}

/// The whole page as text.
pub fn html(page: &Page, reports: &[RunReport]) -> anyhow::Result<String> {
    let mut out = String::new();
    let title = escape(page.title);
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>"
    )?;
    writeln!(
        out,
        "<p class=\"meta\"><b>workload:</b> {}</p>",
        escape(page.workload)
    )?;
    if let Some(r) = reports.first() {
        let env = r.environment.line();
        let env = env.strip_prefix("environment: ").unwrap_or(&env);
        writeln!(
            out,
            "<p class=\"meta\"><b>environment:</b> {}</p>",
            escape(env)
        )?;
    }
    writeln!(
        out,
        "<p class=\"meta\">figures from <a href=\"results.json\">results.json</a> and <a href=\"results.csv\">results.csv</a> in this folder</p>"
    )?;

    out.push_str("<div class=\"table\"><table>\n<thead><tr>");
    for h in TABLE_HEADER {
        // A header may break after a slash (`VmSize/conn`): the columns are narrower than
        // their names.
        write!(out, "<th>{}</th>", escape(h).replace('/', "/<wbr>"))?;
    }
    out.push_str("<th>status</th></tr></thead>\n<tbody>\n");
    for r in reports {
        let class = r.status.as_str().split_whitespace().next().unwrap_or("ok");
        write!(
            out,
            "<tr class=\"{class}\" data-model=\"{}\">",
            escape(&r.model)
        )?;
        for cell in render::row(r) {
            write!(out, "<td>{}</td>", cell_html(&cell))?;
        }
        writeln!(out, "<td>{}</td></tr>", escape(r.status.as_str()))?;
    }
    out.push_str("</tbody>\n</table></div>\n");

    out.push_str("<div class=\"charts\">\n");
    for chart in page.charts {
        let name = chart
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        writeln!(
            out,
            "<figure class=\"chart\" id=\"{}\">{}<figcaption><a href=\"{}\">{}</a></figcaption></figure>",
            escape(&name),
            inline_svg(chart)?,
            escape(&name),
            escape(&name)
        )?;
    }
    out.push_str("</div>\n");

    if let Some(text) = page.preformatted {
        writeln!(out, "<pre>{}</pre>", escape(text.trim_matches('\n')))?;
    }
    let notes = render::notes(reports);
    if !notes.is_empty() {
        out.push_str("<h2>Notes</h2>\n<ul class=\"notes\">\n");
        for n in notes {
            let class = if is_warning(&n) {
                " class=\"warn\""
            } else {
                ""
            };
            writeln!(out, "<li{class}>{}</li>", escape(&n))?;
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

/// Writes `index.html` into `dir` and returns its path.
pub fn write(dir: &Path, page: &Page, reports: &[RunReport]) -> anyhow::Result<PathBuf> {
    let path = dir.join("index.html");
    std::fs::write(&path, html(page, reports)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
