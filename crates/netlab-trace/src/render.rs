//! Steps as text: a header (the client action in words), the server's lines, each note
//! indented under its line (dimmed on a terminal), and a one-line summary. Two models side by
//! side share a header and get a column each when the terminal is wide enough.

use std::fmt::Write as _;

use crate::session::Step;

/// How a piece of text is shown (colour only on a terminal).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Header,
    Plain,
    Client,
    Note,
    Summary,
}

fn paint(style: Style, text: &str, colour: bool) -> String {
    let code = match style {
        Style::Header => "1;36",
        Style::Client => "33",
        Style::Note => "2",
        Style::Summary => "32",
        Style::Plain => return text.to_string(),
    };
    if colour && !text.is_empty() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 10 << 20 => format!("{} MiB", b >> 20),
        b if b >= 10 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// The summary: syscalls by name, bytes moved, where the threads now wait.
pub fn summary(step: &Step) -> String {
    let total: usize = step.calls.values().sum();
    let mut out = format!("{total} call{}", if total == 1 { "" } else { "s" });
    if total > 0 {
        let names: Vec<String> = step.calls.iter().map(|(n, c)| format!("{n} {c}")).collect();
        let _ = write!(out, " ({})", names.join(", "));
    }
    if !step.bytes.is_empty() {
        let moved: Vec<String> = step
            .bytes
            .iter()
            .map(|(n, b)| format!("{n} {}", human(*b)))
            .collect();
        let _ = write!(out, "; bytes: {}", moved.join(", "));
    }
    if step.client_sent + step.client_received > 0 {
        let _ = write!(
            out,
            "; client sent {}, received {}",
            human(step.client_sent as u64),
            human(step.client_received as u64)
        );
    }
    if !step.waits_in.is_empty() {
        let _ = write!(out, "; now waits in {}", step.waits_in.join(" and "));
    }
    if let Some(stopped) = &step.stopped {
        let _ = write!(out, "; said: {stopped}");
    }
    out
}

/// The step's body (everything below the header) as styled lines.
pub fn body(step: &Step) -> Vec<(Style, String)> {
    let mut out = vec![(Style::Client, format!("  client: {}", step.client))];
    if step.lines.is_empty() {
        out.push((Style::Plain, "  (no server syscalls)".into()));
    }
    for block in &step.lines {
        let group = block.repeats > 1;
        let indent = if group { "  | " } else { "  " };
        for line in &block.lines {
            out.push((Style::Plain, format!("{indent}{}", line.text)));
            let bytes = if line.bytes > 0 {
                format!(", {} in all", human(line.bytes))
            } else {
                String::new()
            };
            if line.count > block.repeats {
                out.push((
                    Style::Plain,
                    format!("{indent}  ... {} calls like this{bytes}", line.count),
                ));
            } else if group && line.bytes > 0 {
                out.push((Style::Plain, format!("{indent}  ... {}", &bytes[2..])));
            }
            if let Some(note) = &line.note {
                out.push((Style::Note, format!("{indent}    -> {note}")));
            }
        }
        if group {
            out.push((
                Style::Plain,
                format!(
                    "  '-- these {} lines, {} times in a row",
                    block.lines.len(),
                    block.repeats
                ),
            ));
        }
    }
    out.push((Style::Summary, format!("  = {}", summary(step))));
    out
}

/// `== step 3/11 send-line: the client sends ... ==`
pub fn header(index: usize, total: usize, step_id: &str, words: &str) -> String {
    format!("== step {index}/{total} {step_id}: {words} ==")
}

/// One model's step, for printing.
pub fn step_text(model: &str, index: usize, total: usize, step: &Step, colour: bool) -> String {
    let mut out = paint(
        Style::Header,
        &format!("{} [{model}]", header(index, total, step.id, step.action)),
        colour,
    );
    out.push('\n');
    for (style, text) in body(step) {
        out.push_str(&paint(style, &text, colour));
        out.push('\n');
    }
    out
}

/// Breaks `text` into lines of at most `width` characters, at a space when there is one in
/// the second half of the line; the lines after the first are indented, so a wrapped line
/// still reads as one.
fn wrap(style: Style, text: &str, width: usize) -> Vec<(Style, String)> {
    const INDENT: usize = 8;
    let mut rest: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut room = width;
    while rest.len() > room && room > 16 {
        let cut = rest[..room]
            .iter()
            .rposition(|&c| c == ' ')
            .filter(|&i| i > room / 2)
            .unwrap_or(room);
        let line: String = rest.drain(..cut).collect();
        out.push((style, line));
        while rest.first() == Some(&' ') {
            rest.remove(0);
        }
        rest.splice(0..0, std::iter::repeat_n(' ', INDENT));
        room = width;
    }
    out.push((style, rest.into_iter().take(width).collect()));
    out
}

/// Two models' same step in two columns of `width` characters each.
pub fn columns(
    models: [&str; 2],
    steps: [&Step; 2],
    index: usize,
    total: usize,
    width: usize,
    colour: bool,
) -> String {
    let mut out = paint(
        Style::Header,
        &header(index, total, steps[0].id, steps[0].action),
        colour,
    );
    out.push('\n');
    let column = |model: &str, step: &Step| {
        let mut lines = vec![(Style::Header, format!("[{model}]"))];
        lines.extend(body(step));
        let wrapped: Vec<(Style, String)> = lines
            .into_iter()
            .flat_map(|(style, text)| wrap(style, &text, width))
            .collect();
        wrapped
    };
    let left = column(models[0], steps[0]);
    let right = column(models[1], steps[1]);
    for i in 0..left.len().max(right.len()) {
        let (ls, lt) = left
            .get(i)
            .cloned()
            .unwrap_or((Style::Plain, String::new()));
        let (rs, rt) = right
            .get(i)
            .cloned()
            .unwrap_or((Style::Plain, String::new()));
        let pad = width.saturating_sub(lt.chars().count());
        let _ = writeln!(
            out,
            "{}{} | {}",
            paint(ls, &lt, colour),
            " ".repeat(pad),
            paint(rs, &rt, colour)
        );
    }
    out
}
