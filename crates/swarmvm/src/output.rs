//! Everything the binary prints on stdout goes through here: plain lines or JSON.
//! A closed pipe (`swarmvm ... | head -1`) is not an error.

use std::io::Write as _;

use serde::Serialize;

fn write(text: &str) {
    let mut out = std::io::stdout().lock();
    let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = result
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Prints one line.
pub(crate) fn line(text: impl AsRef<str>) {
    let mut s = text.as_ref().to_owned();
    s.push('\n');
    write(&s);
}

/// Prints a value as compact JSON on one line.
pub(crate) fn json(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(s) => line(s),
        Err(e) => line(format!("{{\"error\":\"cannot encode output: {e}\"}}")),
    }
}
